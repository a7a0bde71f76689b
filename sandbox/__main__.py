"""Command line: `python -m sandbox serve|scenarios|demo`."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from sandbox.scenario import ScenarioError, builtin_descriptions, load_scenario


def _serve(
    scenario_arg: str, env_file: Path, workdir: Path | None, timing: str, rbac: str | None = None
) -> int:
    from sandbox.runtime import start_sandbox, write_env_file

    try:
        scenario = load_scenario(scenario_arg)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tmp = None if workdir else Path(tempfile.mkdtemp(prefix="appgw-sandbox-"))
    try:
        try:
            handle = start_sandbox(
                scenario, workdir=workdir or tmp or Path(), timing=timing, rbac=rbac
            )
        except ScenarioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except ValueError as exc:  # e.g. --rbac names no infra/ directory
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (OSError, RuntimeError) as exc:
            print(f"error: the sandbox did not start: {exc}", file=sys.stderr)
            return 1
        try:
            write_env_file(handle.env, env_file)
            print(
                f"sandbox ready: {scenario.name} ({len(handle.gateway_ids)} gateways)", flush=True
            )
            while not stop.wait(0.5):
                pass
        finally:
            handle.stop()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print("sandbox stopped", flush=True)
    return 0


def _scenarios() -> int:
    entries = builtin_descriptions()
    width = max(len(name) for name, _ in entries)
    for name, description in entries:
        print(f"{name.ljust(width)}  {description}")
    return 0


def _demo(scenario_arg: str, timing: str) -> int:
    from sandbox.demo import run_demo

    try:
        load_scenario(scenario_arg)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return run_demo(scenario_arg, timing=timing)
    except Exception as exc:  # noqa: BLE001 - one line for the operator, never a traceback
        print(f"error: the demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


# docs/sandbox.md, "Timing profiles" (sandbox.runtime.TIMINGS; not imported here, to keep
# `scenarios` free of the sandbox runtime).
TIMING_ARG: dict[str, Any] = {
    "choices": ("scenario", "fast"),
    "default": "scenario",
    "help": "scenario: the scenario's own pacing (default); fast: the tests' profile, no delays",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a scenario in the foreground until SIGINT/SIGTERM")
    serve.add_argument("--scenario", required=True, help="built-in name or path of a JSON file")
    serve.add_argument("--env-file", required=True, type=Path, help="written when ready")
    serve.add_argument("--workdir", type=Path, help="where the CA bundle goes (default: temp)")
    serve.add_argument("--timing", **TIMING_ARG)
    serve.add_argument(
        "--rbac",
        metavar="INFRA_DIR",
        help="authorize ARM requests with the role assignments this Bicep (`infra`: the "
        "repository's infra/) makes for the bot; default: every valid token may do anything",
    )
    sub.add_parser("scenarios", help="list the built-in scenarios")
    demo = sub.add_parser("demo", help="start a scenario and show its backend health")
    demo.add_argument("--scenario", default="ilb-ase-v1")
    demo.add_argument("--timing", **TIMING_ARG)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.scenario, args.env_file, args.workdir, args.timing, args.rbac)
    if args.command == "scenarios":
        return _scenarios()
    return _demo(args.scenario, args.timing)


if __name__ == "__main__":
    sys.exit(main())
