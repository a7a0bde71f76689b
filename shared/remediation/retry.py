"""Retry decisions for gateway writes, kept apart from the retry loop (as azure-core does).

A decision only says whether and when to try again; the loop re-reads and re-plans every time, so a
stale body is never replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.cloud.arm import ArmError


class Verdict(StrEnum):
    RETRY = "retry"  # back off, re-read, re-plan, try again
    PROPOSE = "propose"  # a human must act (lock, policy): turn the change into a proposal
    FAIL = "fail"  # stop and report


# Overlapping writes on one gateway (appgw-backend-tls.md §6) and ARM throttling (§5).
_CONTENTION_CODES = {
    "anotheroperationinprogress",
    "retryableerrorduetoanotheroperation",
    "canceledandsupersededduetoanotheroperation",
    "toomanyrequests",
}
_HUMAN_CODES = {"scopelocked", "requestdisallowedbypolicy", "authorizationfailed"}
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RetryDecision:
    verdict: Verdict
    delay: float
    reason: str


def backoff(attempt: int, *, base: float = 2.0, cap: float = 60.0) -> float:
    """Exponential back-off without jitter: attempt 1 -> base, doubling, capped."""
    return float(min(cap, base * (2 ** max(0, attempt - 1))))


def decide_retry(error: ArmError, attempt: int, *, base: float = 2.0) -> RetryDecision:
    """Classify a failed write. Retry-After from ARM wins over our own back-off."""
    code = (error.code or "").lower()
    delay = error.retry_after if error.retry_after is not None else backoff(attempt, base=base)
    if code in _HUMAN_CODES:
        return RetryDecision(Verdict.PROPOSE, 0.0, f"{error.code}: {error}")
    if code in _CONTENTION_CODES or error.status in _TRANSIENT_STATUS:
        return RetryDecision(Verdict.RETRY, delay, f"{error.code or error.status}: retrying")
    if code == "lrotimeout":
        # Still running on ARM's side: never start a second write on top of it.
        return RetryDecision(
            Verdict.FAIL,
            0.0,
            f"{error}; ARM may still complete it, so it is not retried (no second write on top)",
        )
    return RetryDecision(Verdict.FAIL, 0.0, f"{error.code or error.status}: {error}")
