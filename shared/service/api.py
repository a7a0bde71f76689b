"""HTTP handlers of the function app, free of the Functions SDK: bytes and headers in, a status and
a JSON body out. function_app.py maps them to routes.

Every answer is JSON; errors are `{"error": {"code", "message"}}` with a proper status and never a
traceback. Action groups retry only 408/429/503/504 (docs/sources.md#action-groups): a bad payload
gets 400 (not retried), storage unreachable or failing 503 (retried), a request storage refuses
as malformed 500 (our bug: retrying cannot help).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from shared.common.errors import BotError, InputError, OutOfScopeError, SettingsError
from shared.common.ids import GatewayId, gateway_id, in_scope, parse_gateway_id
from shared.common.settings import Mode
from shared.service.alerts import AlertEvent, parse_alert
from shared.service.app import AppContext
from shared.service.logs import log_context
from shared.service.principal import Unauthenticated, login_url, read_caller, wants_html

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024  # the common alert schema's own cap (docs/sources.md#alert-schema)


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(self.body, default=str)


def error(status: int, code: str, message: str, **headers: str) -> ApiResponse:
    return ApiResponse(status, {"error": {"code": code, "message": message}}, headers)


def guarded(handler: Callable[[], ApiResponse]) -> ApiResponse:
    """Run a handler; map expected failures to JSON errors, anything else to a bare 500.
    503 (the answer action groups retry) only when storage is unreachable or failing; a request
    storage refused as malformed is our bug: logged, 500."""
    from shared.service.storage import StorageRejected, StorageUnavailable

    try:
        return handler()
    except StorageRejected:
        log.exception("storage refused a request the bot built")
        return error(500, "InternalError", "unexpected failure; see the function app's logs")
    except StorageUnavailable as exc:
        log.warning("storage unavailable: %s", exc)
        return error(
            503,
            "StorageUnavailable",
            "state storage is unavailable; retry",
            **{"Retry-After": "10"},
        )
    except OutOfScopeError as exc:
        return error(403, "OutOfScope", str(exc))
    except Unauthenticated as exc:
        return error(401, "Unauthenticated", str(exc))
    except InputError as exc:
        return error(400, "BadRequest", str(exc))
    except RecursionError:  # input nested deeper than any parser or walker here can follow
        return error(400, "BadRequest", "input is nested too deeply")
    except (
        SettingsError
    ) as exc:  # the app's own configuration: the operator's to fix, not the caller's
        log.error("the function app's settings are invalid: %s", exc)
        return error(500, "ConfigurationError", f"the function app's settings are invalid: {exc}")
    except BotError as exc:
        return error(409, "Conflict", str(exc))
    except Exception:
        log.exception("unexpected failure in an HTTP handler")
        return error(500, "InternalError", "unexpected failure; see the function app's logs")


def _check_scope(ctx: AppContext, gid: GatewayId) -> None:
    if not in_scope(gid.id, ctx.settings.scopes):
        raise OutOfScopeError(f"gateway {gid.name} is outside ALLOWED_SCOPES")


def _json_body(body: bytes, *, required: bool) -> dict[str, Any]:
    if len(body) > MAX_BODY_BYTES:
        raise InputError(f"body larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        if required:
            raise InputError("a JSON body is required")
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"body is not JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise InputError("body is not JSON this service accepts: nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError("body must be a JSON object")
    return data


# ---- alerts ---------------------------------------------------------------------------------


def handle_alert(ctx: AppContext, body: bytes, content_type: str | None) -> ApiResponse:
    """POST /api/alerts: record, deduplicate, coalesce per gateway, enqueue; 202 quickly."""

    def run() -> ApiResponse:
        if content_type and "json" not in content_type.lower():
            raise InputError(f"content type {content_type[:60]!r} is not JSON")
        if len(body) > MAX_BODY_BYTES:
            raise InputError(f"alert larger than {MAX_BODY_BYTES} bytes")
        event = parse_alert(body)
        with log_context(alert_id=event.alert_id):
            return _accept_alert(ctx, event)

    return guarded(run)


def _accept_alert(ctx: AppContext, event: AlertEvent) -> ApiResponse:
    """Round trips per post: one conditional insert decides new or duplicate; a duplicate Fired
    reads its job link (1 more); a Resolved one stops there. A new Fired alert claims or joins
    each in-scope gateway's job, links it and records "seen". Targets outside ALLOWED_SCOPES are
    only counted, on the alert's row."""
    storage = ctx.storage
    in_scope_ids = [g for g in event.gateway_ids if in_scope(g.id, ctx.settings.scopes)]
    new = storage.record_alert(event, in_scope=in_scope_ids)  # counts every target
    # A cap on the work one alert can start (docs/operations.md, MAX_TARGETS_PER_ALERT): the
    # first targets get jobs and "seen" rows, the rest are counted in the answer.
    cap = int(ctx.settings["MAX_TARGETS_PER_ALERT"])
    not_queued = max(0, len(in_scope_ids) - cap)
    if not_queued:
        log.warning(
            "alert %s names %d in-scope gateway(s): handling the first %d, %d not queued",
            event.alert_id,
            len(in_scope_ids),
            cap,
            not_queued,
        )
        in_scope_ids = in_scope_ids[:cap]
    if not event.fired:
        if new:
            _record_seen(ctx, event, {g.key: "" for g in in_scope_ids})
        log.info("alert %s resolved: recorded, nothing started", event.alert_id)
        return ApiResponse(202, {"status": "recorded", "condition": event.monitor_condition})
    if not in_scope_ids:
        log.warning(
            "alert %s names %d gateway(s), none inside ALLOWED_SCOPES: refused",
            event.alert_id,
            len(event.gateway_ids),
        )
        raise OutOfScopeError("the alert names no gateway inside ALLOWED_SCOPES")
    known_job = None if new else storage.alert_job(event)
    if known_job:
        return ApiResponse(202, {"status": "duplicate", "jobs": [known_job]})
    hint = event.hint.to_dict() if event.hint else None
    jobs = []
    for gid in in_scope_ids:
        claim = storage.claim_job(
            gid, "fix", "", hint=hint, requested_by=f"alert:{event.rule or 'unknown'}"
        )
        _queue(storage, claim.job_id, claim.created, claim.job)
        jobs.append(claim.job_id)
    storage.attach_alert_job(event, jobs[0])
    if new:
        _record_seen(ctx, event, {g.key: j for g, j in zip(in_scope_ids, jobs, strict=True)})
    # A redelivered alert whose first delivery died before linking its job is still a duplicate.
    answer: dict[str, Any] = {"status": "accepted" if new else "duplicate", "jobs": jobs}
    if not_queued:
        answer |= {"not_queued": not_queued, "max_targets_per_alert": cap}
    return ApiResponse(202, answer)


