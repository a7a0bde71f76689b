"""Safety suite (issue #7): redelivery and crashes, through the function app on the local runner.

- The worker dies between the gateway write and the ledger update; the queue redelivers the
  message (host.json visibilityTimeout 0 here): the fix lands exactly once, the ledger is complete,
  the job finishes, and the gateway lease is free afterwards.
- The gateway lease is lost mid-job (renewal fails, the lease expires): the write loop refuses to
  write, nothing is written twice.
- Azurite stops and restarts with its data on disk: alerts during the outage get 503 (the one
  answer an action group retries, docs/sources.md#action-groups), after the restart the
  pipeline converges.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobLeaseClient

from sandbox.alerts import common_alert
from sandbox.azurite import start_azurite
from shared.core.health import HealthState
from shared.service import lease as lease_module
from shared.service.storage import StorageUnavailable

from .conftest import WAIT, BotApp, Factory

pytestmark = [pytest.mark.safety, pytest.mark.sandbox, pytest.mark.timeout(180)]


def _fail_once(
    monkeypatch: pytest.MonkeyPatch, target: Any, method: str, when: Callable[..., bool]
) -> list[str]:
    """Make `target.method` raise StorageUnavailable the first time `when(*args, **kwargs)` holds,
    as if the worker process died there; returns a list that records that it happened."""
    real = getattr(target, method)
    crashed: list[str] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not crashed and when(*args, **kwargs):
            crashed.append(method)
            raise StorageUnavailable(f"simulated crash in {method}")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, method, wrapper)
    return crashed


def _decisions(app: BotApp, job_id: str) -> list[str]:
    return [d.what for d in app.storage.list_decisions(app.gateway_id) if d.job_id == job_id]


def _worker_runs(app: BotApp) -> list[tuple[int | None, bool]]:
    return [(i.dequeue_count, i.ok) for i in app.runner.invocations if i.function == "worker"]


# ---- (a) killed between the write and the ledger update ------------------------------------


@pytest.mark.parametrize(
    ("method", "what", "ledger"),
    [
        # Right after the PUT, before the change record: the worker's write-ahead "writing" row
        # carries the change, so the redelivery records it ("changed") and reports the write.
        pytest.param(
            "record_decision", "changed", ["writing", "changed", "applied"], id="before-change"
        ),
        # Before the outcome row the worker writes after the fix.
        pytest.param(
            "record_decision", "applied", ["writing", "changed", "applied"], id="before-outcome"
        ),
        # The last step, the job's final state: the redelivery finishes it from the ledger.
        pytest.param(
            "finish_job", None, ["writing", "changed", "applied", "verified"], id="before-finish"
        ),
    ],
)
def test_crash_after_the_write_then_redelivery_applies_exactly_once(
    bot_app: Factory,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    what: str | None,
    ledger: list[str],
) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="apply")
    storage = app.context().storage

    def when(*args: Any, **kwargs: Any) -> bool:
        return what is None or (len(args) > 2 and args[2] == what)

    crashed = _fail_once(monkeypatch, storage, method, when)

    reply = app.post_alert(common_alert(app.gateway_id))
    assert reply.status == 202, reply.body
    [job_id] = reply.json()["jobs"]
    job = app.wait_job(job_id)

    assert crashed == [method]
    # The runner records an invocation after the function returns, i.e. after the job finished.
    app.runner.wait_for(lambda runs: sum(r.function == "worker" for r in runs) >= 2, WAIT)
    assert _worker_runs(app)[:2] == [(1, False), (2, True)]  # died once, redelivered once
    assert job["state"] == "succeeded", job
    assert job["outcome"]["action"] == "applied", job["outcome"]
    assert len(app.puts()) == 1  # the fix went out exactly once
    assert job["outcome"]["arm_writes"] == 1
    # The ledger: the alert, the write, the change (when recorded before the crash), one outcome.
    assert _decisions(app, job_id) == ["seen", *ledger]
    assert app.lease_state() == "available"
    assert app.health() == [HealthState.HEALTHY]


# ---- (b) the lease expires mid-job ---------------------------------------------------------


class _ExpiringLease(lease_module.GatewayLease):
    """A gateway lease whose renewal fails at once: the lease is broken on the blob (as if it had
    expired and been taken over) and `lost` turns True before the job goes on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "duration": 15, "renew_every": 0.0})

    def acquire(self) -> None:
        super().acquire()
        # Deterministic: the job carries on only once the renewal has failed.
        assert self._lost.wait(WAIT), "the renewal did not fail"


