"""What the Remediator reports: the outcome of a run, and the previews shown before a write.

Plain data (the CLI prints them, the API and the job results carry them as JSON), and the
comparison that tells two planned changes apart (no duplicate plans, no duplicate proposals).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.remediation.plan import Plan, plan_to_dict


@dataclass
class RemediationOutcome:
    """What one remediation did; `to_json` is the CLI's last line and the job result."""

    gateway: str
    mode: str
    action: str  # applied | proposed | held | none | refused | failed | rolled_back
    arm_writes: int = 0
    verified: bool | None = None
    proposal: str | None = None
    reason: str = ""
    change: str | None = None
    diagnosis: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    verification: list[dict[str, Any]] = field(default_factory=list)
    hold: str | None = None  # the hold that stopped the change, or the one a rollback set
    # A refusal that comes from Azure (a 403, or the permissions pre-flight saying ARM would
    # answer one), not from the bot's own scope, mode or kill switch: the CLI exits 1, not 2.
    # Not in the JSON: `reason` says it in words.
    azure_refused: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "mode": self.mode,
            "action": self.action,
            "arm_writes": self.arm_writes,
            "verified": self.verified,
            "proposal": self.proposal,
            "reason": self.reason,
            # The change recorded (applied, or the rollback record): `changes show` / rollback.
            "change": self.change,
            "hold": self.hold,
        }


@dataclass(frozen=True)
class FixPreview:
    """What a fix would do before it does it: the outcome policy chose (apply | propose |
    diagnose) and why, readable lines, the RFC 6902 JSON Patch from the document read to the
    body sent (the bot PUTs the whole document), the equivalent az commands and their rollback,
    and the warnings (connection draining, where the evidence came from)."""

    gateway: str
    outcome: str
    reasons: list[str]
    summary: str
    patch: list[dict[str, Any]]
    az: list[str]
    az_rollback: list[str]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RollbackPreview:
    """What a rollback would remove: readable lines, the JSON Patch on the current document and
    the equivalent az commands (each its own gateway update)."""

    change: str
    gateway: str
    summary: str
    patch: list[dict[str, Any]]
    az: list[str]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def same_plan(a: Plan, b: Plan) -> bool:
    """Two plans make the same change (see `same_change`)."""
    return same_change(plan_to_dict(a), plan_to_dict(b))


def same_change(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two serialised plans make the same change (ignoring the document they were planned on)."""
    keys = ("action", "certificate_ref_name", "collection")
    if any(a.get(k) != b.get(k) for k in keys):
        return False
    names_a = sorted(c.get("settings_name", "") for c in a.get("settings_changes", []))
    names_b = sorted(c.get("settings_name", "") for c in b.get("settings_changes", []))
    return names_a == names_b
