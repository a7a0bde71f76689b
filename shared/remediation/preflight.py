"""The permissions pre-flight: before a write (and on demand, `python -m shared preflight`), read
what the bot's identity may do at each scope it uses for a gateway and name what is missing.

A write the identity may not make would otherwise be found only by ARM's 403 on the PUT, or,
worse, after it: without `locations/operations/read` ARM takes the PUT and then refuses its
status. Checked first, a fix whose write or status read would be refused becomes a proposal
that names the missing action and scope, with nothing written (docs/remediation.md#pre-flight).

The permission lists come from `GET {scope}/providers/Microsoft.Authorization/permissions`
(shared/cloud/permissions.py); shared/remediation/permissions.py says what is needed and
evaluates them. A scope whose list cannot be read is reported as such and is no reason to refuse:
the write then goes ahead and ARM's own answer decides, as it did before the pre-flight.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.cloud.arm import ArmClient, ArmError
from shared.cloud.permissions import list_permissions
from shared.common.ids import GatewayId
from shared.remediation.permissions import (
    WRITE,
    PermissionEntry,
    Requirement,
    describe,
    gateway_requirements,
    missing,
    parse_entries,
)
from shared.remediation.writer import WriteRefused

log = logging.getLogger(__name__)


@dataclass
class GatewayPermissions:
    """The pre-flight of one gateway: what it needs, what is missing, what could not be read."""

    gateway_id: str
    needs: list[Requirement]
    missing: list[Requirement] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # scope -> why

    @property
    def write_gaps(self) -> list[Requirement]:
        return [m for m in self.missing if m.purpose == WRITE]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unreadable

    def to_dict(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway_id,
            "ok": self.ok,
            "missing": [m.to_dict() for m in self.missing],
            "unreadable": [{"scope": s, "error": e} for s, e in self.unreadable.items()],
            "checked": [n.to_dict() for n in self.needs],
        }


def read_entries(
    arm: ArmClient, scopes: Sequence[str]
) -> tuple[dict[str, tuple[PermissionEntry, ...]], dict[str, str]]:
    """Permission entries per scope, and the scopes whose list could not be read (with why)."""
    entries: dict[str, tuple[PermissionEntry, ...]] = {}
    unreadable: dict[str, str] = {}
    for scope in scopes:
        if scope.lower() in {s.lower() for s in (*entries, *unreadable)}:
            continue
        try:
            entries[scope] = parse_entries(list_permissions(arm, scope))
        except ArmError as exc:
            unreadable[scope] = str(exc)
    return entries, unreadable


def gateway_permissions(
    arm: ArmClient, gid: GatewayId, doc: Mapping[str, Any] | None
) -> GatewayPermissions:
    """Read the permission lists at every scope this gateway needs and compare."""
    needs = gateway_requirements(gid, doc)
    entries, unreadable = read_entries(arm, [n.scope for n in needs])
    known = [n for n in needs if n.scope.lower() not in {s.lower() for s in unreadable}]
    return GatewayPermissions(gid.id, needs, missing(known, entries), unreadable)


def write_refusal(gaps: Sequence[Requirement]) -> str:
    """The reason a write is not attempted: every missing action with its scope."""
    return (
        f"missing permission: the bot's identity lacks {describe(gaps)} "
        "(read from Microsoft.Authorization/permissions before writing); nothing was written. "
        "Grant it as infra/ does (docs/deploy.md#permissions), or apply this change by hand"
    )


def check_write_permissions(arm: ArmClient, gid: GatewayId, doc: Mapping[str, Any]) -> None:
    """Raise WriteRefused (propose, 0 writes) when a write to this gateway or its status read
    would be refused; a list that cannot be read is logged and does not block the write."""
    report = gateway_permissions(arm, gid, doc)
    for scope, why in report.unreadable.items():
        log.warning("could not read the permissions at %s before writing: %s", scope, why)
    gaps = report.write_gaps
    if gaps:
        raise WriteRefused(write_refusal(gaps), propose=True, writes=0)


__all__ = [
    "GatewayPermissions",
    "check_write_permissions",
    "gateway_permissions",
    "read_entries",
    "write_refusal",
]
