"""Issue #4 acceptance under ARM faults: the safe write converges or stops with a clear report,
and nothing is lost.

Faults are injected at run time through the sandbox control endpoint
(`POST {SANDBOX_CONTROL_URL}/faults`, rules documented in sandbox/faults.py). Retry delays go
through the Remediator's injected `sleep`, recorded here, so the tests check that Retry-After is
honoured without waiting for it. Facts: docs/sources.md#limits (429 and
Retry-After), docs/sources.md#overlapping-writes (no If-Match: re-GET and compare before the PUT).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_remediate_sandbox import (
    AUTH_CERTS,
    BOB,
    Factory,
    arm_requests,
    comparable,
    control,
    make_remediator,
    put_count,
    ref_names,
    settings_entry,
    stored,
)

from sandbox.runtime import SandboxHandle
from shared.remediation.plan import certificate_name
from shared.remediation.remediate import Remediator

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

# Another writer's change (sandbox/faults.py DEFAULT_OTHER_WRITER_PATCH): a tag and an empty pool.
THEIR_TAG = ("changed-by", "pipeline")
THEIR_POOL = "other-writer-pool"


class Sleeps:
    """Records requested delays; waits only briefly (the sandbox faults are counted, not timed)."""

    def __init__(self, cap: float = 0.1) -> None:
        self.delays: list[float] = []
        self.cap = cap

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        time.sleep(min(seconds, self.cap))


@pytest.fixture
def v1(sandbox_factory: Factory) -> Iterator[SandboxHandle]:
    yield sandbox_factory("ilb-ase-v1")


def bot_for(
    handle: SandboxHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    cap: float = 0.1,
    **env: str,
) -> tuple[Remediator, Sleeps]:
    # The back-off these tests assert is the default 2 s (the fast sandbox profile sets 0); the
    # delays are recorded by `Sleeps`, not waited for.
    defaults = {"VERIFY_DEADLINE_SECONDS": "0", "WRITE_BACKOFF_SECONDS": "2"}
    bot = make_remediator(handle, tmp_path, monkeypatch, **{**defaults, **env})
    sleeps = Sleeps(cap)
    bot.sleep = sleeps
    return bot, sleeps


def our_name(handle: SandboxHandle) -> str:
    return certificate_name(handle.certs["ilb-default"].thumbprint())


def without_ours(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """The document minus the certificate `name` and its references: what it had before us."""
    doc = copy.deepcopy(doc)
    props = doc["properties"]
    props[AUTH_CERTS] = [c for c in props.get(AUTH_CERTS, []) if c["name"] != name]
    for entry in props["backendHttpSettingsCollection"]:
        refs = entry["properties"].get(AUTH_CERTS)
        if refs is not None:
            entry["properties"][AUTH_CERTS] = [r for r in refs if not r["id"].endswith("/" + name)]
    return doc


def assert_fix_landed_and_nothing_lost(handle: SandboxHandle, before: dict[str, Any]) -> None:
    after = stored(handle)
    name = our_name(handle)
    assert name in ref_names(settings_entry(after, "ase-https"), AUTH_CERTS)
    assert after["properties"]["provisioningState"] == "Succeeded"
    assert comparable(without_ours(after, name)) == comparable(before)


def assert_theirs_survived(handle: SandboxHandle) -> None:
    doc = stored(handle)
    assert doc["tags"][THEIR_TAG[0]] == THEIR_TAG[1]
    assert THEIR_POOL in [p["name"] for p in doc["properties"]["backendAddressPools"]]


# ---- another writer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "after",
    [
        pytest.param(0, id="during-diagnosis"),
        pytest.param(1, id="between-read-and-write"),
    ],
)
def test_another_writers_change_survives_and_the_fix_lands(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: int
) -> None:
    # GETs of the gateway in a fix: 1 diagnosis, 2 the write loop's read, 3 its ETag re-check.
    bot, _ = bot_for(v1, tmp_path, monkeypatch, VERIFY_DEADLINE_SECONDS="20", cap=2.0)
    control(v1, "/faults", {"kind": "another_writer", "after": after})

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert outcome.action == "applied", outcome.reason
    assert (outcome.arm_writes, put_count(v1)) == (1, 1)
    assert outcome.verified is True
    assert control(v1, "/faults")["other_writes"][0]["error"] is None
    assert_theirs_survived(v1)
    assert our_name(v1) in ref_names(settings_entry(stored(v1), "ase-https"), AUTH_CERTS)


def test_a_writer_that_never_stops_makes_the_bot_give_up_without_writing(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot, _ = bot_for(v1, tmp_path, monkeypatch, WRITE_ATTEMPTS="3")
    control(v1, "/faults", {"kind": "another_writer", "times": None})

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert (outcome.action, outcome.arm_writes, put_count(v1)) == ("failed", 0, 0)
    assert (
        "after 3 attempts" in outcome.reason and "changed between read and write" in outcome.reason
    )
    assert_theirs_survived(v1)
    assert our_name(v1) not in [c["name"] for c in stored(v1)["properties"][AUTH_CERTS]]


def test_a_refused_write_is_never_replayed_over_a_newer_document(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other writer commits right after our ETag re-check; our PUT then gets 409. Replaying
    # that body would revert them: the retry must re-read and re-plan on their document.
    bot, sleeps = bot_for(v1, tmp_path, monkeypatch)
    control(
        v1,
        "/faults",
        [{"kind": "conflict", "outcome": "409"}, {"kind": "another_writer", "after": 2}],
    )

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert outcome.action == "applied", outcome.reason
    assert (outcome.arm_writes, put_count(v1)) == (2, 2)
    assert sleeps.delays == [2.0]  # no Retry-After on a 409: our own back-off
    assert_theirs_survived(v1)
    assert our_name(v1) in ref_names(settings_entry(stored(v1), "ase-https"), AUTH_CERTS)


# ---- faults the write converges through ------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "delay"),
    [
        pytest.param(
            {"kind": "throttle", "method": "PUT", "route": "put", "retry_after": 3},
            3.0,
            id="429-retry-after",
        ),
        pytest.param({"kind": "conflict", "outcome": "409"}, 2.0, id="409-another-operation"),
        pytest.param(
            {"kind": "conflict", "outcome": "429", "retry_after": 4}, 4.0, id="429-retryable-error"
        ),
        pytest.param({"kind": "conflict", "outcome": "superseded"}, 2.0, id="superseded"),
        pytest.param(
            {"kind": "transient", "method": "PUT", "route": "put", "status": 503}, 2.0, id="503"
        ),
        pytest.param(
            {"kind": "transient", "method": "PUT", "route": "put", "status": 502}, 2.0, id="502"
        ),
    ],
)
def test_contention_and_transient_faults_converge_in_one_more_write(
    v1: SandboxHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rule: dict[str, Any],
    delay: float,
) -> None:
    before = stored(v1)
    bot, sleeps = bot_for(v1, tmp_path, monkeypatch)
    control(v1, "/faults", rule)

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert outcome.action == "applied", outcome.reason
    assert (outcome.arm_writes, put_count(v1)) == (2, 2)
    assert sleeps.delays == [delay]  # Retry-After when ARM sends one, else our back-off
    assert_fix_landed_and_nothing_lost(v1, before)


def test_throttled_reads_are_retried_by_the_sdk(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stored(v1)
    bot, _ = bot_for(v1, tmp_path, monkeypatch)
    control(
        v1,
        "/faults",
        {"kind": "throttle", "method": "GET", "route": "get", "times": 2, "retry_after": 1},
    )

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert outcome.action == "applied", outcome.reason
    assert outcome.arm_writes == 1
    assert [r["status"] for r in arm_requests(v1) if r["method"] == "GET"][:2] == [429, 429]
    assert_fix_landed_and_nothing_lost(v1, before)


def test_retries_are_bounded(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stored(v1)
    bot, sleeps = bot_for(v1, tmp_path, monkeypatch, WRITE_ATTEMPTS="3")
    control(v1, "/faults", {"kind": "conflict", "outcome": "409", "times": None})

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert (outcome.action, outcome.arm_writes, put_count(v1)) == ("failed", 3, 3)
    assert "AnotherOperationInProgress" in outcome.reason
    assert sleeps.delays == [2.0, 4.0]  # exponential back-off between the three attempts
    assert stored(v1)["etag"] == before["etag"]


# ---- faults that stop with a report ----------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        ({"kind": "scope_locked"}, "ScopeLocked"),
        ({"kind": "policy_denied", "assignment": "deny-appgw-writes"}, "RequestDisallowedByPolicy"),
    ],
)
def test_lock_or_policy_denial_becomes_a_proposal_with_the_reason(
    v1: SandboxHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rule: dict[str, Any],
    code: str,
) -> None:
    before = stored(v1)
    bot, sleeps = bot_for(v1, tmp_path, monkeypatch)
    control(v1, "/faults", rule)

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert (outcome.action, outcome.arm_writes, put_count(v1)) == ("proposed", 1, 1)
    assert code in outcome.reason
    assert sleeps.delays == []  # not retried
    assert outcome.proposal is not None
    proposal = bot.proposals.get(outcome.proposal)
    assert any(code in reason for reason in proposal.reasons)
    assert proposal.renderings["az"]  # a human can run it once the lock or policy allows
    assert stored(v1) == before  # exactly what it had, same ETag


def test_failed_update_is_reported_and_rolled_back(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stored(v1)
    bot, _ = bot_for(v1, tmp_path, monkeypatch)
    control(v1, "/faults", {"kind": "lro_failed", "code": "InternalServerError"})

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert outcome.action == "failed"
    assert "left the gateway Failed" in outcome.reason and "rolled back" in outcome.reason
    assert (outcome.arm_writes, put_count(v1)) == (2, 2)  # the update, then the rollback
    after = stored(v1)
    assert after["properties"]["provisioningState"] == "Succeeded"
    assert comparable(after) == comparable(before)
    kinds = [r.kind for r in bot.changes.for_gateway(v1.gateway_ids[0])]
    assert kinds == ["apply", "rollback"]


def test_failed_update_that_kept_nothing_is_reported(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stored(v1)
    bot, _ = bot_for(v1, tmp_path, monkeypatch)
    control(v1, "/faults", {"kind": "lro_failed", "commit": False})

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert (outcome.action, outcome.arm_writes, put_count(v1)) == ("failed", 1, 1)
    assert "nothing of ours was left to roll back" in outcome.reason
    after = stored(v1)
    assert after["properties"]["provisioningState"] == "Failed"  # for a human to look at
    assert comparable(after) == comparable(before)


class FakeClock:
    """The emulator's clock (option `clock`): operations end only when the test moves it on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_slow_update_beyond_the_lro_timeout_is_not_written_twice(
    sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emulator's clock stands still, so the 8 s operation outlasts the bot's 1 s LRO timeout
    # (real time) without the test waiting 8 s for ARM to finish it.
    clock = FakeClock()
    v1 = sandbox_factory("ilb-ase-v1", clock=clock)
    before = stored(v1)
    bot, _ = bot_for(
        v1, tmp_path, monkeypatch, LRO_TIMEOUT_SECONDS="1", ARM_POLLING_INTERVAL="0.05"
    )
    control(v1, "/faults", {"kind": "slow_lro", "seconds": 8})

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert (outcome.action, outcome.arm_writes, put_count(v1)) == ("failed", 1, 1)
    assert "did not finish within 1 s" in outcome.reason
    assert "not retried" in outcome.reason
    assert stored(v1)["properties"]["provisioningState"] == "Updating"
    # ARM finishes the operation on its own; then a new run finds the fix in place.
    clock.now += 8
    assert stored(v1)["properties"]["provisioningState"] == "Succeeded"
    assert_fix_landed_and_nothing_lost(v1, before)
    again = bot.fix(v1.gateway_ids[0], requester="alice")
    assert again.action == "none" and again.arm_writes == 0
    assert put_count(v1) == 1


