"""The Azure Functions MCP extension's endpoint, for the local Functions runner
(sandbox/funcrunner).

AN APPROXIMATION of the extension (Azure/azure-functions-mcp-extension;
docs/sources.md#mcp-extension names the files each behaviour comes from), serving the app's
`mcpToolTrigger` functions:

* `POST /runtime/webhooks/mcp`, Streamable HTTP, stateless as the extension runs it: every POST is
  answered on its own (JSON-RPC response as one `event: message` of a text/event-stream body; a
  notification or a response 202 with no body); GET and DELETE 405. The `Accept` header must name
  both application/json and text/event-stream (406 otherwise). `initialize` sets `Mcp-Session-Id`
  to `<session>|<instance>`, the plain client state Core Tools uses (Azure encrypts it); an
  unreadable one is a 400.
* The webhook key: `x-functions-key` or `?code=` must be the `mcp_extension` system key or the
  master key (401 without), unless host.json sets
  `extensions.mcp.system.webhookAuthorizationLevel` to `Anonymous`.
* `tools/list` builds each input schema from the trigger's `toolProperties`; `tools/call` checks
  required arguments (-32602, the extension's message), then calls the function with the
  invocation context as JSON: {name, arguments, sessionid, transport: {name: http-streamable,
  sessionId, properties: {headers}}} (clientinfo is absent: a stateless session has none). The
  return value is read as the extension does: an McpToolResult when the trigger has
  `useResultSchema`, else the text of one text block.
* `resources/list`, `resources/templates/list` and `prompts/list` answer empty lists (the app
  declares none); other methods -32601.
* The legacy SSE transport: `GET /runtime/webhooks/mcp/sse` opens an event stream whose first
  event, `endpoint`, names `message?azmcpcs=<client>|<instance>` (plus `&code=<key>` when the key
  came with the request); `POST .../message?azmcpcs=…` answers 202 `Accepted` and the JSON-RPC
  response comes on the stream. The session remembers the client's `clientInfo`, passed to tools
  as `clientinfo`; the transport is `http-sse`.
"""

from __future__ import annotations

import hmac
import json
import queue
import secrets
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

if TYPE_CHECKING:
    from sandbox.funcrunner import FunctionRunner

WEBHOOK = "/runtime/webhooks/mcp"
SYSTEM_KEY = "mcp_extension"
# ModelContextProtocol 0.4.0-preview.3 (the extension's csproj) negotiates these; a client asking
# for another gets the newest.
PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18")
SERVER_INFO = {"name": "Azure Functions MCP server", "version": "1.0.0"}  # McpOptions defaults
_SSE_HEADERS = [
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache,no-store"),
    ("Content-Encoding", "identity"),
]
_INVALID_MESSAGE = "Bad Request: The POST body did not contain a valid JSON-RPC message."
_NOT_ACCEPTABLE = "Not Acceptable: Client must accept both application/json and text/event-stream"

Reply = tuple[int, list[tuple[str, str]], bytes]
_CONNECT = "Please connect to the /sse endpoint to initiate your session."


@dataclass
class _Session:
    """One client of the legacy SSE transport: its stream's outbox and what initialize said."""

    client: str
    headers: dict[str, str]
    outbox: queue.Queue[bytes] = field(default_factory=queue.Queue)
    client_info: Any = None


