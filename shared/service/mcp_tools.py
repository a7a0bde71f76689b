"""The bot as MCP tools (Azure Functions MCP extension): what an agent may ask, never what it may
do to a gateway.

Each tool is a thin wrapper over what the HTTP API already does (shared.service.api and the
Remediator the worker uses) and answers the same JSON, as structured content. No tool approves,
applies, rejects or rolls back: those stay with people (the review page, the CLI). `propose_fix`
asks for a proposal whatever the mode; diagnosis and proposals run as queue jobs, in the
gateway's network, and the tool waits up to WAIT_SECONDS for them.

Every call is recorded in the ledger (partition "mcp": tool, caller, gateway, outcome), honours
ALLOWED_SCOPES and the input limits below; a bad argument is a tool error (`isError`) with one
clear message, never a traceback. function_app.py registers one `mcpToolTrigger` per tool; the
extension hands the function the invocation context as JSON and reads back an `McpToolResult`
string (docs/sources.md#mcp-extension). The tools' bodies are in shared.service.mcp_handlers.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.common.errors import BotError, InputError, OutOfScopeError
from shared.service import api
from shared.service.app import AppContext

log = logging.getLogger(__name__)

# The invocation context is the extension's JSON (arguments plus the request's headers).
MAX_CONTEXT_BYTES = 256 * 1024
MAX_ID_CHARS = 1024  # an ARM resource id is far shorter; anything longer is not one
MAX_REASON_CHARS = 2000
MAX_SERVER_CHARS = 253  # a DNS name
WAIT_SECONDS = 25.0  # how long diagnose_gateway and propose_fix wait for their job
MAX_GATEWAYS_LISTED = 500  # list_unhealthy_gateways: metrics for at most this many
MAX_HEALTH_READS = 5  # …and backend health (an ARM operation each) for this many without data
LEDGER_PARTITION = "mcp"


class ToolError(Exception):
    """A refusal the agent should read: `code` (BadArgument, OutOfScope, NotFound, Busy,
    Unavailable, Failed) and one line of text."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Prop:
    name: str
    description: str
    required: bool = True
    limit: int = MAX_ID_CHARS


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    props: tuple[Prop, ...] = ()

    def properties_json(self) -> str:
        """The trigger's `toolProperties`: the list the extension turns into the input schema
        (PropertyBasedToolInputSchema; the same keys azure-functions' mcp_tool writes)."""
        return json.dumps(
            [
                {
                    "propertyName": p.name,
                    "propertyType": "string",
                    "description": p.description,
                    "isArray": False,
                    "isRequired": p.required,
                }
                for p in self.props
            ]
        )


_GATEWAY = Prop(
    "gateway_id",
    "Resource id of the Application Gateway: /subscriptions/<sub>/resourceGroups/<rg>/providers/"
    "Microsoft.Network/applicationGateways/<name>",
)

TOOLS: tuple[Tool, ...] = (
    Tool(
        "list_unhealthy_gateways",
        "Application Gateways inside the bot's scope whose backends are unhealthy "
        "(UnhealthyHostCount metric over the last minutes); gateways without metric data are "
        "listed apart: diagnose them to know.",
    ),
    Tool(
        "diagnose_gateway",
        "Diagnose one gateway's backend certificate trust from inside its network: the cause "
        "of each unhealthy backend with its evidence and the fix. Runs as a job; waits a bounded "
        "time, else returns the job id to poll with get_job. Changes nothing.",
        (_GATEWAY,),
    ),
    Tool(
        "get_job",
        "A diagnose or fix job by id: its state and, once finished, its diagnosis or outcome.",
        (Prop("job_id", "Job id returned by diagnose_gateway or propose_fix", limit=64),),
    ),
    Tool(
        "export_backend_certificate",
        "The certificate a backend presents to the gateway, captured from inside the gateway's "
        "network, as Base-64 CER (PEM). The server must be a member of one of the gateway's "
        "routed backend pools.",
        (
            _GATEWAY,
            Prop(
                "server",
                "Backend pool member (FQDN or IP address, as in the pool)",
                limit=MAX_SERVER_CHARS,
            ),
        ),
    ),
    Tool(
        "preview_fix",
        "What fixing the gateway would change, without changing it: the JSON Patch of the "
        "gateway document, the equivalent az commands and their rollback, the warnings and what "
        "policy would do (apply, propose or only report). Writes nothing, proposes nothing.",
        (_GATEWAY,),
    ),
    Tool(
        "propose_fix",
        "Ask for the fix as a proposal for a human approver (never applied by this call, "
        "whatever the bot's mode). Returns the proposal id and its review page URL.",
        (
            _GATEWAY,
            Prop(
                "reason",
                "Why the agent asks for this fix (kept in the ledger with the request)",
                limit=MAX_REASON_CHARS,
            ),
        ),
    ),
    Tool(
        "get_proposal",
        "A proposal by id: its status, the exact change, the evidence and who decided.",
        (Prop("proposal_id", "Proposal id returned by propose_fix", limit=64),),
    ),
    Tool(
        "list_changes",
        "Changes the bot made (and their rollbacks), newest first, optionally of one gateway.",
        (
            Prop(
                "gateway_id",
                "Resource id of an Application Gateway (optional: every gateway in scope)",
                required=False,
            ),
        ),
    ),
    Tool(
        "preview_rollback",
        "What rolling a change back would remove, on the gateway as it is now: JSON Patch and "
        "az commands. Rolling back itself is for people (the CLI or the API, by an approver).",
        (Prop("change_id", "Change id from list_changes", limit=64),),
    ),
)
BY_NAME = {t.name: t for t in TOOLS}


