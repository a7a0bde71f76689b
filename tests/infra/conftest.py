"""Fixtures for the infra/ template tests: every Bicep file parsed once per session.

infra/checks.py is loaded from its path under the name `infra_checks`: this test package is
itself importable as `infra` (tests/ has no __init__.py), which would shadow the repo's infra/.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for `shared`, when pytest is not run as `python -m pytest`


def _load_checks() -> ModuleType:
    if "infra_checks" in sys.modules:
        return sys.modules["infra_checks"]
    spec = importlib.util.spec_from_file_location("infra_checks", REPO / "infra" / "checks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["infra_checks"] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


# Loaded now, before pytest imports the test modules of this directory.
checks = _load_checks()


@pytest.fixture(scope="session")
def templates() -> dict[str, Any]:
    return checks.load_templates()


@pytest.fixture(scope="session")
def main(templates: dict[str, Any]) -> Any:
    return templates["main.bicep"]


@pytest.fixture(scope="session")
def rbac(templates: dict[str, Any]) -> Any:
    return templates["modules/rbac.bicep"]
