"""Azure RBAC for the ARM emulator: who may call what, checked the way Resource Manager does.

Off unless a sandbox is started with `--rbac <infra dir>` (`start_sandbox(..., rbac="infra")`):
then every ARM request is authorized against role assignments, and the only assignments are the
ones `infra/` makes for the bot's identity, read from the Bicep (`read_infra`), not copied by hand.

The rules, each as Microsoft documents it:

- A role definition's effective actions are its `actions` minus its `notActions`; both may use
  `*` wildcards, and matching is case-insensitive. `notActions` is not a deny: another role's
  `actions` can grant what one role leaves out.
  https://learn.microsoft.com/azure/role-based-access-control/role-definitions
- An assignment at a scope applies to that scope and every child scope (subscription > resource
  group > resource > child resource).
  https://learn.microsoft.com/azure/role-based-access-control/scope-overview
- A request the caller may not make is answered 403 `AuthorizationFailed`, "The client '<id>'
  with object id '<oid>' does not have authorization to perform action '<action>' over scope
  '<scope>' or the scope is invalid. If access was recently granted, please refresh your
  credentials."
  https://learn.microsoft.com/azure/role-based-access-control/troubleshooting
- A write that links other resources also needs the linked resources' join/assign actions
  (ARM's "linked access check"), else 403 `LinkedAuthorizationFailed`. For an Application
  Gateway that uses existing resources: `read` and `join/action` on the subnet, the public IP
  and the WAF policy, `assign/action` on a user-assigned identity.
  https://learn.microsoft.com/azure/application-gateway/configuration-infrastructure#permissions
  https://learn.microsoft.com/azure/role-based-access-control/troubleshooting
- A Key Vault secret a gateway certificate references: `Microsoft.KeyVault/vaults/deploy/action`
  ("Enables access to secrets in a key vault when deploying Azure resources") on the vault.
  https://learn.microsoft.com/azure/role-based-access-control/permissions/security#microsoftkeyvault
  Whether ARM checks this on a gateway PUT is the sandbox's reading of that operation; only a
  real deployment can confirm it (docs/deploy.md).
- The status of an asynchronous operation (`Azure-AsyncOperation` and `Location` URLs,
  `/subscriptions/{s}/providers/Microsoft.Network/locations/{loc}/operations|operationResults/
  {id}`) needs the read action at the resource group or above: "If you only have permission at
  the resource level, you can start the operation but you can't track its status."
  https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sandbox.arm_validation import ArmError

INFRA_DIR = Path(__file__).resolve().parents[1] / "infra"
GATEWAYS = "Microsoft.Network/applicationGateways"

# Route of sandbox/arm.py -> the RBAC action it needs (REST API reference, "Permissions" of
# each operation; https://learn.microsoft.com/azure/role-based-access-control/permissions/networking).
ROUTE_ACTIONS: dict[str, str] = {
    "get": f"{GATEWAYS}/read",
    "list_rg": f"{GATEWAYS}/read",
    "list_all": f"{GATEWAYS}/read",
    "put": f"{GATEWAYS}/write",
    "backendhealth": f"{GATEWAYS}/backendhealth/action",
    "ondemand": f"{GATEWAYS}/getBackendHealthOnDemand/action",
    "async_op": "Microsoft.Network/locations/operations/read",
    "op_result": "Microsoft.Network/locations/operationResults/read",
    # sandbox/metrics.py: metrics:getBatch, authorized at the subscription it names.
    "metrics_batch": "Microsoft.Insights/Metrics/Read",
}

# Linked-resource kind -> (resource type, actions a gateway PUT needs on it). configuration-
# infrastructure#permissions lists read and join/action for existing subnets, public IPs and
# WAF policies; assign/action is what a user-assigned identity needs.
LINKED_RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "subnet": (
        "Microsoft.Network/virtualNetworks/subnets",
        (
            "Microsoft.Network/virtualNetworks/subnets/read",
            "Microsoft.Network/virtualNetworks/subnets/join/action",
        ),
    ),
    "public_ip": (
        "Microsoft.Network/publicIPAddresses",
        (
            "Microsoft.Network/publicIPAddresses/read",
            "Microsoft.Network/publicIPAddresses/join/action",
        ),
    ),
    "waf_policy": (
        "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies",
        (
            "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/read",
            "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/join/action",
        ),
    ),
    "user_assigned_identity": (
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        ("Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",),
    ),
    "key_vault": ("Microsoft.KeyVault/vaults", ("Microsoft.KeyVault/vaults/deploy/action",)),
}
_OP_ID = re.compile(r"/(?:operations|operationresults)/([^/?]+)", re.IGNORECASE)


# ---- role definitions and assignments --------------------------------------------------------


def _pattern(action: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(map(re.escape, action.split("*"))) + "$", re.IGNORECASE)


@dataclass(frozen=True)
class Role:
    """A role definition's control-plane permission (one block: actions and notActions)."""

    name: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()

    def allows(self, action: str) -> bool:
        granted = any(_pattern(a).match(action) for a in self.actions)
        return granted and not any(_pattern(n).match(action) for n in self.not_actions)


