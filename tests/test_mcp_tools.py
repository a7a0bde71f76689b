"""The MCP tools' contract without a server: names, schemas, arguments, the caller, and the
result the extension reads (shared/service/mcp_tools.py, sandbox/mcp_host.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.mcp_host import input_schema, tool_result
from shared.service.mcp_tools import BY_NAME, TOOLS, ToolError, ToolOutcome, _arguments
from shared.service.mcp_tools import parse_context as parse
from tests.mcp_contract import TOOL_NAMES

NAMES = TOOL_NAMES


def test_the_nine_tools_and_their_required_arguments() -> None:
    assert [t.name for t in TOOLS] == NAMES
    required = {t.name: input_schema(json.loads(t.properties_json()))["required"] for t in TOOLS}
    assert required == {
        "list_unhealthy_gateways": [],
        "diagnose_gateway": ["gateway_id"],
        "get_job": ["job_id"],
        "export_backend_certificate": ["gateway_id", "server"],
        "preview_fix": ["gateway_id"],
        "propose_fix": ["gateway_id", "reason"],
        "get_proposal": ["proposal_id"],
        "list_changes": [],
        "preview_rollback": ["change_id"],
    }
    # No tool decides: approving, applying, rejecting and rolling back stay with people.
    assert not [n for n in NAMES if n.split("_")[0] in {"approve", "apply", "reject", "rollback"}]


def test_function_app_declares_one_mcp_trigger_per_tool() -> None:
    import function_app

    app = function_app.app
    app.functions_bindings = None  # azure-functions 1.26 remembers an earlier indexing
    triggers = {}
    for fn in app.get_functions():
        binding = json.loads(fn.get_function_json())["bindings"][0]
        if binding["type"] == "mcpToolTrigger":
            triggers[binding["toolName"]] = (fn.get_function_name(), binding)
    app.functions_bindings = None
    assert list(triggers) == NAMES
    for name, (function_name, binding) in triggers.items():
        assert function_name == f"mcp_{name}"
        assert binding["useResultSchema"] is True and binding["name"] == "context"
        assert binding["toolProperties"] == BY_NAME[name].properties_json()


@pytest.mark.parametrize("is_error", [False, True])
def test_the_extension_reads_back_the_same_json(is_error: bool) -> None:
    payload = {"proposal": "20261207T095023Z-391595ea", "nested": {"a": [1, 2]}}
    result = tool_result(ToolOutcome(payload, is_error).extension_result(), True)
    assert result["isError"] is is_error
    assert result["structuredContent"] == payload
    assert json.loads(result["content"][0]["text"]) == payload


def _context(arguments: Any, headers: dict[str, str] | None = None) -> str:
    transport = {"name": "http-streamable", "properties": {"headers": headers or {}}}
    return json.dumps({"name": "get_job", "arguments": arguments, "transport": transport})


def test_the_caller_is_the_signed_in_user_only_behind_app_service_authentication() -> None:
    from sandbox.easyauth import User, principal_headers

    oid = "6f1c2a9e-0b7d-4c39-9d0e-1a2b3c4d5e6f"
    headers = {**principal_headers(User(oid, "Alice")), "x-functions-key": "k"}
    assert parse(_context({}, headers), {"WEBSITE_AUTH_ENABLED": "true"}).caller == oid
    assert parse(_context({}, headers), {}).caller == "mcp-agent"
    # A name header alone names nobody: the call is the agent's, not Alice's.
    named = {"X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.com", "x-functions-key": "k"}
    assert parse(_context({}, named), {"WEBSITE_AUTH_ENABLED": "true"}).caller == "mcp-agent"
    bad = {"x-ms-client-principal": "not base64!", "x-ms-client-principal-idp": "aad"}
    with pytest.raises(ToolError, match="x-ms-client-principal"):
        parse(_context({}, bad), {"WEBSITE_AUTH_ENABLED": "true"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("x" * (300 * 1024), "larger than"),
        ("{not json", "not JSON"),
        ("[1]", "not a JSON object"),
        (json.dumps({"name": "get_job", "arguments": [1]}), "arguments must be a JSON object"),
    ],
)
def test_an_unreadable_call_is_a_clear_error(raw: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        parse(raw, {})


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("get_job", {}, "job_id is required"),
        ("get_job", {"job_id": 7}, "job_id must be a string"),
        ("get_job", {"job_id": "a", "force": True}, "unknown argument"),
        ("get_job", {"job_id": "j" * 65}, "longer than 64"),
        ("propose_fix", {"gateway_id": "/x", "reason": "r" * 2001}, "reason is longer"),
        ("diagnose_gateway", {"gateway_id": "/sub\x00x"}, "control characters"),
        ("export_backend_certificate", {"gateway_id": "/x"}, "server is required"),
    ],
)
def test_bad_arguments_are_named(tool: str, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ToolError, match=message) as caught:
        _arguments(BY_NAME[tool], arguments)
    assert caught.value.code == "BadArgument"


def test_optional_arguments_may_be_left_out() -> None:
    assert _arguments(BY_NAME["list_changes"], {}) == {}
    assert _arguments(BY_NAME["list_changes"], {"gateway_id": " /g "}) == {"gateway_id": "/g"}