def _queue(storage: Any, job_id: str, created: bool, joined: Any = None) -> None:
    """Queue a new job; re-queue a joined one that has waited too long (its message was lost)."""
    if created:
        storage.enqueue_job(job_id)
    else:
        storage.requeue_if_stale(job_id, job=joined)


def _record_seen(ctx: AppContext, event: AlertEvent, jobs: Mapping[str, str]) -> None:
    """A "seen" ledger row per in-scope gateway for each new (alertId, monitorCondition)."""
    for gid in event.gateway_ids:
        if gid.key in jobs:
            ctx.storage.record_decision(
                jobs[gid.key],
                gid,
                "seen",
                f"alert:{event.rule or 'unknown'}",
                details={"alert_id": event.alert_id, "condition": event.monitor_condition},
            )


# ---- on-demand jobs -------------------------------------------------------------------------


def handle_gateway_action(
    ctx: AppContext,
    action: str,
    subscription: str,
    resource_group: str,
    name: str,
    body: bytes,
    caller: str | None,
) -> ApiResponse:
    """POST /api/gateways/{sub}/{rg}/{name}/diagnose|fix: 202 with the job id."""

    def run() -> ApiResponse:
        gid = gateway_id(subscription, resource_group, name)
        data = _json_body(body, required=False)
        if action == "diagnose":
            mode = Mode.DIAGNOSE
        elif action == "fix":
            raw = data.get("mode")
            try:
                mode = Mode(str(raw).lower()) if raw is not None else ctx.settings.mode
            except ValueError:
                raise InputError(f"mode must be diagnose, propose or apply, not {raw!r}") from None
        else:
            raise InputError(f"unknown action {action!r}")
        _check_scope(ctx, gid)
        storage = ctx.storage
        claim = storage.claim_job(gid, action, mode.value, hint=None, requested_by=caller or "api")
        wanted = Mode.lowest(ctx.settings.mode, mode)
        if not claim.created and claim.job is not None:
            running = job_mode(ctx, claim.job)
            if running.rank > wanted.rank:
                return _busy_higher_mode(claim.job, running, wanted)
        _queue(storage, claim.job_id, claim.created, claim.job)
        shown = wanted if claim.created or claim.job is None else job_mode(ctx, claim.job)
        return ApiResponse(
            202, {"job": claim.job_id, "joined": not claim.created, "mode": shown.value}
        )

    return guarded(run)


