"""Azure Functions entry points (Python v2 model): bindings and HTTP mapping only.

The logic lives in `shared/` (api, worker). Imports of the Azure SDKs happen inside the handlers,
so the host indexes this module quickly and the alert endpoint stays light.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import azure.functions as func

from shared.service.logs import configure_logging

# Queue and schedule names are app settings (defaults as in shared/common/settings.py).
JOBS_QUEUE = os.environ.get("JOBS_QUEUE") or "remediation-jobs"
SWEEP_SCHEDULE = os.environ.get("SWEEP_SCHEDULE") or "0 */15 * * * *"
STORAGE = "AzureWebJobsStorage"

configure_logging()
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _respond(result: object) -> func.HttpResponse:
    from shared.service.api import ApiResponse

    assert isinstance(result, ApiResponse)
    return func.HttpResponse(
        result.json(),
        status_code=result.status,
        mimetype="application/json",
        headers=dict(result.headers),
    )


def _context():  # type: ignore[no-untyped-def]
    from shared.service.app import get_context

    return get_context()


def _caller(req: func.HttpRequest) -> str | None:
    """Raises (Unauthenticated) on unreadable principal headers: call it inside _guarded."""
    from shared.service.api import caller_identity

    return caller_identity(dict(req.headers), os.environ)


def _guarded(call: Callable[[], Any]) -> func.HttpResponse:
    """Run a handler call, its arguments included, inside the API's error guard: reading the
    caller can fail (401 JSON), which must not escape as the host's empty 500."""
    from shared.service.api import guarded

    return _respond(guarded(call))


@app.route(route="alerts", methods=["POST"])
def alerts(req: func.HttpRequest) -> func.HttpResponse:
    """Azure Monitor action group (Azure Function receiver, common alert schema)."""
    from shared.service.api import handle_alert

    return _guarded(
        lambda: handle_alert(_context(), req.get_body(), req.headers.get("Content-Type"))
    )


@app.route(
    route="gateways/{subscription}/{resourceGroup}/{name}/{action:regex(^(diagnose|fix)$)}",
    methods=["POST"],
)
def gateway_action(req: func.HttpRequest) -> func.HttpResponse:
    """On demand: diagnose or fix one gateway (a requested mode can only lower the policy's)."""
    from shared.service.api import handle_gateway_action

    p = req.route_params
    return _guarded(
        lambda: handle_gateway_action(
            _context(),
            p.get("action", ""),
            p.get("subscription", ""),
            p.get("resourceGroup", ""),
            p.get("name", ""),
            req.get_body(),
            _caller(req),
        )
    )


@app.route(route="jobs/{id}", methods=["GET"])
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    from shared.service.api import handle_get_job

    return _guarded(lambda: handle_get_job(_context(), req.route_params.get("id", "")))


@app.route(route="proposals", methods=["GET"])
def list_proposals(req: func.HttpRequest) -> func.HttpResponse:
    from shared.service.api import handle_list_proposals

    return _guarded(lambda: handle_list_proposals(_context(), req.params.get("status")))


@app.route(route="proposals/{id}", methods=["GET"])
def get_proposal(req: func.HttpRequest) -> func.HttpResponse:
    from shared.service.api import handle_get_proposal

    return _guarded(lambda: handle_get_proposal(_context(), req.route_params.get("id", "")))


