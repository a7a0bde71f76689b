"""The bot as MCP tools, through `python -m sandbox serve --functions` and the `mcp` SDK's client:
what Azure SRE Agent or VS Code meets at /runtime/webhooks/mcp with the mcp_extension key."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sandbox.easyauth import APPROVER
from tests.mcp_client import WEBHOOK, call, mcp_session, mcp_sse_session
from tests.mcp_contract import TOOL_NAMES
from tests.serve_process import Served, start_served

pytestmark = [pytest.mark.slow, pytest.mark.azurite, pytest.mark.sandbox]

TOOLS = set(TOOL_NAMES)


def _post(served: Served, headers: dict[str, str]) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    request = urllib.request.Request(
        served.url + WEBHOOK,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Accept": "application/json, text/event-stream", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _arm_puts(env: dict[str, str]) -> int:
    context = ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])
    url = f"{env['SANDBOX_CONTROL_URL']}/requests"
    with urllib.request.urlopen(url, timeout=30, context=context) as reply:
        return sum(1 for r in json.loads(reply.read()) if r["method"] == "PUT")


def _ledger(env: dict[str, str]) -> list[dict[str, Any]]:
    from shared.common.settings import load_settings
    from shared.service.app import AppContext
    from shared.service.mcp_tools import tool_calls

    return tool_calls(AppContext(settings=load_settings(env), env=env))


async def _agent(served: Served) -> dict[str, Any]:
    """An agent's session: every tool, good and bad arguments. Returns what it saw."""
    env = served.env
    gateway = env["SANDBOX_GATEWAY_IDS"].split(",")[0]
    sub = gateway.split("/")[2]
    outside = (
        f"/subscriptions/{sub}/resourceGroups/rg-elsewhere/providers/"
        "Microsoft.Network/applicationGateways/agw-other"
    )
    seen: dict[str, Any] = {}
    async with mcp_session(served.url, env["FUNCTIONS_MCP_KEY"]) as session:
        listed = await session.list_tools()
        seen["tools"] = {t.name: t for t in listed.tools}
        seen["diagnose"] = await call(session, "diagnose_gateway", gateway_id=gateway)
        findings = seen["diagnose"][1]["job_state"]["diagnosis"]["findings"]
        server = findings[0]["server"]
        seen["export"] = await call(
            session, "export_backend_certificate", gateway_id=gateway, server=server
        )
        seen["preview"] = await call(session, "preview_fix", gateway_id=gateway)
        seen["propose"] = await call(
            session, "propose_fix", gateway_id=gateway, reason="SRE Agent: 502s on /api"
        )
        proposal = seen["propose"][1]["proposal"]
        seen["proposal"] = await call(session, "get_proposal", proposal_id=proposal)
        seen["job"] = await call(session, "get_job", job_id=seen["propose"][1]["job"])
        seen["unhealthy"] = await call(session, "list_unhealthy_gateways")
        seen["changes"] = await call(session, "list_changes", gateway_id=gateway)
        # Bad arguments: tool errors with a clear message, nothing done.
        seen["outside"] = await call(session, "diagnose_gateway", gateway_id=outside)
        seen["outside_fix"] = await call(session, "propose_fix", gateway_id=outside, reason="x")
        seen["stranger"] = await call(
            session, "export_backend_certificate", gateway_id=gateway, server="evil.example.com"
        )
        seen["oversized"] = await call(session, "preview_fix", gateway_id="/" + "x" * 5000)
        seen["long_reason"] = await call(
            session, "propose_fix", gateway_id=gateway, reason="r" * 5000
        )
        seen["unknown_arg"] = await call(session, "get_job", job_id="x", mode="apply")
        seen["bad_id"] = await call(session, "get_proposal", proposal_id="../../etc/passwd")
        seen["no_change"] = await call(session, "preview_rollback", change_id="nope")
        seen["malformed"] = await call(session, "list_changes", gateway_id="not-an-id")
    # The legacy SSE transport serves the same tools.
    async with mcp_sse_session(served.url, env["FUNCTIONS_MCP_KEY"]) as session:
        seen["sse_tools"] = {t.name for t in (await session.list_tools()).tools}
        seen["sse_proposal"] = await call(session, "get_proposal", proposal_id=proposal)
    return seen