def job_mode(ctx: AppContext, job: Any) -> Mode:
    """The highest mode a queued or running job may act in (a gateway tag can still lower it):
    approvals and rollbacks write; a fix without a mode runs in the policy's."""
    if job.kind == "diagnose":
        return Mode.DIAGNOSE
    if job.kind in {"approve", "rollback"}:
        return Mode.APPLY
    try:
        requested = Mode(job.mode) if job.mode else None
    except ValueError:
        requested = None
    return Mode.lowest(ctx.settings.mode, requested)


def _busy_higher_mode(job: Any, running: Mode, wanted: Mode) -> ApiResponse:
    """409: joining would raise the request's mode (issue 13: a mode is never raised by joining)."""
    message = (
        f"job {job.job_id} ({job.kind}, mode {running.value}, {job.state.value}) is active for "
        f"this gateway and may do more than this {wanted.value} request; nothing was queued. "
        f"Retry once it has finished (GET /api/jobs/{job.job_id})"
    )
    body = {
        "error": {
            "code": "Busy",
            "message": message,
            "job": job.job_id,
            "job_kind": job.kind,
            "job_mode": running.value,
            "job_state": job.state.value,
        }
    }
    return ApiResponse(409, body, {"Retry-After": "30"})


def handle_get_job(ctx: AppContext, job_id: str) -> ApiResponse:
    def run() -> ApiResponse:
        job = ctx.storage.get_job(job_id)
        if job is None:
            return error(404, "NotFound", f"no job {job_id[:80]!r}")
        return ApiResponse(200, job.to_dict())

    return guarded(run)


# ---- proposals ------------------------------------------------------------------------------


def _proposals(ctx: AppContext) -> Any:
    from shared.service.proposals_blob import BlobProposalStore

    return BlobProposalStore(ctx.storage)


def handle_list_proposals(ctx: AppContext, status: str | None) -> ApiResponse:
    def run() -> ApiResponse:
        items = _proposals(ctx).list(status=status or None)
        return ApiResponse(200, {"proposals": [_proposal_summary(p) for p in items]})

    return guarded(run)


def _proposal_summary(p: Any) -> dict[str, Any]:
    return {
        "id": p.id,
        "status": p.status,
        "gateway": p.gateway_id,
        "action": p.plan.get("action"),
        "requester": p.requester,
        "created_at": p.created_at,
    }


def handle_get_proposal(ctx: AppContext, proposal_id: str) -> ApiResponse:
    from shared.remediation.proposals import ProposalNotFound

    def run() -> ApiResponse:
        try:
            return ApiResponse(200, _proposals(ctx).get(proposal_id).to_dict())
        except ProposalNotFound:
            return error(404, "NotFound", f"no proposal {proposal_id[:80]!r}")

    return guarded(run)


