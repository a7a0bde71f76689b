"""Measurement 4: alert endpoint latency (p50, p99) during an alert storm (issues #7, #14).

The function app (function_app.app) runs in the local Functions runner over Azurite, against a
sandbox with five v1 ILB-ASE gateways (the seed's problem on each). The storm: for each gateway
`alerts_per_gateway` distinct alerts, each posted 3 times `Fired` (action-group retries and
parallel action groups repeat alertId + monitorCondition, docs/sources.md#action-groups)
and 2 times `Resolved`, shuffled (fixed seed) and posted concurrently by a thread pool. Each
post's latency is measured by the client. REMEDIATION_MODE is diagnose, so jobs are cheap and
the bot must write nothing: ARM PUTs are counted from the emulator's control endpoint.

Processes as in Azure: this one runs the app's HTTP functions (alerts among them); the queue
worker and the timer run in a child process, as Flex Consumption's per-function scaling puts them on
instances of their own; the sandbox (ARM and the backends, `python -m sandbox serve`) and the
client (the action group) run in child processes too. In one interpreter their work competed with
the alert handler for the GIL and counted as its latency (docs/performance.md, storm).
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, arm_puts, arm_requests, log, percentile

SEED = REPO_ROOT / "sandbox" / "scenarios" / "ilb-ase-v1.json"
GATEWAYS = 5
FIRED_COPIES = 3
RESOLVED_COPIES = 2
POSTS_PER_ALERT = FIRED_COPIES + RESOLVED_COPIES
JOB_WAIT_SECONDS = 180.0
TERMINAL = {"succeeded", "failed", "proposed"}


WARM_GATEWAY = "agw-storm-warm"


def scenario() -> dict[str, Any]:
    """The seed scenario with five copies of its gateway on the one ILB backend, and a sixth
    (WARM_GATEWAY) that only the warm-up alert names."""
    data = json.loads(SEED.read_text(encoding="utf-8"))
    data["name"] = "bench-storm"
    template = data["gateways"][0]
    gateways = []
    for name in [*(f"agw-storm-{i}" for i in range(1, GATEWAYS + 1)), WARM_GATEWAY]:
        doc = json.loads(json.dumps(template))
        doc["name"] = name
        doc["id"] = doc["id"].replace("agw-ase-v1", doc["name"])
        gateways.append(doc)
    data["gateways"] = gateways
    data["bot_settings"]["REMEDIATION_MODE"] = "diagnose"
    return data


def storm_payloads(gateway_ids: list[str], total: int, seed: int = 7) -> list[dict[str, Any]]:
    """`total` posts (rounded down to whole alerts): duplicates, Fired/Resolved pairs, shuffled."""
    from sandbox.alerts import common_alert

    per_gateway = max(1, total // (len(gateway_ids) * POSTS_PER_ALERT))
    posts = []
    for gid in gateway_ids:
        for _ in range(per_gateway):
            alert_id = str(uuid.uuid4())
            fired = common_alert(gid, alert_id=alert_id)
            resolved = common_alert(gid, alert_id=alert_id, condition="Resolved")
            posts += [fired] * FIRED_COPIES + [resolved] * RESOLVED_COPIES
    random.Random(seed).shuffle(posts)
    return posts


def _post(url: str, key: str, payload: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
    data = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("x-functions-key", key)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    elapsed = time.perf_counter() - started
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    return elapsed, status, body if isinstance(body, dict) else {}


def _get_job(base: str, key: str, job_id: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{base}/api/jobs/{job_id}")
    request.add_header("x-functions-key", key)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError:
        return {}


def _wait_jobs(base: str, key: str, job_ids: set[str]) -> list[dict[str, Any]]:
    """Every job's last state; bounded by JOB_WAIT_SECONDS."""
    deadline = time.monotonic() + JOB_WAIT_SECONDS
    jobs: dict[str, dict[str, Any]] = {}
    while True:
        for job_id in sorted(job_ids - {j for j, d in jobs.items() if d.get("state") in TERMINAL}):
            jobs[job_id] = _get_job(base, key, job_id)
        if all(d.get("state") in TERMINAL for d in jobs.values()) or time.monotonic() > deadline:
            return list(jobs.values())
        time.sleep(0.5)