def test_approval_whose_update_fails_marks_the_proposal_failed(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stored(v1)
    bot, _ = bot_for(v1, tmp_path, monkeypatch, REMEDIATION_MODE="propose")
    proposed = bot.fix(v1.gateway_ids[0], requester="alice")
    assert proposed.proposal is not None
    control(v1, "/faults", {"kind": "lro_failed"})

    outcome = bot.approve(proposed.proposal, BOB)

    assert (outcome.action, outcome.arm_writes) == ("failed", 2)
    assert bot.proposals.get(proposed.proposal).status == "failed"
    assert comparable(stored(v1)) == comparable(before)


# ---- the write protocol as recorded (issue 11): overlapping PUTs are accepted ----------------
# tests/data/recorded/cli_ag_auth_cert_v1.json: PUTs while the gateway is Updating all get 200 and
# their own operation; the earlier operation is canceled (superseded). So the bot must never PUT
# while someone else's update runs, and must read a superseded write's nested detail code.


class ClockSleeps(Sleeps):
    """The bot's sleep moves the emulator's fake clock on instead of waiting."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(cap=0)
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.now += seconds


def operations(handle: SandboxHandle) -> list[tuple[str, str]]:
    """(by, status) of every gateway write operation the emulator ran, in order."""
    return [(o["by"], o["status"]) for o in control(handle, "/operations")]


def test_the_bot_waits_while_another_writers_update_runs_and_never_cancels_it(
    sandbox_factory: Callable[..., SandboxHandle], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    v1 = sandbox_factory("ilb-ase-v1", clock=clock)
    bot = make_remediator(v1, tmp_path, monkeypatch, VERIFY_DEADLINE_SECONDS="0")
    sleeps = ClockSleeps(clock)
    bot.sleep = sleeps
    # Right after the write loop's read (GET 2), their update starts and runs 30 s (Updating).
    control(v1, "/faults", {"kind": "another_writer", "after": 1, "seconds": 30})

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert outcome.action == "applied", outcome.reason
    assert (outcome.arm_writes, put_count(v1)) == (1, 1)
    assert operations(v1) == [("another_writer", "Succeeded"), ("client", "Succeeded")]
    # Polled every ARM_POLLING_INTERVAL (0 here: the 0.5 s floor), doubling, until it ended.
    assert sleeps.delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert_theirs_survived(v1)
    assert our_name(v1) in ref_names(settings_entry(stored(v1), "ase-https"), AUTH_CERTS)


def test_a_gateway_that_stays_busy_is_not_written_and_the_outcome_says_so(
    sandbox_factory: Callable[..., SandboxHandle], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    v1 = sandbox_factory("ilb-ase-v1", clock=clock)
    bot = make_remediator(v1, tmp_path, monkeypatch, BUSY_WAIT_SECONDS="60")
    sleeps = ClockSleeps(clock)
    bot.sleep = sleeps
    control(v1, "/faults", {"kind": "another_writer", "after": 1, "seconds": 10_000})

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert (outcome.action, outcome.arm_writes, put_count(v1)) == ("failed", 0, 0)
    assert "stayed busy" in outcome.reason and "Updating" in outcome.reason
    assert sum(sleeps.delays) == 60
    assert operations(v1) == [("another_writer", "InProgress")]  # theirs runs on, uncanceled
    assert bot.changes.for_gateway(v1.gateway_ids[0]) == []


def test_a_superseded_write_converges_to_exactly_one_applied_change(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stored(v1)
    bot, sleeps = bot_for(v1, tmp_path, monkeypatch)
    control(v1, "/faults", {"kind": "conflict", "outcome": "superseded"})

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert outcome.action == "applied", outcome.reason
    assert (outcome.arm_writes, put_count(v1)) == (2, 2)
    assert sleeps.delays == [2.0]  # Canceled + nested superseded detail: re-read, re-plan, retry
    assert operations(v1) == [("client", "Canceled"), ("client", "Succeeded")]
    [change] = bot.changes.for_gateway(v1.gateway_ids[0])
    assert (change.kind, change.id) == ("apply", outcome.change)
    assert [c["name"] for c in stored(v1)["properties"][AUTH_CERTS]].count(our_name(v1)) == 1
    assert_fix_landed_and_nothing_lost(v1, before)


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(
            {"kind": "throttle", "method": "GET", "route": "async_op", "retry_after": 0},
            id="429-on-poll",
        ),
        pytest.param(
            {"kind": "transient", "method": "GET", "route": "async_op", "status": 503},
            id="503-on-poll",
        ),
    ],
)
def test_a_throttled_or_failing_status_poll_still_ends_in_a_verified_recorded_change(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rule: dict[str, Any]
) -> None:
    # The SDK's retries are off for the PUT only: the poll is retried by the SDK itself.
    before = stored(v1)
    bot, _ = bot_for(v1, tmp_path, monkeypatch, VERIFY_DEADLINE_SECONDS="20", cap=2.0)
    control(v1, "/faults", rule)

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert outcome.action == "applied", outcome.reason
    assert (outcome.arm_writes, put_count(v1)) == (1, 1)
    assert outcome.verified is True
    polls = [r["status"] for r in arm_requests(v1) if "/operations/" in r["path"]]
    assert polls[0] == rule.get("status", 429) and polls[-1] == 200
    [change] = bot.changes.for_gateway(v1.gateway_ids[0])
    assert change.id == outcome.change
    assert_fix_landed_and_nothing_lost(v1, before)


def test_a_403_on_a_status_poll_of_an_applied_change_is_decided_by_the_document(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The PUT landed; only the poll was refused (e.g. no locations/operations/read). The change
    # is in the document: it is recorded and verified, never turned into a proposal.
    before = stored(v1)
    bot, _ = bot_for(v1, tmp_path, monkeypatch, VERIFY_DEADLINE_SECONDS="20", cap=2.0)
    control(
        v1,
        "/faults",
        {
            "kind": "error",
            "method": "GET",
            "route": "async_op",
            "status": 403,
            "code": "AuthorizationFailed",
            "message": "The client does not have authorization to perform action "
            "'Microsoft.Network/locations/operations/read'.",
        },
    )

    outcome = bot.fix(v1.gateway_ids[0], requester="alice")

    assert outcome.action == "applied", outcome.reason
    assert outcome.proposal is None and bot.proposals.list(status="open") == []
    assert (outcome.arm_writes, put_count(v1)) == (1, 1)
    assert outcome.verified is True
    [change] = bot.changes.for_gateway(v1.gateway_ids[0])
    assert change.id == outcome.change
    assert_fix_landed_and_nothing_lost(v1, before)
