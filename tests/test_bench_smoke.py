"""Smoke test of the benchmark (issue #7): `python -m bench --quick` runs end to end on loopback
(sandbox, Azurite, the local Functions runner) and writes the JSON the docs are built from.

No timing is asserted; only what the figures mean: the bot's write counts, the manual
procedure's 1 + N, statuses, the silent backends' timeouts and the alert path's imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox.azurite import AZURITE_BIN

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.slow,  # one whole `python -m bench --quick` process
    pytest.mark.timeout(300),
    pytest.mark.skipif(not AZURITE_BIN.exists(), reason="Azurite not installed (make install)"),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "ARM writes per remediation" in run.stdout and "Alert storm" in run.stdout
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_report_names_the_machine(report: dict[str, Any]) -> None:
    assert report["quick"] is True
    assert report["machine"]["nproc"] >= 1 and report["machine"]["python"]


def test_bot_writes_once_where_the_manual_procedure_writes_one_plus_n(
    report: dict[str, Any],
) -> None:
    rows = report["arm_writes"]
    assert [r["settings"] for r in rows] == [1, 5]
    for r in rows:
        assert r["action"] == "applied", r["reason"]
        assert (r["bot_writes"], r["bot_reported_writes"]) == (1, 1)
        assert r["manual_writes"] == 1 + r["settings"]
        assert r["settings_changed"] == r["settings"]
        assert r["verified"] is True


def test_diagnosis_covers_every_backend_and_times_out_only_the_silent(
    report: dict[str, Any],
) -> None:
    [row] = report["diagnosis"]
    assert (row["backends"], row["silent_backends"]) == (10, 1)
    assert row["findings"] == 10
    # v1 with an IP pool: the gateway's way (no SNI) and the probe host as the alternative.
    assert row["requests"] == 20
    assert row["timed_out_requests"] == 2
    assert row["causes"].get("backend_unreachable") == 1
    assert row["tracemalloc_peak_bytes"] > 0


def test_alert_endpoint_imports_no_management_sdk(report: dict[str, Any]) -> None:
    cases = {c["case"]: c for c in report["cold_start"]}
    for case in ("function_app", "function_app + alert path"):
        heavy = set(cases[case]["heavy_loaded"])
        assert not heavy & {"azure.mgmt.network", "azure.identity", "OpenSSL"}, heavy
    assert cases["function_app"]["heavy_loaded"] == []
    assert (
        "azure.mgmt.network" in cases["worker + SDKs: +azure.mgmt.network+identity"]["heavy_loaded"]
    )


def test_storm_gets_only_202_and_writes_nothing_in_diagnose_mode(report: dict[str, Any]) -> None:
    storm = report["storm"]
    assert storm["posts"] == 50
    assert storm["statuses"] == {"202": 50}
    assert storm["arm_puts"] == 0
    assert storm["answers"]["recorded"] == 20  # every Resolved post is recorded, starts nothing
    assert storm["jobs"] >= 5 and len(storm["jobs_per_gateway"]) == 5
    assert set(storm["job_states"]) == {"succeeded"}


def test_sweep_checks_every_gateway_with_few_metrics_and_health_calls(
    report: dict[str, Any],
) -> None:
    sweep = report["sweep"]
    assert (sweep["gateways"], sweep["subscriptions"], sweep["unhealthy"]) == (60, 3, 3)
    assert sweep["check_results"] == {"healthy": 57, "unhealthy": 3}
    # One batch per subscription and region: 3 x 2, of 10 gateways each (the target,
    # ceil(gateways / 50) + subscriptions, is for 2,000 gateways: 100 a subscription).
    assert sweep["metrics_requests"] == 6
    assert sweep["backend_health_calls"] == sweep["jobs"] == 3
    assert sweep["failed_requests"] == 0 and sweep["peak_rss_mib"] > 0


def test_mcp_tool_calls_answer_and_write_nothing(report: dict[str, Any]) -> None:
    mcp = report["mcp"]
    assert set(mcp["tools"]) == {"get_proposal", "preview_fix"}
    for figures in mcp["tools"].values():
        assert figures["calls"] == 5 and figures["errors"] == 0
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert mcp["arm_puts"] == 0