def test_an_agent_diagnoses_and_proposes_over_mcp_and_nothing_is_written(tmp_path: Path) -> None:
    # ilb-ase-v1 runs in apply mode: an agent's propose_fix still only proposes.
    # The sweep timer is off: in apply mode its fix job could write the seed gateway meanwhile.
    served = start_served(
        tmp_path,
        "ilb-ase-v1",
        "--signed-in-as",
        "",
        "--setting",
        "AzureWebJobs.sweep.Disabled=true",
        "--setting",
        f"APPROVERS={APPROVER.object_id}",
        "--setting",
        "REMEDIATION_MODE=apply",  # the scenario's; serve --functions defaults to propose
    )
    try:
        env = served.env
        assert env["FUNCTIONS_MCP_KEY"] and env["FUNCTIONS_MCP_KEY"] != env["FUNCTIONS_KEY"]
        # The webhook wants the mcp_extension key: none, a wrong one or the host key are 401.
        assert _post(served, {}) == 401
        assert _post(served, {"x-functions-key": "wrong"}) == 401
        assert _post(served, {"x-functions-key": env["FUNCTIONS_KEY"]}) == 401
        assert _post(served, {"x-functions-key": env["FUNCTIONS_MCP_KEY"]}) == 200
        assert "error response" in asyncio.run(asyncio.wait_for(_refused(served), 60))

        seen = asyncio.run(_agent(served))
        puts = _arm_puts(env)
        calls = _ledger(env)
        # A person approves the agent's proposal; the agent then sees the change and what
        # rolling it back would remove.
        status, approved = served.call(
            "POST",
            f"proposals/{seen['propose'][1]['proposal']}/approve",
            {},
            headers=served.sign_in(APPROVER.object_id),
        )
        assert status == 202, approved
        assert served.wait_job(approved["job"])["state"] == "succeeded"
        after = asyncio.run(_after_approval(served, approved["change"]))
    finally:
        code = served.stop()
    assert code == 0, served.output()

    tools = seen["tools"]
    assert set(tools) == TOOLS
    schema = tools["export_backend_certificate"].input_schema
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {"gateway_id", "server"}
    assert sorted(schema["required"]) == ["gateway_id", "server"]
    assert tools["list_changes"].input_schema["required"] == []
    assert tools["propose_fix"].input_schema["properties"]["reason"]["type"] == "string"

    error, diagnosed = seen["diagnose"]
    assert not error and diagnosed["done"], diagnosed
    finding = diagnosed["job_state"]["diagnosis"]["findings"][0]
    assert finding["cause"] == "default_certificate_without_sni"
    assert finding["evidence"]["captures"]["gateway"]["chain"], finding["evidence"]

    error, exported = seen["export"]
    assert not error and exported["cer"].startswith("-----BEGIN CERTIFICATE-----"), exported
    assert exported["sha1"] and exported["server"]

    error, preview = seen["preview"]
    assert not error and preview["action"] == "none" and preview["arm_writes"] == 0, preview
    assert preview["previews"] and preview["previews"][0]["patch"], preview
    assert preview["previews"][0]["outcome"] == "apply" and preview["kill_switch"] is False

    error, proposed = seen["propose"]
    assert not error and proposed["done"], proposed
    assert proposed["status"] == "open" and proposed["proposal"], proposed
    assert proposed["job_state"]["mode"] == "propose"
    assert proposed["review_url"].endswith(f"/api/proposals/{proposed['proposal']}/review")

    error, proposal = seen["proposal"]
    assert not error and proposal["status"] == "open", proposal
    assert proposal["id"] == proposed["proposal"] and proposal["requester"] == "mcp-agent"
    assert proposal["gateway_id"].lower() == finding_gateway(diagnosed).lower()
    assert not seen["job"][0] and seen["job"][1]["state"] == "proposed"

    assert seen["sse_tools"] == TOOLS
    assert seen["sse_proposal"] == (False, proposal)

    error, unhealthy = seen["unhealthy"]
    assert not error, unhealthy
    listed = {g["gateway"].lower(): g for g in unhealthy["unhealthy"]}
    entry = listed[finding_gateway(diagnosed).lower()]
    assert entry["unhealthy_hosts"] >= 1 and entry["source"] in {"metrics", "backend_health"}
    assert seen["changes"] == (False, {"changes": []})

    for name, code_, words in [
        ("outside", "OutOfScope", "ALLOWED_SCOPES"),
        ("outside_fix", "OutOfScope", "ALLOWED_SCOPES"),
        ("stranger", "BadArgument", "not a member"),
        ("oversized", "BadArgument", "longer than"),
        ("long_reason", "BadArgument", "reason is longer than"),
        ("unknown_arg", "BadArgument", "unknown argument(s) mode"),
        ("bad_id", "BadArgument", "proposal_id"),
        ("no_change", "NotFound", "no change"),
        ("malformed", "BadArgument", "gateway_id"),
    ]:
        error, body = seen[name]
        assert error, (name, body)
        assert body["error"]["code"] == code_ and words in body["error"]["message"], (name, body)
        assert "Traceback" not in body["error"]["message"]

    assert puts == 0  # no tool wrote the gateway
    by_tool = {c["tool"] for c in calls}
    assert by_tool == TOOLS, by_tool
    assert all(c["by"] == "mcp-agent" for c in calls)
    refused = [c for c in calls if not c["ok"]]
    assert len(refused) == 9 and all(json.loads(c["error"])["code"] for c in refused)
    assert not any(env["FUNCTIONS_MCP_KEY"] in json.dumps(c, default=str) for c in calls)
    reasons = [json.loads(c["details"]).get("reason") for c in calls if c["tool"] == "propose_fix"]
    assert "SRE Agent: 502s on /api" in reasons

    changes = after["changes"][1]["changes"]
    assert [c["id"] for c in changes] == [approved["change"]], changes
    error, rollback = after["rollback"]
    assert not error and rollback["id"] == approved["change"], rollback
    assert rollback["preview"]["patch"] and rollback["preview"]["az"], rollback["preview"]
    assert rollback["status"] == "applied"  # previewed, not rolled back


async def _after_approval(served: Served, change: str) -> dict[str, Any]:
    gateway = served.env["SANDBOX_GATEWAY_IDS"].split(",")[0]
    async with mcp_session(served.url, served.env["FUNCTIONS_MCP_KEY"]) as session:
        return {
            "changes": await call(session, "list_changes", gateway_id=gateway),
            "rollback": await call(session, "preview_rollback", change_id=change),
        }


def finding_gateway(diagnosed: dict[str, Any]) -> str:
    return str(diagnosed["job_state"]["gateway_id"])


async def _refused(served: Served) -> str:
    """The client's failure without the key (the SDK wraps it in exception groups)."""
    try:
        async with mcp_session(served.url, None) as session:
            await session.list_tools()
    except BaseException as exc:  # flattened for the assertion
        return _flatten(exc)
    return "connected"


def _flatten(exc: BaseException) -> str:
    inner = getattr(exc, "exceptions", None) or []
    return " | ".join([repr(exc), *(_flatten(e) for e in inner)])
