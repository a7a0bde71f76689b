"""Plan renderings: JSON Patch (checked by applying it), summary, az commands, Bicep."""

from __future__ import annotations

import base64
import copy
import hashlib
import shlex
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.common.errors import ResourceIdError
from shared.core.diagnosis import Fix, FixAction, FixCertificate
from shared.remediation.plan import apply_plan, plan_for_fix, revert_plan
from shared.remediation.render import (
    az_commands,
    az_rollback_commands,
    bicep_fragment,
    json_patch,
    renderings,
    summary,
)

GID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ase"
    "/providers/Microsoft.Network/applicationGateways/agw-v1"
)


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def apply_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """A tiny RFC 6902 applier (add, remove, replace) for the test."""
    doc = copy.deepcopy(doc)
    for op in ops:
        tokens = [_unescape(t) for t in op["path"].split("/")[1:]]
        if not tokens:
            doc = copy.deepcopy(op["value"])
            continue
        parent = doc
        for t in tokens[:-1]:
            parent = parent[int(t)] if isinstance(parent, list) else parent[t]
        last = tokens[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op["op"] == "add":
                assert 0 <= index <= len(parent)
                parent.insert(index, copy.deepcopy(op["value"]))
            elif op["op"] == "remove":
                del parent[index]
            else:
                parent[index] = copy.deepcopy(op["value"])
        else:
            if op["op"] == "add":
                parent[last] = copy.deepcopy(op["value"])
            elif op["op"] == "remove":
                del parent[last]
            else:
                assert last in parent
                parent[last] = copy.deepcopy(op["value"])
    return doc


def cert(seed: str) -> FixCertificate:
    der = hashlib.sha512(seed.encode()).digest()
    return FixCertificate(
        hashlib.sha1(der).hexdigest().upper(),
        hashlib.sha256(der).hexdigest().upper(),
        "PEM",
        base64.b64encode(der).decode(),
        f"CN={seed}",
        "2030-01-01T00:00:00Z",
    )


def doc() -> dict[str, Any]:
    ref = {"id": f"{GID}/authenticationCertificates/app-cert"}
    return {
        "id": GID,
        "properties": {
            "sku": {"tier": "Standard"},
            "authenticationCertificates": [{"name": "app-cert", "properties": {}}],
            "backendHttpSettingsCollection": [
                {"name": "ase-https", "properties": {"authenticationCertificates": [ref]}},
                {"name": "ase-https-2", "properties": {"authenticationCertificates": [ref]}},
                {"name": "odd/name~x", "properties": {"port": 443}},
            ],
            "unknownThing": {"a/b": 1},
        },
    }


def v1_plan() -> Any:
    fix = Fix(FixAction.ADD_AUTHENTICATION_CERTIFICATE, cert("ilb"), ("ase-https", "ase-https-2"))
    return plan_for_fix(doc(), fix, gateway_id=GID)


def test_json_patch_applies_to_after_and_is_small() -> None:
    plan = v1_plan()
    before = doc()
    after = apply_plan(before, plan)
    ops = json_patch(before, after)
    assert apply_patch(before, ops) == after
    assert {o["op"] for o in ops} == {"add"}
    assert len(ops) == 3  # the certificate and one reference per settings
    back = json_patch(after, revert_plan(after, plan))
    assert apply_patch(after, back) == before
    assert {o["op"] for o in back} == {"remove"}


def test_json_patch_escapes_and_replaces() -> None:
    a = {"x~y": {"a/b": 1}, "l": [1, 2, 3], "gone": True}
    b = {"x~y": {"a/b": 2}, "l": [1, 3], "new": None}
    ops = json_patch(a, b)
    assert {"op": "replace", "path": "/x~0y/a~1b", "value": 2} in ops
    assert apply_patch(a, ops) == b
    assert json_patch(a, a) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text("ab/~", max_size=3),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text("ab/~", max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.text("ab/~", max_size=3), json_values, max_size=4),
    st.dictionaries(st.text("ab/~", max_size=3), json_values, max_size=4),
)
def test_json_patch_round_trips(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert apply_patch(a, json_patch(a, b)) == b


def test_summary_names_certificate_and_settings() -> None:
    plan = v1_plan()
    text = summary(plan)
    assert plan.certificate is not None
    assert plan.certificate.name in text and plan.certificate.sha1 in text
    assert "ase-https" in text and "ase-https-2" in text
    assert "existing references stay" in text
    noop = plan_for_fix(apply_plan(doc(), plan), plan.fix, gateway_id=GID)  # type: ignore[arg-type]
    assert "nothing to do" in summary(noop)


def test_az_commands_and_rollback() -> None:
    plan = v1_plan()
    assert plan.certificate is not None
    name = plan.certificate.name
    cmds = az_commands(plan, GID)
    create = [c for c in cmds if " auth-cert create " in c]
    assert len(create) == 1 and f"--name {name}" in create[0] and "--cert-file" in create[0]
    assert "--gateway-name agw-v1" in create[0] and "--resource-group rg-ase" in create[0]
    updates = [c for c in cmds if " http-settings update " in c]
    assert len(updates) == 2
    for u in updates:
        assert u.endswith(f"--auth-certs app-cert {name}")  # the existing reference stays
    decoded = next(c for c in cmds if c.startswith("echo "))
    assert plan.certificate.data in decoded
    for c in cmds:
        shlex.split(c)  # every command is valid shell
    rollback = az_rollback_commands(plan, GID)
    assert all(r.endswith("--auth-certs app-cert") for r in rollback[:2])
    assert rollback[-1].endswith(
        f"auth-cert delete --subscription 00000000-0000-0000-0000-000000000000 "
        f"--resource-group rg-ase --gateway-name agw-v1 --name {name}"
    )


def test_az_v2_root_and_host_name() -> None:
    v2 = doc()
    v2["properties"]["sku"] = {"tier": "Standard_v2"}
    v2["properties"].pop("authenticationCertificates")
    fix = Fix(FixAction.ADD_TRUSTED_ROOT_CERTIFICATE, cert("root"), ("odd/name~x",))
    plan = plan_for_fix(v2, fix, gateway_id=GID)
    cmds = az_commands(plan, GID)
    assert any(" root-cert create " in c for c in cmds)
    assert not any("auth-cert" in c or "--auth-certs" in c for c in cmds)
    assert any("--root-certs" in c and "'odd/name~x'" in c for c in cmds)
    host = Fix(FixAction.SET_BACKEND_HOST_NAME, None, ("ase-https",), "app.internal.example")
    hplan = plan_for_fix(doc(), host, gateway_id=GID)
    assert az_commands(hplan, GID)[-1].endswith("--host-name app.internal.example")
    assert az_rollback_commands(hplan, GID)[-1].endswith("--host-name ''")


def test_bicep_fragment() -> None:
    plan = v1_plan()
    assert plan.certificate is not None
    text = bicep_fragment(plan)
    assert f"name: '{plan.certificate.name}'" in text
    assert plan.certificate.data in text
    assert (
        text.count("resourceId('Microsoft.Network/applicationGateways/authenticationCertificates'")
        == 4
    )
    assert "'app-cert'" in text and "trustedRootCertificates" not in text


def test_renderings_bundle() -> None:
    plan = v1_plan()
    before = doc()
    bundle = renderings(plan, before, apply_plan(before, plan))
    assert set(bundle) == {"summary", "json_patch", "az", "az_rollback", "bicep"}


def test_bad_gateway_id_refused() -> None:
    with pytest.raises(ResourceIdError):
        az_commands(v1_plan(), "not-an-id")
