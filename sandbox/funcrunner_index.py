"""What the local Functions runner (sandbox/funcrunner.py) knows before it runs anything: the
functions indexed from the bindings the app declares (`app.get_functions()`), the settings it
reads from host.json (queues and the HTTP route prefix), and the record of each invocation.
"""

from __future__ import annotations

import json
import os
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func

from sandbox.funcrunner_routes import compile_route

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONNECTION = "AzureWebJobsStorage"
SETTING_REF = re.compile(r"%([A-Za-z0-9_.:-]+)%")


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
class IndexedFunction:
    name: str
    user_function: Callable[..., Any]
    trigger: dict[str, Any]
    outputs: list[dict[str, Any]]


@dataclass
class Route:
    function: IndexedFunction
    pattern: re.Pattern[str]
    methods: frozenset[str] | None
    auth_level: str
    precedence: tuple[int, ...]


@dataclass
class QueueConfig:
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    batch_size: int = 16
    base64: bool = True
    route_prefix: str = "api"
    extra: dict[str, Any] = field(default_factory=dict)


TRIGGERS = {"httpTrigger", "queueTrigger", "timerTrigger", "mcpToolTrigger"}


def kind(fn: IndexedFunction) -> str:
    return str(fn.trigger["type"])


def index_functions(app: func.FunctionApp, env: Mapping[str, str]) -> dict[str, IndexedFunction]:
    functions: dict[str, IndexedFunction] = {}
    # azure-functions 1.26 remembers names from an earlier get_functions() and then reports
    # every function as a duplicate; forget them so the app can be indexed again.
    app.functions_bindings = None
    for fn in app.get_functions():
        name = fn.get_function_name() or fn.get_user_function().__name__
        if truthy(env.get(f"AzureWebJobs.{name}.Disabled")):
            continue
        bindings = json.loads(fn.get_function_json())["bindings"]
        triggers = [b for b in bindings if str(b["type"]).endswith("Trigger")]
        outputs = [b for b in bindings if b["type"] == "queue" and b["direction"] == "OUT"]
        others = [
            b for b in bindings if b not in triggers and b not in outputs and b["type"] != "http"
        ]
        if len(triggers) != 1 or triggers[0]["type"] not in TRIGGERS or others:
            kinds = ", ".join(sorted({str(b["type"]) for b in bindings}))
            raise ValueError(f"function {name}: bindings not supported by the runner: {kinds}")
        functions[name] = IndexedFunction(name, fn.get_user_function(), triggers[0], outputs)
    return functions


def route_for(fn: IndexedFunction, resolve: Callable[[str], str]) -> Route:
    template = str(fn.trigger.get("route") or fn.name)
    pattern, precedence = compile_route(resolve(template))
    methods = fn.trigger.get("methods")
    return Route(
        function=fn,
        pattern=pattern,
        methods=frozenset(m.upper() for m in methods) if methods else None,
        auth_level=str(fn.trigger.get("authLevel", "function")).lower(),
        precedence=precedence,
    )


def load_host_json(source: Mapping[str, Any] | str | os.PathLike[str] | None) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source) if source is not None else REPO_ROOT / "host.json"
    return json.loads(path.read_text()) if path.exists() else {}


def queue_config(host: Mapping[str, Any]) -> QueueConfig:
    extensions = host.get("extensions") or {}
    queues = extensions.get("queues") or {}
    http = extensions.get("http") or {}
    return QueueConfig(
        max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
        visibility_timeout=timespan(queues.get("visibilityTimeout", "00:00:00")),
        batch_size=int(queues.get("batchSize", 16)),
        base64=str(queues.get("messageEncoding", "base64")).lower() != "none",
        route_prefix=str(http.get("routePrefix", "api")),
    )


def timespan(text: str) -> float:
    hours, minutes, seconds = (float(p) for p in str(text).split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds).total_seconds()


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes"}


def error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
