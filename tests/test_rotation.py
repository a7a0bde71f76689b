"""Overlap rotation, pure (shared.remediation.rotation and the removal plan in plan.py)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.pki import KeyCert, issue, make_root, self_signed
from shared.core.capture import TlsCapture
from shared.core.certs import cert_info
from shared.core.diagnosis import FixAction
from shared.core.gateway import parse_gateway
from shared.core.health import parse_backend_health
from shared.remediation.plan import (
    AUTH_CERTS,
    TRUSTED_ROOTS,
    PlanError,
    apply_plan,
    plan_for_fix,
    plan_from_dict,
    plan_to_dict,
    revert_plan,
)
from shared.remediation.render import az_commands, az_rollback_commands, summary
from shared.remediation.rotation import overlaps_from, retirements, rotation_plans, rotations

NOW = datetime(2026, 12, 1, tzinfo=UTC)
GID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationGateways/agw"
HOST = "app.contoso.internal"
MEMBERS = ("10.0.0.4", "10.0.0.5")


def _leaf(issuer: KeyCert | None, days: int) -> KeyCert:
    nb, na = NOW - timedelta(days=30), NOW + timedelta(days=days)
    if issuer is None:
        return self_signed(HOST, dns_names=[HOST], not_before=nb, not_after=na)
    return issue(issuer, HOST, dns_names=[HOST], not_before=nb, not_after=na)


OLD_ROOT = make_root("Old Root", not_before=NOW - timedelta(days=900))
NEW_ROOT = make_root("New Root", not_before=NOW - timedelta(days=9))
NEW_INT = issue(NEW_ROOT, "New Issuing CA", ca=True)
OLD_LEAF = _leaf(OLD_ROOT, 20)
NEW_LEAF = _leaf(NEW_ROOT, 400)
NEW_LEAF_VIA_INT = _leaf(NEW_INT, 400)


def _doc(tier: str, refs: dict[str, KeyCert]) -> dict[str, Any]:
    collection = AUTH_CERTS if tier == "Standard" else TRUSTED_ROOTS
    return {
        "id": GID,
        "name": "agw",
        "properties": {
            "sku": {"name": tier, "tier": tier},
            collection: [{"name": n, "properties": {"data": c.der_b64()}} for n, c in refs.items()],
            "backendAddressPools": [
                {
                    "name": "pool",
                    "properties": {"backendAddresses": [{"ipAddress": m} for m in MEMBERS]},
                }
            ],
            "backendHttpSettingsCollection": [
                {
                    "name": "web",
                    "properties": {
                        "port": 443,
                        "protocol": "Https",
                        "hostName": HOST,
                        collection: [{"id": f"{GID}/{collection}/{n}"} for n in refs],
                        "unknownField": {"kept": True},
                    },
                }
            ],
            "requestRoutingRules": [
                {
                    "name": "rule",
                    "properties": {
                        "backendAddressPool": {"id": f"{GID}/backendAddressPools/pool"},
                        "backendHttpSettings": {"id": f"{GID}/backendHttpSettingsCollection/web"},
                    },
                }
            ],
        },
    }


def _health() -> Any:
    servers = [{"address": m, "health": "Healthy"} for m in MEMBERS]
    return parse_backend_health(
        {
            "backendAddressPools": [
                {
                    "backendAddressPool": {"id": f"{GID}/backendAddressPools/pool"},
                    "backendHttpSettingsCollection": [
                        {
                            "backendHttpSettings": {
                                "id": f"{GID}/backendHttpSettingsCollection/web"
                            },
                            "servers": servers,
                        }
                    ],
                }
            ]
        }
    )


def _captures(doc: dict[str, Any], *chains: tuple[KeyCert, ...] | None) -> dict[Any, TlsCapture]:
    """The gateway's own handshake per member, keyed as the diagnosis keys them."""
    from shared.core.diagnosis import probe_requests, route_hosts

    gw = parse_gateway(doc)
    first: dict[str, Any] = {}  # per member, its first request is the gateway's own way
    for r in probe_requests(gw, _health(), hosts=route_hosts(doc)):
        first.setdefault(r[0], r)
    requests = list(first.values())
    out = {}
    for request, chain in zip(requests, chains, strict=True):
        infos = tuple(cert_info(c.der()) for c in chain or ())
        out[request] = TlsCapture(request[0], request[1], request[2], infos)
    return out


