"""Azure Functions entry points (Python v2 model): bindings and HTTP mapping only.

The logic lives in `shared/` (api, worker). Imports of the Azure SDKs happen inside the handlers,
so the host indexes this module quickly and the alert endpoint stays light.
"""

from __future__ import annotations

import json
import os

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
    from shared.service.api import caller_identity

    return caller_identity(dict(req.headers), os.environ)


@app.route(route="alerts", methods=["POST"])
def alerts(req: func.HttpRequest) -> func.HttpResponse:
    """Azure Monitor action group (Azure Function receiver, common alert schema)."""
    from shared.service.api import handle_alert

    return _respond(handle_alert(_context(), req.get_body(), req.headers.get("Content-Type")))


@app.route(
    route="gateways/{subscription}/{resourceGroup}/{name}/{action:regex(^(diagnose|fix)$)}",
    methods=["POST"],
)
def gateway_action(req: func.HttpRequest) -> func.HttpResponse:
    """On demand: diagnose or fix one gateway (a requested mode can only lower the policy's)."""
    from shared.service.api import handle_gateway_action

    p = req.route_params
    return _respond(
        handle_gateway_action(
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

    return _respond(handle_get_job(_context(), req.route_params.get("id", "")))


@app.route(route="proposals", methods=["GET"])
def list_proposals(req: func.HttpRequest) -> func.HttpResponse:
    from shared.service.api import handle_list_proposals

    return _respond(handle_list_proposals(_context(), req.params.get("status")))


@app.route(route="proposals/{id}", methods=["GET"])
def get_proposal(req: func.HttpRequest) -> func.HttpResponse:
    from shared.service.api import handle_get_proposal

    return _respond(handle_get_proposal(_context(), req.route_params.get("id", "")))


@app.route(route="proposals/{id}/{decision:regex(^(approve|reject)$)}", methods=["POST"])
def decide_proposal(req: func.HttpRequest) -> func.HttpResponse:
    """Approve or reject; needs App Service Authentication and an approver in APPROVERS."""
    from shared.service.api import handle_decide_proposal

    p = req.route_params
    return _respond(
        handle_decide_proposal(
            _context(), p.get("id", ""), p.get("decision", ""), req.get_body(), _caller(req)
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


@app.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE, run_on_startup=False)
def sweep(timer: func.TimerRequest) -> None:
    """Sweep the scope for unhealthy gateways, so nothing depends on an alert arriving."""
    import logging

    from shared.service.worker import sweep as run_sweep

    queued = run_sweep(_context())
    logging.getLogger(__name__).info("sweep queued %s", json.dumps(queued))
