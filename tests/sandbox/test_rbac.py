"""Issue 12: the sandbox authorizes ARM requests the way Azure does (sandbox/rbac.py), with exactly
the roles infra/ grants the bot, read from the Bicep; and the bot turns a 403 into an outcome that
names the missing action and scope.

- rules: wildcards, notActions, scope inheritance, ARM's AuthorizationFailed and
  LinkedAuthorizationFailed bodies, operation tracking at the resource group;
- `test_every_action_infra_grants_is_used_by_a_bot_run`: infra grants nothing the bot does not
  use (compared with shared/cloud/arm.py and with what the sandbox checked during a real fix);
- `test_removing_one_action_from_infra_stops_the_bot`: a copy of infra/ without one action of
  the bot's roles makes the bot's fix end with AuthorizationFailed or LinkedAuthorizationFailed,
  or, for an action the write needs, a proposal naming it before anything is sent (issue 17).
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox import rbac
from sandbox.arm_validation import ArmError
from sandbox.identity import TokenIssuer, object_id_for
from sandbox.runtime import SandboxHandle
from shared.cli.wiring import local_remediator
from shared.cloud.arm import (
    ARM_ACTIONS,
    LINKED_RESOURCE_ACTIONS,
    LINKED_RESOURCE_READS,
    LroFailed,
)
from shared.cloud.arm import ArmError as BotArmError
from shared.cloud.authz import missing_permission
from shared.cloud.monitor import METRICS_ACTION, MetricsReader
from shared.common.settings import load_settings
from shared.remediation.retry import Verdict, decide_retry

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "sandbox" / "scenarios"
SUB = "/subscriptions/00000000-0000-0000-0000-000000000001"
RG = f"{SUB}/resourceGroups/rg-ase"
GW = f"{RG}/providers/Microsoft.Network/applicationGateways/agw"
OID = "11111111-1111-1111-1111-111111111111"
Factory = Callable[..., SandboxHandle]


def _authorizer(*assignments: rbac.Assignment, **kwargs: Any) -> rbac.Authorizer:
    return rbac.Authorizer(
        assignments, claims=lambda token: {"cid": "client-1", "oid": OID}, **kwargs
    )


def _params(**extra: str) -> dict[str, str]:
    return {"sub": SUB.rsplit("/", 1)[1], "rg": "rg-ase", "name": "agw", **extra}


# ---- the rules ------------------------------------------------------------------------------


def test_actions_match_wildcards_and_not_actions_case_insensitively() -> None:
    role = rbac.Role("r", ("Microsoft.Network/applicationGateways/*",), ("*/write",))
    assert role.allows("microsoft.network/APPLICATIONGATEWAYS/read")
    assert role.allows("Microsoft.Network/applicationGateways/backendhealth/action")
    assert not role.allows("Microsoft.Network/applicationGateways/write")
    assert not role.allows("Microsoft.Network/publicIPAddresses/read")


def test_not_actions_is_not_a_deny_another_role_can_grant_it() -> None:
    reader = rbac.Role("reader", ("*",), ("Microsoft.Network/applicationGateways/write",))
    writer = rbac.Role("writer", ("Microsoft.Network/applicationGateways/write",))
    auth = _authorizer(rbac.Assignment(OID, reader, SUB), rbac.Assignment(OID, writer, GW))
    assert auth.allows(OID, "Microsoft.Network/applicationGateways/write", GW)
    assert not auth.allows(OID, "Microsoft.Network/applicationGateways/write", f"{GW}2")


def test_an_assignment_covers_its_scope_and_children_only() -> None:
    role = rbac.Role("r", ("Microsoft.Network/applicationGateways/read",))
    auth = _authorizer(rbac.Assignment(OID, role, RG.upper()))
    read = "Microsoft.Network/applicationGateways/read"
    assert auth.allows(OID, read, GW)
    assert auth.allows(OID, read, RG)
    assert not auth.allows(OID, read, SUB)
    assert not auth.allows(OID, read, f"{RG}2/providers/x/y/z")  # a sibling, not a child
    assert not auth.allows("someone-else", read, GW)


def test_a_refused_request_gets_arms_authorization_failed() -> None:
    auth = _authorizer()
    with pytest.raises(ArmError) as caught:
        auth.authorize("token", "get", _params(), None)
    error = caught.value
    assert (error.status, error.code) == (403, "AuthorizationFailed")
    assert error.message == (
        f"The client 'client-1' with object id '{OID}' does not have authorization to perform "
        f"action 'Microsoft.Network/applicationGateways/read' over scope '{GW}' or the scope is "
        "invalid. If access was recently granted, please refresh your credentials."
    )
    found = missing_permission([error.code], error.message)
    assert found is not None
    assert found.actions == ("Microsoft.Network/applicationGateways/read",)
    assert found.scopes == (GW,)


def _gateway(**properties: Any) -> dict[str, Any]:
    return {"id": GW, "properties": properties}


def test_a_gateway_put_checks_every_linked_resource() -> None:
    subnet = f"{RG}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/appgw"
    pip = f"{RG}/providers/Microsoft.Network/publicIPAddresses/pip"
    writer = rbac.Role("w", ("Microsoft.Network/applicationGateways/write",))
    joiner = rbac.Role("j", ("Microsoft.Network/virtualNetworks/subnets/*",))
    auth = _authorizer(rbac.Assignment(OID, writer, GW), rbac.Assignment(OID, joiner, subnet))
    body = _gateway(
        gatewayIPConfigurations=[{"properties": {"subnet": {"id": subnet}}}],
        frontendIPConfigurations=[{"properties": {"publicIPAddress": {"id": pip}}}],
    )
    with pytest.raises(ArmError) as caught:
        auth.authorize("token", "put", _params(), body)
    error = caught.value
    assert (error.status, error.code) == (403, "LinkedAuthorizationFailed")
    found = missing_permission([error.code], error.message)
    assert found is not None and found.linked
    assert found.actions == (
        "Microsoft.Network/publicIPAddresses/read",
        "Microsoft.Network/publicIPAddresses/join/action",
    )
    assert found.scopes == (pip, pip)


def test_linked_resources_are_read_from_every_place_a_gateway_links() -> None:
    def sub_id(name: str) -> str:
        return f"{RG}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/{name}"

    def waf(name: str) -> str:
        policies = "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies"
        return f"{RG}/providers/{policies}/{name}"

    uami = f"{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id"
    vault = f"{RG}/providers/Microsoft.KeyVault/vaults/kv-ase"
    doc = _gateway(
        gatewayIPConfigurations=[{"properties": {"subnet": {"id": sub_id("gw")}}}],
        frontendIPConfigurations=[{"properties": {"subnet": {"id": sub_id("private")}}}],
        privateLinkConfigurations=[
            {"properties": {"ipConfigurations": [{"properties": {"subnet": {"id": sub_id("pl")}}}]}}
        ],
        firewallPolicy={"id": waf("gw")},
        httpListeners=[{"properties": {"firewallPolicy": {"id": waf("listener")}}}],
        urlPathMaps=[
            {"properties": {"pathRules": [{"properties": {"firewallPolicy": {"id": waf("path")}}}]}}
        ],
        sslCertificates=[
            {"properties": {"keyVaultSecretId": "https://kv-ase.vault.azure.net/secrets/c"}}
        ],
    )
    doc["identity"] = {"type": "UserAssigned", "userAssignedIdentities": {uami: {}}}
    assert rbac.linked_resources(doc, {"kv-ase": vault}) == [
        ("subnet", sub_id("gw")),
        ("subnet", sub_id("private")),
        ("subnet", sub_id("pl")),
        ("waf_policy", waf("gw")),
        ("waf_policy", waf("listener")),
        ("waf_policy", waf("path")),
        ("user_assigned_identity", uami),
        ("key_vault", vault),
    ]


def test_operation_status_needs_the_read_action_at_the_resource_group() -> None:
    op_read = rbac.Role("ops", ("Microsoft.Network/locations/operations/read",))
    url = f"https://arm{SUB}/providers/Microsoft.Network/locations/westeurope/operations/op-1?x=1"
    on_gateway = _authorizer(rbac.Assignment(OID, op_read, GW))
    on_gateway.observe("put", _params(), {"Azure-AsyncOperation": url})
    with pytest.raises(ArmError) as caught:
        on_gateway.authorize("token", "async_op", _params(op="op-1"), None)
    assert caught.value.code == "AuthorizationFailed" and f"over scope '{RG}'" in str(
        caught.value.message
    )
    on_group = _authorizer(rbac.Assignment(OID, op_read, RG))
    on_group.observe("put", _params(), {"Azure-AsyncOperation": url})
    on_group.authorize("token", "async_op", _params(op="OP-1"), None)


def test_tokens_name_the_principal_by_object_id() -> None:
    issuer = TokenIssuer()
    claims = issuer.claims(issuer.issue("https://management.azure.com", "client-x"))
    assert claims is not None and claims["oid"] == object_id_for("client-x")
    assert object_id_for(None) != object_id_for("client-x")


# ---- the bot's side of a 403 --------------------------------------------------------------------


def test_a_refused_write_fails_with_the_missing_permission_and_is_never_proposed() -> None:
    message = (
        f"ARM 403: AuthorizationFailed: The client 'c' with object id 'o' does not have "
        f"authorization to perform action 'Microsoft.Network/applicationGateways/write' over "
        f"scope '{GW}' or the scope is invalid."
    )
    refused = decide_retry(BotArmError(message, code="AuthorizationFailed", status=403), 1)
    assert refused.verdict is Verdict.FAIL
    assert "'Microsoft.Network/applicationGateways/write' on '" + GW in refused.reason
    assert "nothing was written" in refused.reason
    # Refused only while tracking an accepted PUT: the change may be in place.
    untracked = decide_retry(LroFailed(message, code="AuthorizationFailed", status=403), 1)
    assert untracked.verdict is Verdict.FAIL and "may already be in place" in untracked.reason


# ---- infra/ as the sandbox reads it -----------------------------------------------------------


def _granted_actions(infra: Path = rbac.INFRA_DIR) -> list[str]:
    return sorted({a for g in rbac.read_infra(infra) for a in g.role.actions})


def test_infra_grants_are_placed_where_the_bicep_assigns_them() -> None:
    grants = {g.module: g for g in rbac.read_infra()}
    assert grants["gatewayGrants"].target == "Microsoft.Network/applicationGateways"
    assert grants["operationGrants"].target == "resourceGroup"
    assert set(grants["operationGrants"].role.actions) == {
        "Microsoft.Network/locations/operations/read",
        "Microsoft.Network/locations/operationResults/read",
    }
    params = rbac.InfraParameters([GW], [f"{RG}/providers/Microsoft.Network/publicIPAddresses/pip"])
    placed = {(a.role.name, a.scope) for a in rbac.assignments_for(grants.values(), params, OID)}
    assert placed == {
        ("gatewayRole", GW),
        ("operationsRole", RG),
        ("sweepRole", SUB),
        ("publicIpJoinRole", f"{RG}/providers/Microsoft.Network/publicIPAddresses/pip"),
    }


def test_every_action_infra_grants_is_an_action_of_the_bots_calls() -> None:
    """The other direction of tests/infra's check: nothing granted that no code path needs."""
    needed = set(ARM_ACTIONS.values()) | set(LINKED_RESOURCE_ACTIONS.values())
    needed |= set(LINKED_RESOURCE_READS.values()) | {METRICS_ACTION}
    assert {a.lower() for a in _granted_actions()} == {a.lower() for a in needed}


