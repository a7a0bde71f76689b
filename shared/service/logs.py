"""Structured logs: every line carries the alert id, job id and gateway of the work in progress.

The ids live in contextvars (`log_context`), so they follow the code through calls without being
passed around; a filter copies them onto each record. In the Functions host the worker forwards
the root logger to Application Insights itself (docs/sources.md#functions), so there
the ids are appended to the message text; elsewhere lines are JSON.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

FIELDS = ("alert_id", "job_id", "gateway")
_VARS: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"appgw_bot_{name}", default=None) for name in FIELDS
}
_MARK = "_appgw_bot_context"


@contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    """Within the block, log records carry these ids (alert_id, job_id, gateway); nests."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log fields: {', '.join(sorted(unknown))}")
    tokens = [(name, _VARS[name].set(value)) for name, value in values.items() if value]
    try:
        yield
    finally:
        for name, token in reversed(tokens):
            _VARS[name].reset(token)


def current_context() -> dict[str, str]:
    return {name: value for name, var in _VARS.items() if (value := var.get())}


class ContextFilter(logging.Filter):
    """Adds alert_id/job_id/gateway to every record (as attributes; "" when unset). With
    `in_message=True` it also appends them to the message, for handlers whose format we do not
    control (the Functions worker's)."""

    def __init__(self, *, in_message: bool = False) -> None:
        super().__init__()
        self.in_message = in_message

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current_context()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, ctx.get(name, ""))
        if self.in_message and ctx and not getattr(record, _MARK, False):
            suffix = " ".join(f"{k}={v}" for k, v in ctx.items())
            record.msg = f"{record.getMessage()} [{suffix}]"
            record.args = None
            setattr(record, _MARK, True)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            line[name] = getattr(record, name, "") or current_context().get(name, "")
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(
    level: int = logging.INFO, *, env: Mapping[str, str] | None = None, json_lines: bool = True
) -> None:
    """Attach the context filter to the root handlers (adding a JSON stderr handler when there is
    none), quieten the Azure SDK, and configure Application Insights when a connection string is
    set. Idempotent."""
    env = os.environ if env is None else env
    in_host = bool(env.get("FUNCTIONS_WORKER_RUNTIME"))
    root = logging.getLogger()
    if not root.handlers:
        handler: logging.Handler = logging.StreamHandler()
        if json_lines:
            handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    for handler in root.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter(in_message=in_host or not json_lines))
    logging.getLogger("azure").setLevel(logging.WARNING)
    connection = (env.get("APPLICATIONINSIGHTS_CONNECTION_STRING") or "").strip()
    if connection:
        _configure_azure_monitor(connection, in_host=in_host)


_monitor_configured = False


def _configure_azure_monitor(connection: str, *, in_host: bool) -> None:
    """In the Functions host, the host already ships logs and requests to Application Insights:
    export only traces/metrics (Azure SDK dependency calls) so nothing is sent twice. Outside the
    host (CLI), export logs too."""
    global _monitor_configured
    if _monitor_configured:
        return
    # Imported lazily: it is heavy and only needed when a connection string is set.
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(
        connection_string=connection,
        disable_logging=in_host,
        enable_live_metrics=False,
    )
    _monitor_configured = True
