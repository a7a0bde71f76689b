"""The bindings function_app declares, as the Functions host indexes them (`app.get_functions()`):
routes, methods, auth levels, queues, connection and timer schedule (issue #5;
docs/sources.md#functions).

function_app is indexed in a fresh interpreter with the default app settings: other tests reload
it with per-test queue names, and azure-functions 1.26 refuses a second get_functions() call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from sandbox.funcrunner import REPO_ROOT, compile_route
from tests.mcp_contract import TOOL_NAMES

_INDEX = """
import json
from function_app import app
print(json.dumps({
    f.get_function_name(): json.loads(f.get_function_json())["bindings"]
    for f in app.get_functions()
}))
"""
# App settings that change the bindings: left out, so shared/common/settings.py's defaults apply.
_BINDING_SETTINGS = ("JOBS_QUEUE", "SWEEP_SCHEDULE")


def _index(env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The bindings function_app declares, indexed in a fresh interpreter with `env`."""
    done = subprocess.run(
        [sys.executable, "-c", _INDEX],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def bindings() -> dict[str, list[dict[str, Any]]]:
    return _index({k: v for k, v in os.environ.items() if k not in _BINDING_SETTINGS})


def _trigger(bindings: list[dict[str, Any]]) -> dict[str, Any]:
    [trigger] = [b for b in bindings if str(b["type"]).endswith("Trigger")]
    return trigger


HTTP_FUNCTIONS = {
    "alerts": ("alerts", ["POST"]),
    "gateway_action": (
        "gateways/{subscription}/{resourceGroup}/{name}/{action:regex(^(diagnose|fix)$)}",
        ["POST"],
    ),
    "get_job": ("jobs/{id}", ["GET"]),
    "list_proposals": ("proposals", ["GET"]),
    "get_proposal": ("proposals/{id}", ["GET"]),
    "decide_proposal": ("proposals/{id}/{decision:regex(^(approve|reject)$)}", ["POST"]),
    "review_proposal": ("proposals/{id}/review", ["GET"]),
    "list_jobs": ("jobs", ["GET"]),
    "list_changes": ("changes", ["GET"]),
    "get_change": ("changes/{id}", ["GET"]),
    "rollback_change": ("changes/{id}/rollback", ["POST"]),
    "list_holds": ("holds", ["GET"]),
    "release_hold": ("holds/{id}/release", ["POST"]),
}
# A browser opened from a notification link has no function key: the review page and its
# Approve/Reject buttons are anonymous at the host and guarded by App Service Authentication
# (the handlers answer 401 without a signed-in caller; docs/operations.md).
BROWSER_FUNCTIONS = {"review_proposal", "decide_proposal"}


def test_every_function_is_declared(bindings: dict[str, list[dict[str, Any]]]) -> None:
    assert set(bindings) == {
        *HTTP_FUNCTIONS,
        "worker",
        "poison",
        "checks",
        "checks_poison",
        "sweep",
        *MCP_FUNCTIONS,
    }


# The MCP tools (Functions MCP extension): one mcpToolTrigger each, named mcp_<tool>.
MCP_FUNCTIONS = {f"mcp_{tool}" for tool in TOOL_NAMES}


@pytest.mark.parametrize("name", sorted(MCP_FUNCTIONS))
def test_mcp_tools_are_extension_triggers(
    bindings: dict[str, list[dict[str, Any]]], name: str
) -> None:
    (trigger,) = bindings[name]
    assert trigger["type"] == "mcpToolTrigger" and trigger["direction"] == "IN"
    assert trigger["toolName"] == name.removeprefix("mcp_")
    assert trigger["useResultSchema"] is True


@pytest.mark.parametrize("name", sorted(HTTP_FUNCTIONS))
def test_http_routes_methods_and_function_keys(
    bindings: dict[str, list[dict[str, Any]]], name: str
) -> None:
    route, methods = HTTP_FUNCTIONS[name]
    trigger = _trigger(bindings[name])
    assert trigger["type"] == "httpTrigger" and trigger["direction"] == "IN"
    assert trigger["route"] == route
    assert [m.upper() for m in trigger["methods"]] == methods
    # Action groups call the Azure Function receiver with the function key
    # (docs/sources.md#action-groups); so does every automation route.
    assert trigger["authLevel"] == ("ANONYMOUS" if name in BROWSER_FUNCTIONS else "FUNCTION")
    [output] = [b for b in bindings[name] if b["direction"] == "OUT"]
    assert output["type"] == "http" and output["name"] == "$return"


def test_the_routes_resolve_as_the_host_would() -> None:
    pattern, _ = compile_route(HTTP_FUNCTIONS["gateway_action"][0])
    sub = "5a7d0b0c-0001-4000-8000-000000000001"
    match = pattern.fullmatch(f"/gateways/{sub}/rg-ase/agw-ase-v1/fix")
    assert match and match.groupdict() == {
        "subscription": sub,
        "resourceGroup": "rg-ase",
        "name": "agw-ase-v1",
        "action": "fix",
    }
    assert pattern.fullmatch(f"/gateways/{sub}/rg-ase/agw-ase-v1/delete") is None
    decide, _ = compile_route(HTTP_FUNCTIONS["decide_proposal"][0])
    assert decide.fullmatch("/proposals/p1/reject") and not decide.fullmatch("/proposals/p1/x")


@pytest.mark.parametrize(
    "name, queue",
    [
        ("worker", "remediation-jobs"),
        ("poison", "remediation-jobs-poison"),
        ("checks", "remediation-jobs-checks"),
        ("checks_poison", "remediation-jobs-checks-poison"),
    ],
)
def test_queue_triggers(bindings: dict[str, list[dict[str, Any]]], name: str, queue: str) -> None:
    [trigger] = bindings[
        name
    ]  # no output bindings: the worker writes through shared.service.storage
    assert trigger["type"] == "queueTrigger" and trigger["direction"] == "IN"
    assert trigger["queueName"] == queue
    assert trigger["connection"] == "AzureWebJobsStorage"
    assert trigger["name"] == "msg"


def test_timer_sweep(bindings: dict[str, list[dict[str, Any]]]) -> None:
    [trigger] = bindings["sweep"]
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "0 */15 * * * *"  # SWEEP_SCHEDULE's default (6-field NCRONTAB)
    assert trigger["runOnStartup"] is False


def test_queue_name_and_schedule_follow_the_app_settings() -> None:
    found = _index({**os.environ, "JOBS_QUEUE": "other-jobs", "SWEEP_SCHEDULE": "0 0 * * * *"})
    assert _trigger(found["worker"])["queueName"] == "other-jobs"
    assert _trigger(found["poison"])["queueName"] == "other-jobs-poison"
    assert _trigger(found["checks"])["queueName"] == "other-jobs-checks"
    assert _trigger(found["sweep"])["schedule"] == "0 0 * * * *"
