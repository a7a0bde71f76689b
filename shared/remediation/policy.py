"""Policy: which mode applies to a gateway, whether it is in scope, and the final verdict.

Rules from issue #4 ("Policy and trust"): the effective mode is the lowest of the global
REMEDIATION_MODE, the gateway's mode tag and the caller's request, so a tag or a request can only
lower it; the kill switch turns every write off; gateways with an ownership tag get proposals,
since their owner would revert a direct change (docs/sources.md#overlapping-writes). Pure: the
ledger of past changes is passed in as data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from shared.common.errors import OutOfScopeError
from shared.common.ids import in_scope, same_id
from shared.common.settings import Mode, Settings
from shared.core.diagnosis import FixAction
from shared.remediation.trust import TrustResult


@dataclass(frozen=True)
class Decision:
    mode: Mode
    reasons: tuple[str, ...]
    owner_tag: str | None


def _tag_lookup(tags: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(actual name, value) of a tag, names compared case-insensitively as ARM does."""
    for key, value in tags.items():
        if key.lower() == name.strip().lower():
            return key, str(value)
    return None


def ownership_tag(ownership: Sequence[str], tags: Mapping[str, str]) -> str | None:
    """The first OWNERSHIP_TAGS entry ("name" or "name=value") the gateway carries."""
    for entry in ownership:
        name, sep, wanted = entry.partition("=")
        found = _tag_lookup(tags, name)
        if found is None:
            continue
        key, value = found
        if not sep or value.strip().lower() == wanted.strip().lower():
            return f"{key}={value}" if value else key
    return None


def effective_mode(
    settings: Settings, gateway_tags: Mapping[str, str] | None, requested: Mode | None
) -> Decision:
    """The lowest of global mode, gateway tag and request, then kill switch and ownership caps."""
    tags = gateway_tags or {}
    reasons = [f"global mode {settings.mode.value}"]
    tag_mode: Mode | None = None
    found = _tag_lookup(tags, str(settings["MODE_TAG"]))
    if found is not None:
        key, raw = found
        try:
            tag_mode = Mode(raw.strip().lower())
            reasons.append(f"tag {key}={raw}")
        except ValueError:
            tag_mode = Mode.DIAGNOSE
            reasons.append(f"tag {key} has the invalid value {raw!r}: diagnose only")
    if requested is not None:
        reasons.append(f"requested {requested.value}")
    mode = Mode.lowest(settings.mode, tag_mode, requested)
    if settings.kill_switch and mode.rank > Mode.PROPOSE.rank:
        mode = Mode.PROPOSE
        reasons.append("kill switch is on: no gateway writes")
    owner = ownership_tag(settings["OWNERSHIP_TAGS"], tags)
    if owner is not None and mode.rank > Mode.PROPOSE.rank:
        mode = Mode.PROPOSE
        reasons.append(f"owned by another writer (tag {owner}): propose with an IaC fragment")
    return Decision(mode, tuple(reasons), owner)


def check_scope(settings: Settings, gateway_id: str) -> None:
    """Raise OutOfScopeError unless the gateway sits in ALLOWED_SCOPES (empty: nothing is)."""
    if not in_scope(gateway_id, settings.scopes):
        if not settings.scopes:
            raise OutOfScopeError(
                f"{gateway_id} is outside ALLOWED_SCOPES, which is empty: set ALLOWED_SCOPES to "
                "the subscriptions or resource groups the bot may act in"
            )
        raise OutOfScopeError(f"{gateway_id} is outside ALLOWED_SCOPES")


# ---- guards ---------------------------------------------------------------------------------


class Change(NamedTuple):
    """One past change from the ledger."""

    when: datetime
    gateway: str
    settings: str
    thumbprint: str


