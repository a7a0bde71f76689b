"""Helpers shared by the measurements: the machine, percentiles, ARM request counts, tables."""

from __future__ import annotations

import json
import os
import platform
import resource
import ssl
import statistics
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, CPU model, memory, Python, OS."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation): p99 of 500 samples is the 495th smallest."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def maxrss_kib() -> int:
    """This process's peak resident set in KiB.

    VmHWM where Linux has it: ru_maxrss of a child started by fork+exec also counts the parent's
    peak at the exec (the kernel carries it over), which would hide the child's own growth.
    """
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def arm_requests(env: dict[str, str]) -> list[dict[str, Any]]:
    """The ARM requests the sandbox emulator served (control endpoint, sandbox CA)."""
    context = ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])
    url = env["SANDBOX_CONTROL_URL"] + "/requests"
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        return list(json.loads(response.read()))


def arm_puts(env: dict[str, str]) -> int:
    """Gateway writes: every PUT the emulator served, accepted or refused."""
    return sum(1 for r in arm_requests(env) if r["method"] == "PUT")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, markdown: bool = False) -> str:
    """A plain-text table, columns padded to their widest cell (or a Markdown table)."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    sep, edge = (" | ", "| ") if markdown else ("  ", "")
    lines = [
        edge + sep.join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + edge[::-1]
        for row in cells
    ]
    lines.insert(1, edge + sep.join("-" * w for w in widths) + edge[::-1])
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the tables."""
    print(message, file=sys.stderr, flush=True)
