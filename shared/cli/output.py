"""Standard output as a contract: with `--format json` a command prints exactly one JSON document
there, and everything else it writes (previews, progress, prompts) goes to standard error."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

_state: dict[str, Any] = {"out": None, "emitted": 0}


@contextlib.contextmanager
def json_mode(enabled: bool) -> Iterator[None]:
    """While a `--format json` command runs, plain writes to stdout land on stderr; `emit` still
    reaches the real stdout."""
    _state["emitted"] = 0
    if not enabled:
        _state["out"] = None
        yield
        return
    _state["out"] = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _state["out"] = None


def emitted() -> int:
    return int(_state["emitted"])


def emit(data: Any, *, indent: int | None = None) -> None:
    """The command's JSON document on standard output (one line unless `indent`)."""
    out: TextIO = _state["out"] or sys.stdout
    out.write(json.dumps(data, indent=indent, default=str) + "\n")
    out.flush()
    _state["emitted"] += 1


def json_requested(args: Any) -> bool:
    return getattr(args, "format", "text") == "json"
