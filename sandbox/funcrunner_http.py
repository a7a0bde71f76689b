"""HTTP triggers of the local Functions runner (sandbox/funcrunner.py): the server, routing by
`/<routePrefix>/<route>`, function keys for FUNCTION and ADMIN auth levels, App Service
Authentication's principal headers, and `func.HttpRequest` in, `func.HttpResponse` out.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from sandbox.funcrunner_index import IndexedFunction, Invocation, Route, error_text
from sandbox.mcp_host import McpHost

if TYPE_CHECKING:
    from sandbox.funcrunner import FunctionRunner

log = logging.getLogger("sandbox.funcrunner")

_EASY_AUTH_HEADER = re.compile(r"^x-ms-(client-principal|token-)", re.IGNORECASE)
_MAX_BODY = 100 * 1024 * 1024


class Server(ThreadingHTTPServer):
    # The default backlog of 5 resets connections under an alert storm; the host queues them.
    request_queue_size = 128
    daemon_threads = True


class Handler(BaseHTTPRequestHandler):
    runner: FunctionRunner
    server_version = "appgw-bot-funcrunner"
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._reply(413, [], b"")
            return
        body = self.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if self.runner.mcp.streams(self.command, self.path):  # the MCP extension's SSE stream
            self._stream(*self.runner.mcp.open_stream(self.path, headers))
            return
        status, out_headers, out_body = self.runner.handle_http(
            self.command, self.path, headers, body
        )
        self._reply(status, out_headers, out_body)

    def _stream(self, status: int, headers: list[tuple[str, str]], chunks: Iterable[bytes]) -> None:
        """A response written as it comes (no Content-Length), until the source ends or the
        client goes away."""
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        with contextlib.suppress(OSError):
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in {"content-length", "connection"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def handle_http(
    runner: FunctionRunner, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Route one request; returns (status, headers, body)."""
    served = runner.auth.serve(method, raw_path, headers) if runner.auth else None
    if served is not None:
        return served
    parts = urlsplit(raw_path)
    if McpHost.serves(parts.path):
        return runner.mcp.handle(method, raw_path, headers, body)
    prefix = "/" + runner.config.route_prefix.strip("/") if runner.config.route_prefix else ""
    path = parts.path.rstrip("/") or "/"
    if prefix and not (path == prefix or path.startswith(prefix + "/")):
        return 404, [], b""
    rel = path[len(prefix) :] or "/"
    for route in runner.routes:
        match = route.pattern.fullmatch(rel)
        if match is None or (route.methods is not None and method not in route.methods):
            continue
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if not authorized(runner, route, params, headers):
            runner._record(Invocation(route.function.name, "httpTrigger", False, "401", status=401))
            return 401, [], b""
        route_params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
        request = func.HttpRequest(
            method=method,
            url=f"{runner.url}{raw_path}",
            headers=request_headers(runner, headers),
            params=params,
            route_params=route_params,
            body=body,
        )
        return invoke_http(runner, route.function, request)
    return 404, [], b""


def authorized(
    runner: FunctionRunner, route: Route, params: Mapping[str, str], headers: Mapping[str, str]
) -> bool:
    if route.auth_level == "anonymous":
        return True
    given = header(headers, "x-functions-key") or params.get("code") or ""
    if route.auth_level == "admin":
        valid = [runner.keys["master"]] if "master" in runner.keys else []
    else:
        valid = [*runner.keys.values(), *runner.function_keys.get(route.function.name, {}).values()]
    return bool(given) and any(hmac.compare_digest(given, key) for key in valid if key)


def request_headers(runner: FunctionRunner, headers: Mapping[str, str]) -> dict[str, str]:
    if runner.auth is not None:
        return runner.auth.request_headers(headers)
    if runner.easy_auth:
        return dict(headers)
    return {k: v for k, v in headers.items() if not _EASY_AUTH_HEADER.match(k)}


def invoke_http(
    runner: FunctionRunner, fn: IndexedFunction, request: func.HttpRequest
) -> tuple[int, list[tuple[str, str]], bytes]:
    outs = runner._outputs(fn)
    try:
        result = runner._call(fn, request, outs)
        runner._deliver(fn, outs)
    except Exception as exc:
        log.exception("HTTP function %s failed", fn.name)
        runner._record(Invocation(fn.name, "httpTrigger", False, error_text(exc), status=500))
        return 500, [], b""
    status, headers, body = http_result(result)
    runner._record(Invocation(fn.name, "httpTrigger", True, status=status))
    return status, headers, body


def http_result(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    if result is None:
        return 204, [], b""
    if isinstance(result, str | bytes):
        body = result.encode() if isinstance(result, str) else result
        return 200, [("Content-Type", "text/plain; charset=utf-8")], body
    response = cast(func.HttpResponse, result)
    headers = list(response.headers.items())
    if not any(k.lower() == "content-type" for k, _ in headers) and response.mimetype:
        charset = f"; charset={response.charset}" if response.charset else ""
        headers.append(("Content-Type", f"{response.mimetype}{charset}"))
    return response.status_code, headers, response.get_body() or b""


def header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
