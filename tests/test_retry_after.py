"""The bot honours ARM's Retry-After within its own limits (shared/remediation/retry.py): on a
refused write the header sets the delay, capped at the back-off cap; LRO polls are paced by
azure-core's poller, which reads the same header, and bounded by LRO_TIMEOUT_SECONDS
(tests/sandbox/conformance/test_recorded_timeline.py runs them against recorded values)."""

from __future__ import annotations

import pytest

from shared.cloud.arm import ArmError
from shared.remediation.retry import BACKOFF_CAP_SECONDS, Verdict, decide_retry


def _throttled(retry_after: float | None) -> ArmError:
    return ArmError("throttled", code="TooManyRequests", status=429, retry_after=retry_after)


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [(10.0, 10.0), (0.0, 0.0), (160.0, BACKOFF_CAP_SECONDS), (86_400.0, 60.0), (-5.0, 0.0)],
)
def test_retry_after_sets_the_delay_within_the_cap(retry_after: float, delay: float) -> None:
    decision = decide_retry(_throttled(retry_after), 1)
    assert (decision.verdict, decision.delay) == (Verdict.RETRY, delay)


def test_without_retry_after_the_bot_backs_off_on_its_own() -> None:
    assert decide_retry(_throttled(None), 3, base=2.0).delay == 8.0
