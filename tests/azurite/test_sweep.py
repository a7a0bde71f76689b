"""The fanned-out sweep at small fleet size (issue 14): the timer enumerates and queues, the
checks trigger reads metrics in batches, backend health only where metrics cannot clear a
gateway. Counted at the sandbox (ARM and metrics requests) and in the ledger (check entities)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.azurite.conftest import WAIT, BotApp, Factory

FLEET = "60x3@0.1,nodata=0.05,page=8"  # 6 unhealthy, 3 without metric data, 3 pages a listing
# The scenario's own gateway (healthy) is in scope too: 61 gateways in 4 subscriptions.
GATEWAYS = 61
CHECKS_OFF = {"AzureWebJobs.checks.Disabled": "true"}


def _checks(app: BotApp) -> list[dict[str, Any]]:
    return app.rows("check")


def _wait_checked(app: BotApp, sweep: str, count: int = GATEWAYS) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT
    while True:
        rows = [r for r in _checks(app) if r["sweep"] == sweep]
        if len(rows) == count and all(r["state"] == "done" for r in rows):
            return rows
        if time.monotonic() > deadline:
            states = Counter(r["state"] for r in rows)
            pytest.fail(f"sweep {sweep}: {len(rows)} checks, {dict(states)} after {WAIT:.0f} s")
        time.sleep(0.1)


def _sweep(app: BotApp) -> str:
    before = {r["sweep"] for r in _checks(app)}
    assert app.runner.run_timer("sweep").ok
    after = {r["sweep"] for r in _checks(app)} - before
    assert len(after) <= 1
    return after.pop() if after else ""


def _requests(app: BotApp, fragment: str, method: str = "POST") -> list[dict[str, Any]]:
    return [
        r for r in app.arm_requests() if r["method"] == method and fragment in r["path"].lower()
    ]


@pytest.fixture
def fleet_app(bot_app: Factory, sandbox_factory: Any) -> Any:
    def start(**settings: str) -> BotApp:
        sandbox = sandbox_factory("healthy", fleet=FLEET)
        # The fix jobs the sweep queues are not run here: this is about the checks.
        return bot_app(sandbox=sandbox, worker=False, **settings)

    return start


def test_one_check_per_gateway_and_backend_health_only_without_metric_data(
    fleet_app: Any,
) -> None:
    app = fleet_app()
    fleet = app.sandbox.fleet
    sweep = _sweep(app)
    rows = _wait_checked(app, sweep)

    # One check per gateway, each claimed by this sweep and done once.
    assert len({r["gateway_id"] for r in rows}) == GATEWAYS
    results = Counter(r["result"] for r in rows)
    assert results == {"healthy": GATEWAYS - 6, "unhealthy": 6}
    unhealthy = {r["gateway_id"] for r in rows if r["result"] == "unhealthy"}
    assert unhealthy == {g.lower() for g in fleet.unhealthy_ids}

    # Backend health: once for each gateway with no metric data, never for the others.
    health = _requests(app, "/backendhealth")
    probed = Counter(r["path"].lower().rsplit("/backendhealth", 1)[0] for r in health)
    assert set(probed) == {g.lower() for g in fleet.no_data_ids}
    assert set(probed.values()) == {1}
    healthy_ids = {r["gateway_id"] for r in rows if r["result"] == "healthy"}
    assert not healthy_ids & {g.lower() for g in fleet.unhealthy_ids}

    # Metrics: one batch call per subscription and region (each ≤ 50 here).
    metrics = _requests(app, "metrics:getbatch")
    assert all(r["status"] == 200 for r in metrics)
    groups = {(g["id"].split("/")[2].lower(), g["location"]) for g in fleet.gateways}
    assert len(metrics) == len(groups) + 1  # + the scenario's own gateway

    # Listing: one paged list_all per subscription, 3 pages for each fleet subscription.
    lists = _requests(app, "/providers/microsoft.network/applicationgateways", "GET")
    assert len([r for r in lists if r["path"].lower().endswith("applicationgateways")]) == 10

    # A fix job for each unhealthy gateway, queued once, by the sweep.
    jobs = app.jobs()
    assert {j["gateway_id"] for j in jobs} == unhealthy
    assert {j["requested_by"] for j in jobs} == {"sweep"}
    assert app.queued_messages() == 6
    failed = [i for i in app.runner.invocations if i.function == "checks" and not i.ok]
    assert failed == []


def test_a_check_still_queued_from_the_last_sweep_is_not_queued_again(fleet_app: Any) -> None:
    from shared.service.sweep import run_sweep

    app = fleet_app(**CHECKS_OFF)
    first = _sweep(app)
    rows = [r for r in _checks(app) if r["sweep"] == first]
    assert len(rows) == GATEWAYS and {r["state"] for r in rows} == {"queued"}
    queue = app.storage.checks_queue_client()
    sent = int(queue.get_queue_properties().approximate_message_count or 0)
    assert sent > 0

    second = run_sweep(app.context())
    assert second.gateways == GATEWAYS and second.queued == 0
    assert second.still_pending == GATEWAYS and second.messages == 0
    assert int(queue.get_queue_properties().approximate_message_count or 0) == sent
    assert {r["sweep"] for r in _checks(app)} == {first}

    # A check stuck for an hour lost its message: the next sweep claims it again.
    later = run_sweep(app.context(), now=datetime.now(UTC) + timedelta(hours=2))
    assert later.queued == GATEWAYS
    assert {r["sweep"] for r in _checks(app)} == {later.sweep}


def test_a_finished_check_is_queued_by_the_next_sweep_and_jobs_are_joined(
    fleet_app: Any,
) -> None:
    app = fleet_app()
    first = _sweep(app)
    _wait_checked(app, first)
    jobs = {j["RowKey"] for j in app.jobs()}
    second = _sweep(app)
    assert second and second != first
    _wait_checked(app, second)
    # The unhealthy gateways' fix jobs are still queued: joined, not duplicated.
    assert {j["RowKey"] for j in app.jobs()} == jobs
    assert len(_requests(app, "/backendhealth")) == 2 * len(app.sandbox.fleet.no_data_ids)
