"""HTTP handlers of the function app, free of the Functions SDK: bytes and headers in, a status and
a JSON body out. function_app.py maps them to routes.

Every answer is JSON; errors are `{"error": {"code", "message"}}` with a proper status and never a
traceback. Action groups retry only 408/429/503/504 (docs/sources.md#action-groups): a bad payload
gets 400 (not retried), storage trouble 503 (retried).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.common.errors import BotError, InputError, OutOfScopeError
from shared.common.ids import GatewayId, gateway_id, in_scope, parse_gateway_id
from shared.common.settings import Mode
from shared.service.app import AppContext
from shared.service.logs import log_context

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
    """Run a handler; map expected failures to JSON errors, anything else to a bare 500."""
    from shared.service.storage import StorageUnavailable

    try:
        return handler()
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
    except InputError as exc:
        return error(400, "BadRequest", str(exc))
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
        raise InputError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError("body must be a JSON object")
    return data


# ---- alerts ---------------------------------------------------------------------------------


def handle_alert(ctx: AppContext, body: bytes, content_type: str | None) -> ApiResponse:
    """POST /api/alerts: record, deduplicate, coalesce per gateway, enqueue; 202 quickly."""

    def run() -> ApiResponse:
        from shared.service.alerts import parse_alert

        if content_type and "json" not in content_type.lower():
            raise InputError(f"content type {content_type[:60]!r} is not JSON")
        if len(body) > MAX_BODY_BYTES:
            raise InputError(f"alert larger than {MAX_BODY_BYTES} bytes")
        event = parse_alert(body)
        with log_context(alert_id=event.alert_id):
            return _accept_alert(ctx, event)

    return guarded(run)


def _accept_alert(ctx: AppContext, event: Any) -> ApiResponse:
    storage = ctx.storage
    new = storage.record_alert(event)
    known_job = None if new else storage.alert_job(event)
    if not event.fired:
        if new:
            _record_seen(ctx, event, {g.key: "" for g in event.gateway_ids})
        log.info("alert %s resolved: recorded, nothing started", event.alert_id)
        return ApiResponse(202, {"status": "recorded", "condition": event.monitor_condition})
    if known_job:
        return ApiResponse(202, {"status": "duplicate", "jobs": [known_job]})
    in_scope_ids = [g for g in event.gateway_ids if in_scope(g.id, ctx.settings.scopes)]
    if not in_scope_ids:
        for gid in event.gateway_ids:
            storage.record_decision("", gid, "refused", "alert", details={"reason": "out of scope"})
        raise OutOfScopeError("the alert names no gateway inside ALLOWED_SCOPES")
    hint = event.hint.to_dict() if event.hint else None
    jobs = []
    for gid in in_scope_ids:
        job_id, created = storage.create_or_join_job(
            gid, "fix", "", hint=hint, requested_by=f"alert:{event.rule or 'unknown'}"
        )
        _queue(storage, job_id, created)
        jobs.append(job_id)
    storage.attach_alert_job(event, jobs[0])
    if new:
        _record_seen(ctx, event, {g.key: j for g, j in zip(in_scope_ids, jobs, strict=True)})
    # A redelivered alert whose first delivery died before linking its job is still a duplicate.
    return ApiResponse(202, {"status": "accepted" if new else "duplicate", "jobs": jobs})


def _queue(storage: Any, job_id: str, created: bool) -> None:
    """Queue a new job; re-queue a joined one that has waited too long (its message was lost)."""
    if created:
        storage.enqueue_job(job_id)
    else:
        storage.requeue_if_stale(job_id)


def _record_seen(ctx: AppContext, event: Any, jobs: Mapping[str, str]) -> None:
    """A "seen" ledger row per gateway for each new (alertId, monitorCondition)."""
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
        job_id, created = storage.create_or_join_job(
            gid, action, mode.value, hint=None, requested_by=caller or "api"
        )
        _queue(storage, job_id, created)
        return ApiResponse(202, {"job": job_id, "joined": not created})

    return guarded(run)


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
    ctx: AppContext, proposal_id: str, decision: str, body: bytes, caller: str | None
) -> ApiResponse:
    """POST /api/proposals/{id}/approve|reject. Needs an authenticated approver (App Service
    Authentication), in APPROVERS, other than the requester. Approval runs as a job."""
    from shared.remediation.proposals import ApprovalError, ProposalNotFound, check_approver

    def run() -> ApiResponse:
        if not caller:
            return error(
                401,
                "Unauthenticated",
                "approving needs a caller signed in through App Service Authentication",
            )
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
        storage.update_job(job_id, extra={"proposal_id": proposal_id, "approver": caller})
        storage.enqueue_job(job_id)
        return ApiResponse(202, {"job": job_id, "proposal": proposal_id})

    return guarded(run)


# ---- caller identity ------------------------------------------------------------------------


def caller_identity(headers: Mapping[str, str], env: Mapping[str, str]) -> str | None:
    """The signed-in caller from App Service Authentication, honoured only when the platform says
    authentication is enabled (WEBSITE_AUTH_ENABLED); otherwise anyone could send the header."""
    if str(env.get("WEBSITE_AUTH_ENABLED", "")).lower() != "true":
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    name = lowered.get("x-ms-client-principal-name")
    if name:
        return name.strip() or None
    encoded = lowered.get("x-ms-client-principal")
    if not encoded:
        return None
    try:
        principal = json.loads(base64.b64decode(encoded))
    except (binascii.Error, ValueError):
        return None
    for claim in principal.get("claims", []) if isinstance(principal, dict) else []:
        if claim.get("typ") in {"preferred_username", "name", "upn"} and claim.get("val"):
            return str(claim["val"])
    return None