def handle_decide_proposal(
    ctx: AppContext,
    proposal_id: str,
    decision: str,
    body: bytes,
    caller: str | None,
    *,
    headers: Mapping[str, str] | None = None,
) -> ApiResponse:
    """POST /api/proposals/{id}/approve|reject. Needs an authenticated approver (App Service
    Authentication), in APPROVERS, other than the requester. Approval runs as a job. A browser's
    request must also be same-origin and carry the review page's token (shared/service/csrf)."""
    from shared.remediation.proposals import ApprovalError, ProposalNotFound, check_approver

    def run() -> ApiResponse:
        if not caller:
            return signed_out(
                headers or {},
                "approving needs a caller signed in through App Service Authentication",
                review=f"/api/proposals/{quote(proposal_id[:80], safe='')}/review",
            )
        refused = _cross_site_refusal(ctx, proposal_id, caller, body, headers or {})
        if refused is not None:
            return refused
        data = _json_body(body, required=False)
        store = _proposals(ctx)
        try:
            proposal = store.get(proposal_id)
            check_approver(proposal, caller, ctx.settings["APPROVERS"])
        except ProposalNotFound:
            return error(404, "NotFound", f"no proposal {proposal_id[:80]!r}")
        except ApprovalError as exc:
            # `reason` tells "not an approver" from "own proposal" (ApprovalError codes).
            refusal = {"code": "Forbidden", "reason": exc.code, "message": exc.message}
            return ApiResponse(403, {"error": refusal})
        gid = parse_gateway_id(proposal.gateway_id)
        _check_scope(ctx, gid)
        if decision == "reject":
            rejected = ctx.remediator().reject(proposal_id, caller, str(data.get("reason", "")))
            ctx.storage.record_decision(
                "", gid, "rejected", caller, details={"proposal": proposal_id}
            )
            return ApiResponse(200, {"proposal": rejected.id, "status": rejected.status})
        storage = ctx.storage
        job_id, created = storage.create_or_join_job(
            gid, "approve", Mode.APPLY.value, hint=None, requested_by=caller
        )
        if not created:
            return error(409, "Busy", f"job {job_id} is running for this gateway; retry later")
        # The change id is chosen here so the answer can name it: GET /api/changes/{id} finds
        # it once the job has applied the change (404 until then, or if nothing was written).
        change_id = _new_change_id()
        storage.update_job(
            job_id,
            extra={"proposal_id": proposal_id, "approver": caller, "change_id": change_id},
        )
        storage.enqueue_job(job_id)
        return ApiResponse(202, {"job": job_id, "proposal": proposal_id, "change": change_id})

    return guarded(run)


def _new_change_id() -> str:
    from datetime import UTC, datetime

    from shared.remediation.changelog import new_change_id

    return new_change_id(datetime.now(UTC))


# ---- changes, jobs and rollback -------------------------------------------------------------

_CHANGE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _gateway_param(raw: str | None) -> GatewayId | None:
    """The optional `?gateway=<resource id>` filter; a malformed id is a 400."""
    if raw is None or not raw.strip():
        return None
    return parse_gateway_id(raw.strip())


def _changelog(ctx: AppContext) -> Any:
    from shared.service.table_changelog import TableChangeLog

    return TableChangeLog(ctx.storage)


def handle_list_changes(ctx: AppContext, gateway: str | None) -> ApiResponse:
    """GET /api/changes[?gateway=ID]: changes and rollbacks, newest first, with their status."""
    from shared.remediation.changelog import history

    def run() -> ApiResponse:
        gid = _gateway_param(gateway)
        log_ = _changelog(ctx)
        records = log_.for_gateway(gid.id) if gid else log_.all()
        return ApiResponse(200, {"changes": history(records)})

    return guarded(run)


def _find_change(ctx: AppContext, change_id: str) -> tuple[Any, list[Any]] | None:
    """The change record and its gateway's records (for its rollback status), or None."""
    if not _CHANGE_ID_RE.match(change_id or ""):
        return None
    log_ = _changelog(ctx)
    change = log_.get(change_id)
    if change is None:
        return None
    return change, log_.for_gateway(change.gateway_id)


def handle_get_change(ctx: AppContext, change_id: str) -> ApiResponse:
    """GET /api/changes/{id}: the change, its plan and what a rollback would remove."""
    from shared.remediation.changelog import change_detail
    from shared.service.holds import TableHoldStore, holds_of_change

    def run() -> ApiResponse:
        found = _find_change(ctx, change_id)
        if found is None:
            return error(404, "NotFound", f"no change {change_id[:80]!r}")
        change, records = found
        view = change_detail(change, records)
        view["holds"] = holds_of_change(TableHoldStore(ctx.storage), change.id, change.gateway_id)
        return ApiResponse(200, view)

    return guarded(run)


def handle_list_jobs(ctx: AppContext, gateway: str | None) -> ApiResponse:
    """GET /api/jobs[?gateway=ID]: the newest 100 jobs (of one gateway), newest first."""

    def run() -> ApiResponse:
        gid = _gateway_param(gateway)
        return ApiResponse(200, {"jobs": ctx.storage.list_jobs(gid)})

    return guarded(run)