class McpHost:
    """The MCP webhook of one FunctionRunner."""

    def __init__(
        self, runner: FunctionRunner, *, host_json: Mapping[str, Any] | None = None
    ) -> None:
        self.runner = runner
        system = ((host_json or {}).get("extensions") or {}).get("mcp", {}).get("system", {})
        level = str(system.get("webhookAuthorizationLevel") or "System")
        self.anonymous = level.lower() == "anonymous"
        self.instance = secrets.token_hex(8)
        self.sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self.tools = {
            str(fn.trigger["toolName"]).lower(): fn
            for fn in runner.functions.values()
            if fn.trigger["type"] == "mcpToolTrigger"
        }

    @staticmethod
    def serves(path: str) -> bool:
        path = path.rstrip("/").lower()
        return path == WEBHOOK or path.startswith(WEBHOOK + "/")

    @staticmethod
    def streams(method: str, raw_path: str) -> bool:
        """The request opens the legacy SSE stream (the runner writes it as it comes)."""
        return method == "GET" and urlsplit(raw_path).path.rstrip("/").lower() == WEBHOOK + "/sse"

    def open_stream(
        self, raw_path: str, headers: Mapping[str, str]
    ) -> tuple[int, list[tuple[str, str]], Iterator[bytes]]:
        query = dict(parse_qsl(urlsplit(raw_path).query))
        if not self._authorized(query, headers):
            return 401, [("Content-Length", "0")], iter(())
        session = _Session(secrets.token_hex(8), self.runner._request_headers(headers))
        endpoint = f"message?azmcpcs={session.client}|{self.instance}"
        key = _header(headers, "x-functions-key") or query.get("code")
        if key:
            endpoint += f"&code={key}"
        with self._lock:
            self.sessions[session.client] = session
        return 200, list(_SSE_HEADERS), self._events(session, endpoint)

    def _events(self, session: _Session, endpoint: str) -> Iterator[bytes]:
        try:
            yield f"event: endpoint\ndata: {endpoint}\n\n".encode()
            while not self.runner._stop.is_set():
                try:
                    yield session.outbox.get(timeout=0.25)
                except queue.Empty:
                    continue
        finally:
            with self._lock:
                self.sessions.pop(session.client, None)

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        parts = urlsplit(raw_path)
        query = dict(parse_qsl(parts.query))
        if not self._authorized(query, headers):
            return 401, [], b""
        path = parts.path.rstrip("/").lower()
        if path == WEBHOOK + "/sse":
            return 405, [], b""  # the stream is a GET (streams/open_stream)
        if path == WEBHOOK + "/message":
            return self._legacy_message(query, body)
        if path != WEBHOOK:
            return 404, [], b""
        if method != "POST":
            return 405, [], b""
        accept = (_header(headers, "accept") or "").lower()
        if "application/json" not in accept or "text/event-stream" not in accept:
            return _json_error(406, _NOT_ACCEPTABLE)
        state = _header(headers, "mcp-session-id")
        if state is not None and len([p for p in state.split("|") if p]) != 2:
            return _json_error(400, "Invalid client state.")
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return _json_error(400, _INVALID_MESSAGE)
        if "method" not in message or "id" not in message:
            return 202, [], b""  # a notification or a response: accepted, nothing to say
        out_headers = list(_SSE_HEADERS)
        reply = self._request(message, _Call(state, headers, "http-streamable"), out_headers)
        return 200, out_headers, _event(message["id"], reply)

    def _legacy_message(self, query: Mapping[str, str], body: bytes) -> Reply:
        """POST message?azmcpcs=…: the answer goes to the client's SSE stream."""
        state = query.get("azmcpcs")
        if not state:
            return _bad_request(f"Missing service context. {_CONNECT}")
        parts = [p for p in state.split("|") if p]
        if len(parts) != 2:
            return _bad_request(f"Invalid client state. {_CONNECT}")
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            return _bad_request("No message in request body.")
        with self._lock:
            session = self.sessions.get(parts[0]) if parts[1] == self.instance else None
        if session is None:
            return _bad_request(
                f"No active session for client '{parts[0]}' and instance '{parts[1]}'. {_CONNECT}"
            )
        if "method" in message and "id" in message:
            call = _Call(session.client, session.headers, "http-sse", session)
            session.outbox.put(_event(message["id"], self._request(message, call, [])))
        return 202, [("Content-Type", "text/plain; charset=utf-8")], b"Accepted"

    # -- JSON-RPC -------------------------------------------------------------------------------

    def _request(
        self,
        message: Mapping[str, Any],
        call: _Call,
        out_headers: list[tuple[str, str]],
    ) -> dict[str, Any]:
        method = message.get("method")
        raw = message.get("params")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if method == "initialize":
            asked = params.get("protocolVersion")
            version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[-1]
            if call.session is not None:
                call.session.client_info = params.get("clientInfo")
            else:
                out_headers.append(("Mcp-Session-Id", f"{secrets.token_hex(8)}|{self.instance}"))
            capabilities: dict[str, Any] = {"tools": {}, "resources": {}, "prompts": {}}
            result = {
                "protocolVersion": version,
                "capabilities": capabilities,
                "serverInfo": SERVER_INFO,
            }
            return {"result": result}
        if method == "ping":
            return {"result": {}}
        if method == "tools/list":
            return {"result": {"tools": [self._describe(fn) for fn in self.tools.values()]}}
        if method == "tools/call":
            return self._call(params, call)
        empty = {"resources/list": "resources", "resources/templates/list": "resourceTemplates"}
        if method in empty:
            return {"result": {empty[str(method)]: []}}
        if method == "prompts/list":
            return {"result": {"prompts": []}}
        return _rpc_error(-32601, f"Method '{str(method)[:100]}' is not available.")

    def _describe(self, fn: Any) -> dict[str, Any]:
        tool: dict[str, Any] = {
            "name": fn.trigger["toolName"],
            "inputSchema": input_schema(_properties(fn)),
        }
        if fn.trigger.get("description"):
            tool["description"] = fn.trigger["description"]
        return tool

    def _call(self, params: Mapping[str, Any], call: _Call) -> dict[str, Any]:
        from sandbox.funcrunner import Invocation

        name = params.get("name")
        fn = self.tools.get(str(name).lower()) if isinstance(name, str) else None
        if fn is None:
            return _rpc_error(-32602, f"Unknown tool: '{name}'")
        arguments = params.get("arguments")
        arguments = arguments if isinstance(arguments, dict) else None
        given = arguments or {}
        missing = [
            p["propertyName"]
            for p in _properties(fn)
            if p.get("isRequired") and given.get(p["propertyName"]) is None
        ]
        if missing:
            return _rpc_error(
                -32602,
                "One or more required tool properties are missing values. Please provide: "
                + ", ".join(missing),
            )
        transport: dict[str, Any] = {
            "name": call.transport,
            "properties": {"headers": self.runner._request_headers(call.headers)},
        }
        context: dict[str, Any] = {"name": fn.trigger["toolName"], "transport": transport}
        if arguments is not None:
            context["arguments"] = arguments
        if call.session_id:
            if call.session is None:  # Streamable HTTP: the Mcp-Session-Id header
                transport["sessionId"] = call.session_id
            context["sessionid"] = call.session_id
        if call.session is not None and isinstance(call.session.client_info, dict):
            context["clientinfo"] = call.session.client_info
        try:
            value = self.runner._call(fn, json.dumps(context), self.runner._outputs(fn))
            result = tool_result(value, bool(fn.trigger.get("useResultSchema")))
        except Exception as exc:  # noqa: BLE001 - the extension rethrows; the SDK answers an error
            self.runner._record(Invocation(fn.name, "mcpToolTrigger", False, repr(exc)[:500]))
            return _rpc_error(-32603, "An error occurred.")
        self.runner._record(Invocation(fn.name, "mcpToolTrigger", True))
        return {"result": result}

    def _authorized(self, params: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        if self.anonymous:
            return True
        given = _header(headers, "x-functions-key") or params.get("code") or ""
        valid = [self.runner.system_keys.get(SYSTEM_KEY), self.runner.keys.get("master")]
        return bool(given) and any(hmac.compare_digest(given, k) for k in valid if k)


@dataclass(frozen=True)
class _Call:
    """Where a JSON-RPC request came from: its session id, the HTTP headers the tool sees, the
    transport's name, and the SSE session (None for Streamable HTTP)."""

    session_id: str | None
    headers: Mapping[str, str]
    transport: str
    session: _Session | None = None


def _event(request_id: Any, reply: Mapping[str, Any]) -> bytes:
    data = json.dumps({"jsonrpc": "2.0", "id": request_id, **reply})
    return f"event: message\ndata: {data}\n\n".encode()


def _bad_request(message: str) -> Reply:
    return 400, [("Content-Type", "application/json")], json.dumps(message).encode()


def _properties(fn: Any) -> list[dict[str, Any]]:
    raw = fn.trigger.get("toolProperties") or "[]"
    props = json.loads(raw) if isinstance(raw, str) else raw
    return [p for p in props if isinstance(p, dict) and str(p.get("propertyName", "")).strip()]


def input_schema(props: list[dict[str, Any]]) -> dict[str, Any]:
    """PropertyBasedToolInputSchema: object, one entry per property, `required` always there."""
    properties: dict[str, Any] = {}
    for p in props:
        kind: dict[str, Any] = {"type": p.get("propertyType") or "string"}
        if p.get("enumValues"):
            kind["enum"] = list(p["enumValues"])
        entry = {"type": "array", "items": kind} if p.get("isArray") else dict(kind)
        entry["description"] = p.get("description") or ""
        properties[p["propertyName"]] = entry
    required = list(dict.fromkeys(p["propertyName"] for p in props if p.get("isRequired")))
    return {"type": "object", "properties": properties, "required": required}


def tool_result(value: Any, use_result_schema: bool) -> dict[str, Any]:
    """The function's return value as a CallToolResult (ToolReturnValueBinder /
    SimpleToolReturnValueBinder)."""
    if value is None:
        return {"content": []}
    if not use_result_schema:
        return {"content": [{"type": "text", "text": str(value)}]}
    if not isinstance(value, str):
        raise TypeError("Expected JSON string.")
    envelope = json.loads(value)
    kind = str(envelope.get("type", ""))
    if kind.lower() == "call_tool_result":
        return dict(json.loads(envelope["content"]))
    content = json.loads(envelope["content"])
    blocks = content if kind.lower() == "multi_content_result" else [content]
    if not blocks:
        raise ValueError("No content items were produced from the McpToolResult.")
    result: dict[str, Any] = {"content": blocks}
    if envelope.get("structuredContent"):
        result["structuredContent"] = json.loads(envelope["structuredContent"])
    return result


def _rpc_error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _json_error(status: int, message: str) -> Reply:
    body = {"jsonrpc": "2.0", "error": {"code": -32000, "message": message}}
    return status, [("Content-Type", "application/json")], json.dumps(body).encode()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