@app.route(route="proposals/{id}/review", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def review_proposal(req: func.HttpRequest) -> func.HttpResponse:
    """The approver's HTML page. No function key (a browser from a notification link has none):
    App Service Authentication signs the caller in; a signed-out browser is sent to sign in."""
    from shared.service.review import handle_review

    page = handle_review(
        _context(),
        req.route_params.get("id", ""),
        _review_caller(req),
        dict(req.params),
        path=f"/api/proposals/{req.route_params.get('id', '')}/review",
        headers=dict(req.headers),
    )
    return func.HttpResponse(page.body, status_code=page.status, headers=dict(page.headers))


def _review_caller(req: func.HttpRequest) -> str | None:
    try:
        return _caller(req)
    except Exception:  # noqa: BLE001 - an unreadable principal is no caller: the page says 401
        return None


# Anonymous to the host for the review page's buttons (browsers hold no function key); the
# handler refuses a caller App Service Authentication did not sign in, and cross-site requests.
@app.route(
    route="proposals/{id}/{decision:regex(^(approve|reject)$)}",
    methods=["POST"],
    auth_level=func.AuthLevel.ANONYMOUS,
)
def decide_proposal(req: func.HttpRequest) -> func.HttpResponse:
    """Approve or reject; needs App Service Authentication and an approver in APPROVERS."""
    from shared.service.api import handle_decide_proposal

    p = req.route_params
    return _guarded(
        lambda: handle_decide_proposal(
            _context(),
            p.get("id", ""),
            p.get("decision", ""),
            req.get_body(),
            _caller(req),
            headers=dict(req.headers),
        )
    )


@app.route(route="jobs", methods=["GET"])
def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    """The newest jobs, optionally of one gateway (?gateway=<resource id>)."""
    from shared.service.api import handle_list_jobs

    return _guarded(lambda: handle_list_jobs(_context(), req.params.get("gateway")))


@app.route(route="changes", methods=["GET"])
def list_changes(req: func.HttpRequest) -> func.HttpResponse:
    """Changes the bot made and their rollbacks (?gateway=<resource id>), newest first."""
    from shared.service.api import handle_list_changes

    return _guarded(lambda: handle_list_changes(_context(), req.params.get("gateway")))


@app.route(route="changes/{id}", methods=["GET"])
def get_change(req: func.HttpRequest) -> func.HttpResponse:
    from shared.service.api import handle_get_change

    return _guarded(lambda: handle_get_change(_context(), req.route_params.get("id", "")))


@app.route(route="changes/{id}/rollback", methods=["POST"])
def rollback_change(req: func.HttpRequest) -> func.HttpResponse:
    """Roll a change back (as a job); needs an approver other than the one who applied it."""
    from shared.service.api import handle_rollback_change

    return _guarded(
        lambda: handle_rollback_change(
            _context(), req.route_params.get("id", ""), req.get_body(), _caller(req)
        )
    )


@app.route(route="holds", methods=["GET"])
def list_holds(req: func.HttpRequest) -> func.HttpResponse:
    """Holds (?gateway=<resource id>&status=active|released|expired|all), oldest first."""
    from shared.service.holds import handle_list_holds

    return _guarded(
        lambda: handle_list_holds(_context(), req.params.get("gateway"), req.params.get("status"))
    )


@app.route(route="holds/{id}/release", methods=["POST"])
def release_hold(req: func.HttpRequest) -> func.HttpResponse:
    """Release a hold; needs an approver."""
    from shared.service.holds import handle_release_hold

    return _guarded(
        lambda: handle_release_hold(
            _context(),
            req.route_params.get("id", ""),
            req.get_body(),
            _caller(req),
            headers=dict(req.headers),
        )
    )


@app.queue_trigger(arg_name="msg", queue_name=JOBS_QUEUE, connection=STORAGE)
def worker(msg: func.QueueMessage) -> None:
    """Diagnosis, policy, apply or propose, verify: one job per message, under the gateway lease."""
    from shared.service.worker import process_message

    process_message(_context(), msg.get_body().decode("utf-8"), msg.dequeue_count or 1)


@app.queue_trigger(arg_name="msg", queue_name=f"{JOBS_QUEUE}-poison", connection=STORAGE)
def poison(msg: func.QueueMessage) -> None:
    """Jobs that failed maxDequeueCount times: recorded as failed with the reason."""
    from shared.service.worker import process_poison

    process_poison(_context(), msg.get_body().decode("utf-8"), msg.dequeue_count or 0)


@app.queue_trigger(arg_name="msg", queue_name=f"{JOBS_QUEUE}-checks", connection=STORAGE)
def checks(msg: func.QueueMessage) -> None:
    """The sweep's gateway checks: a metrics batch, or backend health under the gateway lease."""
    from shared.service.worker import process_check

    process_check(_context(), msg.get_body().decode("utf-8"), msg.dequeue_count or 1)


@app.queue_trigger(arg_name="msg", queue_name=f"{JOBS_QUEUE}-checks-poison", connection=STORAGE)
def checks_poison(msg: func.QueueMessage) -> None:
    """Checks that failed maxDequeueCount times: recorded as failed, queued again next sweep."""
    from shared.service.worker import process_check_poison

    process_check_poison(_context(), msg.get_body().decode("utf-8"), msg.dequeue_count or 0)


@app.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE, run_on_startup=False)
def sweep(timer: func.TimerRequest) -> None:
    """Sweep the scope, so nothing depends on an alert arriving: enumerate and queue checks."""
    import logging

    from shared.service.worker import sweep as run_sweep

    report = run_sweep(_context())
    logging.getLogger(__name__).info("sweep queued %s", json.dumps(report))


# ---- MCP tools (Azure Functions MCP extension: /runtime/webhooks/mcp, the mcp_extension key) ----
# One mcpToolTrigger per tool of shared/service/mcp_tools.py. The extension passes the call as
# JSON (name, arguments, session, the request's headers) and reads back an McpToolResult
# (useResultSchema): the tool's JSON as structured content, or isError with one clear message.


def _mcp_tool(tool_name: str, description: str, properties: str) -> None:
    def run(context: str) -> str:
        from shared.service.mcp_tools import run_tool

        return run_tool(_context(), context, tool_name=tool_name).extension_result()

    run.__name__ = run.__qualname__ = f"mcp_{tool_name}"  # HTTP functions own the bare names
    app.mcp_tool_trigger(
        arg_name="context",
        tool_name=tool_name,
        description=description,
        tool_properties=properties,
        use_result_schema=True,
    )(run)


def _register_mcp_tools() -> None:
    from shared.service.mcp_tools import TOOLS

    for tool in TOOLS:
        _mcp_tool(tool.name, tool.description, tool.properties_json())


_register_mcp_tools()
