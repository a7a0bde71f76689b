"""`make demo`: the bot end to end on the local sandbox.

Starts the sandbox scenario, Azurite and the local Functions runner serving function_app; shows the
backend health; posts a real common-schema alert to /api/alerts; follows the job; prints the
diagnosis; writes the exported CER; lets the policy apply the fix (or, for a proposal, approves it
through the API as a signed-in approver); shows the backend health again. A scenario with several
gateways (`multi`) goes through each in turn. Ends with one JSON line:
{"scenario", "before", "after", "arm_writes", "seconds", "job"}, and with several gateways also
"gateways": [{"gateway", "before", "after", "job"}]; before/after then say "healthy" only when
every gateway is, and "job" is the first gateway's.
"""

from __future__ import annotations

import json
import secrets
import ssl
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from sandbox import easyauth
from sandbox.alerts import common_alert
from sandbox.demo import network_client, sandbox_environment, show_health
from sandbox.runtime import SandboxHandle, start_sandbox

APPROVER = easyauth.APPROVER  # a sandbox user: an Entra object id and a name
REQUESTER_NOTE = "the alert's job proposed the change; a second person approves it"


def _http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback only
    request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _arm_puts(handle: SandboxHandle) -> int:
    context = ssl.create_default_context(cafile=handle.env["REQUESTS_CA_BUNDLE"])
    url = handle.env["SANDBOX_CONTROL_URL"] + "/requests"
    with urllib.request.urlopen(url, context=context, timeout=10) as response:  # noqa: S310
        requests = json.loads(response.read())
    return sum(1 for r in requests if r["method"] == "PUT")


def _follow(url: str, key: str, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        status, job = _http("GET", f"{url}/api/jobs/{job_id}?code={key}")
        if status == 200:
            if job.get("state") != last:
                last = job.get("state", "")
                print(f"  job {job_id}: {last}")
            if last in {"succeeded", "failed", "proposed"}:
                return job
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} did not finish within {timeout:.0f} s")


def _print_diagnosis(diagnosis: dict[str, Any] | None) -> list[dict[str, Any]]:
    findings = (diagnosis or {}).get("findings", [])
    print("diagnosis:")
    for f in findings:
        fix = f.get("fix") or {}
        cert = fix.get("certificate") or {}
        print(f"  {f['pool']} ~ {f['settings']} {f['server']}: {f['health']}, cause {f['cause']}")
        if f.get("probe_log"):
            print(f"    probe log: {f['probe_log']}")
        target = (f.get("evidence") or {}).get("target") or {}
        if target:
            print(f"    gateway's handshake: {target.get('reason', '')}")
        if fix.get("action") and fix["action"] != "none":
            what = f"SHA-1 {cert['sha1']}" if cert else f"host name {fix.get('host_name')}"
            print(f"    fix: {fix['action']} ({what}) on {', '.join(fix.get('settings', []))}")
        for warning in f.get("warnings", []):
            print(f"    warning: {warning}")
    return findings


def _write_cers(findings: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    written = []
    for f in findings:
        cert = (f.get("fix") or {}).get("certificate")
        if cert and cert.get("cer"):
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / f"{cert['sha1']}.cer"
            path.write_text(cert["cer"], encoding="ascii")
            if path not in written:
                written.append(path)
                print(f"exported Base-64 CER: {path}")
    return written


def _health_word(unhealthy: int) -> str:
    return "healthy" if unhealthy == 0 else "unhealthy"


def run_bot_demo(
    scenario: str, *, workdir: Path | None, out_dir: Path, timing: str = "scenario"
) -> int:
    from sandbox.azurite import start_azurite

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="appgw-demo-") as tmp:
        base = workdir or Path(tmp)
        # ARM allows exactly what infra/ grants the bot (sandbox/rbac.py), as in a deployment.
        handle = start_sandbox(scenario, workdir=base / "sandbox", timing=timing, rbac="infra")
        azurite = None
        try:
            azurite = start_azurite(base / "azurite")
            result = _run(handle, azurite.connection_string, scenario, out_dir)
        finally:
            if azurite is not None:
                azurite.stop()
            handle.stop()
            print("stopped the sandbox, Azurite and the function runner")
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result))
    return 0 if result["after"] == "healthy" else 1


