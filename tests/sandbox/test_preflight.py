"""Issue 17: the permissions pre-flight. The bot reads its identity's effective permissions at every
scope it uses (`GET {scope}/providers/Microsoft.Authorization/permissions`), names each missing
action with its scope, and turns a fix whose write would be refused into a proposal with nothing
written. The sandbox answers that API from the roles it enforces (`--rbac infra`).

- evaluation: wildcards, notActions per entry (not a deny), case, Microsoft's REST examples;
- the emulator's answer: shaped like the REST examples, one entry per role that applies;
- `python -m shared preflight` against infra/'s roles reports nothing missing; against a copy of
  infra/ without `applicationGateways/write` it names that action at the gateway, and `fix`
  becomes a proposal with 0 writes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_rbac import _accepted_puts, _fix, _scenario, _without

import shared.cli.preflight  # noqa: F401 - registers the command
from sandbox import rbac
from sandbox.runtime import SandboxHandle
from shared.cli.main import main
from shared.cloud.arm import ArmClient
from shared.cloud.permissions import list_permissions
from shared.common.ids import parse_gateway_id
from shared.common.settings import load_settings
from shared.remediation.permissions import (
    EVIDENCE,
    READ,
    WRITE,
    PermissionEntry,
    gateway_requirements,
    granted,
    missing,
    parse_entries,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "arm-examples"  # tests/data/SOURCES.md
WRITE_ACTION = "Microsoft.Network/applicationGateways/write"
GW = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-ase/providers/"
    "Microsoft.Network/applicationGateways/agw"
)
BOB = "b0b00000-0000-4000-8000-000000000002"  # an approver (Entra object id)
Factory = Callable[..., SandboxHandle]


# ---- evaluation -----------------------------------------------------------------------------


def test_an_entry_grants_by_wildcard_less_its_own_not_actions_ignoring_case() -> None:
    entry = PermissionEntry(("Microsoft.Network/*",), ("*/write",))
    assert entry.grants("microsoft.network/APPLICATIONGATEWAYS/read")
    assert entry.grants("Microsoft.Network/applicationGateways/backendhealth/action")
    assert not entry.grants(WRITE_ACTION)
    assert not entry.grants("Microsoft.Insights/Metrics/Read")
    # notActions subtracts from its own entry only: another role can grant the action.
    assert not granted([entry], WRITE_ACTION)
    assert granted([entry, PermissionEntry((WRITE_ACTION.upper(),))], WRITE_ACTION)
    assert granted([PermissionEntry(("*",))], WRITE_ACTION)
    assert not granted([], WRITE_ACTION)


def test_microsofts_rest_examples_parse_as_lists_granting_nothing() -> None:
    for name in ("GetPermissions.json", "GetResourcePermissions.json"):
        body = json.loads((EXAMPLES / name).read_text())["responses"]["200"]["body"]
        entries = parse_entries(body["value"])
        assert entries == (PermissionEntry((), ()),), name
        assert not granted(entries, WRITE_ACTION)


def test_requirements_name_each_action_at_its_scope_and_what_it_is_for() -> None:
    gid = parse_gateway_id(GW)
    group = GW.split("/providers/")[0]
    pip = f"{group}/providers/Microsoft.Network/publicIPAddresses/pip"
    doc = {
        "properties": {
            "frontendIPConfigurations": [{"properties": {"publicIPAddress": {"id": pip}}}]
        }
    }
    needs = {(n.action, n.scope, n.purpose) for n in gateway_requirements(gid, doc)}
    assert (WRITE_ACTION, GW, WRITE) in needs
    assert ("Microsoft.Network/locations/operations/read", group, WRITE) in needs
    assert ("Microsoft.Network/applicationGateways/read", GW, READ) in needs
    assert (
        "Microsoft.Network/applicationGateways/getBackendHealthOnDemand/action",
        GW,
        EVIDENCE,
    ) in needs
    assert ("Microsoft.Network/publicIPAddresses/join/action", pip, WRITE) in needs
    everything = {GW: [PermissionEntry(("*",))], group: [PermissionEntry(("*",))]}
    gaps = missing(gateway_requirements(gid, doc), everything)
    assert {g.scope for g in gaps} == {pip}  # nothing was read there


# ---- the emulator's answer ----------------------------------------------------------------------


def test_the_emulator_answers_the_roles_it_enforces_shaped_like_the_rest_example(
    sandbox_factory: Factory, tmp_path: Path
) -> None:
    handle = sandbox_factory(_scenario(tmp_path))  # rbac="infra"
    gid = parse_gateway_id(handle.gateway_ids[0])
    arm = ArmClient(load_settings())
    example = json.loads((EXAMPLES / "GetResourcePermissions.json").read_text())
    keys = set(example["responses"]["200"]["body"]["value"][0])
    at_gateway = list_permissions(arm, gid.id)
    assert at_gateway and all(keys <= set(entry) for entry in at_gateway)
    assert all(set(entry) == keys | {"dataActions", "notDataActions"} for entry in at_gateway)
    entries = parse_entries(at_gateway)
    # Each answer agrees with what the emulator then enforces.
    for action in (WRITE_ACTION, "Microsoft.Network/applicationGateways/read"):
        principal = next(a.principal_id for a in handle.authorizer.assignments)
        assert granted(entries, action) == handle.authorizer.allows(principal, action, gid.id)
    group = f"/subscriptions/{gid.subscription}/resourceGroups/{gid.resource_group}"
    at_group = parse_entries(list_permissions(arm, group))
    assert not granted(at_group, WRITE_ACTION)  # granted on the gateway alone
    assert granted(at_group, "Microsoft.Network/locations/operations/read")


def test_without_rbac_the_emulator_grants_everything(sandbox_factory: Factory) -> None:
    handle = sandbox_factory("ilb-ase-v1", rbac=None)
    values = list_permissions(ArmClient(load_settings()), handle.gateway_ids[0])
    assert values == [{"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []}]


# ---- the command and the fix --------------------------------------------------------------------


def _preflight(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["preflight", "--format", "json", "--quiet", *args])
    return code, json.loads(capsys.readouterr().out)


def test_preflight_against_infra_reports_nothing_missing(
    sandbox_factory: Factory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # ilb-ase-v1 with every kind of linked resource (tests/sandbox/test_rbac.py).
    handle = sandbox_factory(_scenario(tmp_path))  # rbac="infra"
    code, report = _preflight(capsys)  # every gateway in ALLOWED_SCOPES
    assert code == 0 and report["ok"] is True, report
    [gateway] = report["gateways"]
    assert gateway["gateway"].lower() == handle.gateway_ids[0].lower()
    assert gateway["missing"] == [] and gateway["unreadable"] == []
    checked = {(c["action"], c["purpose"]) for c in gateway["checked"]}
    assert (WRITE_ACTION, WRITE) in checked
    assert ("Microsoft.ManagedIdentity/userAssignedIdentities/assign/action", WRITE) in checked
    assert not [c for c in handle.authorizer.checks if not c.allowed]
    assert main(["preflight", "--gateway-id", handle.gateway_ids[0], "--quiet"]) == 0
    assert "every action the bot uses is granted" in capsys.readouterr().out


def test_without_the_write_action_preflight_names_it_and_fix_proposes_with_no_write(
    sandbox_factory: Factory,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    infra = _without(rbac.INFRA_DIR, WRITE_ACTION, tmp_path)
    handle = sandbox_factory(_scenario(tmp_path), rbac=str(infra))
    gateway_id = handle.gateway_ids[0]
    code, report = _preflight(capsys, "--gateway-id", gateway_id)
    assert code == 1 and report["ok"] is False
    [gateway] = report["gateways"]
    assert gateway["missing"] == [{"action": WRITE_ACTION, "scope": gateway_id, "purpose": WRITE}]
    assert main(["preflight", "--gateway-id", gateway_id, "--quiet"]) == 1
    text = capsys.readouterr().out
    assert f"missing  {WRITE_ACTION}  (write)" in text and f"on {gateway_id}" in text

    before = copy.deepcopy(handle.arm.gateway_document(gateway_id))
    monkeypatch.setenv("APPROVERS", BOB)
    bot, outcome = _fix(handle, tmp_path, monkeypatch)
    assert (outcome.action, outcome.arm_writes) == ("proposed", 0), outcome.reason
    assert f"'{WRITE_ACTION}' on '{gateway_id}'" in outcome.reason
    [proposal] = bot.proposals.list(status="open")
    assert proposal.id == outcome.proposal and WRITE_ACTION in " ".join(proposal.reasons)
    assert _accepted_puts(handle) == 0
    assert not [c for c in handle.authorizer.checks if not c.allowed]  # ARM was never refused
    assert handle.arm.gateway_document(gateway_id)["etag"] == before["etag"]
    # Approving it runs the same check: refused with the same reason, still nothing written.
    approved = bot.approve(proposal.id, BOB)
    assert (approved.action, approved.arm_writes) == ("failed", 0)
    assert WRITE_ACTION in approved.reason and _accepted_puts(handle) == 0


def test_preflight_refuses_a_gateway_outside_allowed_scopes(
    sandbox_factory: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox_factory("ilb-ase-v1", rbac=None)
    other = GW.replace(
        "00000000-0000-0000-0000-000000000001", "ffffffff-0000-0000-0000-00000000000f"
    )
    assert main(["preflight", "--gateway-id", other]) == 2
    assert "outside ALLOWED_SCOPES" in capsys.readouterr().err