def test_v2_next_certificate_in_key_vault_adds_its_root_next_to_the_old_one() -> None:
    doc = _doc("Standard_v2", {"old": OLD_ROOT})
    caps = _captures(doc, (OLD_LEAF, OLD_ROOT), (OLD_LEAF,))
    gw = parse_gateway(doc)
    vault = [NEW_LEAF_VIA_INT.der(), NEW_INT.der(), NEW_ROOT.der()]

    [rot] = rotations(gw, _health(), caps, now=NOW, hosts=None, trusted_source=vault)

    assert rot.fix is not None and rot.fix.action is FixAction.ADD_TRUSTED_ROOT_CERTIFICATE
    assert rot.fix.certificate is not None
    assert rot.fix.certificate.sha1 == NEW_ROOT.thumbprint()  # the root, never the intermediate
    assert rot.replaces == "old" and rot.vouched == NEW_ROOT.thumbprint()
    [plan] = rotation_plans(doc, [rot], GID)
    new = apply_plan(doc, plan)
    refs = new["properties"]["backendHttpSettingsCollection"][0]["properties"]
    assert [r["id"].rsplit("/", 1)[-1] for r in refs[TRUSTED_ROOTS]] == [
        "old",
        plan.certificate_ref_name,
    ]
    assert refs["unknownField"] == {"kept": True}
    assert plan_from_dict(plan_to_dict(plan)) == plan and plan.replaces == "old"


def test_v2_without_the_next_root_proposes_nothing_and_says_why() -> None:
    doc = _doc("Standard_v2", {"old": OLD_ROOT})
    caps = _captures(doc, (OLD_LEAF,), (OLD_LEAF,))
    [rot] = rotations(
        parse_gateway(doc), _health(), caps, now=NOW, operator=[NEW_LEAF_VIA_INT.der()]
    )
    assert rot.fix is None and "root of the next certificate" in rot.note


def test_v1_next_leaf_presented_by_another_member_is_allow_listed() -> None:
    old_leaf, new_leaf = _leaf(None, 10), _leaf(None, 700)
    doc = _doc("Standard", {"app-2025": old_leaf})
    caps = _captures(doc, (old_leaf,), (new_leaf,))
    [rot] = rotations(parse_gateway(doc), _health(), caps, now=NOW)
    assert rot.fix is not None and rot.fix.action is FixAction.ADD_AUTHENTICATION_CERTIFICATE
    assert rot.fix.certificate is not None
    assert rot.fix.certificate.sha1 == new_leaf.thumbprint() and rot.replaces == "app-2025"


def test_settings_trusting_no_stored_certificate_get_no_overlap() -> None:
    # v2 without trusted roots trusts the well-known CAs: adding a private root would end that.
    doc = _doc("Standard_v2", {})
    caps = _captures(doc, (OLD_LEAF,), (OLD_LEAF,))
    vault = [NEW_LEAF.der(), NEW_ROOT.der()]
    [rot] = rotations(parse_gateway(doc), _health(), caps, now=NOW, trusted_source=vault)
    assert rot.fix is None and "nothing to overlap" in rot.note
    assert rotation_plans(doc, [rot], GID) == []


def test_an_older_or_unrelated_certificate_is_no_next_one() -> None:
    doc = _doc("Standard_v2", {"old": OLD_ROOT})
    caps = _captures(doc, (OLD_LEAF,), (OLD_LEAF,))
    other = issue(NEW_ROOT, "other.contoso.internal", dns_names=["other.contoso.internal"])
    expired = _leaf(NEW_ROOT, -1)
    gw = parse_gateway(doc)
    source = [other.der(), expired.der(), NEW_ROOT.der()]
    assert rotations(gw, _health(), caps, now=NOW, trusted_source=source) == []


def _overlapped() -> tuple[dict[str, Any], Any]:
    doc = _doc("Standard_v2", {"old": OLD_ROOT, "new": NEW_ROOT})
    return doc, parse_gateway(doc)


