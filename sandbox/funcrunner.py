"""A local runner that stands in for `func start` where Azure Functions Core Tools cannot be
installed (its installer downloads the host from a CDN; docs/sources.md#functions).

THIS IS AN APPROXIMATION OF THE AZURE FUNCTIONS HOST, not the host. It runs the app in-process,
built from the bindings the app declares (`app.get_functions()`):

* HTTP triggers are served over real HTTP on 127.0.0.1 at `/<routePrefix>/<route>` (host.json,
  default `api`), with `{name}`, `{name?}`, `{name:constraint}` and `{*rest}` route parameters,
  function-key checks for FUNCTION/ADMIN auth levels (`?code=` or `x-functions-key`; 401 without
  a valid key), `func.HttpRequest` in and `func.HttpResponse` out (a failing function → 500).
* Queue triggers are polled from Azure Storage (Azurite): base64 decoding per host.json
  `messageEncoding`, `QueueMessage.dequeue_count`, the message made visible again after
  `visibilityTimeout` when the function fails, and moved to `<queue>-poison` after
  `maxDequeueCount` attempts (host.json, default 5; docs/sources.md#functions).
* Timer triggers fire on demand (`run_timer(name)`); a schedule loop (6-field NCRONTAB) is
  optional and off by default.
* Queue output bindings are written (base64) after the function returns successfully.
* App Service Authentication: with `auth=EasyAuth(...)` (sandbox/easyauth.py) the runner serves
  `/.auth/login/aad`, `/.auth/logout` and `/.auth/me`, strips callers' `x-ms-client-principal*`
  headers and injects the signed-in session's, as the platform does. With `easy_auth=True` the
  caller's principal headers reach the function as if the platform had set them (tests that
  play the platform). Otherwise such headers are stripped.
* MCP tool triggers are served at `/runtime/webhooks/mcp` behind the `mcp_extension` system key
  (`system_keys`), as the Functions MCP extension does (sandbox/mcp_host.py).

Differences from the host, among others: one process, no worker isolation or scale-out; no
message lease renewal for functions running longer than the 10-minute initial lease; no retry
policies, no other binding types (they are refused at start); app settings are put into
`os.environ` while the runner runs (and restored after), because the app reads them from there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hmac
import inspect
import json
import logging
import os
import re
import threading
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.functions._abc import RetryContext, TraceContext
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import LinearRetry, QueueClient, TextBase64EncodePolicy
from azure.storage.queue import QueueMessage as StorageQueueMessage

from sandbox.easyauth import EasyAuth
from sandbox.mcp_host import McpHost

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONNECTION = "AzureWebJobsStorage"
# Headers only App Service Authentication may set (stripped from callers unless easy_auth).
_EASY_AUTH_HEADER = re.compile(r"^x-ms-(client-principal|token-)", re.IGNORECASE)
_SETTING_REF = re.compile(r"%([A-Za-z0-9_.:-]+)%")
_INITIAL_LEASE = 600  # seconds a message stays invisible while its function runs
_MAX_BODY = 100 * 1024 * 1024


# The poll loop retries by itself: the SDK's default backoff (15 s, 18 s, 24 s…, ±3 s jitter)
# while storage is down would keep stop() waiting for minutes. One quick retry, then the loop.
def _poll_retry() -> dict[str, Any]:
    """Client options for the runner's queue polls: one quick retry. A new policy per client:
    azure-core links each pipeline's policies through their `next` attribute, so one policy
    object shared by clients built on several threads would be re-linked under a request in
    flight (AttributeError: '_SansIOHTTPPolicyRunner' object has no attribute 'next')."""
    return {
        "retry_policy": LinearRetry(backoff=0.2, retry_total=1, random_jitter_range=0.1),  # type: ignore[arg-type]
        "connection_timeout": 5,
    }


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 resets connections under an alert storm; the host queues them.
    request_queue_size = 128
    daemon_threads = True


@dataclass
class Invocation:
    """One function run, as recorded by the runner (for tests and the demo)."""

    function: str
    trigger: str
    ok: bool
    error: str | None = None
    dequeue_count: int | None = None
    status: int | None = None
    poisoned: bool = False


@dataclass
class _Function:
    name: str
    user_function: Callable[..., Any]
    trigger: dict[str, Any]
    outputs: list[dict[str, Any]]


@dataclass
class _Route:
    function: _Function
    pattern: re.Pattern[str]
    methods: frozenset[str] | None
    auth_level: str
    precedence: tuple[int, ...]


@dataclass
class _QueueConfig:
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    batch_size: int = 16
    base64: bool = True
    route_prefix: str = "api"
    extra: dict[str, Any] = field(default_factory=dict)


class _Out(func.Out[Any]):
    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class _Context(func.Context):
    def __init__(self, function_name: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return str(REPO_ROOT)

    @property
    def trace_context(self) -> TraceContext:
        return cast(TraceContext, None)

    @property
    def retry_context(self) -> RetryContext:
        return cast(RetryContext, None)


class FunctionRunner:
    """Serve and feed a `func.FunctionApp` locally (see the module docstring: an approximation).

    `env`: app settings (put into os.environ while running). `connection`: the storage connection
    string behind `AzureWebJobsStorage` (Azurite). `keys`: host keys by name; FUNCTION-level
    routes accept any of them, ADMIN-level routes only the one named "master". `function_keys`:
    optional per-function keys {function name: {key name: value}}.
    """

    def __init__(
        self,
        app: func.FunctionApp,
        *,
        env: Mapping[str, str],
        connection: str,
        keys: Mapping[str, str],
        function_keys: Mapping[str, Mapping[str, str]] | None = None,
        system_keys: Mapping[str, str] | None = None,
        easy_auth: bool = False,
        auth: EasyAuth | None = None,
        host_json: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        visibility_timeout: float | None = None,
        poll_interval: float = 0.2,
        schedule: bool = False,
        port: int = 0,
    ) -> None:
        self.env = {DEFAULT_CONNECTION: connection, **env}
        self.connection = connection
        self.keys = dict(keys)
        self.function_keys = {k: dict(v) for k, v in (function_keys or {}).items()}
        self.system_keys = dict(system_keys or {})  # extension webhooks' keys (mcp_extension)
        self.easy_auth = easy_auth
        self.auth = auth
        host = _load_host_json(host_json)
        self.config = _queue_config(host)
        if visibility_timeout is not None:
            self.config.visibility_timeout = visibility_timeout
        self.poll_interval = poll_interval
        self.schedule = schedule
        self.invocations: list[Invocation] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._saved_env: dict[str, str | None] = {}
        self._server: ThreadingHTTPServer | None = None
        self._port = port
        self.functions = self._index(app)
        self.routes = sorted(
            (self._route(f) for f in self.functions.values() if _kind(f) == "httpTrigger"),
            key=lambda r: r.precedence,
        )
        self.mcp = McpHost(self, host_json=host)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("runner not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FunctionRunner:
        self._apply_env()
        self._stop.clear()
        handler = type("Handler", (_Handler,), {"runner": self})
        self._server = _Server(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True
        # stop() waits one poll of serve_forever: 0.05 s, not the default 0.5 s.
        self._spawn(functools.partial(self._server.serve_forever, poll_interval=0.05), "func-http")
        for fn in self.functions.values():
            if _kind(fn) == "queueTrigger":
                # Created before start() returns, so callers can send at once.
                _create_queue(self._queue_client(fn.trigger))
                _create_queue(self._queue_client(fn.trigger, suffix="-poison"))
                self._spawn(functools.partial(self._poll_queue, fn), f"func-queue-{fn.name}")
            elif _kind(fn) == "timerTrigger":
                if fn.trigger.get("runOnStartup"):
                    self.run_timer(fn.name)
                if self.schedule:
                    self._spawn(functools.partial(self._timer_loop, fn), f"func-timer-{fn.name}")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=60)
        self._threads.clear()
        self._server = None
        self._restore_env()

    def __enter__(self) -> FunctionRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, predicate: Callable[[list[Invocation]], bool], timeout: float) -> bool:
        """Block until predicate(invocations) holds (True) or the timeout passes (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(list(self.invocations)), timeout)

    # -- timers -------------------------------------------------------------------------------

    def run_timer(self, name: str, *, past_due: bool = False) -> Invocation:
        fn = self.functions.get(name)
        if fn is None or _kind(fn) != "timerTrigger":
            raise KeyError(f"no timer-triggered function {name!r}")
        outs = self._outputs(fn)
        try:
            self._call(fn, TimerRequest(past_due=past_due), outs)
            self._deliver(fn, outs)
        except Exception as exc:
            log.exception("timer function %s failed", name)
            return self._record(Invocation(name, "timerTrigger", False, _error(exc)))
        return self._record(Invocation(name, "timerTrigger", True))

    def _timer_loop(self, fn: _Function) -> None:
        cron = _parse_ncrontab(self._resolve(str(fn.trigger["schedule"])))
        last: datetime | None = None
        while not self._stop.wait(0.25):
            now = datetime.now(UTC).replace(microsecond=0)
            if now != last and _cron_matches(cron, now):
                last = now
                self.run_timer(fn.name)

    # -- HTTP ---------------------------------------------------------------------------------

    def handle_http(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Route one request; returns (status, headers, body)."""
        served = self.auth.serve(method, raw_path, headers) if self.auth else None
        if served is not None:
            return served
        parts = urlsplit(raw_path)
        if McpHost.serves(parts.path):
            return self.mcp.handle(method, raw_path, headers, body)
        prefix = "/" + self.config.route_prefix.strip("/") if self.config.route_prefix else ""
        path = parts.path.rstrip("/") or "/"
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            return 404, [], b""
        rel = path[len(prefix) :] or "/"
        for route in self.routes:
            match = route.pattern.fullmatch(rel)
            if match is None or (route.methods is not None and method not in route.methods):
                continue
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            if not self._authorized(route, params, headers):
                self._record(
                    Invocation(route.function.name, "httpTrigger", False, "401", status=401)
                )
                return 401, [], b""
            route_params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            request = func.HttpRequest(
                method=method,
                url=f"{self.url}{raw_path}",
                headers=self._request_headers(headers),
                params=params,
                route_params=route_params,
                body=body,
            )
            return self._invoke_http(route.function, request)
        return 404, [], b""

    def _authorized(
        self, route: _Route, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> bool:
        if route.auth_level == "anonymous":
            return True
        given = _header(headers, "x-functions-key") or params.get("code") or ""
        if route.auth_level == "admin":
            valid = [self.keys["master"]] if "master" in self.keys else []
        else:
            valid = [*self.keys.values(), *self.function_keys.get(route.function.name, {}).values()]
        return bool(given) and any(hmac.compare_digest(given, key) for key in valid if key)

    def _request_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        if self.auth is not None:
            return self.auth.request_headers(headers)
        if self.easy_auth:
            return dict(headers)
        return {k: v for k, v in headers.items() if not _EASY_AUTH_HEADER.match(k)}

    def _invoke_http(
        self, fn: _Function, request: func.HttpRequest
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        outs = self._outputs(fn)
        try:
            result = self._call(fn, request, outs)
            self._deliver(fn, outs)
        except Exception as exc:
            log.exception("HTTP function %s failed", fn.name)
            self._record(Invocation(fn.name, "httpTrigger", False, _error(exc), status=500))
            return 500, [], b""
        status, headers, body = _http_result(result)
        self._record(Invocation(fn.name, "httpTrigger", True, status=status))
        return status, headers, body

    # -- queues -------------------------------------------------------------------------------

    def _poll_queue(self, fn: _Function) -> None:
        client = self._queue_client(fn.trigger)
        poison = self._queue_client(fn.trigger, suffix="-poison")
        batch = max(1, min(32, self.config.batch_size))
        with ThreadPoolExecutor(max_workers=batch, thread_name_prefix=f"q-{fn.name}") as pool:
            while not self._stop.is_set():
                try:
                    messages = list(
                        client.receive_messages(
                            messages_per_page=batch,
                            max_messages=batch,
                            visibility_timeout=_INITIAL_LEASE,
                        )
                    )
                except AzureError as exc:
                    log.warning("polling %s failed: %s", fn.name, exc)
                    messages = []
                if not messages:
                    self._stop.wait(self.poll_interval)
                    continue
                for future in [pool.submit(self._process, fn, client, poison, m) for m in messages]:
                    future.result()

    def _process(
        self, fn: _Function, client: QueueClient, poison: QueueClient, msg: StorageQueueMessage
    ) -> None:
        count = int(msg.dequeue_count or 1)
        try:
            if count > self.config.max_dequeue_count:
                raise RuntimeError("dequeue count above maxDequeueCount")
            body = _decode_message(str(msg.content), self.config.base64)
            message = QueueMessage(
                id=msg.id,
                body=body,
                dequeue_count=count,
                expiration_time=msg.expires_on,
                insertion_time=msg.inserted_on,
                time_next_visible=msg.next_visible_on,
                pop_receipt=msg.pop_receipt,
            )
            outs = self._outputs(fn)
            self._call(fn, message, outs)
            self._deliver(fn, outs)
        except Exception as exc:  # noqa: BLE001 - any failure counts, as in the host
            self._fail_message(fn, client, poison, msg, count, exc)
            return
        try:
            client.delete_message(msg.id, msg.pop_receipt)
        except AzureError as exc:
            log.warning("could not delete message %s: %s", msg.id, exc)
        self._record(Invocation(fn.name, "queueTrigger", True, dequeue_count=count))

    def _fail_message(
        self,
        fn: _Function,
        client: QueueClient,
        poison: QueueClient,
        msg: StorageQueueMessage,
        count: int,
        exc: Exception,
    ) -> None:
        log.error("queue function %s failed (dequeue %d): %s", fn.name, count, exc)
        poisoned = count >= self.config.max_dequeue_count
        try:
            if poisoned:
                # Copy the content as stored (already encoded), then drop the original.
                poison.send_message(msg.content)
                client.delete_message(msg.id, msg.pop_receipt)
            else:
                client.update_message(
                    msg.id, msg.pop_receipt, visibility_timeout=int(self.config.visibility_timeout)
                )
        except AzureError as err:
            log.warning("could not requeue message %s: %s", msg.id, err)
        self._record(
            Invocation(fn.name, "queueTrigger", False, _error(exc), count, poisoned=poisoned)
        )

    def _queue_client(self, binding: Mapping[str, Any], suffix: str = "") -> QueueClient:
        name = self._resolve(str(binding["queueName"])) + suffix
        conn = self._connection(binding)
        # The raw client: decoding happens here, to mirror host.json messageEncoding.
        return QueueClient.from_connection_string(conn, name, **_poll_retry())

    # -- invocation ---------------------------------------------------------------------------

    def _outputs(self, fn: _Function) -> dict[str, _Out]:
        return {b["name"]: _Out() for b in fn.outputs}

    def _call(self, fn: _Function, trigger_value: Any, outs: Mapping[str, _Out]) -> Any:
        kwargs: dict[str, Any] = {}
        for name in inspect.signature(fn.user_function).parameters:
            if name == fn.trigger["name"]:
                kwargs[name] = trigger_value
            elif name in outs:
                kwargs[name] = outs[name]
            elif name == "context":
                kwargs[name] = _Context(fn.name)
            else:
                raise TypeError(f"{fn.name}: no binding for parameter {name!r}")
        result = fn.user_function(**kwargs)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return result

    def _deliver(self, fn: _Function, outs: Mapping[str, _Out]) -> None:
        for binding in fn.outputs:
            value = outs[binding["name"]].get()
            if value is None:
                continue
            policy = TextBase64EncodePolicy() if self.config.base64 else None
            client = QueueClient.from_connection_string(
                self._connection(binding),
                self._resolve(str(binding["queueName"])),
                message_encode_policy=policy,
            )
            _create_queue(client)
            for item in value if isinstance(value, list | tuple) else [value]:
                client.send_message(_message_text(item))

    def _record(self, invocation: Invocation) -> Invocation:
        with self._changed:
            self.invocations.append(invocation)
            self._changed.notify_all()
        return invocation

    # -- indexing -----------------------------------------------------------------------------

    def _index(self, app: func.FunctionApp) -> dict[str, _Function]:
        functions: dict[str, _Function] = {}
        # azure-functions 1.26 remembers names from an earlier get_functions() and then reports
        # every function as a duplicate; forget them so the app can be indexed again.
        app.functions_bindings = None
        for fn in app.get_functions():
            name = fn.get_function_name() or fn.get_user_function().__name__
            if _truthy(self.env.get(f"AzureWebJobs.{name}.Disabled")):
                continue
            bindings = json.loads(fn.get_function_json())["bindings"]
            triggers = [b for b in bindings if str(b["type"]).endswith("Trigger")]
            outputs = [b for b in bindings if b["type"] == "queue" and b["direction"] == "OUT"]
            others = [
                b
                for b in bindings
                if b not in triggers and b not in outputs and b["type"] != "http"
            ]
            if len(triggers) != 1 or triggers[0]["type"] not in _TRIGGERS or others:
                kinds = ", ".join(sorted({str(b["type"]) for b in bindings}))
                raise ValueError(f"function {name}: bindings not supported by the runner: {kinds}")
            functions[name] = _Function(name, fn.get_user_function(), triggers[0], outputs)
        return functions

    def _route(self, fn: _Function) -> _Route:
        template = str(fn.trigger.get("route") or fn.name)
        pattern, precedence = compile_route(self._resolve(template))
        methods = fn.trigger.get("methods")
        return _Route(
            function=fn,
            pattern=pattern,
            methods=frozenset(m.upper() for m in methods) if methods else None,
            auth_level=str(fn.trigger.get("authLevel", "function")).lower(),
            precedence=precedence,
        )

    def _resolve(self, text: str) -> str:
        """Binding expressions `%SETTING%` read app settings."""

        def setting(match: re.Match[str]) -> str:
            value = self.env.get(match.group(1), os.environ.get(match.group(1)))
            if value is None:
                raise ValueError(f"binding expression %{match.group(1)}% names no app setting")
            return value

        return _SETTING_REF.sub(setting, text)

    def _connection(self, binding: Mapping[str, Any]) -> str:
        name = str(binding.get("connection") or DEFAULT_CONNECTION)
        value = self.env.get(name)
        if not value:
            raise ValueError(f"connection {name!r} is not an app setting")
        return value

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _apply_env(self) -> None:
        for key, value in self.env.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()


class _Handler(BaseHTTPRequestHandler):
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


_TRIGGERS = {"httpTrigger", "queueTrigger", "timerTrigger", "mcpToolTrigger"}


def _kind(fn: _Function) -> str:
    return str(fn.trigger["type"])


# -- routes -------------------------------------------------------------------------------------

_CONSTRAINTS: dict[str, str] = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])",
    "alpha": r"[A-Za-z]+",
    "guid": r"\{?[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}\}?",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
    "datetime": r"[^/]+",
}


def compile_route(template: str) -> tuple[re.Pattern[str], tuple[int, ...]]:
    """Compile an ASP.NET-style route template to a regex over "/seg/seg" plus a precedence
    key (literal < constrained < plain < optional < catch-all, per segment)."""
    pattern = ""
    precedence: list[int] = []
    for segment in _split_template(template.strip("/")):
        regex, rank, optional = _segment(segment)
        pattern += f"(?:/{regex})?" if optional else f"/{regex}"
        precedence.append(rank)
    precedence.append(5)  # a longer template beats its own prefix at equal ranks
    return re.compile(pattern or "/", re.IGNORECASE), tuple(precedence)


def _split_template(template: str) -> list[str]:
    segments, current, depth = [], "", 0
    for ch in template:
        if ch in "{(":
            depth += 1
        elif ch in "})":
            depth -= 1
        if ch == "/" and depth == 0:
            segments.append(current)
            current = ""
        else:
            current += ch
    if current:
        segments.append(current)
    return segments


def _segment(segment: str) -> tuple[str, int, bool]:
    regex, rank, optional, pos = "", 0, False, 0
    while pos < len(segment):
        start = segment.find("{", pos)
        if start < 0:
            regex += re.escape(segment[pos:])
            break
        regex += re.escape(segment[pos:start])
        end = _closing_brace(segment, start)
        param, param_rank, param_optional = _parameter(segment[start + 1 : end])
        regex += param
        rank = max(rank, param_rank)
        optional = param_optional and start == 0 and end == len(segment) - 1
        pos = end + 1
    return regex, rank, optional


def _closing_brace(segment: str, start: int) -> int:
    depth = 0
    for index in range(start, len(segment)):
        if segment[index] in "{(":
            depth += 1
        elif segment[index] in "})":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced braces in route segment {segment!r}")


def _parameter(spec: str) -> tuple[str, int, bool]:
    catch_all = spec.startswith("*")
    spec = spec.lstrip("*")
    optional = spec.endswith("?")
    spec = spec.rstrip("?")
    name, *constraints = _split_constraints(spec)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"unsupported route parameter name {name!r}")
    if catch_all:
        return f"(?P<{name}>.*)", 4, True
    checks = "".join(f"(?=(?:{_constraint(c)})(?:/|$))" for c in constraints)
    rank = 3 if optional else 1 if constraints else 2
    return f"(?P<{name}>{checks}[^/]+)", rank, optional


def _split_constraints(spec: str) -> list[str]:
    parts, current, depth = [], "", 0
    for ch in spec:
        depth += (ch == "(") - (ch == ")")
        if ch == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _constraint(text: str) -> str:
    match = re.fullmatch(r"(\w+)(?:\((.*)\))?", text, re.DOTALL)
    if not match:
        raise ValueError(f"unsupported route constraint {text!r}")
    kind, arg = match.group(1).lower(), match.group(2)
    if kind in _CONSTRAINTS and arg is None:
        return _CONSTRAINTS[kind]
    if kind == "regex" and arg is not None:
        return arg.removeprefix("^").removesuffix("$")
    if kind in {"minlength", "maxlength", "length"} and arg is not None:
        bounds = [int(b) for b in arg.split(",")]
        if kind == "minlength":
            return rf"[^/]{{{bounds[0]},}}"
        if kind == "maxlength":
            return rf"[^/]{{1,{bounds[0]}}}"
        return rf"[^/]{{{bounds[0]},{bounds[-1]}}}"
    raise ValueError(f"route constraint {text!r} is not supported by the local runner")


# -- helpers ------------------------------------------------------------------------------------


def _load_host_json(source: Mapping[str, Any] | str | os.PathLike[str] | None) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source) if source is not None else REPO_ROOT / "host.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _queue_config(host: Mapping[str, Any]) -> _QueueConfig:
    extensions = host.get("extensions") or {}
    queues = extensions.get("queues") or {}
    http = extensions.get("http") or {}
    return _QueueConfig(
        max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
        visibility_timeout=_timespan(queues.get("visibilityTimeout", "00:00:00")),
        batch_size=int(queues.get("batchSize", 16)),
        base64=str(queues.get("messageEncoding", "base64")).lower() != "none",
        route_prefix=str(http.get("routePrefix", "api")),
    )


def _timespan(text: str) -> float:
    hours, minutes, seconds = (float(p) for p in str(text).split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds).total_seconds()


def _decode_message(content: str, is_base64: bool) -> bytes:
    if not is_base64:
        return content.encode()
    return base64.b64decode(content.encode(), validate=True)


def _message_text(item: Any) -> str:
    if isinstance(item, bytes):
        return item.decode()
    if isinstance(item, str):
        return item
    return json.dumps(item)


def _http_result(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
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


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _create_queue(client: QueueClient) -> None:
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes"}


def _error(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]


# -- NCRONTAB (optional schedule loop) ------------------------------------------------------------


def _parse_ncrontab(expr: str) -> list[set[int]]:
    """Six fields: second minute hour day month day-of-week (Functions' NCRONTAB)."""
    fields = expr.split()
    if len(fields) != 6:
        raise ValueError(f"NCRONTAB needs 6 fields, got {expr!r}")
    ranges = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
    return [_cron_field(f, lo, hi) for f, (lo, hi) in zip(fields, ranges, strict=True)]


def _cron_field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start, end = (int(x) for x in base.split("-", 1))
        else:
            start = int(base)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return values


def _cron_matches(cron: list[set[int]], at: datetime) -> bool:
    weekday = (at.weekday() + 1) % 7  # NCRONTAB: 0 = Sunday
    parts = (at.second, at.minute, at.hour, at.day, at.month, weekday)
    return all(value in allowed for value, allowed in zip(parts, cron, strict=True))
