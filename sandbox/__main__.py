"""Command line: `python -m sandbox serve|scenarios|demo`."""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from sandbox.scenario import ScenarioError, builtin_descriptions, load_scenario


def _serve(
    scenario_arg: str,
    env_file: Path,
    workdir: Path | None,
    timing: str,
    rbac: str | None = None,
    functions: FunctionsOptions | None = None,
    fleet: str | None = None,
) -> int:
    from sandbox.fleet import FleetError, FleetSpec
    from sandbox.runtime import start_sandbox, write_env_file

    try:
        scenario = load_scenario(scenario_arg)
        fleet_spec = FleetSpec.parse(fleet) if fleet else None
    except (ScenarioError, FleetError) as exc:
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
                scenario,
                workdir=workdir or tmp or Path(),
                timing=timing,
                rbac=rbac,
                fleet=fleet_spec,
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
        stops = [handle.stop]
        try:
            env = dict(handle.env)
            if functions is not None:
                try:
                    env.update(
                        _start_functions(handle.env, workdir or tmp or Path(), functions, stops)
                    )
                except (OSError, RuntimeError, ValueError) as exc:
                    print(f"error: the function app did not start: {exc}", file=sys.stderr)
                    return 1
            write_env_file(env, env_file)
            print(
                f"sandbox ready: {scenario.name} ({len(handle.gateway_ids)} gateways"
                + (f", fleet of {len(handle.fleet.gateways)}" if handle.fleet else "")
                + ")",
                flush=True,
            )
            if functions is not None:
                from sandbox.sweep_clock import describe

                print(f"function app running at {env['FUNCTIONS_URL']}", flush=True)
                print(
                    f"mode: REMEDIATION_MODE={env.get('REMEDIATION_MODE')}"
                    + (
                        " (the default of a deployment; --setting REMEDIATION_MODE=apply to "
                        "let it write)"
                        if env.get("REMEDIATION_MODE") == "propose"
                        else " (--setting)"
                    ),
                    flush=True,
                )
                print(describe(functions.sweep_every, env.get("SWEEP_SCHEDULE")), flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            for stop_one in reversed(stops):
                stop_one()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print("sandbox stopped", flush=True)
    return 0


@dataclass(frozen=True)
class FunctionsOptions:
    """`serve --functions`: the function app beside the sandbox (docs/operations.md)."""

    port: int = 0
    signed_in_as: str = "approver@contoso.com"
    settings: tuple[tuple[str, str], ...] = ()
    # None: the app's own NCRONTAB schedule (SWEEP_SCHEDULE, every 15 minutes as deployed);
    # 0: no sweep; N: every N seconds (sandbox.sweep_clock).
    sweep_every: float | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_functions(
    sandbox_env: dict[str, str], workdir: Path, options: FunctionsOptions, stops: list[Any]
) -> dict[str, str]:
    """Azurite and the local Functions runner serving function_app over the sandbox; the keys
    the env file gains: FUNCTIONS_URL, FUNCTIONS_KEY (a host key: every keyed route, /api/alerts
    included), FUNCTIONS_MCP_KEY (the mcp_extension system key: /runtime/webhooks/mcp),
    AzureWebJobsStorage (the app's state, for clients reading its ledger) and
    REMEDIATION_MODE (the app's: `propose` like a deployment, whatever the scenario sets for
    the demo, unless --setting says otherwise)."""
    from sandbox.azurite import start_azurite
    from sandbox.easyauth import EasyAuth
    from sandbox.funcrunner import FunctionRunner
    from sandbox.sweep_clock import SweepClock

    azurite = start_azurite(workdir / "azurite")
    stops.append(azurite.stop)
    import function_app  # after the sandbox: imported as the host would index it

    port = options.port or _free_port()
    url = f"http://127.0.0.1:{port}"
    key = secrets.token_urlsafe(24)
    mcp_key = secrets.token_urlsafe(24)  # the MCP extension's system key (mcp_extension)
    overrides = dict(options.settings)
    # The runner imitates App Service Authentication (sandbox/easyauth.py): /.auth/login/aad
    # signs in the --signed-in-as user, who is the default approver.
    auth = EasyAuth()
    user = auth.find_user(options.signed_in_as) if options.signed_in_as else None
    if options.signed_in_as and user is None:
        raise SystemExit(f"--signed-in-as {options.signed_in_as!r} is no sandbox user")
    auth.default_user = user
    settings = {
        "WEBSITE_AUTH_ENABLED": "True",
        "APPROVERS": sandbox_env.get("APPROVERS")
        or (f"{user.object_id}={user.name}" if user else ""),
        "REVIEW_TOKEN_SECRET": secrets.token_urlsafe(32),
        "FUNCTIONS_URL": url,
        # A deployment's default (infra/ and the settings registry); scenarios set apply for
        # `make demo`, which does not come through here.
        "REMEDIATION_MODE": "propose",
        **overrides,
    }
    runner = FunctionRunner(
        function_app.app,
        env={**sandbox_env, **settings},
        connection=azurite.connection_string,
        keys={"default": key},
        auth=auth,
        system_keys={"mcp_extension": mcp_key},
        schedule=options.sweep_every is None,
        port=port,
    )
    runner.start()
    stops.append(runner.stop)
    if options.sweep_every:
        clock = SweepClock(runner, options.sweep_every).start()
        stops.append(clock.stop)
    return {
        # The env file holds shell variable names; AzureWebJobs.<fn>.Disabled stays an app setting.
        **{k: v for k, v in overrides.items() if k.isidentifier()},
        "REMEDIATION_MODE": settings["REMEDIATION_MODE"],
        "FUNCTIONS_URL": url,
        "FUNCTIONS_KEY": key,
        "FUNCTIONS_MCP_KEY": mcp_key,
        "AzureWebJobsStorage": azurite.connection_string,
    }


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    # Dots too: `AzureWebJobs.<function>.Disabled=true` turns one function off, as in Azure.
    if not sep or not name.strip().replace(".", "_").isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"expected 0 to 86400 seconds, got {text!r}")
    return value


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
    "choices": ("scenario", "fast", "recorded"),
    "default": "scenario",
    "help": "scenario: the scenario's own pacing (default); fast: the tests' profile, no delays; "
    "recorded: Azure's recorded operation times, compressed 500 times",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a scenario in the foreground until SIGINT/SIGTERM")
    serve.add_argument(
        "--scenario", help="built-in name or path of a JSON file (with --fleet: default healthy)"
    )
    serve.add_argument("--env-file", required=True, type=Path, help="written when ready")
    serve.add_argument("--workdir", type=Path, help="where the CA bundle goes (default: temp)")
    serve.add_argument("--timing", **TIMING_ARG)
    serve.add_argument(
        "--rbac",
        metavar="INFRA_DIR",
        help="authorize ARM requests with the role assignments this Bicep (`infra`: the "
        "repository's infra/) makes for the bot; default: every valid token may do anything",
    )
    serve.add_argument(
        "--functions",
        action="store_true",
        help="also run the function app (Azurite and the local Functions runner) in "
        "REMEDIATION_MODE=propose, as deployed (--setting to change), with its sweep (see "
        "--sweep-every); the env file gains FUNCTIONS_URL, FUNCTIONS_KEY, FUNCTIONS_MCP_KEY, "
        "AzureWebJobsStorage and REMEDIATION_MODE",
    )
    serve.add_argument(
        "--functions-port", type=int, default=0, help="with --functions: port (default: free)"
    )
    serve.add_argument(
        "--signed-in-as",
        default="approver@contoso.com",
        metavar="USER",
        help="with --functions: the sandbox user (name or Entra object id, sandbox/easyauth.py) "
        "whom /.auth/login/aad signs in (default approver@contoso.com, also APPROVERS by object "
        "id unless the scenario sets it); '' to pick one on a sign-in page",
    )
    serve.add_argument(
        "--setting",
        action="append",
        type=_setting,
        default=[],
        metavar="NAME=VALUE",
        help="with --functions: an app setting over the scenario's (repeatable)",
    )
    serve.add_argument(
        "--sweep-every",
        type=_seconds,
        metavar="SECONDS",
        help="with --functions: run the app's sweep (list gateways in ALLOWED_SCOPES, queue a "
        "check of each unhealthy one) every SECONDS; 0: never. Default: the app's own schedule, "
        "every 15 minutes on the clock as deployed (SWEEP_SCHEDULE)",
    )
    serve.add_argument(
        "--fleet",
        metavar="GxS@U",
        help="add a generated fleet: G gateways in S subscriptions, a share U unhealthy, e.g. "
        "2000x20@0.02 (options: ,nodata=F ,regions=a+b ,page=N ,seed=N; docs/sandbox.md)",
    )
    sub.add_parser("scenarios", help="list the built-in scenarios")
    demo = sub.add_parser("demo", help="start a scenario and show its backend health")
    demo.add_argument("--scenario", default="ilb-ase-v1")
    demo.add_argument("--timing", **TIMING_ARG)
    args = parser.parse_args(argv)
    if args.command == "serve":
        functions = None
        if args.functions:
            functions = FunctionsOptions(
                args.functions_port, args.signed_in_as, tuple(args.setting), args.sweep_every
            )
        elif args.setting or args.functions_port or args.sweep_every is not None:
            parser.error("--setting, --functions-port and --sweep-every need --functions")
        if args.scenario is None and not args.fleet:
            parser.error("serve needs --scenario (or --fleet)")
        return _serve(
            args.scenario or "healthy",
            args.env_file,
            args.workdir,
            args.timing,
            args.rbac,
            functions,
            fleet=args.fleet,
        )
    if args.command == "scenarios":
        return _scenarios()
    return _demo(args.scenario, args.timing)


if __name__ == "__main__":
    sys.exit(main())