def _broken_renew(self: BlobLeaseClient, **kwargs: Any) -> None:
    self.break_lease(lease_break_period=0)  # the lease is gone on the service's side
    raise HttpResponseError(message="LeaseIdMismatchWithLeaseOperation (simulated expiry)")


def test_a_lease_lost_mid_job_stops_the_write(
    bot_app: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="apply")
    with monkeypatch.context() as patch:
        patch.setattr(lease_module, "GatewayLease", _ExpiringLease)
        patch.setattr(BlobLeaseClient, "renew", _broken_renew)
        reply = app.call("POST", app.gateway_path("fix"), {})
        assert reply.status == 202, reply.body
        job = app.wait_job(reply.json()["job"])

    assert job["state"] == "failed", job
    assert "lost the gateway lease" in (job["error"] or ""), job
    assert app.puts() == []  # refused before the PUT: never two writers
    assert "failed" in _decisions(app, job["job_id"])
    assert app.lease_state() in {"available", "broken"}  # nothing left holding the gateway

    # With a healthy lease again, the next job applies the fix once.
    again = app.call("POST", app.gateway_path("fix"), {})
    assert again.status == 202 and again.json()["joined"] is False
    done = app.wait_job(again.json()["job"])
    assert done["outcome"]["action"] == "applied", done
    assert len(app.puts()) == 1
    assert app.lease_state() == "available"


# ---- (c) Azurite stopped and restarted, data on disk ---------------------------------------


def test_storage_outage_answers_503_and_the_pipeline_converges_after_restart(
    bot_app: Factory, tmp_path: Path
) -> None:
    # A dedicated Azurite with on-disk persistence; the session one must keep running.
    azurite = start_azurite(tmp_path / "azurite-disk", in_memory=False)
    try:
        app = bot_app("ilb-ase-v1", connection=azurite.connection_string, REMEDIATION_MODE="apply")
        earlier = common_alert(app.gateway_id, alert_id="earlier", condition="Resolved")
        assert app.post_alert(earlier).status == 202  # recorded before the outage

        azurite.stop()
        alert = common_alert(app.gateway_id, alert_id="during-outage")
        for reply in (app.post_alert(alert), app.call("POST", app.gateway_path("fix"), {})):
            assert reply.status == 503, reply.body
            assert int(reply.headers["Retry-After"]) > 0
            assert reply.json()["error"]["code"] == "StorageUnavailable"
        assert app.puts() == []

        azurite.restart()  # same ports, same data directory
        retried = app.post_alert(alert)  # the action group retries the 503
        assert retried.status == 202, retried.body
        assert retried.json()["status"] == "accepted"
        [job_id] = retried.json()["jobs"]
        job = app.wait_job(job_id)
        assert job["state"] == "succeeded" and job["outcome"]["action"] == "applied", job
        assert len(app.puts()) == 1

        # What was stored before the outage survived; every alert is in the ledger once.
        rows = {
            (r["alert_id"].rsplit("/", 1)[-1], r["monitor_condition"]) for r in app.alert_rows()
        }
        assert rows == {("earlier", "Resolved"), ("during-outage", "Fired")}
        assert len(app.alert_rows()) == 2
        assert app.post_alert(alert).json() == {"status": "duplicate", "jobs": [job_id]}
        assert app.lease_state() == "available"
        assert app.health() == [HealthState.HEALTHY]
    finally:
        azurite.stop()
