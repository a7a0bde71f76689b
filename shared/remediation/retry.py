"""Retry decisions for gateway writes, kept apart from the retry loop (as azure-core does).

A decision only says whether and when to try again; the loop re-reads and re-plans every time, so a
stale body is never replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.cloud.arm import ArmError, LroFailed
from shared.cloud.authz import missing_permission


class Verdict(StrEnum):
    RETRY = "retry"  # back off, re-read, re-plan, try again
    PROPOSE = "propose"  # a human must act (lock, policy): turn the change into a proposal
    FAIL = "fail"  # stop and report


# Overlapping writes on one gateway (docs/sources.md#overlapping-writes) and ARM throttling
# (docs/sources.md#limits). A write another PUT superseded ends with top-level code `Canceled` and
# the superseded code only in `error.details` (azure-cli issue #21156, terraform-provider-iterative
# issue #341), so every code, nested ones included, is looked at (ArmError.codes). A plain
# `Canceled` (someone cancelled the operation) is not retried.
_CONTENTION_CODES = {
    "anotheroperationinprogress",
    "retryableerrorduetoanotheroperation",
    "canceledandsupersededduetoanotheroperation",
    "toomanyrequests",
}
# AuthorizationFailed / LinkedAuthorizationFailed are not here: a missing role is the operator's to
# grant (shared.cloud.authz), and a proposal would ask for a change the bot may already have made.
_HUMAN_CODES = {"scopelocked", "requestdisallowedbypolicy"}
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RetryDecision:
    verdict: Verdict
    delay: float
    reason: str


BACKOFF_CAP_SECONDS = 60.0


def backoff(attempt: int, *, base: float = 2.0, cap: float = BACKOFF_CAP_SECONDS) -> float:
    """Exponential back-off without jitter: attempt 1 -> base, doubling, capped."""
    return float(min(cap, base * (2 ** max(0, attempt - 1))))


def honoured_retry_after(retry_after: float) -> float:
    """ARM's Retry-After, bounded by the bot's own back-off cap: recorded values run 1 to 160 s
    (tests/data/recorded/net_ag_backend_health_v2.json); one job must still fit its budgets, and
    a header is data from the network (never negative, never hours)."""
    return float(min(max(retry_after, 0.0), BACKOFF_CAP_SECONDS))


def decide_retry(error: ArmError, attempt: int, *, base: float = 2.0) -> RetryDecision:
    """Classify a failed write. Retry-After from ARM wins over our own back-off (bounded:
    `honoured_retry_after`)."""
    code = (error.code or "").lower()
    codes = {c.lower() for c in error.codes}
    delay = (
        honoured_retry_after(error.retry_after)
        if error.retry_after is not None
        else backoff(attempt, base=base)
    )
    missing = missing_permission(error.codes, str(error))
    if missing is not None:
        # A 403 on the PUT itself: nothing was written. On the poll of an accepted PUT (the
        # status URL needs read at the resource group): the change may be in place already.
        note = (
            "ARM accepted the update but the bot may not track it, so the change may already be "
            "in place: check the gateway before acting again"
            if isinstance(error, LroFailed)
            else "ARM refused the request, nothing was written"
        )
        return RetryDecision(Verdict.FAIL, 0.0, f"{missing.describe()}; {note}")
    if codes & _HUMAN_CODES:
        return RetryDecision(Verdict.PROPOSE, 0.0, f"{error.code}: {error}")
    if codes & _CONTENTION_CODES or error.status in _TRANSIENT_STATUS:
        why = "/".join(c for c in error.codes if c.lower() in _CONTENTION_CODES)
        return RetryDecision(Verdict.RETRY, delay, f"{why or error.code or error.status}: retrying")
    if code == "lrotimeout":
        # Still running on ARM's side: never start a second write on top of it.
        return RetryDecision(
            Verdict.FAIL,
            0.0,
            f"{error}; ARM may still complete it, so it is not retried (no second write on top)",
        )
    return RetryDecision(Verdict.FAIL, 0.0, f"{error.code or error.status}: {error}")