# ---- end to end: the bot on a sandbox with infra's roles ----------------------------------------


def _all_links(data: dict[str, Any]) -> None:
    """ilb-ase-v1 with every kind of linked resource: public IP (already), WAF policies on the
    gateway and the listener, a user-assigned identity and a Key Vault certificate reference."""
    gw = data["gateways"][0]
    rg = "/subscriptions/{{subscription}}/resourceGroups/rg-ase/providers"
    # Keys are not rendered: the identity's id names the subscription literally.
    identities = rg.replace("{{subscription}}", data["subscription"])
    gw["identity"] = {
        "type": "UserAssigned",
        "userAssignedIdentities": {
            f"{identities}/Microsoft.ManagedIdentity/userAssignedIdentities/id-agw": {}
        },
    }
    props = gw["properties"]
    waf = f"{rg}/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies"
    props["firewallPolicy"] = {"id": f"{waf}/waf-gw"}
    props["httpListeners"][0]["properties"]["firewallPolicy"] = {"id": f"{waf}/waf-listener"}
    props["sslCertificates"].append(
        {
            "name": "kv-cert",
            "properties": {"keyVaultSecretId": "https://kv-ase.vault.azure.net/secrets/spare"},
        }
    )


def _scenario(tmp_path: Path) -> str:
    data = json.loads((SCENARIOS / "ilb-ase-v1.json").read_text())
    _all_links(data)
    data["name"] = "ilb-ase-v1-links"
    path = tmp_path / "ilb-ase-v1-links.json"
    path.write_text(json.dumps(data))
    return str(path)


