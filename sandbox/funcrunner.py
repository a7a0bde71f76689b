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

Split by concern: `funcrunner_index` (bindings and host.json), `funcrunner_routes` (route
templates), `funcrunner_http` (HTTP triggers), `funcrunner_queues` (queue triggers and outputs),
`funcrunner_timers` (timer triggers); this module holds the runner and its lifecycle.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from http.server import ThreadingHTTPServer
from typing import Any, cast

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext
from azure.functions.timer import TimerRequest

from sandbox.easyauth import EasyAuth
from sandbox.funcrunner_http import Handler, Server, handle_http, request_headers
from sandbox.funcrunner_index import (
    DEFAULT_CONNECTION,
    REPO_ROOT,
    IndexedFunction,
    Invocation,
    error_text,
    index_functions,
    kind,
    load_host_json,
    queue_config,
    route_for,
)
from sandbox.funcrunner_queues import create_queue, deliver, poll_queue, queue_client
from sandbox.funcrunner_routes import compile_route
from sandbox.funcrunner_timers import timer_loop
from sandbox.mcp_host import McpHost

log = logging.getLogger(__name__)

_SETTING_REF = re.compile(r"%([A-Za-z0-9_.:-]+)%")

__all__ = [
    "DEFAULT_CONNECTION",
    "REPO_ROOT",
    "FunctionRunner",
    "Invocation",
    "compile_route",
]


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
        host = load_host_json(host_json)
        self.config = queue_config(host)
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
        self.functions = index_functions(app, self.env)
        self.routes = sorted(
            (
                route_for(f, self._resolve)
                for f in self.functions.values()
                if kind(f) == "httpTrigger"
            ),
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
        handler = type("Handler", (Handler,), {"runner": self})
        self._server = Server(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True
        # stop() waits one poll of serve_forever: 0.05 s, not the default 0.5 s.
        self._spawn(functools.partial(self._server.serve_forever, poll_interval=0.05), "func-http")
        for fn in self.functions.values():
            if kind(fn) == "queueTrigger":
                # Created before start() returns, so callers can send at once.
                create_queue(queue_client(self, fn.trigger))
                create_queue(queue_client(self, fn.trigger, suffix="-poison"))
                self._spawn(functools.partial(poll_queue, self, fn), f"func-queue-{fn.name}")
            elif kind(fn) == "timerTrigger":
                if fn.trigger.get("runOnStartup"):
                    self.run_timer(fn.name)
                if self.schedule:
                    self._spawn(functools.partial(timer_loop, self, fn), f"func-timer-{fn.name}")
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
        if fn is None or kind(fn) != "timerTrigger":
            raise KeyError(f"no timer-triggered function {name!r}")
        outs = self._outputs(fn)
        try:
            self._call(fn, TimerRequest(past_due=past_due), outs)
            self._deliver(fn, outs)
        except Exception as exc:
            log.exception("timer function %s failed", name)
            return self._record(Invocation(name, "timerTrigger", False, error_text(exc)))
        return self._record(Invocation(name, "timerTrigger", True))

    # -- HTTP (sandbox/funcrunner_http.py) ---------------------------------------------------

    def handle_http(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Route one request; returns (status, headers, body)."""
        return handle_http(self, method, raw_path, headers, body)

    def _request_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The headers a function sees (App Service Authentication's principal headers)."""
        return request_headers(self, headers)

    # -- invocation ---------------------------------------------------------------------------

    def _outputs(self, fn: IndexedFunction) -> dict[str, _Out]:
        return {b["name"]: _Out() for b in fn.outputs}

    def _call(self, fn: IndexedFunction, trigger_value: Any, outs: Mapping[str, _Out]) -> Any:
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

    def _deliver(self, fn: IndexedFunction, outs: Mapping[str, _Out]) -> None:
        deliver(self, fn, outs)

    def _record(self, invocation: Invocation) -> Invocation:
        with self._changed:
            self.invocations.append(invocation)
            self._changed.notify_all()
        return invocation

    # -- settings, threads, environment --------------------------------------------------------

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
