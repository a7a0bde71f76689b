"""ARM resource ids: parse, compare and build them case-insensitively, as ARM does."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.common.errors import ResourceIdError

_GATEWAY_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)"
    r"/providers/microsoft\.network/applicationgateways/(?P<name>[^/]+)$",
    re.IGNORECASE,
)
# ARM names: no path tricks, no control characters; bounded length.
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._()\-]{0,89}$")


@dataclass(frozen=True)
class GatewayId:
    """An Application Gateway's identity; `key` is the canonical lower-case form."""

    subscription: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Network/applicationGateways/{self.name}"
        )

    @property
    def key(self) -> str:
        return self.id.lower()

    def __str__(self) -> str:
        return self.id


def parse_gateway_id(value: object) -> GatewayId:
    """Parse an Application Gateway resource id; raise ResourceIdError when it is not one."""
    if not isinstance(value, str) or len(value) > 512:
        raise ResourceIdError("not an Application Gateway resource id")
    match = _GATEWAY_RE.match(value.strip().rstrip("/"))
    if not match:
        raise ResourceIdError(f"not an Application Gateway resource id: {value[:200]!r}")
    sub, rg, name = match.group("sub"), match.group("rg"), match.group("name")
    for part in (sub, rg, name):
        if not _SAFE_SEGMENT.match(part):
            raise ResourceIdError(f"unsafe segment in resource id: {part[:100]!r}")
    return GatewayId(sub, rg, name)


def gateway_id(subscription: str, resource_group: str, name: str) -> GatewayId:
    """Build and validate a gateway id from its parts."""
    return parse_gateway_id(
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.Network/applicationGateways/{name}"
    )


def same_id(a: str | None, b: str | None) -> bool:
    """ARM ids compare case-insensitively; trailing slashes do not matter."""
    if a is None or b is None:
        return False
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def last_segment(resource_id: str) -> str:
    """The child resource's name: the last path segment of its id."""
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def in_scope(resource_id: str, scopes: tuple[str, ...]) -> bool:
    """True when resource_id is, or sits below, one of the scopes (subscription, group, gateway)."""
    rid = resource_id.rstrip("/").lower()
    for scope in scopes:
        s = scope.rstrip("/").lower()
        if s and (rid == s or rid.startswith(s + "/")):
            return True
    return False


def resolve_gateway(
    value: str, *, resource_group: str | None = None, subscription: str | None = None
) -> GatewayId:
    """A gateway from its resource id, or from `rg/name` or a bare name (with `resource_group`)
    in `subscription` (AZURE_SUBSCRIPTION_ID). ResourceIdError says what is missing."""
    text = value.strip() if isinstance(value, str) else ""
    if text.startswith("/"):
        return parse_gateway_id(text)
    group, _, name = text.rpartition("/")
    if group and resource_group and group.lower() != resource_group.lower():
        raise ResourceIdError(f"{text!r} names resource group {group}, not {resource_group}")
    group = group or (resource_group or "").strip()
    if not name or not group:
        raise ResourceIdError(
            f"not an Application Gateway resource id: {text[:100]!r}; a bare name needs "
            "--resource-group (or RG/NAME) and AZURE_SUBSCRIPTION_ID"
        )
    if not (subscription or "").strip():
        raise ResourceIdError(
            f"not an Application Gateway resource id: {text[:100]!r} is a name; set "
            "AZURE_SUBSCRIPTION_ID or pass the full id"
        )
    return gateway_id(str(subscription).strip(), group, name)


def gateway_key(gateway: GatewayId | str) -> str:
    """Canonical lower-case id: ARM ids compare case-insensitively."""
    return gateway.key if isinstance(gateway, GatewayId) else gateway.strip().rstrip("/").lower()
