"""Measurement 3: cold start of the function app's module and of the alert endpoint's imports.

Each case runs in a fresh interpreter (median of `repeat` runs): the import time measured inside
the child, the child's whole wall time (interpreter start included), and which heavy modules
`sys.modules` holds afterwards. function_app.py imports the SDKs inside its handlers, so the host
indexes it quickly and the alert endpoint (shared.service: api, alerts, storage) never needs
azure-mgmt-network, azure-identity or pyOpenSSL (azure-storage-blob itself imports
cryptography, so that one is on the alert path whatever the bot does).

APPLICATIONINSIGHTS_CONNECTION_STRING is removed from the children's environment: with it set,
`configure_logging` loads azure.monitor.opentelemetry at import on purpose (shared/service/logs.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.common import REPO_ROOT, log, median

HEAVY = (
    "azure.mgmt.network",
    "azure.identity",
    "cryptography",
    "OpenSSL",
    "azure.monitor.opentelemetry",
    "azure.storage.blob",
    "azure.storage.queue",
    "azure.data.tables",
)
# (label, modules imported in one statement)
CASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("python -c pass", ()),
    ("azure.functions", ("azure.functions",)),
    ("function_app", ("function_app",)),
    (
        "alert path: shared.service.api+alerts+storage",
        ("shared.service.api", "shared.service.alerts", "shared.service.storage"),
    ),
    (
        "function_app + alert path",
        (
            "function_app",
            "shared.service.api",
            "shared.service.alerts",
            "shared.service.storage",
            "shared.service.app",
        ),
    ),
    (
        "worker modules: shared.service.worker+remediate",
        ("shared.service.worker", "shared.remediation.remediate"),
    ),
    (
        "worker + SDKs: +azure.mgmt.network+identity",
        (
            "shared.service.worker",
            "shared.remediation.remediate",
            "azure.mgmt.network",
            "azure.identity",
        ),
    ),
)
_CHILD = """
import json, sys, time
started = time.perf_counter()
for name in {modules!r}:
    __import__(name)
seconds = time.perf_counter() - started
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"seconds": seconds, "heavy": heavy, "modules": len(sys.modules)}}))
"""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("APPLICATIONINSIGHTS_CONNECTION_STRING", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # do not change the tree; .pyc files exist already
    return env


def _once(modules: tuple[str, ...]) -> dict[str, Any]:
    code = _CHILD.format(modules=modules, heavy=HEAVY)
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"importing {modules} failed: {child.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def _warm_bytecode() -> None:
    """One throw-away import of everything, so no case pays for compiling .pyc files."""
    every = tuple(m for _, mods in CASES for m in mods)
    subprocess.run(
        [sys.executable, "-c", f"for m in {every!r}: __import__(m)"],
        cwd=REPO_ROOT,
        env={k: v for k, v in _child_env().items() if k != "PYTHONDONTWRITEBYTECODE"},
        capture_output=True,
        timeout=120,
        check=False,
    )


def run(repeat: int) -> list[dict[str, Any]]:
    _warm_bytecode()
    results = []
    for label, modules in CASES:
        log(f"cold start: {label} x{repeat} ...")
        runs = [_once(modules) for _ in range(repeat)]
        results.append(
            {
                "case": label,
                "modules": list(modules),
                "repeat": repeat,
                "import_ms_median": round(median([r["seconds"] for r in runs]) * 1000, 1),
                "process_ms_median": round(median([r["wall"] for r in runs]) * 1000, 1),
                "modules_loaded": runs[-1]["modules"],
                "heavy_loaded": runs[-1]["heavy"],
            }
        )
    return results


HEADERS = ("imported", "import ms (median)", "process ms (median)", "modules", "heavy modules")


def rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["case"],
            r["import_ms_median"],
            r["process_ms_median"],
            r["modules_loaded"],
            ", ".join(r["heavy_loaded"]) or "none",
        ]
        for r in results
    ]