def _storm(base: str, key: str, posts: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    url = f"{base}/api/alerts"
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="storm") as pool:
        replies = list(pool.map(lambda p: _post(url, key, p), posts))
    seconds = time.perf_counter() - started
    latencies = [r[0] for r in replies]
    job_ids = {j for _, _, body in replies for j in body.get("jobs", [])}
    return {
        "posts": len(posts),
        "workers": workers,
        "storm_seconds": round(seconds, 2),
        "posts_per_second": round(len(posts) / seconds, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "statuses": dict(Counter(str(r[1]) for r in replies)),
        "answers": dict(Counter(str(r[2].get("status", "error")) for r in replies)),
        "job_ids": sorted(job_ids),
        # In posting order, so the first (cold storage context) and the rest can be told apart.
        "latencies_ms": [round(x * 1000, 1) for x in latencies],
    }


def _warm_up(base: str, key: str, gateway_id: str) -> float:
    """One alert on the warm-up gateway, followed to the end of its job: the storm then meets a
    running instance, as alerts do in Azure. A fresh instance's first requests and first job pay
    for imports and connections; bench/cold_start.py measures that, not this."""
    from sandbox.alerts import common_alert

    started = time.perf_counter()
    _, status, body = _post(f"{base}/api/alerts", key, common_alert(gateway_id))
    if status != 202:
        raise RuntimeError(f"the warm-up alert got {status}: {body}")
    _wait_jobs(base, key, set(body.get("jobs", [])))
    return round(time.perf_counter() - started, 2)


def _functions(app: Any) -> tuple[list[str], list[str]]:
    """(HTTP functions, the others) of a FunctionApp."""
    app.functions_bindings = None  # azure-functions remembers names between get_functions()
    http: list[str] = []
    other: list[str] = []
    for fn in app.get_functions():
        bindings = json.loads(fn.get_function_json())["bindings"]
        name = fn.get_function_name() or fn.get_user_function().__name__
        (http if any(b["type"] == "httpTrigger" for b in bindings) else other).append(name)
    return http, other


def _disabled(names: list[str]) -> dict[str, str]:
    """The host's way to switch functions off (docs/sources.md#functions)."""
    return {f"AzureWebJobs.{name}.Disabled": "true" for name in names}


@contextmanager
def _worker_process(env: dict[str, str], connection: str) -> Iterator[None]:
    """The app's queue and timer functions in a child process (`python -m bench.storm --worker`),
    as on Flex Consumption; stopped with SIGTERM."""
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.storm", "--worker"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps({"env": env, "connection": connection}))
        child.stdin.close()
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the worker process did not start")
        yield
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _serve_worker(config: dict[str, Any]) -> None:
    """Child side of _worker_process: a runner with every HTTP function off, until SIGTERM."""
    import threading

    import function_app
    from sandbox.demo import sandbox_environment
    from sandbox.funcrunner import FunctionRunner

    logging.getLogger().setLevel(logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    http, _ = _functions(function_app.app)
    env = {**config["env"], **_disabled(http)}
    with (
        sandbox_environment(env),
        FunctionRunner(
            function_app.app,
            env=env,
            connection=config["connection"],
            keys={"k": secrets.token_urlsafe(24)},  # no HTTP function here: never used
        ),
    ):
        print("ready", flush=True)
        stop.wait()


def _storm_in_child(base: str, key: str, posts: list[dict[str, Any]], workers: int) -> Any:
    """_storm in a child interpreter (`python -m bench.storm --client`): the action group is not
    in the app's process."""
    request = json.dumps({"base": base, "key": key, "posts": posts, "workers": workers})
    done = subprocess.run(
        [sys.executable, "-m", "bench.storm", "--client"],
        input=request,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the storm client failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


@contextmanager
def _sandbox_process(workdir: Path, timing: str) -> Iterator[dict[str, str]]:
    """`python -m sandbox serve` on the storm scenario; yields its environment."""
    from sandbox.runtime import read_env_file

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "bench-storm.json"
    path.write_text(json.dumps(scenario()), encoding="utf-8")
    env_file = workdir / "sandbox.env"
    command = [sys.executable, "-m", "sandbox", "serve", "--scenario", str(path)]
    command += ["--env-file", str(env_file), "--workdir", str(workdir / "sb"), "--timing", timing]
    child = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not env_file.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                stderr = child.stderr.read() if child.stderr else ""
                raise RuntimeError(f"the sandbox did not start: {stderr.strip()[-500:]}")
            time.sleep(0.1)
        yield read_env_file(env_file)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run(total: int, workers: int, *, timing: str = "scenario") -> dict[str, Any]:
    """Start sandbox (child process), Azurite and runner; post the storm from a child process;
    wait for the jobs; count ARM writes."""
    import function_app
    from sandbox.azurite import start_azurite
    from sandbox.demo import sandbox_environment
    from sandbox.funcrunner import FunctionRunner

    # Importing function_app configures INFO logging: one JSON line per alert would bury the
    # tables. Warnings and errors still show.
    logging.getLogger().setLevel(logging.WARNING)
    key = secrets.token_urlsafe(24)
    with (
        tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp,
        _sandbox_process(Path(tmp) / "sandbox", timing) as sandbox_env,
    ):
        azurite = None
        try:
            azurite = start_azurite(Path(tmp) / "azurite")
            env = {
                **sandbox_env,
                # Backend health polls every second, as in `make demo` (deployed: 10 s; NRP sends
                # no Retry-After). 0 busy-looped ~100 polls a job: a CPU load no deployment has.
                "ARM_POLLING_INTERVAL": "1",
                "VERIFY_DEADLINE_SECONDS": "0",
                "COOLDOWN_MINUTES": "0",
            }
            gateway_ids = [g for g in sandbox_env["SANDBOX_GATEWAY_IDS"].split(",") if g]
            warm = [g for g in gateway_ids if g.endswith("/" + WARM_GATEWAY)]
            posts = storm_payloads([g for g in gateway_ids if g not in warm], total)
            _, background = _functions(function_app.app)
            with (
                sandbox_environment(env),
                _worker_process(env, azurite.connection_string),
                FunctionRunner(
                    function_app.app,
                    env={**env, **_disabled(background)},
                    connection=azurite.connection_string,
                    keys={"k": key},
                ) as runner,
            ):
                warmup_seconds = _warm_up(runner.url, key, warm[0])
                log(f"storm: {len(posts)} alerts on {GATEWAYS} gateways, {workers} workers ...")
                result = _storm_in_child(runner.url, key, posts, workers)
                result["warmup_seconds"] = warmup_seconds
                jobs = _wait_jobs(runner.url, key, set(result["job_ids"]))
            result["arm_puts"] = arm_puts(sandbox_env)
            result["arm_requests"] = len(arm_requests(sandbox_env))
        finally:
            if azurite is not None:
                azurite.stop()
    per_gateway = Counter(j.get("gateway_id", "?").rsplit("/", 1)[-1] for j in jobs)
    result.update(
        gateways=GATEWAYS,
        distinct_alerts=len(posts) // POSTS_PER_ALERT,
        jobs=len(jobs),
        jobs_per_gateway=dict(sorted(per_gateway.items())),
        job_states=dict(Counter(str(j.get("state")) for j in jobs)),
        mode="diagnose",
    )
    del result["job_ids"]
    return result


HEADERS = (
    "alerts",
    "workers",
    "p50 ms",
    "p99 ms",
    "max ms",
    "alerts/s",
    "statuses",
    "jobs (per gateway)",
    "job states",
    "ARM PUTs",
)


def rows(result: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            result["posts"],
            result["workers"],
            result["p50_ms"],
            result["p99_ms"],
            result["max_ms"],
            result["posts_per_second"],
            " ".join(f"{k}x{v}" for k, v in sorted(result["statuses"].items())),
            f"{result['jobs']} ({', '.join(str(v) for v in result['jobs_per_gateway'].values())})",
            " ".join(f"{k}x{v}" for k, v in sorted(result["job_states"].items())),
            result["arm_puts"],
        ]
    ]


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _serve_worker(json.load(sys.stdin))

if __name__ == "__main__" and sys.argv[1:] == ["--client"]:
    # The storm client (see _storm_in_child): a JSON request on stdin, the result on stdout.
    _request = json.load(sys.stdin)
    _reply = _storm(_request["base"], _request["key"], _request["posts"], _request["workers"])
    sys.stdout.write(json.dumps(_reply))
