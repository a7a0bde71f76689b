"""`python -m bench [--quick] [--out bench/results/latest.json]`: run the benchmark of issue #7.

Prints one table per measurement (stdout; progress goes to stderr) and writes every figure, with
the machine it ran on, as JSON. `--quick` shrinks every measurement for the smoke test.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import arm_writes, cold_start, diagnosis, mcp_latency, storm, sweep
from bench.common import REPO_ROOT, log, machine, table

MEASUREMENTS = ("arm_writes", "diagnosis", "cold_start", "storm", "sweep", "mcp")


@dataclass(frozen=True)
class Config:
    settings_counts: list[int] = field(default_factory=lambda: [1, 5, 50])
    backend_counts: list[int] = field(default_factory=lambda: [10, 50, 200, 1200])
    probe_timeout: float = 2.0
    cold_start_repeat: int = 5
    storm_alerts: int = 500
    storm_workers: int = 16
    # The fanned-out sweep (issue 14): a sandbox fleet; peak RSS also at the smaller sizes.
    sweep_gateways: int = 2000
    sweep_subscriptions: int = 20
    sweep_unhealthy: float = 0.02
    sweep_memory_sizes: tuple[int, ...] = (500,)
    # MCP tool calls (get_proposal, preview_fix) timed by an mcp SDK client.
    mcp_calls: int = 200
    # The sandbox's timing profile (docs/sandbox.md, "Timing profiles"): the scenario's own
    # pacing for the figures; "fast" (no write or health delays) for the smoke test.
    timing: str = "scenario"


FULL = Config()
QUICK = Config(
    settings_counts=[1, 5],
    backend_counts=[10],
    probe_timeout=2.0,  # as full: a loaded CI machine must not time out a TLS backend
    cold_start_repeat=1,
    storm_alerts=50,
    storm_workers=8,
    sweep_gateways=60,
    sweep_subscriptions=3,
    sweep_unhealthy=0.05,
    sweep_memory_sizes=(),
    mcp_calls=5,
    timing="fast",
)


def _runners(cfg: Config) -> dict[str, Callable[[], Any]]:
    return {
        "arm_writes": lambda: arm_writes.run(cfg.settings_counts, timing=cfg.timing),
        "diagnosis": lambda: diagnosis.run(cfg.backend_counts, cfg.probe_timeout),
        "cold_start": lambda: cold_start.run(cfg.cold_start_repeat),
        "storm": lambda: storm.run(cfg.storm_alerts, cfg.storm_workers, timing=cfg.timing),
        "sweep": lambda: sweep.run(
            cfg.sweep_gateways,
            cfg.sweep_subscriptions,
            cfg.sweep_unhealthy,
            memory_sizes=cfg.sweep_memory_sizes,
        ),
        # Always the fast profile: the figure is the tool path's own cost; with the scenario's
        # pacing every preview_fix waits ARM_POLLING_INTERVAL (10 s) for backend health.
        "mcp": lambda: mcp_latency.run(cfg.mcp_calls, timing="fast"),
    }


def _tables(results: dict[str, Any], markdown: bool) -> list[tuple[str, str]]:
    views: dict[str, tuple[str, tuple[str, ...], Callable[[Any], list[list[Any]]]]] = {
        "arm_writes": ("ARM writes per remediation", arm_writes.HEADERS, arm_writes.rows),
        "diagnosis": ("Diagnosis, 10% silent backends", diagnosis.HEADERS, diagnosis.rows),
        "cold_start": ("Cold start (fresh interpreters)", cold_start.HEADERS, cold_start.rows),
        "storm": ("Alert storm on /api/alerts", storm.HEADERS, storm.rows),
        "sweep": ("Sweep over a fleet (fan-out)", sweep.HEADERS, sweep.rows),
        "mcp": ("MCP tool calls", mcp_latency.HEADERS, mcp_latency.rows),
    }
    out = []
    for name, (title, headers, to_rows) in views.items():
        if name in results:
            out.append((title, table(headers, to_rows(results[name]), markdown=markdown)))
    return out


def _kept_sections(path: Path) -> dict[str, Any]:
    """The measurements an earlier run wrote to `path` (nothing when it is absent or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if k in MEASUREMENTS} if isinstance(data, dict) else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (smoke test)")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "bench" / "results" / "latest.json",
        help="where to write the JSON (default: bench/results/latest.json)",
    )
    parser.add_argument(
        "--only", choices=MEASUREMENTS, action="append", help="run only these (repeatable)"
    )
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    wanted = args.only or list(MEASUREMENTS)
    # The app's INFO logs (one JSON line per alert and job) would bury the tables.
    logging.getLogger().setLevel(logging.WARNING)

    started = time.monotonic()
    results: dict[str, Any] = {}
    runners = _runners(cfg)
    for name in wanted:
        results[name] = runners[name]()
    # `--only` refreshes its sections and keeps the others' figures already in the file.
    kept = _kept_sections(args.out) if args.only else {}
    report = {
        **kept,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "config": asdict(cfg),
        **results,
        "seconds": round(time.monotonic() - started, 1),
    }
    m = report["machine"]
    print(
        f"machine: {m['nproc']} x {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"Python {m['python']}, {m['os']}"
    )
    for title, text in _tables(results, args.markdown):
        print(f"\n{title}\n{text}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {args.out} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
