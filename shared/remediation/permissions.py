"""Which actions the bot needs at which scope for one gateway, and which of them a permission list
grants. Pure: permission lists in (as `GET .../providers/Microsoft.Authorization/permissions`
returns them), missing actions out.

Evaluation follows Azure RBAC (https://learn.microsoft.com/azure/role-based-access-control/
role-definitions): an entry grants an action when one of its `actions` matches and none of ITS
`notActions` does; `*` matches any run of characters, and matching ignores case. `notActions`
is not a deny: another entry (another role) can grant what one leaves out.

What the bot needs, per gateway (the calls in shared/cloud/arm.py and what ARM checks for them):

- on the gateway: `read` (every run), `write` (a fix, an approval, a rollback),
  `backendhealth/action` (diagnosis) and `getBackendHealthOnDemand/action` (verification, as
  evidence: without it verification waits for periodic health);
- on its resource group: `locations/operations/read`, to follow the write's operation ("If you
  only have permission at the resource level, you can start the operation but you can't track
  its status", Learn, async-operations), and `locations/operationResults/read`, to read backend
  health (its answer comes through the Location URL);
- on each resource the gateway links to, for the write: `read` and `join/action` on subnets,
  public IPs and WAF policies, `assign/action` on user-assigned identities (Learn, Application
  Gateway infrastructure configuration, "Permissions"). Key Vault references name a vault by URL,
  not by resource id, so `vaults/deploy/action` cannot be looked up here (ARM names it if
  missing).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from shared.cloud.arm import ARM_ACTIONS, LINKED_RESOURCE_ACTIONS, LINKED_RESOURCE_READS
from shared.common.ids import GatewayId


@dataclass(frozen=True)
class PermissionEntry:
    """One entry of a permission list: a role's control-plane actions and notActions."""

    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> PermissionEntry:
        return cls(_strings(value.get("actions")), _strings(value.get("notActions")))

    def grants(self, action: str) -> bool:
        return any(_matches(a, action) for a in self.actions) and not any(
            _matches(n, action) for n in self.not_actions
        )


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value if isinstance(v, str)) if isinstance(value, list) else ()


@lru_cache(maxsize=512)
def _pattern(action: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(map(re.escape, action.split("*"))) + "$", re.IGNORECASE)


def _matches(pattern: str, action: str) -> bool:
    return bool(_pattern(pattern).match(action))


def granted(entries: Iterable[PermissionEntry], action: str) -> bool:
    """Whether any entry grants `action` (see the module docstring for the rules)."""
    return any(entry.grants(action) for entry in entries)


def parse_entries(values: Iterable[Mapping[str, Any]]) -> tuple[PermissionEntry, ...]:
    return tuple(PermissionEntry.from_json(v) for v in values)


# ---- what the bot needs ---------------------------------------------------------------------

WRITE = "write"  # needed to write the gateway and follow the write
READ = "read"  # needed to diagnose
EVIDENCE = "evidence"  # used when granted; its absence degrades, never refuses


@dataclass(frozen=True)
class Requirement:
    """An action the bot uses at a scope, and for what (WRITE, READ or EVIDENCE)."""

    action: str
    scope: str
    purpose: str

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "scope": self.scope, "purpose": self.purpose}


def _ref(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"].strip():
        return str(value["id"]).strip()
    return None


def _children(props: Mapping[str, Any], collection: str) -> Iterator[Mapping[str, Any]]:
    for child in props.get(collection) or []:
        if isinstance(child, dict):
            inner = child.get("properties")
            yield inner if isinstance(inner, dict) else {}


def linked_resources(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, resource id) of every ARM resource a gateway document links to, as a whole-gateway
    PUT re-submits them: subnets, public IPs, WAF policies and user-assigned identities."""
    props = doc.get("properties") if isinstance(doc.get("properties"), dict) else {}
    assert isinstance(props, dict)
    found: list[tuple[str, str]] = []

    def add(kind: str, resource_id: str | None) -> None:
        if resource_id and all(i.lower() != resource_id.lower() for _, i in found):
            found.append((kind, resource_id))

    for ipc in _children(props, "gatewayIPConfigurations"):
        add("subnet", _ref(ipc.get("subnet")))
    for fip in _children(props, "frontendIPConfigurations"):
        add("subnet", _ref(fip.get("subnet")))
        add("public_ip", _ref(fip.get("publicIPAddress")))
    for plc in _children(props, "privateLinkConfigurations"):
        for ipc in _children(plc, "ipConfigurations"):
            add("subnet", _ref(ipc.get("subnet")))
    add("waf_policy", _ref(props.get("firewallPolicy")))
    for listener in _children(props, "httpListeners"):
        add("waf_policy", _ref(listener.get("firewallPolicy")))
    for path_map in _children(props, "urlPathMaps"):
        for rule in _children(path_map, "pathRules"):
            add("waf_policy", _ref(rule.get("firewallPolicy")))
    identity = doc.get("identity")
    if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), dict):
        for identity_id in identity["userAssignedIdentities"]:
            add("user_assigned_identity", str(identity_id))
    return found


def gateway_requirements(gid: GatewayId, doc: Mapping[str, Any] | None) -> list[Requirement]:
    """Every (action, scope) the bot uses for this gateway; the linked resources' ones only
    when the gateway document is known."""
    group = f"/subscriptions/{gid.subscription}/resourceGroups/{gid.resource_group}"
    needs = [
        Requirement(ARM_ACTIONS["get_gateway"], gid.id, READ),
        Requirement(ARM_ACTIONS["backend_health"], gid.id, READ),
        Requirement(ARM_ACTIONS["backend_health_on_demand"], gid.id, EVIDENCE),
        Requirement(ARM_ACTIONS["put_gateway"], gid.id, WRITE),
        Requirement(ARM_ACTIONS["poll_operation"], group, WRITE),
        # Backend health answers through its Location (operationResults): diagnosis needs it.
        Requirement(ARM_ACTIONS["poll_operation_result"], group, READ),
    ]
    for kind, resource_id in linked_resources(doc or {}):
        if kind in LINKED_RESOURCE_READS:
            needs.append(Requirement(LINKED_RESOURCE_READS[kind], resource_id, WRITE))
        needs.append(Requirement(LINKED_RESOURCE_ACTIONS[kind], resource_id, WRITE))
    return needs


def missing(
    needs: Sequence[Requirement], entries_by_scope: Mapping[str, Sequence[PermissionEntry]]
) -> list[Requirement]:
    """The requirements no entry at their scope grants (scopes compared without case)."""
    by_scope = {k.lower(): v for k, v in entries_by_scope.items()}
    return [n for n in needs if not granted(by_scope.get(n.scope.lower(), ()), n.action)]


def describe(gaps: Sequence[Requirement]) -> str:
    """'<action>' on '<scope>'; ... (one line)."""
    return "; ".join(f"'{g.action}' on '{g.scope}'" for g in gaps)


__all__ = [
    "EVIDENCE",
    "READ",
    "WRITE",
    "PermissionEntry",
    "Requirement",
    "describe",
    "gateway_requirements",
    "granted",
    "linked_resources",
    "missing",
    "parse_entries",
]
