"""The queue worker, the poison handler and the sweep: the function app's background work.

A job runs under the gateway's blob lease (renewed while held). A job that cannot get the lease
goes back on the queue with a delay instead of failing. Redelivery is harmless: a finished job is
skipped, and a job interrupted mid-way runs again from a fresh read (a fix in place plans nothing).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from shared.cloud.arm import ArmError
from shared.common.errors import BotError
from shared.common.ids import GatewayId, parse_gateway_id
from shared.common.settings import Mode
from shared.remediation.changelog import ChangeRecord
from shared.service.app import AppContext
from shared.service.logs import log_context
from shared.service.table_changelog import TableChangeLog

log = logging.getLogger(__name__)

LEASE_BUSY_DELAY_SECONDS = 30
# ARM failures worth a redelivery (the queue retries up to maxDequeueCount, then poison).
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
# Ledger rows that record how a job ended (RemediationOutcome.action, "diagnosed"), and the job
# state each one means; any other ends the job as succeeded.
_OUTCOME_ROWS = {
    "applied",
    "proposed",
    "held",
    "none",
    "refused",
    "failed",
    "rolled_back",
    "diagnosed",
}
_FINAL_STATES = {"proposed": "proposed", "failed": "failed", "refused": "failed"}


def job_id_of(body: str) -> str:
    try:
        data = json.loads(body)
        job_id = data["job_id"]
    except (ValueError, KeyError, TypeError):
        raise BotError(f"not a job message: {body[:100]!r}") from None
    if not isinstance(job_id, str):
        raise BotError("job_id must be a string")
    return job_id


def process_message(ctx: AppContext, body: str, dequeue_count: int = 1) -> str:
    """Run the job a queue message names; returns what happened (for logs and tests)."""
    from shared.service.lease import GatewayLease, LeaseUnavailable
    from shared.service.storage import JobState

    storage = ctx.storage
    job_id = job_id_of(body)
    job = storage.get_job(job_id)
    if job is None:
        log.warning("job %s not found: message dropped", job_id)
        return "missing"
    if job.state.terminal:
        return "already-done"
    gid = parse_gateway_id(job.gateway_id)
    with log_context(job_id=job_id, gateway=gid.name):
        lease = GatewayLease(storage, gid)
        try:
            lease.acquire()
        except LeaseUnavailable:
            log.info("gateway busy: job %s back on the queue", job_id)
            storage.enqueue_job(job_id, delay_seconds=LEASE_BUSY_DELAY_SECONDS)
            return "requeued"
        try:
            storage.update_job(
                job_id,
                state=JobState.RUNNING,
                started_at=datetime.now(UTC),
                attempts=job.attempts + 1,
            )
            return _run(ctx, job, gid, lease, dequeue_count)
        finally:
            lease.release()


def _run(ctx: AppContext, job: Any, gid: GatewayId, lease: Any, dequeue_count: int) -> str:
    from shared.service.storage import JobState, StorageUnavailable

    storage = ctx.storage
    if job.attempts:
        resumed = _resume(ctx, job, gid)
        if resumed is not None:
            return resumed

    def before_write(target: GatewayId, change: ChangeRecord) -> None:
        # A delivery that dies between a PUT and its change record still leaves this row, so
        # its redelivery knows the write was its own and can record the change it made.
        storage.record_decision(job.job_id, target, "writing", "worker", details=change.to_dict())

    remediator = ctx.remediator(lease, job_id=job.job_id, before_write=before_write)
    previews: list[Any] = []  # a rollback's preview, kept in the job's outcome
    try:
        if job.kind == "diagnose":
            from shared.core.report import to_json

            assessment = remediator.assess(gid, hint=_hint(job.hint))
            diagnosis = to_json(assessment.diagnosis)
            _store_evidence(ctx, job.job_id, diagnosis, None)
            storage.record_decision(job.job_id, gid, "diagnosed", job.requested_by)
            storage.finish_job(job.job_id, JobState.SUCCEEDED, diagnosis=diagnosis)
            return "diagnosed"
        if job.kind == "approve":
            extra = job.extra or {}
            outcome = remediator.approve(
                str(extra.get("proposal_id")),
                str(extra.get("approver")),
                change_id=extra.get("change_id") or None,
            )
        elif job.kind == "rollback":
            extra = job.extra or {}
            outcome = remediator.rollback(
                gid.id,
                str(extra.get("change_id")),
                by=str(extra.get("approver") or job.requested_by),
                show=previews.append,
            )
        else:
            requested = Mode(job.mode) if job.mode else None
            outcome = remediator.fix(
                gid.id, requested_mode=requested, requester=job.requested_by, hint=_hint(job.hint)
            )
    except ArmError as exc:
        # Throttling, 5xx and connection failures (no status, no code) are worth a redelivery;
        # after maxDequeueCount the poison handler records the job as failed.
        if exc.status in _TRANSIENT_STATUS or (exc.status is None and exc.code is None):
            raise
        return _fail(ctx, job.job_id, gid, str(exc))
    except StorageUnavailable:
        # The ledger is unreachable, perhaps after a gateway write: not the job's failure. The
        # queue redelivers and the rerun starts from a fresh read (a fix in place plans nothing).
        raise
    except BotError as exc:
        return _fail(ctx, job.job_id, gid, str(exc))
    if job.attempts and outcome.action == "none":
        _credit_earlier_delivery(ctx, job.job_id, gid, outcome)
    result = outcome.to_json()
    if previews:
        result["preview"] = previews[-1].to_dict()
    _store_evidence(ctx, job.job_id, outcome.diagnosis, outcome.plan)
    storage.record_decision(
        job.job_id, gid, outcome.action, job.requested_by, details={**result, "mode": outcome.mode}
    )
    if outcome.verified is not None:
        # Backend health after the change, as its own ledger row (what the operator asks first).
        storage.record_decision(
            job.job_id,
            gid,
            "verified" if outcome.verified else "not-verified",
            "worker",
            details={"checks": outcome.verification},
        )
    state = JobState(_FINAL_STATES.get(outcome.action, JobState.SUCCEEDED.value))
    storage.finish_job(
        job.job_id,
        state,
        outcome=result,
        diagnosis=outcome.diagnosis,
        proposal_id=outcome.proposal,
        error=outcome.reason if state is JobState.FAILED else None,
    )
    return outcome.action


def _credit_earlier_delivery(ctx: AppContext, job_id: str, gid: GatewayId, outcome: Any) -> None:
    """A redelivered fix finds nothing to do because an earlier delivery of this job wrote the
    gateway, then died before recording its outcome: report that write, not "none"."""
    rows = [d for d in ctx.storage.list_decisions(gid) if d.job_id == job_id]
    writing = [d for d in rows if d.what == "writing"]
    changed = any(d.what == "changed" for d in rows)
    if not writing and not changed:
        return
    outcome.action = "applied"
    outcome.arm_writes = len(writing)
    outcome.reason = f"applied by an earlier delivery of this job; now {outcome.reason}"
    if not changed and writing and writing[-1].details.get("id"):
        # The earlier delivery died before its change record: record the change it wrote ahead,
        # so the cooldown, the daily cap and rollback see it.
        change = ChangeRecord.from_dict(dict(writing[-1].details))
        TableChangeLog(ctx.storage, job_id=job_id).record(change)
        outcome.change = change.id


def _resume(ctx: AppContext, job: Any, gid: GatewayId) -> str | None:
    """A redelivered job whose earlier delivery recorded its outcome in the ledger, then died
    before finishing the job: finish it from that row instead of running it again."""
    from shared.service.storage import JobState

    rows = [d for d in ctx.storage.list_decisions(gid) if d.job_id == job.job_id]
    recorded = next((d for d in reversed(rows) if d.what in _OUTCOME_ROWS), None)
    if recorded is None:
        return None
    details = dict(recorded.details)
    state = JobState(_FINAL_STATES.get(recorded.what, JobState.SUCCEEDED.value))
    log.info("job %s: outcome %s already recorded; finishing it", job.job_id, recorded.what)
    ctx.storage.finish_job(
        job.job_id,
        state,
        outcome=details or None,
        proposal_id=details.get("proposal"),
        error=str(details.get("reason", recorded.what)) if state is JobState.FAILED else None,
    )
    return recorded.what


def _hint(raw: Any) -> tuple[str, str] | None:
    if isinstance(raw, dict) and raw.get("pool") and raw.get("settings"):
        return str(raw["pool"]), str(raw["settings"])
    return None


def _store_evidence(
    ctx: AppContext, job_id: str, diagnosis: dict[str, Any] | None, plan: dict[str, Any] | None
) -> None:
    """Diagnosis JSON and the exported certificates (Base-64 CER) as blobs, for the record."""
    storage = ctx.storage
    if diagnosis:
        storage.put_evidence(
            job_id, "diagnosis.json", json.dumps(diagnosis, indent=2).encode(), "application/json"
        )
        for finding in diagnosis.get("findings", []):
            cert = (finding.get("fix") or {}).get("certificate")
            if cert and cert.get("cer") and cert.get("sha1"):
                storage.put_evidence(
                    job_id, f"{cert['sha1']}.cer", cert["cer"].encode(), "application/pkix-cert"
                )
    if plan:
        storage.put_evidence(
            job_id, "plan.json", json.dumps(plan, indent=2).encode(), "application/json"
        )


def _fail(ctx: AppContext, job_id: str, gid: GatewayId, reason: str) -> str:
    from shared.service.storage import JobState

    log.warning("job %s failed: %s", job_id, reason)
    ctx.storage.record_decision(job_id, gid, "failed", "worker", details={"reason": reason})
    ctx.storage.finish_job(job_id, JobState.FAILED, error=reason)
    return "failed"


def process_poison(ctx: AppContext, body: str, dequeue_count: int = 0) -> str:
    """A message that failed maxDequeueCount times: record its job as failed with the reason."""
    from shared.service.storage import JobState, JobStateError

    try:
        job_id = job_id_of(body)
    except BotError as exc:
        log.error("poison message that names no job: %s", exc)
        return "unreadable"
    job = ctx.storage.get_job(job_id)
    if job is None or job.state.terminal:
        return "ignored"
    reason = f"gave up after {max(dequeue_count, job.attempts)} attempts (poison queue)"
    try:
        gid = parse_gateway_id(job.gateway_id)
        ctx.storage.record_decision(job_id, gid, "failed", "poison", details={"reason": reason})
        ctx.storage.finish_job(job_id, JobState.FAILED, error=reason)
    except JobStateError:
        return "ignored"
    return "failed"


def sweep(ctx: AppContext) -> dict[str, Any]:
    """The sweep timer: enumerate the scope and queue gateway checks (shared.service.sweep)."""
    from shared.service.sweep import run_sweep

    return run_sweep(ctx).to_dict()


def process_check(ctx: AppContext, body: str, dequeue_count: int = 1) -> dict[str, Any]:
    """One gateway-check message of the sweep (shared.service.sweep)."""
    from shared.service.sweep import process_check as run_check

    return run_check(ctx, body, dequeue_count)


def process_check_poison(ctx: AppContext, body: str, dequeue_count: int = 0) -> str:
    from shared.service.sweep import process_check_poison as give_up

    return give_up(ctx, body, dequeue_count)
