"""The sandbox's fault language: rules that make the ARM emulator fail the way Azure does.

Pure: no I/O, no clock. `sandbox.arm.ArmEmulator._fault_for` asks a `FaultBook` what to do with
each ARM request; the control endpoint (`{SANDBOX_CONTROL_URL}/faults`) and a scenario's
`options.faults` add rules. Documented for users in docs/sandbox.md ("Faults").

A rule is a JSON object `{"kind": ..., "times": N, "after": N, ...}`:

- `times` (default 1; null = forever): how many matching requests the rule acts on.
- `after` (default 0): matching requests the rule lets through before it acts.
- `method`, `route`, `gateway`: which requests match. `route` is a name from `ROUTE_NAMES`,
  `gateway` a gateway name (case-insensitive). Write-path kinds always match `PUT` on `put`,
  `another_writer` always `GET` on `get`.

Kinds, and the Azure behaviour each imitates (docs/sources.md#limits,
docs/sources.md#overlapping-writes):

| kind | effect |
|---|---|
| `throttle` | 429 + `Retry-After`; code `TooManyRequests` unless `code` is given |
| `conflict` | on PUT, `outcome` `409` AnotherOperationInProgress, `429` RetryableErrorDueTo- |
|            | AnotherOperation (both refuse the PUT; they happen too, not only the default |
|            | overlap), or `superseded`: accepted, then another PUT supersedes it: the body is |
|            | NOT committed (the document gets a new ETag) and the operation ends `Canceled`, |
|            | code `Canceled` with CanceledAndSupersededDueToAnotherOperation in `error.details` |
|            | (azure-cli issue #21156, terraform-provider-iterative issue #341) |
| `transient` | `status` 500 / 502 / 503 / 504 with an ARM error body |
| `lro_failed` | PUT accepted, the operation ends Failed (`code`), the gateway's provisioningState |
|              | becomes Failed; `commit` (default true) says whether the new body stays |
| `slow_lro` | PUT accepted, the operation stays InProgress for `seconds` |
| `scope_locked` | 409 ScopeLocked on PUT (a resource lock on the resource group) |
| `policy_denied` | 403 RequestDisallowedByPolicy on PUT |
| `another_writer` | after a GET of the gateway is served, another writer (Terraform, a pipeline) |
|                  | commits `patch` to the stored document with a new ETag; with          |
|                  | `seconds` > 0 its update stays in flight that long: the gateway is `Updating` |
|                  | and a PUT meanwhile supersedes (cancels) their operation, as Azure does |
| `error` | any `status` / `code` / `message` / `headers` (the older `{"once": [...]}` form) |
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Route names of sandbox.arm.ROUTES (a test keeps the two equal).
ROUTE_NAMES = (
    "get",
    "put",
    "backendhealth",
    "ondemand",
    "list_rg",
    "list_all",
    "async_op",
    "op_result",
)
METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")


class FaultKind(StrEnum):
    THROTTLE = "throttle"
    CONFLICT = "conflict"
    TRANSIENT = "transient"
    LRO_FAILED = "lro_failed"
    SLOW_LRO = "slow_lro"
    SCOPE_LOCKED = "scope_locked"
    POLICY_DENIED = "policy_denied"
    ANOTHER_WRITER = "another_writer"
    ERROR = "error"


class FaultError(ValueError):
    """A rule that cannot be understood; the message names the offending part."""


# The request a write-path kind acts on, and the one another_writer follows.
_FIXED_TARGET: dict[FaultKind, tuple[str, str]] = {
    FaultKind.CONFLICT: ("PUT", "put"),
    FaultKind.LRO_FAILED: ("PUT", "put"),
    FaultKind.SLOW_LRO: ("PUT", "put"),
    FaultKind.SCOPE_LOCKED: ("PUT", "put"),
    FaultKind.POLICY_DENIED: ("PUT", "put"),
    FaultKind.ANOTHER_WRITER: ("GET", "get"),
}
_COMMON = {"kind", "method", "route", "gateway", "times", "after"}
_PARAMS: dict[FaultKind, set[str]] = {
    FaultKind.THROTTLE: {"retry_after", "code", "message"},
    FaultKind.CONFLICT: {"outcome", "retry_after"},
    FaultKind.TRANSIENT: {"status", "code", "message", "retry_after"},
    FaultKind.LRO_FAILED: {"commit", "code", "message", "seconds"},
    FaultKind.SLOW_LRO: {"seconds"},
    FaultKind.SCOPE_LOCKED: {"lock_scope"},
    FaultKind.POLICY_DENIED: {"assignment"},
    FaultKind.ANOTHER_WRITER: {"patch", "seconds"},
    FaultKind.ERROR: {"status", "code", "message", "headers"},
}
_TRANSIENT_CODES = {
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
CONFLICT_OUTCOMES = ("409", "429", "superseded")
SUPERSEDED = "CanceledAndSupersededDueToAnotherOperation"

# A tag plus a new (unrouted, empty) backend pool: visible, harmless to health, easy to check.
DEFAULT_OTHER_WRITER_PATCH: dict[str, Any] = {
    "tags": {"changed-by": "pipeline"},
    "properties": {
        "backendAddressPools": [
            {"name": "other-writer-pool", "properties": {"backendAddresses": []}}
        ]
    },
}


# ---- effects: what the emulator does with a request a rule acted on --------------------------


@dataclass(frozen=True)
class ErrorReply:
    """Answer at once with an ARM error."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LroEnd:
    """Accept the PUT, then end its operation with `status` after `seconds` (None: usual delay)."""

    status: str  # Succeeded | Failed | Canceled
    seconds: float | None = None
    code: str | None = None
    message: str | None = None
    commit: bool = True  # the new body stays in the stored document
    details: tuple[dict[str, str], ...] = ()  # the operation error's `details` (codes, messages)