def _run(handle: SandboxHandle, connection: str, scenario: str, out_dir: Path) -> dict[str, Any]:
    """Every gateway of the scenario in turn (`multi` has two): health, alert, job, fix, health."""
    import function_app
    from sandbox.funcrunner import FunctionRunner

    key = secrets.token_urlsafe(24)
    interval = float(handle.scenario.options.get("probe_interval_seconds", 2))
    env = {
        "ARM_POLLING_INTERVAL": "1",  # unless the timing profile set it
        **handle.env,
        "VERIFY_DEADLINE_SECONDS": "60",
        "APPROVERS": f"{APPROVER.object_id}={APPROVER.name}",
        "WEBSITE_AUTH_ENABLED": "True",
        "STATE_DIR": str(out_dir / "state"),
    }
    names = ", ".join(g.rsplit("/", 1)[-1] for g in handle.gateway_ids)
    gateways: list[dict[str, Any]] = []
    with sandbox_environment(env):
        client = network_client(env)
        print(f"sandbox ready: {handle.scenario.name}; gateway(s) {names}")
        runner = FunctionRunner(
            function_app.app,
            env=env,
            connection=connection,
            keys={"default": key},
            easy_auth=True,
        )
        with runner:
            print(f"function app running locally at {runner.url} (stand-in for `func start`)")
            print(
                f"mode: REMEDIATION_MODE={env.get('REMEDIATION_MODE', 'propose')}, the "
                "scenario's demo setting; a deployment and `serve --functions` default to "
                "propose (a person approves every change); no sweep runs in the demo"
            )
            for gateway_id in handle.gateway_ids:
                gateways.append(
                    _one_gateway(client, runner.url, key, gateway_id, out_dir, interval)
                )
    healthy = all(g["after"] == "healthy" for g in gateways)
    result: dict[str, Any] = {
        "scenario": scenario,
        "before": "healthy" if all(g["before"] == "healthy" for g in gateways) else "unhealthy",
        "after": "healthy" if healthy else "unhealthy",
        "arm_writes": _arm_puts(handle),
        "seconds": 0.0,
        "job": gateways[0]["job"],
    }
    if len(gateways) > 1:  # one gateway: exactly the issue-5 contract
        result["gateways"] = gateways
    return result


def _one_gateway(
    client: Any, url: str, key: str, gateway_id: str, out_dir: Path, interval: float
) -> dict[str, Any]:
    name = gateway_id.rsplit("/", 1)[-1]
    print(f"\n== gateway {name} ==")
    print("backend health before:")
    before = show_health(client, gateway_id, deadline_seconds=3 * interval + 10)
    pool, settings = _alert_pair(client, gateway_id)
    status, accepted = _http(
        "POST",
        f"{url}/api/alerts?code={key}",
        common_alert(gateway_id, alert_id=str(uuid.uuid4()), dimension=f"{pool}~{settings}"),
    )
    print(f"POST /api/alerts -> {status} {json.dumps(accepted)}")
    if status != 202:
        raise RuntimeError(f"the alert was not accepted: {accepted}")
    job_id = accepted["jobs"][0]
    job = _follow(url, key, job_id)
    findings = _print_diagnosis(job.get("diagnosis"))
    _write_cers(findings, out_dir)
    outcome = job.get("outcome") or {}
    print(f"outcome: {json.dumps(outcome)}")
    if job.get("state") == "proposed" and outcome.get("proposal"):
        job = _approve(url, key, outcome["proposal"])
        print(f"outcome: {json.dumps(job.get('outcome') or {})}")
    print(f"backend health after ({name}):")
    after = show_health(client, gateway_id, deadline_seconds=3 * interval + 10)
    return {
        "gateway": name,
        "before": _health_word(before),
        "after": _health_word(after),
        "job": job_id,
    }


def _alert_pair(client: Any, gateway_id: str) -> tuple[str, str]:
    """(pool, settings) the alert's dimension names: the first unhealthy pair, else the first."""
    parts = gateway_id.split("/")
    health = client.application_gateways.begin_backend_health(parts[4], parts[8]).result()
    pairs = [
        (pool, entry)
        for pool in health.backend_address_pools or []
        for entry in pool.backend_http_settings_collection or []
    ]
    if not pairs:
        raise RuntimeError(f"gateway {parts[8]} reports no backend health")
    unhealthy = [
        (pool, entry)
        for pool, entry in pairs
        if any(s.health not in ("Up", "Healthy") for s in entry.servers or [])
    ]
    pool, entry = (unhealthy or pairs)[0]
    return (
        pool.backend_address_pool.id.rsplit("/", 1)[-1],
        entry.backend_http_settings.id.rsplit("/", 1)[-1],
    )


def _approve(url: str, key: str, proposal_id: str) -> dict[str, Any]:
    status, proposal = _http("GET", f"{url}/api/proposals/{proposal_id}?code={key}")
    print(f"proposal {proposal_id} ({REQUESTER_NOTE}):")
    print("  " + str((proposal.get("renderings") or {}).get("summary", "")).replace("\n", "\n  "))
    status, accepted = _http(
        "POST",
        f"{url}/api/proposals/{proposal_id}/approve?code={key}",
        {},
        easyauth.principal_headers(APPROVER),
    )
    print(f"POST /api/proposals/{proposal_id}/approve as {APPROVER.name} -> {status}")
    if status != 202:
        raise RuntimeError(f"approval refused: {accepted}")
    return _follow(url, key, accepted["job"])