def handle_rollback_change(
    ctx: AppContext, change_id: str, body: bytes, caller: str | None
) -> ApiResponse:
    """POST /api/changes/{id}/rollback: queue a rollback job. Needs an authenticated approver in
    APPROVERS who did not apply the change (unless ROLLBACK_BY_APPLIER); the job follows the mode
    and kill switch. A change already rolled back answers 200 and queues nothing."""
    from shared.remediation.changelog import change_view, rollback_of
    from shared.remediation.plan import plan_from_dict
    from shared.remediation.proposals import ApprovalError, check_rollback_approver
    from shared.remediation.render import az_rollback_commands, rollback_summary

    def run() -> ApiResponse:
        if not caller:
            return error(
                401,
                "Unauthenticated",
                "rolling back needs a caller signed in through App Service Authentication",
            )
        _json_body(body, required=False)
        found = _find_change(ctx, change_id)
        if found is None:
            return error(404, "NotFound", f"no change {change_id[:80]!r}")
        change, records = found
        if change.kind != "apply":
            raise InputError(f"{change.id} is a rollback, not a change")
        gid = parse_gateway_id(change.gateway_id)
        _check_scope(ctx, gid)
        try:
            check_rollback_approver(
                change.by,
                caller,
                ctx.settings["APPROVERS"],
                applier_may_roll_back=ctx.settings["ROLLBACK_BY_APPLIER"],
            )
        except ApprovalError as exc:
            refusal = {"code": "Forbidden", "reason": exc.code, "message": exc.message}
            return ApiResponse(403, {"error": refusal})
        done = rollback_of(records, change.id)
        if done is not None:
            return ApiResponse(
                200,
                {
                    "change": change.id,
                    "status": "already_rolled_back",
                    "arm_writes": 0,
                    "reason": f"already rolled back: {done.id} by {done.by} at {done.when}",
                    "rolled_back": change_view(change, records)["rolled_back"],
                },
            )
        storage = ctx.storage
        claim = storage.claim_job(gid, "rollback", "", hint=None, requested_by=caller)
        if not claim.created:
            return error(409, "Busy", f"job {claim.job_id} is active for this gateway; retry later")
        storage.update_job(claim.job_id, extra={"change_id": change.id, "approver": caller})
        storage.enqueue_job(claim.job_id)
        plan = plan_from_dict(change.plan)
        undo = {
            "summary": rollback_summary(plan, change.id),
            "az": az_rollback_commands(plan, change.gateway_id),
        }
        return ApiResponse(202, {"job": claim.job_id, "change": change.id, "undo": undo})

    return guarded(run)


def _cross_site_refusal(
    ctx: AppContext, proposal_id: str, caller: str, body: bytes, headers: Mapping[str, str]
) -> ApiResponse | None:
    """403 CrossSiteRequest for a browser request that is cross-site or lacks a valid review
    token; None for anything else (non-browser clients need no token)."""
    import os

    from shared.service.csrf import csrf_refusal

    refusal = csrf_refusal(
        headers,
        body,
        proposal_id=proposal_id,
        caller=caller,
        secret=str(ctx.settings["REVIEW_TOKEN_SECRET"]),
        env=os.environ,
    )
    if refusal is None:
        return None
    reason, message = refusal
    log.warning("refused a browser decision on proposal %s: %s", proposal_id[:80], reason)
    return ApiResponse(
        403, {"error": {"code": "CrossSiteRequest", "reason": reason, "message": message}}
    )


def signed_out(headers: Mapping[str, str], message: str, *, review: str) -> ApiResponse:
    """A signed-out caller: a browser navigating here is sent to sign in and back to the review
    page (302); an API caller gets 401 JSON naming where to sign in."""
    login = login_url(review)
    if wants_html(headers):
        return ApiResponse(302, {"login": login}, {"Location": login})
    return ApiResponse(
        401, {"error": {"code": "Unauthenticated", "message": message}, "login": login}
    )


# ---- caller identity ------------------------------------------------------------------------


def caller_identity(headers: Mapping[str, str], env: Mapping[str, str]) -> str | None:
    """The signed-in caller's Entra object id from App Service Authentication, honoured only when
    the platform says authentication is enabled (WEBSITE_AUTH_ENABLED); see
    shared/service/principal.py. None when no caller is signed in; Unauthenticated (401) when
    the principal headers are there but unreadable or not an Entra user's."""
    caller = read_caller(headers, env)
    return caller.object_id if caller else None
