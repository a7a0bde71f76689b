"""The bot's budgets against Azure's recorded timeline (sandbox timing profile `recorded`).

Every gateway write in the emulator takes the slowest gateway operation recorded (886 s, a WAF_v2
create: tests/data/recorded/java_ag_kv_sslcert_identity.json; sandbox/arm_ops.py), backend
health the recorded 11 s, and NRP's Retry-After runs as recorded; the bot keeps its default
budgets. Time is compressed by one factor (sandbox.runtime.RECORDED_SCALE) on both sides, so a
run shows in seconds what would take an hour. Nothing is raised for the test: if a default budget
did not cover the recorded timeline, these runs would fail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_remediate_sandbox import (
    AUTH_CERTS,
    comparable,
    control,
    make_remediator,
    put_count,
    ref_names,
    settings_entry,
    stored,
)

from sandbox import arm_ops
from sandbox.runtime import RECORDED_BOT_WAITS, RECORDED_SCALE, SandboxHandle
from sandbox.runtime import recorded_bot_settings as scaled_settings
from shared.common.settings import load_settings
from shared.remediation.plan import certificate_name

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[1]
SLOWEST = arm_ops.SLOWEST_WRITE  # seconds, as recorded
MARGIN = 1.25  # every budget covers the slowest recorded operation by at least a quarter


def _function_timeout() -> float:
    raw = json.loads((ROOT / "host.json").read_text())["functionTimeout"]
    hours, minutes, seconds = (int(part) for part in raw.split(":"))
    return float(hours * 3600 + minutes * 60 + seconds)


def test_default_budgets_cover_the_slowest_recorded_operation_with_margin() -> None:
    """LRO_TIMEOUT_SECONDS bounds our own write; BUSY_WAIT_SECONDS waits out someone else's
    (which may be a create); functionTimeout holds both, verification and backend health."""
    settings = load_settings({})
    assert float(settings["LRO_TIMEOUT_SECONDS"]) >= MARGIN * SLOWEST
    assert float(settings["BUSY_WAIT_SECONDS"]) >= MARGIN * SLOWEST
    worst_job = 2 * SLOWEST + arm_ops.RECORDED_SECONDS["health"]  # theirs, ours, one health read
    assert _function_timeout() >= MARGIN * worst_job
    assert SLOWEST == arm_ops.RECORDED_SECONDS["waf_v2_create"] == 886.0


def test_the_recorded_profile_scales_the_bots_defaults_by_one_factor() -> None:
    defaults = load_settings({})
    scaled = scaled_settings()
    for name in RECORDED_BOT_WAITS:
        assert float(scaled[name]) == pytest.approx(float(defaults[name]) * RECORDED_SCALE)


def test_fix_superseded_write_and_rollback_on_the_recorded_timeline(
    sandbox_factory: Callable[..., SandboxHandle], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = sandbox_factory("ilb-ase-v1", timing="recorded")
    before = stored(v1)
    # The bot as deployed: default budgets, compressed (make_remediator's test values undone).
    bot = make_remediator(v1, tmp_path, monkeypatch, **scaled_settings())
    slow = SLOWEST * RECORDED_SCALE
    # Someone else's update of the recorded length starts right after the bot's first read, and
    # our first PUT is then superseded (accepted, Canceled): the bot waits, re-reads, writes again.
    control(v1, "/faults", {"kind": "another_writer", "after": 1, "seconds": slow})
    control(v1, "/faults", {"kind": "conflict", "outcome": "superseded"})
    started = time.monotonic()

    applied = bot.fix(v1.gateway_ids[0], requester="alice")

    assert applied.action == "applied", applied.reason
    assert applied.verified is True and applied.change is not None
    assert applied.arm_writes == 2
    ops = [(o["by"], o["status"]) for o in control(v1, "/operations")]
    assert ops == [
        ("another_writer", "Succeeded"),
        ("client", "Canceled"),
        ("client", "Succeeded"),
    ]
    ours = certificate_name(v1.certs["ilb-default"].thumbprint())
    assert ours in ref_names(settings_entry(stored(v1), "ase-https"), AUTH_CERTS)

    rolled = bot.rollback(v1.gateway_ids[0], applied.change, by="bob")

    assert (rolled.action, rolled.arm_writes) == ("rolled_back", 1), rolled.reason
    elapsed = time.monotonic() - started
    # Their update ran its recorded length, and so did our successful write and the rollback.
    assert elapsed >= 3 * slow
    assert put_count(v1) == 3
    after = stored(v1)
    assert after["tags"]["changed-by"] == "pipeline"  # the other writer's change survives
    assert comparable(after["properties"][AUTH_CERTS]) == comparable(
        before["properties"][AUTH_CERTS]
    )
    assert ours not in ref_names(settings_entry(after, "ase-https"), AUTH_CERTS)
