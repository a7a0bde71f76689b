"""Measurement: the fanned-out sweep over a fleet (issue 14).

The function app runs in the local Functions runner over Azurite against a sandbox fleet
(sandbox/fleet.py: `GATEWAYSxSUBSCRIPTIONS@UNHEALTHY`, ALLOWED_SCOPES = the fleet's
subscriptions, `--rbac infra`). The sweep timer fires once; the checks queue trigger reads
UnhealthyHostCount in metrics batches and queues fix jobs for the unhealthy gateways, which the
worker runs in diagnose mode (each reads backend health once: the expensive call the metrics
pre-filter saves for every healthy gateway).

`seconds` is timer start to the last gateway check done (ledger `check` rows all `done`);
`jobs_seconds` to the last fix job finished. Requests are counted at the sandbox: `arm_requests`
every ARM request of the run (fix jobs included), `arm_list_requests` the sweep's listing pages,
`metrics_requests` metrics:getBatch calls, `backend_health_calls` backendhealth POSTs.
Each size runs in a fresh interpreter, so `peak_rss_mib` (VmHWM: the bot and the sandbox, which
share the process; Azurite is another) is that size's own.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, log, maxrss_kib

WAIT_SECONDS = 600.0
TERMINAL = {"succeeded", "failed", "proposed"}


def run(
    gateways: int, subscriptions: int, unhealthy: float, *, memory_sizes: tuple[int, ...] = ()
) -> dict[str, Any]:
    """The sweep at `gateways`, plus peak RSS at `memory_sizes` (each in its own interpreter)."""
    result = _subprocess(gateways, subscriptions, unhealthy)
    memory = {str(gateways): result["peak_rss_mib"]}
    for size in memory_sizes:
        if size != gateways:
            memory[str(size)] = _subprocess(size, subscriptions, unhealthy)["peak_rss_mib"]
    result["peak_rss_mib_by_gateways"] = dict(sorted(memory.items(), key=lambda kv: int(kv[0])))
    return result


def _subprocess(gateways: int, subscriptions: int, unhealthy: float) -> dict[str, Any]:
    log(f"sweep: {gateways} gateways in {subscriptions} subscriptions, {unhealthy:.0%} unhealthy")
    done = subprocess.run(
        [sys.executable, "-m", "bench.sweep", str(gateways), str(subscriptions), str(unhealthy)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS + 300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.sweep failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(gateways: int, subscriptions: int, unhealthy: float) -> dict[str, Any]:
    """One sweep in this interpreter (see the module docstring)."""
    import function_app
    from sandbox.azurite import start_azurite
    from sandbox.demo import sandbox_environment
    from sandbox.funcrunner import FunctionRunner
    from sandbox.runtime import start_sandbox
    from shared.service.storage import Storage, StorageNames

    logging.getLogger().setLevel(logging.WARNING)
    key = secrets.token_urlsafe(24)
    spec = f"{gateways}x{subscriptions}@{unhealthy}"
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        handle = start_sandbox(
            "healthy", workdir=Path(tmp) / "sandbox", timing="fast", rbac="infra", fleet=spec
        )
        azurite = None
        try:
            azurite = start_azurite(Path(tmp) / "azurite")
            fleet = handle.fleet
            env = {
                **handle.env,
                # The fleet only (the scenario's own gateway is out of scope).
                "ALLOWED_SCOPES": ",".join(f"/subscriptions/{s}" for s in fleet.subscriptions),
                "REMEDIATION_MODE": "diagnose",
                "ARM_POLLING_INTERVAL": "0",
                "PROBE_TIMEOUT_SECONDS": "1",
            }
            storage = Storage.from_connection_string(
                azurite.connection_string, StorageNames.from_env(env)
            )
            with (
                sandbox_environment(env),
                FunctionRunner(
                    function_app.app,
                    env=env,
                    connection=azurite.connection_string,
                    keys={"k": key},
                    poll_interval=0.05,
                ) as runner,
            ):
                started = time.perf_counter()
                timer = runner.run_timer("sweep")
                if not timer.ok:
                    raise RuntimeError(f"the sweep timer failed: {timer}")
                timer_seconds = time.perf_counter() - started
                checks = _wait(storage, "check", gateways, {"done"})
                seconds = time.perf_counter() - started
                jobs = _wait(storage, "job", len(fleet.unhealthy_ids), TERMINAL)
                jobs_seconds = time.perf_counter() - started
            requests = list(handle.arm._requests)
        finally:
            if azurite is not None:
                azurite.stop()
            handle.stop()
    metrics = [r for r in requests if "metrics:getbatch" in r["path"].lower()]
    arm = [r for r in requests if r not in metrics]
    health = [
        r for r in arm if r["method"] == "POST" and r["path"].lower().endswith("/backendhealth")
    ]
    lists = [r for r in arm if r["method"] == "GET" and r["path"].lower().endswith("gateways")]
    results: dict[str, int] = {}
    for row in checks:
        results[row["result"]] = results.get(row["result"], 0) + 1
    return {
        "gateways": gateways,
        "subscriptions": subscriptions,
        "unhealthy": len(fleet.unhealthy_ids),
        "seconds": round(seconds, 2),
        "timer_seconds": round(timer_seconds, 2),
        "jobs_seconds": round(jobs_seconds, 2),
        "arm_requests": len(arm),
        "arm_list_requests": len(lists),
        "metrics_requests": len(metrics),
        "metrics_requests_target": math.ceil(gateways / 50) + subscriptions,
        "backend_health_calls": len(health),
        "backend_health_target": math.floor(len(fleet.unhealthy_ids) * 1.05),
        "jobs": len(jobs),
        "job_states": _count(j["state"] for j in jobs),
        "check_results": results,
        "failed_requests": sum(1 for r in requests if r["status"] >= 400),
        "peak_rss_mib": round(maxrss_kib() / 1024, 1),
    }


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return counts


def _wait(storage: Any, partition: str, count: int, states: set[str]) -> list[dict[str, Any]]:
    """Ledger rows of `partition` once `count` of them are in `states` (bounded wait)."""
    storage.ensure()
    table = storage.table_service.get_table_client(storage.names.ledger_table)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        rows = list(
            table.query_entities(
                "PartitionKey eq @pk",
                parameters={"pk": partition},
                select=["RowKey", "state", "result"],
            )
        )
        if sum(1 for r in rows if r.get("state") in states) >= count:
            return rows
        if time.monotonic() > deadline:
            raise RuntimeError(f"{partition}: {len(rows)} rows, not {count} done in time")
        time.sleep(0.2)


HEADERS = (
    "gateways",
    "subs",
    "unhealthy",
    "seconds",
    "list reqs",
    "metrics reqs (target)",
    "backend health (target)",
    "jobs",
    "ARM reqs",
    "peak RSS MiB by gateways",
)


def rows(result: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            result["gateways"],
            result["subscriptions"],
            result["unhealthy"],
            result["seconds"],
            result["arm_list_requests"],
            f"{result['metrics_requests']} (<= {result['metrics_requests_target']})",
            f"{result['backend_health_calls']} (<= {result['backend_health_target']})",
            result["jobs"],
            result["arm_requests"],
            " ".join(f"{k}:{v}" for k, v in result.get("peak_rss_mib_by_gateways", {}).items()),
        ]
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep")
    parser.add_argument("gateways", type=int)
    parser.add_argument("subscriptions", type=int)
    parser.add_argument("unhealthy", type=float)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.gateways, args.subscriptions, args.unhealthy)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