def _fix(handle: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in {"LRO_TIMEOUT_SECONDS": "30", "VERIFY_DEADLINE_SECONDS": "20"}.items():
        monkeypatch.setenv(key, value)
    bot = local_remediator(load_settings(), state_dir=tmp_path / "state")
    return bot, bot.fix(handle.gateway_ids[0], requester="alice")


def _prefilter(handle: SandboxHandle) -> Any:
    """The sweep's pre-filter on the gateway: UnhealthyHostCount through metrics:getBatch."""
    gid = handle.gateway_ids[0]
    reader = MetricsReader(load_settings())
    return reader.unhealthy_hosts(str(handle.arm.gateway_location(gid)), [gid])


def _accepted_puts(handle: SandboxHandle) -> int:
    return sum(1 for r in handle.arm._requests if r["method"] == "PUT" and r["status"] < 400)


@pytest.mark.sandbox
def test_every_action_infra_grants_is_used_by_a_bot_run(
    sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Periodic health stays stale for 30 s, so verification also asks for health on demand.
    handle = sandbox_factory(_scenario(tmp_path), probe_interval_seconds=30)  # rbac="infra"
    _, outcome = _fix(handle, tmp_path, monkeypatch)
    assert (outcome.action, outcome.arm_writes, outcome.verified) == ("applied", 1, True)
    assert list(_prefilter(handle).values()) == [0]  # the sweep: healthy after the fix
    auth = handle.authorizer
    assert not [c for c in auth.checks if not c.allowed], "the bot needed an ungranted action"
    granted = {a.lower() for a in _granted_actions()}
    used = auth.checked_actions(allowed_only=True)
    assert granted - used == set(), "infra/ grants actions no bot run used"


def _without(infra: Path, action: str, tmp_path: Path) -> Path:
    copy_dir = tmp_path / "infra"
    shutil.copytree(infra, copy_dir)
    path = copy_dir / "modules" / "rbac.bicep"
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() != f"'{action}'"]
    assert len(kept) == len(lines) - 1, f"{action} is not one line of rbac.bicep"
    path.write_text("".join(kept))
    return copy_dir


ON_DEMAND = "Microsoft.Network/applicationGateways/getBackendHealthOnDemand/action"
# What the pre-flight reads before a write (shared/remediation/preflight.py): the write, the
# status reads and every linked resource's actions. Key Vault's deploy/action is not among them
# (a certificate names its vault by URL, not by resource id): ARM's own 403 reports it.
PREFLIGHT = {
    a.lower()
    for a in (
        ARM_ACTIONS["put_gateway"],
        ARM_ACTIONS["poll_operation"],
        *LINKED_RESOURCE_READS.values(),
        *(v for k, v in LINKED_RESOURCE_ACTIONS.items() if k != "key_vault"),
    )
}


@pytest.mark.sandbox
@pytest.mark.parametrize("action", _granted_actions())
def test_removing_one_action_from_infra_stops_the_bot(
    action: str, sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    infra = _without(rbac.INFRA_DIR, action, tmp_path)
    # On-demand health is asked for only while periodic health is stale (3 s here).
    options = {"probe_interval_seconds": 3} if action == ON_DEMAND else {}
    handle = sandbox_factory(_scenario(tmp_path), rbac=str(infra), **options)
    if action == METRICS_ACTION:
        # Only the sweep's pre-filter needs it: refused at the subscription, named in the error.
        with pytest.raises(BotArmError) as refused:
            _prefilter(handle)
        assert refused.value.status == 403 and action in str(refused.value)
        denied = {c.action for c in handle.authorizer.checks if not c.allowed}
        assert denied == {action}
        return
    before = copy.deepcopy(handle.arm.gateway_document(handle.gateway_ids[0]))
    bot, outcome = _fix(handle, tmp_path, monkeypatch)
    denied = {c.action for c in handle.authorizer.checks if not c.allowed}
    if action.lower() in PREFLIGHT:
        # Read from Microsoft.Authorization/permissions before writing: the fix becomes a
        # proposal naming the action, and ARM is never asked for what it would refuse.
        assert (outcome.action, outcome.arm_writes) == ("proposed", 0), outcome.reason
        assert action.lower() in outcome.reason.lower(), "the outcome names the missing action"
        assert [p.id for p in bot.proposals.list(status="open")] == [outcome.proposal]
        assert denied == set() and _accepted_puts(handle) == 0
        assert handle.arm.gateway_document(handle.gateway_ids[0])["etag"] == before["etag"]
        return
    assert denied == {action}

    if action == ON_DEMAND:
        # Evidence only (shared/remediation/verify.py): ARM refused it, periodic health verified.
        assert (outcome.action, outcome.verified) == ("applied", True)
        return
    assert outcome.action in {"refused", "failed"}, outcome.reason
    assert "AuthorizationFailed" in outcome.reason  # or LinkedAuthorizationFailed
    assert action.lower() in outcome.reason.lower(), "the outcome names the missing action"
    assert outcome.proposal is None and bot.proposals.list(status="open") == []
    assert _accepted_puts(handle) == 0
    after = handle.arm.gateway_document(handle.gateway_ids[0])
    assert after["etag"] == before["etag"]
