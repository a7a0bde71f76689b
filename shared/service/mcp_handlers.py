"""The nine MCP tools' bodies (shared/service/mcp_tools.py registers, checks and records them):
each a thin wrapper over the HTTP API's handlers (shared.service.api) or the Remediator the
worker uses, answering the same JSON."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from shared.common.errors import BotError, InputError
from shared.common.ids import GatewayId, in_scope, parse_gateway_id
from shared.service import api
from shared.service.app import AppContext
from shared.service.mcp_tools import (
    MAX_GATEWAYS_LISTED,
    MAX_HEALTH_READS,
    Call,
    ToolError,
)

_SHORT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_TERMINAL = {"succeeded", "failed", "proposed"}
_POLL_SECONDS = 0.25


Handler = Callable[[AppContext, dict[str, str], Call, dict[str, Any], float], dict[str, Any]]


def _api(response: api.ApiResponse) -> dict[str, Any]:
    """An HTTP handler's answer as a tool's: its body, or its error as a ToolError."""
    if response.status < 400:
        return dict(response.body)
    err = response.body.get("error") if isinstance(response.body, Mapping) else None
    err = err if isinstance(err, Mapping) else {}
    codes = {400: "BadArgument", 401: "Unauthenticated", 403: "OutOfScope", 404: "NotFound"}
    code = codes.get(response.status, "Busy" if response.status == 409 else "Unavailable")
    if response.status == 403 and err.get("code") != "OutOfScope":
        code = "Forbidden"
    raise ToolError(code, str(err.get("message") or f"HTTP {response.status}"))


def _gateway(ctx: AppContext, raw: str) -> GatewayId:
    try:
        gid = parse_gateway_id(raw)
    except InputError as exc:
        raise ToolError("BadArgument", f"gateway_id: {exc}") from None
    _scope(ctx, gid.id)
    return gid


def _scope(ctx: AppContext, gateway_id: str) -> None:
    if not in_scope(gateway_id, ctx.settings.scopes):
        name = gateway_id.rstrip("/").rsplit("/", 1)[-1][:80]
        raise ToolError("OutOfScope", f"gateway {name} is outside the bot's ALLOWED_SCOPES")


def _short_id(value: str, what: str) -> str:
    if not _SHORT_ID.match(value):
        raise ToolError("BadArgument", f"{what} is not an id this bot issues: {value[:80]!r}")
    return value


def _wait(ctx: AppContext, job_id: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        job = _api(api.handle_get_job(ctx, job_id))
        if job.get("state") in _TERMINAL or time.monotonic() >= deadline:
            return job
        time.sleep(_POLL_SECONDS)


def _queue_job(
    ctx: AppContext, gid: GatewayId, action: str, body: dict[str, Any], call: Call
) -> dict[str, Any]:
    """POST /api/gateways/{sub}/{rg}/{name}/{action}, as the HTTP API does it."""
    return _api(
        api.handle_gateway_action(
            ctx,
            action,
            gid.subscription,
            gid.resource_group,
            gid.name,
            json.dumps(body).encode(),
            call.caller,
        )
    )


def _job_answer(queued: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    done = job.get("state") in _TERMINAL
    answer = {"job": queued["job"], "joined": queued.get("joined", False), "done": done}
    if not done:
        answer["next"] = f"still {job.get('state')}: call get_job with job_id {queued['job']}"
    return {**answer, "job_state": job}


def _list_unhealthy(
    ctx: AppContext, args: dict[str, str], call: Call, record: dict[str, Any], wait: float
) -> dict[str, Any]:
    from shared.cloud.arm import ArmError
    from shared.cloud.monitor import METRICS_BATCH_LIMIT
    from shared.service.sweep import _arm_and_metrics, gateways_in_scope

    arm, metrics = _arm_and_metrics(ctx)
    errors: list[str] = []
    targets = gateways_in_scope(ctx.settings.scopes, arm, errors)
    truncated = len(targets) > MAX_GATEWAYS_LISTED
    targets = targets[:MAX_GATEWAYS_LISTED]
    groups: dict[tuple[str, str], list[str]] = {}
    no_data: list[str] = []
    for t in targets:
        if t.location:
            groups.setdefault(t.group, []).append(t.gid.id)
        else:
            no_data.append(t.gid.id)
    unhealthy: list[dict[str, Any]] = []
    healthy = 0
    for (_, region), ids in sorted(groups.items()):
        for start in range(0, len(ids), METRICS_BATCH_LIMIT):
            chunk = ids[start : start + METRICS_BATCH_LIMIT]
            try:
                peaks = metrics.unhealthy_hosts(region, chunk)
            except ArmError as exc:
                errors.append(f"metrics in {region}: {str(exc)[:300]}")
                peaks = {}
            for gid in chunk:
                peak = peaks.get(gid)
                if peak is None:
                    no_data.append(gid)
                elif peak > 0:
                    unhealthy.append({"gateway": gid, "unhealthy_hosts": peak, "source": "metrics"})
                else:
                    healthy += 1
    # No metric data (a new gateway, metrics refused): backend health, for a few of them.
    no_data.sort()
    for gid in list(no_data[:MAX_HEALTH_READS]):
        try:
            bad = _unhealthy_servers(arm, gid)
        except (ArmError, BotError) as exc:
            errors.append(f"backend health of {gid.rsplit('/', 1)[-1]}: {str(exc)[:300]}")
            continue
        no_data.remove(gid)
        if bad:
            unhealthy.append({"gateway": gid, "unhealthy_hosts": bad, "source": "backend_health"})
        else:
            healthy += 1
    record["result"] = f"{len(unhealthy)} unhealthy of {len(targets)}"
    return {
        "unhealthy": unhealthy,
        "no_data": no_data,
        "healthy": healthy,
        "gateways": len(targets),
        "truncated": truncated,
        "errors": errors,
    }


def _unhealthy_servers(arm: Any, gateway_id: str) -> int:
    from shared.core.health import HealthState, parse_backend_health

    health = parse_backend_health(arm.backend_health(parse_gateway_id(gateway_id)))
    return sum(1 for h in health if h.health is not HealthState.HEALTHY)


def _diagnose(
    ctx: AppContext, args: dict[str, str], call: Call, record: dict[str, Any], wait: float
) -> dict[str, Any]:
    gid = _gateway(ctx, args["gateway_id"])
    record["gateway"] = gid.id
    queued = _queue_job(ctx, gid, "diagnose", {}, call)
    record["job"] = queued["job"]
    return _job_answer(queued, _wait(ctx, queued["job"], wait))


def _get_job(
    ctx: AppContext, args: dict[str, str], call: Call, record: dict[str, Any], wait: float
) -> dict[str, Any]:
    job = _api(api.handle_get_job(ctx, _short_id(args["job_id"], "job_id")))
    record["gateway"] = job.get("gateway_id", "")
    _scope(ctx, str(job.get("gateway_id", "")))
    return job


def _export_certificate(
    ctx: AppContext, args: dict[str, str], call: Call, record: dict[str, Any], wait: float
) -> dict[str, Any]:
    from shared.cloud.arm import ArmClient, make_credential
    from shared.core.certs import to_pem
    from shared.core.diagnosis import probe_requests, route_hosts
    from shared.core.gateway import parse_gateway
    from shared.probe.tls import capture, detect_vantage

    gid = _gateway(ctx, args["gateway_id"])
    record["gateway"] = gid.id
    server = args["server"]
    settings = ctx.settings
    doc = ArmClient(settings, credential=make_credential(settings)).get_gateway(gid).doc
    requests = probe_requests(parse_gateway(doc), [], hosts=route_hosts(doc))
    # Only an address from the gateway's own routed pools: never one the caller makes up.
    matching = [r for r in requests if r[0].lower() == server.lower()]
    if not matching:
        members = sorted({r[0] for r in requests})
        shown = ", ".join(members[:20]) + (" …" if len(members) > 20 else "")
        raise ToolError(
            "BadArgument",
            f"{server[:80]!r} is not a member of a routed backend pool of {gid.name} "
            f"(members: {shown or 'none'})",
        )
    address, port, sni = matching[0]
    vantage = detect_vantage(settings["PROBE_VANTAGE"])
    cap = capture(
        address, port, sni, timeout=float(settings["PROBE_TIMEOUT_SECONDS"]), vantage=vantage
    )
    if cap.error is not None or not cap.chain:
        raise ToolError(
            "Failed",
            f"no certificate from {address}:{port}: "
            f"{cap.error.value if cap.error else 'empty chain'} ({cap.detail})",
        )
    leaf = cap.chain[0]
    return {
        "gateway": gid.id,
        "server": address,
        "port": port,
        "sni": sni,
        "vantage": vantage.describe(),
        "subject": leaf.subject,
        "issuer": leaf.issuer,
        "sha1": leaf.sha1,
        "not_after": leaf.not_after.isoformat(),
        "cer": to_pem(leaf.der),
        "chain": [{"subject": c.subject, "sha1": c.sha1} for c in cap.chain],
    }


def _preview_fix(
    ctx: AppContext, args: dict[str, str], call: Call, record: dict[str, Any], wait: float
) -> dict[str, Any]:
    gid = _gateway(ctx, args["gateway_id"])
    record["gateway"] = gid.id
    previews: list[Any] = []
    # A dry run: the Remediator stops before any write or proposal (no lease needed).
    outcome = ctx.remediator().fix(
        gid.id, requester=call.caller, show=previews.append, dry_run=True
    )
    if outcome.action == "refused":
        raise ToolError("OutOfScope" if "SCOPES" in outcome.reason else "Failed", outcome.reason)
    return {
        **outcome.to_json(),
        "kill_switch": ctx.settings.kill_switch,
        "previews": [p.to_dict() for p in previews],
    }


def _propose(
    ctx: AppContext, args: dict[str, str], call: Call, record: dict[str, Any], wait: float
) -> dict[str, Any]:
    from shared.service.notify import review_url

    gid = _gateway(ctx, args["gateway_id"])
    record["gateway"] = gid.id
    # "propose" can only lower the configured mode: an agent's request never applies anything.
    queued = _queue_job(ctx, gid, "fix", {"mode": "propose"}, call)
    record["job"] = queued["job"]
    if queued.get("mode") == "apply":  # joined an apply job someone else started
        raise ToolError(
            "Busy",
            f"job {queued['job']} (apply) is running for this gateway; retry once it has "
            "finished (get_job)",
        )
    job = _wait(ctx, queued["job"], wait)
    answer = _job_answer(queued, job)
    proposal = job.get("proposal_id") or (job.get("outcome") or {}).get("proposal")
    answer["proposal"] = proposal
    answer["review_url"] = review_url(proposal, ctx.env) if proposal else None
    answer["kill_switch"] = ctx.settings.kill_switch  # approvals are refused while it is on
    if proposal:
        record["proposal"] = proposal
        answer["status"] = _api(api.handle_get_proposal(ctx, proposal)).get("status")
    elif answer["done"]:
        outcome = job.get("outcome") or {}
        answer["reason"] = outcome.get("reason") or job.get("error") or "nothing to propose"
    return answer


def _get_proposal(
    ctx: AppContext, args: dict[str, str], call: Call, record: dict[str, Any], wait: float
) -> dict[str, Any]:
    from shared.service.notify import review_url

    proposal_id = _short_id(args["proposal_id"], "proposal_id")
    proposal = _api(api.handle_get_proposal(ctx, proposal_id))
    record["gateway"] = proposal.get("gateway_id", "")
    _scope(ctx, str(proposal.get("gateway_id", "")))
    return {**proposal, "review_url": review_url(proposal_id, ctx.env)}


def _list_changes(
    ctx: AppContext, args: dict[str, str], call: Call, record: dict[str, Any], wait: float
) -> dict[str, Any]:
    raw = args.get("gateway_id")
    if raw:
        gid = _gateway(ctx, raw)
        record["gateway"] = gid.id
        return _api(api.handle_list_changes(ctx, gid.id))
    listed = _api(api.handle_list_changes(ctx, None))
    changes = [
        c
        for c in listed.get("changes", [])
        if in_scope(str(c.get("gateway") or c.get("gateway_id") or ""), ctx.settings.scopes)
    ]
    return {**listed, "changes": changes}


def _preview_rollback(
    ctx: AppContext, args: dict[str, str], call: Call, record: dict[str, Any], wait: float
) -> dict[str, Any]:
    from shared.remediation.remediate import Remediator

    change_id = _short_id(args["change_id"], "change_id")
    view = _api(api.handle_get_change(ctx, change_id))
    gateway_id = str(view.get("gateway") or view.get("gateway_id") or "")
    record["gateway"] = gateway_id
    _scope(ctx, gateway_id)
    change = api._changelog(ctx).get(change_id)
    if change is None or change.kind != "apply":
        raise ToolError("BadArgument", f"{change_id} is a rollback, not a change")
    remediator = ctx.remediator()
    doc = remediator.arm.get_gateway(parse_gateway_id(change.gateway_id)).doc
    preview = Remediator.rollback_preview(change, doc)
    return {**view, "preview": preview.to_dict()}


HANDLERS: dict[str, Handler] = {
    "list_unhealthy_gateways": _list_unhealthy,
    "diagnose_gateway": _diagnose,
    "get_job": _get_job,
    "export_backend_certificate": _export_certificate,
    "preview_fix": _preview_fix,
    "propose_fix": _propose,
    "get_proposal": _get_proposal,
    "list_changes": _list_changes,
    "preview_rollback": _preview_rollback,
}