@dataclass(frozen=True)
class Assignment:
    principal_id: str
    role: Role
    scope: str

    def covers(self, scope: str) -> bool:
        """The assignment's scope is `scope` or one of its parents (case-insensitive)."""
        mine = self.scope.rstrip("/").lower()
        theirs = scope.rstrip("/").lower()
        return mine == "" or theirs == mine or theirs.startswith(mine + "/")


@dataclass(frozen=True)
class Check:
    """One authorization decision the emulator made (recorded for tests)."""

    action: str
    scope: str
    allowed: bool
    linked: bool = False


def resource_group_of(resource_id: str) -> str:
    parts = resource_id.split("/")
    return "/".join(parts[:5]) if len(parts) >= 5 else resource_id


def resource_type_of(resource_id: str) -> str:
    """'/subscriptions/s/resourceGroups/g/providers/Ns/t1/n1/t2/n2' -> 'Ns/t1/t2'."""
    _, _, tail = resource_id.partition("/providers/")
    parts = tail.split("/")
    if len(parts) < 3:
        return ""
    return "/".join([parts[0], *parts[1::2]])


def _claims_principal(claims: Mapping[str, Any]) -> tuple[str, str]:
    return str(claims.get("cid") or ""), str(claims.get("oid") or "")


class Authorizer:
    """Decides every ARM request of the emulator; see the module docstring for the rules."""

    def __init__(
        self,
        assignments: Iterable[Assignment],
        *,
        claims: Callable[[str], Mapping[str, Any] | None],
        key_vault_ids: Mapping[str, str] | None = None,
    ) -> None:
        self.assignments = list(assignments)
        self._claims = claims
        # Key Vault name (the host's first label) -> its ARM resource id.
        self._vaults = {k.lower(): v for k, v in (key_vault_ids or {}).items()}
        self._operations: dict[str, str] = {}  # operation id -> resource group it was started in
        self._lock = threading.Lock()
        self.checks: list[Check] = []

    # -- decisions ---------------------------------------------------------------------------

    def allows(self, principal_id: str, action: str, scope: str) -> bool:
        return any(
            a.principal_id.lower() == principal_id.lower()
            and a.covers(scope)
            and a.role.allows(action)
            for a in self.assignments
        )

    def _decide(self, principal_id: str, action: str, scope: str, *, linked: bool) -> bool:
        allowed = self.allows(principal_id, action, scope)
        with self._lock:
            self.checks.append(Check(action, scope, allowed, linked))
        return allowed

    def checked_actions(self, *, allowed_only: bool = False) -> set[str]:
        with self._lock:
            return {c.action.lower() for c in self.checks if c.allowed or not allowed_only}

    # -- the emulator's hooks ----------------------------------------------------------------

    def authorize(self, token: str, route: str, params: Mapping[str, str], body: Any) -> None:
        """Raise ArmError 403 unless the token's principal may make this request."""
        claims = self._claims(token) or {}
        client_id, object_id = _claims_principal(claims)
        action = ROUTE_ACTIONS.get(route)
        if action is None:
            return
        scope = self._scope(route, params)
        if not self._decide(object_id, action, scope, linked=False):
            raise ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{client_id}' with object id '{object_id}' does not have "
                f"authorization to perform action '{action}' over scope '{scope}' or the scope "
                "is invalid. If access was recently granted, please refresh your credentials.",
            )
        if route == "put" and isinstance(body, dict):
            self._linked(client_id, object_id, action, scope, body)

    def observe(self, route: str, params: Mapping[str, str], headers: Mapping[str, str]) -> None:
        """Remember the resource group an asynchronous operation was started in."""
        if route not in {"put", "backendhealth", "ondemand"} or "rg" not in params:
            return
        for name, value in headers.items():
            if name.lower() in {"azure-asyncoperation", "location"}:
                match = _OP_ID.search(urlsplit(value).path)
                if match:
                    group = f"/subscriptions/{params['sub']}/resourceGroups/{params['rg']}"
                    with self._lock:
                        self._operations[match.group(1).lower()] = group

    def _scope(self, route: str, params: Mapping[str, str]) -> str:
        sub = f"/subscriptions/{params.get('sub', '')}"
        if route in {"async_op", "op_result"}:
            # Tracked at the group the operation was started in (async-operations, above);
            # an unknown operation is judged at the subscription.
            with self._lock:
                return self._operations.get(params.get("op", "").lower(), sub)
        if route in {"list_all", "metrics_batch"}:
            return sub
        group = f"{sub}/resourceGroups/{params.get('rg', '')}"
        if route == "list_rg":
            return group
        return f"{group}/providers/{GATEWAYS}/{params.get('name', '')}"

    def _linked(
        self, client_id: str, object_id: str, action: str, scope: str, body: dict[str, Any]
    ) -> None:
        missing: list[tuple[str, str]] = []
        for kind, resource_id in linked_resources(body, self._vaults):
            for linked_action in LINKED_RULES[kind][1]:
                if not self._decide(object_id, linked_action, resource_id, linked=True):
                    missing.append((linked_action, resource_id))
        if missing:
            actions = ",".join(a for a, _ in missing)
            scopes = ",".join(s for _, s in missing)
            raise ArmError(
                403,
                "LinkedAuthorizationFailed",
                f"The client '{client_id}' with object id '{object_id}' has permission to "
                f"perform action '{action}' on scope '{scope}'; however, it does not have "
                f"permission to perform action(s) '{actions}' on the linked scope(s) '{scopes}' "
                "(respectively) or the linked scope(s) are invalid.",
            )