@dataclass
class Guards:
    """Cooldown per (gateway, settings, thumbprint) and a daily cap of certificates per gateway.

    A "day" is the rolling 24 hours before `now`.
    """

    changes: Sequence[Change] = field(default_factory=list)
    cooldown: timedelta = timedelta(minutes=30)
    daily_cap: int = 3

    @classmethod
    def from_settings(cls, settings: Settings, changes: Sequence[Change]) -> Guards:
        return cls(
            list(changes),
            timedelta(minutes=int(settings["COOLDOWN_MINUTES"])),
            int(settings["DAILY_CERT_CAP"]),
        )

    def cooldown_reasons(
        self, gateway: str, settings_names: Sequence[str], thumbprint: str | None, now: datetime
    ) -> list[str]:
        wanted = {s.lower() for s in settings_names}
        thumb = (thumbprint or "").upper()
        hits = sorted(
            {
                c.settings
                for c in self.changes
                if same_id(c.gateway, gateway)
                and c.settings.lower() in wanted
                and c.thumbprint.upper() == thumb
                and timedelta(0) <= now - c.when < self.cooldown
            }
        )
        return [
            f"cooldown: {s} changed for {thumb or 'this fix'} less than {self.cooldown} ago"
            for s in hits
        ]

    def certificates_today(self, gateway: str, now: datetime) -> int:
        return len(
            {
                c.thumbprint.upper()
                for c in self.changes
                if same_id(c.gateway, gateway)
                and c.thumbprint
                and timedelta(0) <= now - c.when < timedelta(days=1)
            }
        )

    def cap_reasons(self, gateway: str, thumbprint: str | None, now: datetime) -> list[str]:
        if not thumbprint:
            return []
        today = self.certificates_today(gateway, now)
        if today >= self.daily_cap:
            return [
                f"daily cap: {today} certificates added to this gateway in 24 h "
                f"(cap {self.daily_cap})"
            ]
        return []

    def check(
        self,
        gateway: str,
        settings_names: Sequence[str],
        thumbprint: str | None,
        now: datetime,
        *,
        adds_certificate: bool,
    ) -> tuple[str, ...]:
        """Reasons not to write now; empty when the guards pass."""
        reasons = self.cooldown_reasons(gateway, settings_names, thumbprint, now)
        if adds_certificate:
            reasons += self.cap_reasons(gateway, thumbprint, now)
        return tuple(reasons)


# ---- the verdict ----------------------------------------------------------------------------


class Outcome(StrEnum):
    APPLY = "apply"
    PROPOSE = "propose"
    DIAGNOSE = "diagnose"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    mode: Mode
    reasons: tuple[str, ...]
    owner_tag: str | None


def decide(
    decision: Decision,
    action: FixAction,
    trust: TrustResult | None,
    guard_reasons: Sequence[str] = (),
) -> Verdict:
    """Combine the effective mode, the trust result and the guards into apply/propose/diagnose.

    `trust` is None for actions that add no certificate. Any failed check lowers apply to propose
    with its reasons; host-name changes are only ever applied through an approved proposal.
    """
    reasons = list(decision.reasons)

    def verdict(outcome: Outcome) -> Verdict:
        return Verdict(outcome, decision.mode, tuple(reasons), decision.owner_tag)

    if action is FixAction.NONE:
        reasons.append("no actionable fix")
        return verdict(Outcome.DIAGNOSE)
    if decision.mode is Mode.DIAGNOSE:
        return verdict(Outcome.DIAGNOSE)
    if decision.mode is Mode.PROPOSE:
        return verdict(Outcome.PROPOSE)
    blocked = False
    if action is FixAction.SET_BACKEND_HOST_NAME:
        reasons.append("host-name changes are applied only through an approved proposal")
        blocked = True
    elif trust is None or not trust.ok:
        reasons += trust.reasons if trust else ("the certificate was not checked",)
        blocked = True
    if guard_reasons:
        reasons += guard_reasons
        blocked = True
    return verdict(Outcome.PROPOSE if blocked else Outcome.APPLY)


__all__ = [
    "Change",
    "Decision",
    "Guards",
    "Outcome",
    "Verdict",
    "check_scope",
    "decide",
    "effective_mode",
    "ownership_tag",
]
