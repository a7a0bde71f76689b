"""`python -m shared ...` as a child process, for the CLI tests, and its contract line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with exactly `env`, no standard input, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "shared", *args],
        cwd=ROOT,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def last_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The last line of standard output, the commands' JSON contract."""
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    data = json.loads(lines[-1])
    assert isinstance(data, dict)
    return data
