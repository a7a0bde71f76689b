"""One remediation job fits in one function execution.

A job may wait for another writer (BUSY_WAIT_SECONDS), then for its own update
(LRO_TIMEOUT_SECONDS), then verify (VERIFY_DEADLINE_SECONDS). If the sum outgrew host.json's
functionTimeout, the host would kill the worker mid-job and the redelivery would start over.
Flex Consumption allows an unbounded timeout but grants a running execution only 60 minutes of
grace on scale-in (https://learn.microsoft.com/azure/azure-functions/functions-scale#timeout), so
the timeout stays at or under an hour.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.common.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
WAITS = ("BUSY_WAIT_SECONDS", "LRO_TIMEOUT_SECONDS", "VERIFY_DEADLINE_SECONDS")
MARGIN_SECONDS = 300  # reading, probing, the ledger and the notification around the waits


def _function_timeout() -> float:
    raw = json.loads((ROOT / "host.json").read_text())["functionTimeout"]
    hours, minutes, seconds = (int(part) for part in raw.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def _infra_values() -> dict[str, float]:
    text = (ROOT / "infra" / "main.bicep").read_text()
    return {name: float(re.search(rf"\b{name}: '(\d+)'", text)[1]) for name in WAITS}  # type: ignore[index]


def test_the_timeout_stays_within_the_scale_in_grace() -> None:
    assert _function_timeout() <= 3600


def test_default_waits_fit_in_one_execution() -> None:
    settings = load_settings({})
    assert sum(float(settings[name]) for name in WAITS) + MARGIN_SECONDS <= _function_timeout()


def test_deployed_waits_fit_in_one_execution() -> None:
    assert sum(_infra_values().values()) + MARGIN_SECONDS <= _function_timeout()