# ---- what a gateway links to -------------------------------------------------------------------


def _ref(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
        return str(value["id"])
    return None


def _children(props: Mapping[str, Any], collection: str) -> Iterator[dict[str, Any]]:
    for child in props.get(collection) or []:
        if isinstance(child, dict):
            inner = child.get("properties")
            yield inner if isinstance(inner, dict) else {}


def vault_name(secret_id: str) -> str:
    """'https://kv-x.vault.azure.net/secrets/y' -> 'kv-x'."""
    return (urlsplit(secret_id).hostname or "").split(".")[0].lower()


def linked_resources(
    doc: Mapping[str, Any], key_vault_ids: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """(kind, resource id) of every resource a gateway document links to, in document order.

    The same places docs/deploy.md's id-collection command reads: gateway and private frontend
    subnets, Private Link IP configurations' subnets, public IPs, the gateway's, listeners' and
    path rules' WAF policies, user-assigned identities and Key Vault secret references (vaults
    not in `key_vault_ids` are not ARM resources the sandbox knows, and are skipped).
    """
    props = doc.get("properties") if isinstance(doc.get("properties"), dict) else {}
    assert isinstance(props, dict)
    found: list[tuple[str, str]] = []

    def add(kind: str, resource_id: str | None) -> None:
        if resource_id and (kind, resource_id.lower()) not in {(k, i.lower()) for k, i in found}:
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
    vaults = {k.lower(): v for k, v in (key_vault_ids or {}).items()}
    for collection in ("sslCertificates", "trustedRootCertificates"):
        for cert in _children(props, collection):
            secret = cert.get("keyVaultSecretId")
            if isinstance(secret, str) and secret:
                add("key_vault", vaults.get(vault_name(secret)))
    return found


# ---- the assignments infra/ makes, read from its Bicep -------------------------------------------


@dataclass(frozen=True)
class InfraGrant:
    """One role assignment module of infra/modules/rbac.bicep, as data.

    `source` is the deployment parameter whose ids the grant loops over (gatewayIds,
    linkedResourceIds, keyVaultId); `id_filter` the literal a Bicep `filter()` keeps ids by;
    `target` is a resource type (assigned on each id of that type) or "resourceGroup"
    (assigned on the group of each id).
    """

    module: str
    role: Role
    source: str
    id_filter: str | None
    target: str


@dataclass
class InfraParameters:
    """What an operator passes to infra/main.bicep for a world: ids as docs/deploy.md lists them."""

    gateway_ids: list[str]
    linked_resource_ids: list[str] = field(default_factory=list)
    key_vault_id: str = ""

    def values(self, source: str) -> list[str]:
        if source == "gatewayIds":
            return list(self.gateway_ids)
        if source == "linkedResourceIds":
            return list(self.linked_resource_ids)
        if source == "keyVaultId":
            return [self.key_vault_id] if self.key_vault_id else []
        raise ValueError(f"infra/: a grant loops over {source!r}, which the sandbox cannot map")


def _parse(path: Path) -> dict[str, Any]:
    from pycep import BicepParser  # dev dependency; only `--rbac` needs it

    return dict(BicepParser().parse(file_path=path))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _expanded(
    value: Any, variables: Mapping[str, Any], seen: frozenset[str] = frozenset()
) -> Iterator[str]:
    """The strings of an expression, with the variables it names expanded (transitively)."""
    for text in _strings(value):
        if text in variables and text not in seen:
            yield from _expanded(variables[text], variables, seen | {text})
        else:
            yield text


def _unwrap(config: Any) -> tuple[dict[str, Any], Any, dict[str, Any] | None]:
    loop = None
    condition = None
    if isinstance(config, dict) and "loop_type" in config:
        loop = config["loop_type"]
        condition = config.get("condition")
        config = config["config"]
    if isinstance(config, dict) and set(config) == {"condition", "config"}:
        condition = config["condition"]
        config = config["config"]
    return (config if isinstance(config, dict) else {}), condition, loop


def _literal_list(raw: dict[str, Any], value: Any) -> tuple[str, ...]:
    variables = {k: v["value"] for k, v in (raw.get("variables") or {}).items()}
    seen: set[str] = set()
    while isinstance(value, str) and value in variables and value not in seen:
        seen.add(value)
        value = variables[value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"infra/: expected a literal list of actions, got {value!r}")
    return tuple(value)


def _roles(raw: dict[str, Any]) -> dict[str, Role]:
    roles: dict[str, Role] = {}
    for symbol, item in (raw.get("resources") or {}).items():
        if item["type"].lower() != "microsoft.authorization/roledefinitions":
            continue
        body, _, _ = _unwrap(item["config"])
        actions: list[str] = []
        not_actions: list[str] = []
        for permission in (body.get("properties") or {}).get("permissions") or []:
            actions += _literal_list(raw, permission.get("actions", []))
            not_actions += _literal_list(raw, permission.get("notActions", []))
        roles[symbol] = Role(symbol, tuple(actions), tuple(not_actions))
    return roles


def _equals(condition: Any) -> tuple[str, Any] | None:
    operator = (condition or {}).get("operator", {}) if isinstance(condition, dict) else {}
    if operator.get("type") == "equals":
        operands = operator["operands"]
        return str(operands.get("operand_1")), operands.get("operand_2")
    return None


_SOURCES = ("gatewayIds", "linkedResourceIds", "keyVaultId")


def read_infra(infra_dir: Path = INFRA_DIR) -> list[InfraGrant]:
    """The custom-role grants of infra/modules/rbac.bicep and the modules it calls.

    Built-in (storage data) roles are left out: the sandbox's ARM has no storage accounts, and
    Azurite does not authorize by role.
    """
    rbac_path = infra_dir / "modules" / "rbac.bicep"
    raw = _parse(rbac_path)
    roles = _roles(raw)
    params = set(raw.get("parameters") or {})
    variables = {k: v["value"] for k, v in (raw.get("variables") or {}).items()}
    grants: list[InfraGrant] = []
    for symbol, item in (raw.get("modules") or {}).items():
        body, _, loop = _unwrap(item["config"])
        role_ref = (body.get("params") or {}).get("roleDefinitionName")
        operands = (
            (role_ref or {}).get("operator", {}).get("operands", {})
            if isinstance(role_ref, dict)
            else {}
        )
        role = roles.get(str(operands.get("operand_1")))
        if role is None:
            continue  # a built-in role (storage data roles): not emulated
        expression = loop["detail"]["array_name"] if loop is not None else body
        strings = list(_expanded(expression, variables))
        sources = [s for s in strings if s in params and s in _SOURCES]
        if not sources:
            raise ValueError(f"infra/: module {symbol} loops over no known parameter")
        literals = [s for s in strings if len(s) > 1 and s.startswith("/") and s.endswith("/")]
        module_path = (rbac_path.parent / item["detail"]["path"]).resolve()
        module_params = body.get("params") or {}
        for target in _assignment_targets(_parse(module_path), module_params):
            grants.append(
                InfraGrant(symbol, role, sources[0], literals[0] if literals else None, target)
            )
    return grants


def _assignment_targets(raw: dict[str, Any], module_params: Mapping[str, Any]) -> list[str]:
    """The scope of each role assignment in a grant module: a resource type or resourceGroup."""
    resources = raw.get("resources") or {}
    targets = []
    for item in resources.values():
        if item["type"].lower() != "microsoft.authorization/roleassignments":
            continue
        body, condition, _ = _unwrap(item["config"])
        equals = _equals(condition)
        if (
            equals is not None
            and equals[0] in module_params
            and module_params[equals[0]] != equals[1]
        ):
            continue  # e.g. `if (kind == 'subnet')` in a module called with kind: 'public_ip'
        scope = body.get("scope")
        if scope is None:
            # Assigned at the module's own scope: its group, or its subscription when the module
            # says `targetScope = 'subscription'` (rbac-subscription.bicep).
            where = ((raw.get("globals") or {}).get("scope") or {}).get("value")
            targets.append("subscription" if where == "subscription" else "resourceGroup")
            continue
        target = resources.get(scope) if isinstance(scope, str) else None
        if target is None:
            raise ValueError(f"infra/: cannot read the scope {scope!r} of a role assignment")
        targets.append(str(target["type"]))
    return targets


def assignments_for(
    grants: Iterable[InfraGrant], parameters: InfraParameters, principal_id: str
) -> list[Assignment]:
    """Where Azure would put each grant for these deployment parameters."""
    assignments: list[Assignment] = []
    for grant in grants:
        ids = parameters.values(grant.source)
        if grant.id_filter is not None:
            ids = [i for i in ids if grant.id_filter in i.lower()]
        for resource_id in ids:
            if grant.target == "resourceGroup":
                scope = resource_group_of(resource_id)
            elif grant.target == "subscription":
                scope = "/".join(resource_id.split("/")[:3])
            elif resource_type_of(resource_id).lower() == grant.target.lower():
                scope = resource_id
            else:
                continue
            assignment = Assignment(principal_id, grant.role, scope)
            if assignment not in assignments:
                assignments.append(assignment)
    return assignments


def infra_parameters(
    gateways: Iterable[Mapping[str, Any]],
    *,
    key_vault_ids: Mapping[str, str] | None = None,
    key_vault_id: str = "",
) -> InfraParameters:
    """targetGatewayIds and linkedResourceIds as docs/deploy.md has an operator collect them."""
    gateway_ids: list[str] = []
    linked: list[str] = []
    for doc in gateways:
        gateway_ids.append(str(doc["id"]))
        for _, resource_id in linked_resources(doc, key_vault_ids):
            if resource_id.lower() not in {i.lower() for i in linked}:
                linked.append(resource_id)
    return InfraParameters(gateway_ids, linked, key_vault_id)


def resolve_infra_dir(rbac: str | Path) -> Path:
    """`"infra"` is this repository's infra/; anything else is a directory holding modules/."""
    path = INFRA_DIR if str(rbac) == "infra" else Path(rbac)
    if not (path / "modules" / "rbac.bicep").is_file():
        raise ValueError(f"--rbac {rbac}: no modules/rbac.bicep under {path}")
    return path
