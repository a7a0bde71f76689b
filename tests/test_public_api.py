"""The package's public API resolves, and the function app's import path stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import shared

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("azure.mgmt.network", "azure.identity", "cryptography", "OpenSSL", "azure.monitor")


def test_every_exported_name_resolves() -> None:
    for name in shared.__all__:
        # The export is the object of that name (a class or function), not a stand-in.
        assert getattr(getattr(shared, name), "__name__", None) == name


def test_importing_function_app_loads_no_heavy_sdk() -> None:
    code = (
        "import json, sys; import function_app; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