@dataclass(frozen=True)
class AfterGet:
    """Serve the GET, then commit another writer's `patch` to the stored gateway.

    `seconds` > 0: their update is an operation still running that long (gateway `Updating`).
    """

    patch: dict[str, Any]
    seconds: float = 0.0


Effect = ErrorReply | LroEnd | AfterGet


# ---- rules -----------------------------------------------------------------------------------


@dataclass
class FaultRule:
    id: int
    kind: FaultKind
    method: str | None  # None: any method
    route: str | None  # None: any route
    gateway: str | None  # lower-case gateway name; None: any
    times: int | None  # acts left; None: forever
    after: int  # matching requests still to let through
    params: dict[str, Any]
    fired: int = 0

    def matches(self, method: str, route: str, gateway: str | None) -> bool:
        if self.method is not None and self.method != method.upper():
            return False
        if self.route is not None and self.route != route:
            return False
        return self.gateway is None or self.gateway == (gateway or "").lower()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "method": self.method,
            "route": self.route,
            "gateway": self.gateway,
            "remaining": self.times,
            "after": self.after,
            "fired": self.fired,
            **copy.deepcopy(self.params),
        }

    def effect(self, path: str) -> Effect:
        return _EFFECTS[self.kind](self.params, path)


def _int(raw: Mapping[str, Any], key: str, default: int, minimum: int, where: str) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FaultError(f"{where}: {key!r} must be an integer >= {minimum}")
    return value