# ---- the invocation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One tool call as the extension describes it (ToolInvocationContext)."""

    tool: str
    arguments: Mapping[str, Any]
    headers: Mapping[str, str]
    session: str
    caller: str


@dataclass(frozen=True)
class ToolOutcome:
    payload: dict[str, Any]
    is_error: bool = False

    def extension_result(self) -> str:
        """The function's return value as the extension reads it with useResultSchema: an
        McpToolResult of type call_tool_result, whose `content` is the CallToolResult JSON."""
        text = json.dumps(self.payload, default=str)
        result = {
            "content": [{"type": "text", "text": text}],
            "structuredContent": json.loads(text),
            "isError": self.is_error,
        }
        return json.dumps(
            {"type": "call_tool_result", "content": json.dumps(result), "structuredContent": text}
        )


def parse_context(raw: str | bytes | Mapping[str, Any], env: Mapping[str, str]) -> Call:
    """The extension's invocation context: {name, arguments, sessionid, clientinfo,
    transport: {name, sessionId, properties: {headers}}}."""
    if isinstance(raw, Mapping):
        data: Any = raw
    else:
        if len(raw) > MAX_CONTEXT_BYTES:
            raise ToolError("BadArgument", f"arguments larger than {MAX_CONTEXT_BYTES} bytes")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise ToolError("BadArgument", "the tool call is not JSON") from None
    if not isinstance(data, Mapping):
        raise ToolError("BadArgument", "the tool call is not a JSON object")
    arguments = data.get("arguments") or {}
    if not isinstance(arguments, Mapping):
        raise ToolError("BadArgument", "arguments must be a JSON object")
    transport = _mapping(data.get("transport"))
    raw_headers = _mapping(_mapping(transport.get("properties")).get("headers"))
    headers = {str(k): str(v) for k, v in raw_headers.items()}
    session = str(data.get("sessionid") or transport.get("sessionId") or "")[:64]
    try:
        caller = api.caller_identity(headers, env) or "mcp-agent"
    except api.Unauthenticated as exc:
        raise ToolError("Unauthenticated", str(exc)) from None
    return Call(str(data.get("name") or ""), arguments, headers, session, caller)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _arguments(tool: Tool, arguments: Mapping[str, Any]) -> dict[str, str]:
    """Check names, types and sizes; the extension only checks that required ones are there."""
    known = {p.name for p in tool.props}
    unknown = sorted(str(k)[:40] for k in arguments if k not in known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise ToolError(
            "BadArgument", f"unknown argument(s) {', '.join(unknown)}; {tool.name} takes {allowed}"
        )
    values: dict[str, str] = {}
    for prop in tool.props:
        value = arguments.get(prop.name)
        if value is None or value == "":
            if prop.required:
                raise ToolError("BadArgument", f"{prop.name} is required")
            continue
        if not isinstance(value, str):
            raise ToolError("BadArgument", f"{prop.name} must be a string")
        if len(value) > prop.limit:
            raise ToolError("BadArgument", f"{prop.name} is longer than {prop.limit} characters")
        if any(ord(c) < 0x20 and c not in "\t\n" for c in value) or "\x7f" in value:
            raise ToolError("BadArgument", f"{prop.name} holds control characters")
        values[prop.name] = value.strip()
    return values


def run_tool(
    ctx: AppContext,
    raw: str | bytes | Mapping[str, Any],
    *,
    tool_name: str | None = None,
    env: Mapping[str, str] | None = None,
    wait_seconds: float = WAIT_SECONDS,
) -> ToolOutcome:
    """Run one tool call end to end: parse, check, run, record in the ledger. Never raises."""
    import os

    env = os.environ if env is None else env
    started = time.monotonic()
    call: Call | None = None
    record: dict[str, Any] = {}
    try:
        call = parse_context(raw, env)
        name = tool_name or call.tool
        tool = BY_NAME.get(name)
        if tool is None:
            raise ToolError("BadArgument", f"unknown tool {name[:60]!r}")
        args = _arguments(tool, call.arguments)
        record.update({k: v for k, v in args.items()})
        from shared.service.mcp_handlers import HANDLERS

        payload = HANDLERS[tool.name](ctx, args, call, record, wait_seconds)
        outcome = ToolOutcome(payload)
    except ToolError as exc:
        outcome = _error(exc.code, exc.message)
    except OutOfScopeError as exc:
        outcome = _error("OutOfScope", str(exc))
    except InputError as exc:
        outcome = _error("BadArgument", str(exc))
    except RecursionError:
        outcome = _error("BadArgument", "input is nested too deeply")
    except Exception as exc:  # noqa: BLE001 - an agent gets a tool error, the log the rest
        outcome = _unexpected(exc)
    name = (tool_name or (call.tool if call else "") or "?")[:64]
    try:
        _record(ctx, name, call, record, outcome, time.monotonic() - started)
    except Exception:  # an unrecorded call must not look like a recorded one
        log.exception("could not record MCP tool call %s", name)
        return _error("Unavailable", "the bot's ledger is unavailable: nothing was done; retry")
    return outcome


def _error(code: str, message: str) -> ToolOutcome:
    return ToolOutcome({"error": {"code": code, "message": message}}, is_error=True)


def _unexpected(exc: Exception) -> ToolOutcome:
    from shared.service.storage import StorageRejected, StorageUnavailable

    if isinstance(exc, StorageUnavailable):
        return _error("Unavailable", "state storage is unavailable; retry")
    if isinstance(exc, BotError) and not isinstance(exc, StorageRejected):
        return _error("Failed", str(exc)[:1000])
    log.exception("unexpected failure in an MCP tool")
    return _error("InternalError", "unexpected failure; see the function app's logs")


def _record(
    ctx: AppContext,
    tool: str,
    call: Call | None,
    record: Mapping[str, Any],
    outcome: ToolOutcome,
    seconds: float,
) -> None:
    """One ledger row per call (partition "mcp"): who called which tool on what, and how it
    ended. Header values are never kept (the extension passes the key header along)."""
    from shared.service.storage import guard

    now = datetime.now(UTC)
    error = outcome.payload.get("error") if outcome.is_error else None
    details = {k: str(v)[:MAX_REASON_CHARS] for k, v in record.items()}
    entity = {
        "PartitionKey": LEDGER_PARTITION,
        "RowKey": f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}",
        "tool": tool,
        "by": call.caller if call else "unknown",
        "session": call.session if call else "",
        "gateway_id": str(record.get("gateway") or record.get("gateway_id") or "")[:MAX_ID_CHARS],
        "at": now,
        "ok": not outcome.is_error,
        "error": json.dumps(error)[:4000] if error else "",
        "details": json.dumps(details, default=str)[:30000],
        "seconds": round(seconds, 3),
    }
    storage = ctx.storage
    storage.ensure()
    table = storage.table_service.get_table_client(storage.names.ledger_table)
    with guard("recording an MCP tool call"):
        table.create_entity(entity)


def tool_calls(ctx: AppContext) -> list[dict[str, Any]]:
    """The recorded tool calls, oldest first (for operators and tests)."""
    from shared.service.storage import guard

    storage = ctx.storage
    storage.ensure()
    table = storage.table_service.get_table_client(storage.names.ledger_table)
    with guard("reading MCP tool calls"):
        rows = table.query_entities("PartitionKey eq @pk", parameters={"pk": LEDGER_PARTITION})
        return [dict(r) for r in rows]
