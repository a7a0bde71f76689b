"""The sweep's expiry watch through the function app (scenario `rotation-v2`): a healthy gateway
whose watch is due gets a fix job; the job's diagnosis lists the expiring certificate, remembers
its notice in the ledger, and adds the renewal's root next to the old one."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.service.expiry_notices import PARTITION
from tests.azurite.conftest import WAIT, BotApp, Factory


def _swept(app: BotApp) -> dict[str, Any]:
    before = {r["sweep"] for r in app.rows("check")}
    assert app.runner.run_timer("sweep").ok
    deadline = time.monotonic() + WAIT
    while True:
        rows = [r for r in app.rows("check") if r["sweep"] not in before]
        if rows and all(r["state"] == "done" for r in rows):
            [row] = rows
            return dict(row)
        assert time.monotonic() < deadline, f"sweep checks not done: {rows}"
        time.sleep(0.1)


def test_a_due_watch_gives_a_healthy_gateway_a_job_that_reports_and_rotates(
    bot_app: Factory,
) -> None:
    app = bot_app("rotation-v2")
    first = _swept(app)
    # First seen: healthy, no job, the watch falls somewhere in the next 24 h.
    assert first["result"] == "healthy" and not first["job_id"]
    due = first["watch_due"]
    assert datetime.now(UTC) < due <= datetime.now(UTC) + timedelta(hours=24)

    table = app.storage.table_service.get_table_client(app.storage.names.ledger_table)
    past = datetime.now(UTC) - timedelta(minutes=1)
    table.update_entity({"PartitionKey": "check", "RowKey": first["RowKey"], "watch_due": past})

    second = _swept(app)
    assert second["result"] == "healthy" and second["job_id"], second
    assert second["watch_due"] > datetime.now(UTC) + timedelta(hours=23)
    job = app.wait_job(second["job_id"])
    assert job["state"] == "succeeded", job
    assert job["outcome"]["action"] == "applied", job["outcome"]
    expiring = job["diagnosis"]["expiring"]
    leaf = app.sandbox.certs["app-2025"].thumbprint()
    assert [(e["where"], e["sha1"]) for e in expiring] == [("backend_leaf", leaf)]
    [notice] = app.rows(PARTITION)
    assert leaf in notice["key"]
    assert len(app.puts()) == 1