def _number(raw: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultError(f"{where}: {key!r} must be a number >= 0")
    return float(value)


def _str(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise FaultError(f"{where}: {key!r} must be a string")
    return value


def _target(kind: FaultKind, raw: Mapping[str, Any], where: str) -> tuple[str | None, str | None]:
    method = _str(raw, "method", where)
    route = _str(raw, "route", where)
    method = method.upper() if method else None
    if method is not None and method not in METHODS:
        raise FaultError(f"{where}: 'method' must be one of {', '.join(METHODS)}")
    if route is not None and route not in ROUTE_NAMES:
        raise FaultError(f"{where}: 'route' must be one of {', '.join(ROUTE_NAMES)}")
    fixed = _FIXED_TARGET.get(kind)
    if fixed is None:
        return method, route
    if (method or fixed[0]) != fixed[0] or (route or fixed[1]) != fixed[1]:
        raise FaultError(f"{where}: {kind.value} applies only to {fixed[0]} on {fixed[1]!r}")
    return fixed


def _params(kind: FaultKind, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The kind's own fields, checked and with their defaults filled in."""
    params = {k: copy.deepcopy(v) for k, v in raw.items() if k not in _COMMON}
    unknown = set(params) - _PARAMS[kind]
    if unknown:
        raise FaultError(
            f"{where}: unknown field(s) for {kind.value}: {', '.join(sorted(unknown))}"
        )
    for key in ("code", "message", "lock_scope", "assignment"):
        _str(params, key, where)
    if kind in {FaultKind.THROTTLE, FaultKind.CONFLICT} or "retry_after" in params:
        params["retry_after"] = _number(params, "retry_after", 1, where)
    if kind is FaultKind.SLOW_LRO or "seconds" in params:
        params["seconds"] = _number(params, "seconds", 30, where)
    _KIND_CHECKS.get(kind, lambda p, w: None)(params, where)
    return params


def _check_conflict(params: dict[str, Any], where: str) -> None:
    params["outcome"] = str(params.get("outcome", "409"))
    if params["outcome"] not in CONFLICT_OUTCOMES:
        raise FaultError(f"{where}: 'outcome' must be one of {', '.join(CONFLICT_OUTCOMES)}")


def _check_transient(params: dict[str, Any], where: str) -> None:
    params["status"] = _int(params, "status", 500, 500, where)
    if params["status"] not in _TRANSIENT_CODES:
        raise FaultError(f"{where}: 'status' must be one of 500, 502, 503, 504")


def _check_error(params: dict[str, Any], where: str) -> None:
    params["status"] = _int(params, "status", 500, 400, where)
    if not isinstance(params.get("headers", {}), dict):
        raise FaultError(f"{where}: 'headers' must be an object")


def _check_lro_failed(params: dict[str, Any], where: str) -> None:
    if not isinstance(params.setdefault("commit", True), bool):
        raise FaultError(f"{where}: 'commit' must be true or false")


def _check_another_writer(params: dict[str, Any], where: str) -> None:
    params.setdefault("patch", copy.deepcopy(DEFAULT_OTHER_WRITER_PATCH))
    if not isinstance(params["patch"], dict):
        raise FaultError(f"{where}: 'patch' must be a JSON merge patch object")


_KIND_CHECKS: dict[FaultKind, Callable[[dict[str, Any], str], None]] = {
    FaultKind.CONFLICT: _check_conflict,
    FaultKind.TRANSIENT: _check_transient,
    FaultKind.ERROR: _check_error,
    FaultKind.LRO_FAILED: _check_lro_failed,
    FaultKind.ANOTHER_WRITER: _check_another_writer,
}


def parse_rule(raw: Any, rule_id: int, where: str = "fault") -> FaultRule:
    if not isinstance(raw, dict):
        raise FaultError(f"{where}: a fault rule is a JSON object")
    try:
        kind = FaultKind(str(raw.get("kind")))
    except ValueError:
        allowed = ", ".join(k.value for k in FaultKind)
        raise FaultError(f"{where}: 'kind' must be one of {allowed}") from None
    where = f"{where} ({kind.value})"
    method, route = _target(kind, raw, where)
    gateway = _str(raw, "gateway", where)
    return FaultRule(
        id=rule_id,
        kind=kind,
        method=method,
        route=route,
        gateway=gateway.lower() if gateway else None,
        times=None if raw.get("times", 1) is None else _int(raw, "times", 1, 1, where),
        after=_int(raw, "after", 0, 0, where),
        params=_params(kind, raw, where),
    )


def rule_specs(raw: Any) -> list[Any]:
    """The accepted shapes: a rule, a list of rules, {"faults": [...]}, or {"once": [...]}."""
    if isinstance(raw, list):
        return raw
    if isinstance(raw, dict) and "kind" in raw:
        return [raw]
    if isinstance(raw, dict) and set(raw) <= {"faults", "once"}:
        rules = raw.get("faults") or []
        once = raw.get("once") or []
        if not isinstance(rules, list) or not isinstance(once, list):
            raise FaultError("'faults' and 'once' must be lists of rules")
        # The first fault switch of the emulator: one-shot raw errors.
        return [*rules, *({"kind": "error", **o} if isinstance(o, dict) else o for o in once)]
    raise FaultError("expected a fault rule, a list of rules, or {'faults': [...]}")


def parse_rules(raw: Any, first_id: int = 1) -> list[FaultRule]:
    """Validate every rule before any is used, so a bad request adds nothing."""
    return [
        parse_rule(spec, first_id + i, f"faults[{i}]") for i, spec in enumerate(rule_specs(raw))
    ]


class FaultBook:
    """The active rules, in the order they were added. Not thread-safe: the caller locks."""

    def __init__(self, raw: Any = None) -> None:
        self._rules: list[FaultRule] = []
        self._next_id = 1
        if raw:
            self.add(raw)

    def add(self, raw: Any) -> list[FaultRule]:
        rules = parse_rules(raw, self._next_id)
        self._next_id += len(rules)
        self._rules.extend(rules)
        return rules

    def clear(self) -> None:
        self._rules.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        return [rule.to_json() for rule in self._rules]

    def take(self, method: str, route: str, gateway: str | None, path: str) -> Effect | None:
        """The effect for this request, if a rule is due; advances every matching rule's count.

        Each matching rule sees the request: one still in its `after` phase counts it down; the
        first rule that is due acts (its `times` goes down) and later due rules wait.
        """
        chosen: FaultRule | None = None
        for rule in [r for r in self._rules if r.matches(method, route, gateway)]:
            if rule.after > 0:
                rule.after -= 1
            elif chosen is None:
                chosen = rule
        if chosen is None:
            return None
        chosen.fired += 1
        if chosen.times is not None:
            chosen.times -= 1
            if chosen.times == 0:
                self._rules.remove(chosen)
        return chosen.effect(path)


# ---- building effects (Azure's codes and message shapes) -------------------------------------


def _retry_headers(params: Mapping[str, Any]) -> dict[str, str]:
    seconds = params.get("retry_after")
    return {} if seconds is None else {"Retry-After": str(int(seconds))}


def _operation_id() -> str:
    return str(uuid.uuid4())


def _throttle(params: Mapping[str, Any], path: str) -> Effect:
    code = params.get("code") or "TooManyRequests"
    message = params.get("message") or (
        "The request is being throttled as the limit has been reached for operation type - "
        "Read_ObservationWindow_00:05:00. For more information, see - "
        "https://aka.ms/srpthrottlinglimits"
        if code == "TooManyRequests"
        else f"Operation on '{path}' is blocked by another operation. Please retry later."
    )
    return ErrorReply(429, code, message, _retry_headers(params))


def superseded_error(superseded_by: str) -> dict[str, Any]:
    """The `error` of an operation another PUT superseded: top-level code `Canceled`, the
    superseded code only inside `details` (the shape reported in azure-cli issue #21156 and
    terraform-provider-iterative issue #341). The recordings hold no Canceled body
    (tests/data/recorded/SOURCES.md): they only show that the overlapping PUTs are accepted."""
    return {
        "code": "Canceled",
        "message": "Operation was canceled.",
        "details": [
            {
                "code": SUPERSEDED,
                "message": f"Operation was canceled and superseded by operation {superseded_by}.",
            }
        ],
    }


def _conflict(params: Mapping[str, Any], path: str) -> Effect:
    outcome = params["outcome"]
    if outcome == "superseded":
        error = superseded_error(_operation_id())
        return LroEnd(
            "Canceled",
            code=error["code"],
            message=error["message"],
            commit=False,
            details=tuple(error["details"]),
        )
    if outcome == "429":
        return ErrorReply(
            429,
            "RetryableErrorDueToAnotherOperation",
            f"Operation PutApplicationGatewayOperation ({_operation_id()}) is blocked by "
            f"operation PutApplicationGatewayOperation ({_operation_id()}). Please retry later.",
            _retry_headers(params),
        )
    return ErrorReply(
        409,
        "AnotherOperationInProgress",
        "Another operation on this or dependent resource is in progress. To retrieve status of "
        f"the operation use uri: operations/{_operation_id()}.",
    )


def _transient(params: Mapping[str, Any], path: str) -> Effect:
    status = int(params["status"])
    code = params.get("code") or _TRANSIENT_CODES[status]
    message = params.get("message") or (
        "The server encountered an internal error. Please retry the request."
    )
    return ErrorReply(status, code, message, _retry_headers(params))


def _lro_failed(params: Mapping[str, Any], path: str) -> Effect:
    return LroEnd(
        "Failed",
        seconds=params.get("seconds"),
        code=params.get("code") or "InternalServerError",
        message=params.get("message") or "An error occurred.",
        commit=bool(params["commit"]),
    )


def _slow_lro(params: Mapping[str, Any], path: str) -> Effect:
    return LroEnd("Succeeded", seconds=float(params["seconds"]))


def _scope_locked(params: Mapping[str, Any], path: str) -> Effect:
    lock = params.get("lock_scope") or path.split("/providers/")[0]
    return ErrorReply(
        409,
        "ScopeLocked",
        f"The scope '{path}' cannot perform write operation because following scope(s) are "
        f"locked: '{lock}'. Please remove the lock and try again.",
    )


def _policy_denied(params: Mapping[str, Any], path: str) -> Effect:
    assignment = params.get("assignment") or "deny-appgw-changes"
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return ErrorReply(
        403,
        "RequestDisallowedByPolicy",
        f"Resource '{name}' was disallowed by policy. Policy identifiers: "
        f'\'[{{"policyAssignment":{{"name":"{assignment}"}}}}]\'.',
    )


def _another_writer(params: Mapping[str, Any], path: str) -> Effect:
    return AfterGet(copy.deepcopy(params["patch"]), float(params.get("seconds") or 0.0))


def _error(params: Mapping[str, Any], path: str) -> Effect:
    return ErrorReply(
        int(params["status"]),
        str(params.get("code") or "InternalServerError"),
        str(params.get("message") or "Injected fault."),
        {str(k): str(v) for k, v in (params.get("headers") or {}).items()},
    )


_EFFECTS = {
    FaultKind.THROTTLE: _throttle,
    FaultKind.CONFLICT: _conflict,
    FaultKind.TRANSIENT: _transient,
    FaultKind.LRO_FAILED: _lro_failed,
    FaultKind.SLOW_LRO: _slow_lro,
    FaultKind.SCOPE_LOCKED: _scope_locked,
    FaultKind.POLICY_DENIED: _policy_denied,
    FaultKind.ANOTHER_WRITER: _another_writer,
    FaultKind.ERROR: _error,
}


# ---- another writer's change -----------------------------------------------------------------


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, dict) and isinstance(v.get("name"), str) for v in value
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386), except that lists of named objects merge by `name`.

    Gateway child collections are lists of `{"name": ...}` objects, and another writer adds to
    them rather than replacing them: a patch item with a known name is merged into that child,
    a new name is appended. Any other list is replaced; `null` removes a key.
    """
    if _named_list(target) and _named_list(patch) and patch:
        merged = [copy.deepcopy(t) for t in target]
        index = {str(t["name"]).lower(): i for i, t in enumerate(merged)}
        for item in patch:
            at = index.get(str(item["name"]).lower())
            if at is None:
                merged.append(merge_patch({}, item))
            else:  # names are case-insensitive in ARM: the child keeps its own spelling
                merged[at] = {**merge_patch(merged[at], item), "name": merged[at]["name"]}
        return merged
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
