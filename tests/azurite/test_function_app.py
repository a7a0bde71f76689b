"""Acceptance tests of the function app (issue #5): function_app.app served by the local runner
over real HTTP, its queue and timer triggers fed from real Azurite, the bot's SDK clients talking
to a real sandbox (ARM emulator, identity endpoint, TLS backends).

ARM writes are counted from the sandbox's control endpoint (`GET {SANDBOX_CONTROL_URL}/requests`).
Alert payloads follow the common schema (docs/sources.md#alert-schema).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sandbox.alerts import common_alert
from sandbox.azurite import start_azurite
from sandbox.easyauth import User, principal_headers
from shared.core.health import HealthState

from .conftest import KEY, WAIT, BotApp, Factory, Reply, http

# ---- the alert path ---------------------------------------------------------------------------


def test_alert_end_to_end_applies_and_verifies(bot_app: Factory) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="apply")
    reply = app.post_alert(common_alert(app.gateway_id))
    assert reply.status == 202, reply.body
    accepted = reply.json()
    assert accepted["status"] == "accepted" and len(accepted["jobs"]) == 1
    job_id = accepted["jobs"][0]

    job = app.wait_job(job_id)
    assert job["state"] == "succeeded", job
    assert job["kind"] == "fix" and job["hint"] == {"pool": "ase-pool", "settings": "ase-https"}
    assert job["outcome"]["action"] == "applied"
    assert job["outcome"]["verified"] is True
    assert job["outcome"]["arm_writes"] == 1
    assert job["diagnosis"]["findings"], job["diagnosis"]

    # The ledger: the alert (linked to its job) and the decisions about the gateway.
    [alert_row] = app.alert_rows()
    assert alert_row["monitor_condition"] == "Fired" and alert_row["job_id"] == job_id
    decisions = [d for d in app.storage.list_decisions(app.gateway_id) if d.job_id == job_id]
    # "seen" is written by the HTTP side, the rest by the worker, in this order.
    by_what = {d.what: d for d in decisions}
    # "writing" is the worker's write-ahead row, recorded before the PUT (shared/service/worker.py).
    assert [d.what for d in decisions if d.what != "seen"] == [
        "writing",
        "changed",
        "applied",
        "verified",
    ]
    assert len(decisions) == 5
    seen, changed, applied, verified = (
        by_what[w] for w in ("seen", "changed", "applied", "verified")
    )
    assert seen.details["alert_id"].endswith("6f1d2c3b-4a5e-4f60-8b7c-9d0e1f2a3b4c")
    assert changed.by == applied.by == "alert:agw-unhealthy-backends"
    assert changed.details["thumbprint"] and changed.details["settings"] == ["ase-https"]
    assert verified.details["checks"][0]["health"] == "healthy"
    # Evidence: the diagnosis, the plan and the exported certificate (Base-64 CER).
    names = app.evidence(job_id)
    assert f"{job_id}/diagnosis.json" in names and f"{job_id}/plan.json" in names
    [cer] = [n for n in names if n.endswith(".cer")]
    assert app.storage.get_evidence(cer).startswith(b"-----BEGIN CERTIFICATE-----")

    assert len(app.puts()) == 1
    assert app.health() == [HealthState.HEALTHY]


def test_duplicate_and_concurrent_alerts_make_one_job_and_one_write(bot_app: Factory) -> None:
    # First with the worker switched off, so "one job" is checked before anything runs.
    app = bot_app("ilb-ase-v1", worker=False, REMEDIATION_MODE="apply")
    same = [common_alert(app.gateway_id) for _ in range(6)]  # retries of one alert instance
    others = [common_alert(app.gateway_id, alert_id=f"alert-{n}") for n in range(6)]
    start = threading.Barrier(len(same) + len(others))

    def post(payload: dict[str, Any]) -> Reply:
        start.wait()
        return app.post_alert(payload)

    with ThreadPoolExecutor(max_workers=len(same) + len(others)) as pool:
        replies = list(pool.map(post, same + others))
    assert [r.status for r in replies] == [202] * len(replies), [r.body for r in replies]
    job_ids = {job for r in replies for job in (r.json().get("jobs") or [])}
    assert len(job_ids) == 1, replies
    assert len(app.jobs()) == 1
    assert app.queued_messages() == 1
    assert len(app.alert_rows()) == 1 + len(others)  # every alert instance is recorded once
    app.runner.stop()

    # Now the worker runs the one job; a late retry of the first alert joins nothing new.
    worker = bot_app(sandbox=app.sandbox, REMEDIATION_MODE="apply")
    [job_id] = job_ids
    assert worker.wait_job(job_id)["outcome"]["action"] == "applied"
    late = worker.post_alert(same[0])
    assert late.status == 202 and late.json() == {"status": "duplicate", "jobs": [job_id]}
    assert len(worker.jobs()) == 1
    assert len(worker.puts()) == 1


def test_resolved_alert_is_recorded_and_starts_nothing(bot_app: Factory) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="apply")
    reply = app.post_alert(common_alert(app.gateway_id, condition="Resolved"))
    assert reply.status == 202
    assert reply.json() == {"status": "recorded", "condition": "Resolved"}
    [row] = app.alert_rows()
    assert row["monitor_condition"] == "Resolved" and row["job_id"] == ""
    assert app.jobs() == [] and app.queued_messages() == 0
    assert [d.what for d in app.storage.list_decisions(app.gateway_id)] == ["seen"]
    assert app.puts() == []


def _legacy_alert(gateway_id: str) -> dict[str, Any]:
    """A non-common metric alert (docs/sources.md#alert-schema): rejected, the action group is
    misconfigured."""
    return {
        "schemaId": "AzureMonitorMetricAlert",
        "data": {
            "version": "2.0",
            "status": "Activated",
            "context": {"id": "rule", "name": "rule", "resourceId": gateway_id},
        },
    }


def test_malformed_and_foreign_payloads_get_400_and_change_nothing(bot_app: Factory) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="apply")
    gw = app.gateway_id
    vm = common_alert(gw)
    vm["data"]["essentials"]["alertTargetIDs"] = [
        gw.split("/providers/")[0].lower() + "/providers/microsoft.compute/virtualmachines/vm1"
    ]
    big = common_alert(gw)
    big["data"]["essentials"]["description"] = "x" * (300 * 1024)
    cases: dict[str, tuple[bytes, str]] = {
        "not JSON": (b'{"schemaId": "azureMonitorCommonAlertSchema", ', "application/json"),
        "not an object": (b"[1, 2]", "application/json"),
        "empty": (b"", "application/json"),
        "legacy schema": (json.dumps(_legacy_alert(gw)).encode(), "application/json"),
        "no essentials": (b'{"schemaId": "azureMonitorCommonAlertSchema"}', "application/json"),
        "not a gateway": (json.dumps(vm).encode(), "application/json"),
        "wrong content type": (json.dumps(common_alert(gw)).encode(), "text/plain"),
        "oversized": (json.dumps(big).encode(), "application/json"),
    }
    for name, (body, content_type) in cases.items():
        reply = app.post_alert(None, raw=body, headers={"Content-Type": content_type})
        assert reply.status == 400, (name, reply.status, reply.body)
        assert reply.headers["Content-Type"].startswith("application/json"), name
        error = reply.json()["error"]
        assert error["code"] == "BadRequest" and error["message"], name
    assert app.jobs() == [] and app.alert_rows() == [] and app.queued_messages() == 0
    assert app.puts() == []


def test_function_key_is_required(bot_app: Factory) -> None:
    app = bot_app("ilb-ase-v1", worker=False, REMEDIATION_MODE="apply")
    payload = common_alert(app.gateway_id)
    assert app.post_alert(payload, key=None).status == 401
    assert app.post_alert(payload, key="wrong-key").status == 401
    assert app.call("GET", "jobs/anything", key=None).status == 401
    assert app.call("POST", app.gateway_path("fix"), {}, key="wrong-key").status == 401
    assert app.call("GET", "proposals", key=None).status == 401
    # The key in the query string, as an action group's Azure Function receiver sends it
    # (docs/sources.md#action-groups).
    url = f"{app.runner.url}/api/alerts?code={KEY}"
    reply = http("POST", url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    assert reply.status == 202
    assert app.call("GET", "jobs/no-such-job").status == 404
    assert app.jobs() != [] and app.call("GET", "proposals").json() == {"proposals": []}


def test_storage_down_answers_503_with_retry_after(bot_app: Factory, tmp_path: Path) -> None:
    # A dedicated Azurite: stopping the session one would break every other test.
    azurite = start_azurite(tmp_path / "azurite-down")
    try:
        app = bot_app("ilb-ase-v1", connection=azurite.connection_string)
        assert app.call("GET", "jobs/none").status == 404  # storage up
        azurite.stop()
        for reply in (
            app.post_alert(common_alert(app.gateway_id)),
            app.call("POST", app.gateway_path("diagnose"), {}),
            app.call("GET", "jobs/none"),
        ):
            assert reply.status == 503, reply.body
            assert int(reply.headers["Retry-After"]) > 0
            assert reply.json()["error"]["code"] == "StorageUnavailable"
        assert app.puts() == []
    finally:
        azurite.stop()


def test_poisoned_job_is_recorded_as_failed(bot_app: Factory) -> None:
    app = bot_app("ilb-ase-v1", max_dequeue_count=2, REMEDIATION_MODE="apply")
    # Every GET of the gateway fails with a transient 503 (short Retry-After: the SDK's own
    # retries stay quick), so the worker raises and the queue redelivers until poison.
    app.add_faults(
        [
            {
                "kind": "error",
                "route": "get",
                "times": None,
                "status": 503,
                "code": "ServiceUnavailable",
                "headers": {"Retry-After": "0.01"},
            }
        ]
    )
    reply = app.call("POST", app.gateway_path("fix"), {})
    assert reply.status == 202
    job = app.wait_job(reply.json()["job"])
    assert job["state"] == "failed"
    assert "poison" in job["error"] and job["attempts"] == 2
    assert app.runner.wait_for(
        lambda inv: any(i.function == "poison" and i.ok for i in inv), timeout=WAIT
    )
    assert [i.dequeue_count for i in app.runner.invocations if i.function == "worker"] == [1, 2]
    [failed] = app.storage.list_decisions(app.gateway_id, what="failed")
    assert failed.by == "poison" and failed.job_id == job["job_id"]
    assert app.puts() == []
    # The gateway is free again: a new request starts a new job.
    assert app.call("POST", app.gateway_path("diagnose"), {}).json()["joined"] is False


def _swept(app: BotApp) -> list[dict[str, Any]]:
    """Run the sweep timer and wait for its gateway checks (the checks queue trigger)."""
    before = {r["sweep"] for r in app.rows("check")}
    assert app.runner.run_timer("sweep").ok
    deadline = time.monotonic() + WAIT
    while True:
        rows = [r for r in app.rows("check") if r["sweep"] not in before]
        if rows and all(r["state"] == "done" for r in rows):
            return rows
        assert time.monotonic() < deadline, f"sweep checks not done: {rows}"
        time.sleep(0.1)


def test_sweep_queues_a_job_for_an_unhealthy_gateway(bot_app: Factory) -> None:
    app = bot_app("ilb-ase-v1", worker=False, REMEDIATION_MODE="apply")
    [check] = _swept(app)
    assert check["result"] == "unhealthy"  # UnhealthyHostCount > 0: the metric said so
    [job] = app.jobs()
    assert job["gateway_id"] == app.gateway_id.lower() and job["requested_by"] == "sweep"
    assert check["job_id"] == job["RowKey"]
    assert app.queued_messages() == 1
    _swept(app)  # a second sweep joins the queued job
    assert len(app.jobs()) == 1 and app.queued_messages() == 1


def test_sweep_leaves_a_healthy_gateway_alone(bot_app: Factory) -> None:
    app = bot_app("healthy", worker=False, REMEDIATION_MODE="apply")
    assert app.health() == [HealthState.HEALTHY]
    [check] = _swept(app)
    assert check["result"] == "healthy"
    assert app.jobs() == [] and app.queued_messages() == 0
    assert [r for r in app.arm_requests() if r["method"] == "GET"]  # it did look


# ---- proposals and approval -------------------------------------------------------------------

# Approvers are Entra object ids; App Service Authentication names the caller by the oid claim.
ALICE = "a11ce000-0000-4000-8000-000000000001"
BOB = "b0b00000-0000-4000-8000-000000000002"
MALLORY = "3a110000-0000-4000-8000-000000000003"


def _as(user: str | None) -> dict[str, str]:
    """The principal headers App Service injects for a signed-in Entra user (object id)."""
    return principal_headers(User(user, f"{user[:4]}@contoso.com")) if user else {}


def test_approval_refused_without_an_authenticated_approver(bot_app: Factory) -> None:
    # App Service Authentication is not enabled: a principal header is not an identity.
    app = bot_app("ilb-ase-v1", worker=False, APPROVERS=ALICE)
    for headers in ({}, _as(ALICE)):
        reply = app.call("POST", "proposals/p-1/approve", {}, headers=headers)
        assert reply.status == 401 and reply.json()["error"]["code"] == "Unauthenticated"
    # Authentication is on, but the platform authenticated nobody: it strips callers' own
    # principal headers, so a forged one does not count either.
    app.runner.stop()
    app = bot_app(sandbox=app.sandbox, worker=False, APPROVERS=ALICE, WEBSITE_AUTH_ENABLED="True")
    for headers in ({}, _as(ALICE)):
        reply = app.call("POST", "proposals/p-1/approve", {}, headers=headers)
        assert reply.status == 401 and reply.json()["error"]["code"] == "Unauthenticated"
        assert "reason" not in reply.json()["error"]  # not an approval refusal: nobody signed in


def test_proposal_approved_through_the_api_is_applied(bot_app: Factory) -> None:
    app = bot_app(
        "ilb-ase-v2-nosni",
        easy_auth=True,
        REMEDIATION_MODE="apply",
        APPROVERS=f"{ALICE},{BOB}",
        WEBSITE_AUTH_ENABLED="True",
    )
    # Bob asks for a fix; the certificate the backend sends is self-signed, so policy proposes.
    reply = app.call("POST", app.gateway_path("fix"), {"mode": "apply"}, headers=_as(BOB))
    assert reply.status == 202
    job = app.wait_job(reply.json()["job"])
    assert job["state"] == "proposed" and job["requested_by"] == BOB
    proposal_id = job["proposal_id"]
    assert proposal_id and app.puts() == []

    listed = app.call("GET", "proposals?status=open").json()["proposals"]
    assert [p["id"] for p in listed] == [proposal_id]
    proposal = app.call("GET", f"proposals/{proposal_id}").json()
    assert proposal["status"] == "open" and proposal["requester"] == BOB

    approve = f"proposals/{proposal_id}/approve"
    assert app.call("POST", approve, {}).status == 401  # nobody signed in
    # A name header alone is no identity, even an approver's name: 401, nothing queued.
    name_only = {"X-MS-CLIENT-PRINCIPAL-NAME": "a11c@contoso.com"}
    forged = app.call("POST", approve, {}, headers=name_only)
    assert forged.status == 401 and forged.json()["error"]["code"] == "Unauthenticated"
    assert len(app.jobs()) == 1 and app.puts() == []
    # A principal from another identity provider, or without an object id, is refused too.
    github = {**_as(ALICE), "X-MS-CLIENT-PRINCIPAL-IDP": "github"}
    assert app.call("POST", approve, {}, headers=github).status == 401
    refused = app.call("POST", approve, {}, headers=_as(MALLORY))
    assert refused.status == 403
    assert refused.json()["error"] == {
        "code": "Forbidden",
        "reason": "not_an_approver",
        "message": f"{MALLORY} is not in APPROVERS",
    }
    own = app.call("POST", approve, {}, headers=_as(BOB))
    assert own.status == 403  # the requester cannot approve their own proposal
    assert (own.json()["error"]["code"], own.json()["error"]["reason"]) == (
        "Forbidden",
        "own_proposal",
    )
    assert app.call("GET", "proposals/no-such-proposal").status == 404
    assert (
        app.call("POST", "proposals/no-such-proposal/approve", {}, headers=_as(ALICE)).status == 404
    )

    approved = app.call("POST", approve, {}, headers=_as(ALICE))
    assert approved.status == 202, approved.body
    change = approved.json()["change"]  # named before the job runs (issue 13)
    assert app.call("GET", f"changes/{change}").status == 404
    done = app.wait_job(approved.json()["job"])
    assert done["state"] == "succeeded" and done["kind"] == "approve"
    assert done["outcome"]["change"] == change
    assert app.call("GET", f"changes/{change}").json()["by"] == ALICE
    assert done["outcome"]["action"] == "applied" and done["outcome"]["verified"] is True
    assert done["outcome"]["proposal"] == proposal_id
    assert app.call("GET", f"proposals/{proposal_id}").json()["status"] == "applied"
    assert len(app.puts()) == 1
    assert app.health() == [HealthState.HEALTHY]
    decisions = app.storage.list_decisions(app.gateway_id)
    assert ("changed", ALICE) in [(d.what, d.by) for d in decisions]