def test_the_old_root_is_retired_only_once_no_member_presents_it() -> None:
    doc, gw = _overlapped()
    overlap = [("web", "old", "new")]
    mixed = _captures(doc, (NEW_LEAF,), (OLD_LEAF,))
    assert retirements(gw, _health(), mixed, overlap) == []
    missing = _captures(doc, (NEW_LEAF,), None)  # a member not captured may present the old
    assert retirements(gw, _health(), missing, overlap) == []

    done = _captures(doc, (NEW_LEAF,), (NEW_LEAF, NEW_ROOT))
    [ret] = retirements(gw, _health(), done, overlap)
    assert ret.fix.action is FixAction.REMOVE_TRUSTED_ROOT_CERTIFICATE and ret.old == "old"

    plan = plan_for_fix(doc, ret.fix, gateway_id=GID)
    after = apply_plan(doc, plan)
    props = after["properties"]
    settings = props["backendHttpSettingsCollection"][0]["properties"]
    assert [r["id"].rsplit("/", 1)[-1] for r in settings[TRUSTED_ROOTS]] == ["new"]
    assert [c["name"] for c in props[TRUSTED_ROOTS]] == ["new"]
    assert settings["unknownField"] == {"kept": True}
    assert "stop trusting old" in summary(plan)
    assert any("root-cert delete" in c for c in az_commands(plan, GID))
    assert any("root-cert create" in c for c in az_rollback_commands(plan, GID))
    # Rollback puts the certificate back and references it again.
    restored = revert_plan(after, plan_from_dict(plan_to_dict(plan)))["properties"]
    back = restored["backendHttpSettingsCollection"][0]["properties"][TRUSTED_ROOTS]
    assert sorted(r["id"] for r in back) == sorted(
        r["id"]
        for r in doc["properties"]["backendHttpSettingsCollection"][0]["properties"][TRUSTED_ROOTS]
    )
    assert sorted(c["name"] for c in restored[TRUSTED_ROOTS]) == ["new", "old"]
    assert next(c for c in restored[TRUSTED_ROOTS] if c["name"] == "old")["properties"] == {
        "data": OLD_ROOT.der_b64()
    }


def test_the_last_reference_is_never_removed() -> None:
    doc = _doc("Standard_v2", {"old": OLD_ROOT})
    _, gw = _overlapped()
    [ret] = retirements(
        gw,
        _health(),
        _captures(_overlapped()[0], (NEW_LEAF,), (NEW_LEAF,)),
        [("web", "old", "new")],
    )
    with pytest.raises(PlanError, match="only certificate"):
        plan_for_fix(copy.deepcopy(doc), ret.fix, gateway_id=GID)


def test_overlaps_come_from_applied_rotation_plans() -> None:
    rotation = {
        "replaces": "old",
        "certificate_ref_name": "appgw-bot-1",
        "settings_changes": [{"settings_name": "web", "add_reference": "appgw-bot-1"}],
    }
    plain = {**rotation, "replaces": None}
    assert overlaps_from([rotation, plain, rotation]) == [("web", "old", "appgw-bot-1")]


def test_settings_sharing_a_pool_get_the_new_root_in_one_write() -> None:
    doc = _doc("Standard_v2", {"old": OLD_ROOT})
    twin = copy.deepcopy(doc["properties"]["backendHttpSettingsCollection"][0])
    twin["name"] = "web-2"
    doc["properties"]["backendHttpSettingsCollection"].append(twin)
    rule = copy.deepcopy(doc["properties"]["requestRoutingRules"][0])
    rule["name"] = "rule-2"
    rule["properties"]["backendHttpSettings"]["id"] = f"{GID}/backendHttpSettingsCollection/web-2"
    doc["properties"]["requestRoutingRules"].append(rule)
    gw = parse_gateway(doc)
    caps = _captures(doc, (OLD_LEAF,), (OLD_LEAF,))
    found = rotations(gw, _health(), caps, now=NOW, trusted_source=[NEW_LEAF.der(), NEW_ROOT.der()])
    # Backend health names only "web"; routed members of "web-2" still count as presented.
    assert sorted(r.settings for r in found if r.fix) == ["web", "web-2"]
    [plan] = rotation_plans(doc, found, GID)
    assert plan.replaces == "old" and sorted(plan.settings_names) == ["web", "web-2"]
