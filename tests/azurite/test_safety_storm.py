"""Safety suite (issue #7): an alert storm. 500 alerts (duplicates of each alert instance, Fired and
Resolved pairs, five gateways) posted concurrently to the function app on the local runner while
its worker runs: each gateway gets at most one write per distinct fix, every alert instance is
recorded once in the ledger, and no answer is a 5xx while storage is up.

Action groups retry and send duplicates; the bot deduplicates on (alertId, monitorCondition) and
coalesces per gateway (docs/sources.md#action-groups).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sandbox.alerts import common_alert
from sandbox.funcrunner import REPO_ROOT

from .conftest import BotApp, Factory, Reply

pytestmark = [pytest.mark.safety, pytest.mark.sandbox, pytest.mark.timeout(240)]

GATEWAYS = 5
ALERTS_PER_GATEWAY = 20  # distinct alert instances per gateway
FIRED_COPIES = 3  # each Fired notification arrives three times (retries, parallel groups)
RESOLVED_COPIES = 2
SETTLE = 150.0  # upper bound for the worker to drain the queue (not a timed assertion)


def five_gateway_scenario(directory: Path) -> Path:
    """The seed scenario (ilb-ase-v1) with its gateway five times, all on the same ILB backend."""
    seed = json.loads((REPO_ROOT / "sandbox" / "scenarios" / "ilb-ase-v1.json").read_text())
    [gateway] = seed["gateways"]
    text = json.dumps(gateway)
    seed["gateways"] = [
        json.loads(text.replace("agw-ase-v1", f"agw-storm-{n}")) for n in range(GATEWAYS)
    ]
    seed["name"] = "storm"
    path = directory / "storm.json"
    path.write_text(json.dumps(seed))
    return path


def storm(gateway_ids: list[str]) -> list[dict[str, Any]]:
    alerts = []
    for g, gid in enumerate(gateway_ids):
        for n in range(ALERTS_PER_GATEWAY):
            alert_id = f"{g:02d}{n:02d}0000-0000-4000-8000-{g:04d}{n:08d}"
            alerts += [common_alert(gid, alert_id=alert_id) for _ in range(FIRED_COPIES)]
            alerts += [
                common_alert(gid, alert_id=alert_id, condition="Resolved")
                for _ in range(RESOLVED_COPIES)
            ]
    random.Random(7).shuffle(alerts)
    return alerts


def wait_until_drained(app: BotApp) -> list[dict[str, Any]]:
    """Every job finished and the queue empty (polled; fails with what is left)."""
    deadline = time.monotonic() + SETTLE
    while True:
        jobs = app.jobs()
        open_jobs = [j for j in jobs if j["state"] in {"queued", "running"}]
        if not open_jobs and app.queued_messages() == 0:
            return jobs
        if time.monotonic() > deadline:
            pytest.fail(f"{len(open_jobs)} jobs still open after {SETTLE:.0f} s: {open_jobs[:3]}")
        time.sleep(0.5)


def test_alert_storm_one_write_per_gateway_every_alert_recorded_no_5xx(
    bot_app: Factory, tmp_path: Path
) -> None:
    app = bot_app(str(five_gateway_scenario(tmp_path)), REMEDIATION_MODE="apply")
    gateway_ids = list(app.sandbox.gateway_ids)
    assert len(gateway_ids) == GATEWAYS
    alerts = storm(gateway_ids)
    assert len(alerts) == 500

    with ThreadPoolExecutor(max_workers=32) as pool:
        replies: list[Reply] = list(pool.map(app.post_alert, alerts))

    statuses = Counter(r.status for r in replies)
    assert statuses == {202: len(alerts)}, [r.body for r in replies if r.status != 202][:3]
    kinds = Counter(r.json()["status"] for r in replies)
    assert set(kinds) <= {"accepted", "duplicate", "recorded"}
    assert kinds["recorded"] == GATEWAYS * ALERTS_PER_GATEWAY * RESOLVED_COPIES

    jobs = wait_until_drained(app)
    assert all(j["state"] == "succeeded" for j in jobs), [
        j for j in jobs if j["state"] != "succeeded"
    ]

    # At most one write per gateway for the one distinct fix each needs, and it landed.
    puts = Counter(r["path"].lower() for r in app.puts())
    assert puts == {gid.lower(): 1 for gid in gateway_ids}, puts
    # (Raw ledger rows: the outcome is stored as JSON text.)
    outcomes = [(j["gateway_id"], json.loads(j["outcome"] or "{}")) for j in jobs]
    applied = Counter(gid for gid, outcome in outcomes if outcome.get("action") == "applied")
    assert applied == {gid.lower(): 1 for gid in gateway_ids}, applied

    # Every alert instance (alertId, monitorCondition) is in the ledger exactly once.
    rows = app.alert_rows()
    keys = Counter((r["alert_id"].rsplit("/", 1)[-1], r["monitor_condition"]) for r in rows)
    assert len(keys) == len(rows) == GATEWAYS * ALERTS_PER_GATEWAY * 2
    assert set(keys.values()) == {1}
    assert {(r["targets"], r["out_of_scope"]) for r in rows} == {(1, 0)}
    # Each Fired instance is linked to a job of its own gateway.
    by_id = {j["RowKey"]: j for j in jobs}
    for row in rows:
        if row["monitor_condition"] == "Fired":
            [gateway] = json.loads(row["gateways"])
            assert by_id[row["job_id"]]["gateway_id"] == gateway.lower()
    for gid in gateway_ids:
        assert app.lease_state(gid) == "available"
