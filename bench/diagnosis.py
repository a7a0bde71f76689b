"""Measurement 2: diagnosis wall time and peak memory against N backends, 10% silent (issue #7).

The parent starts N real backends on loopback (one 127.R.S.n address each, as the sandbox does;
every tenth is `silent`: it accepts TCP and never answers) and renders a v1 ILB-ASE-like gateway
whose one pool holds them all, plus a backend-health document calling every server Unhealthy.
A fresh child process then runs exactly what `Remediator.assess` runs on those pure inputs:
`parse_gateway`, `parse_backend_health`, `route_hosts`, `probe_requests`, `capture_all` (the
bot's default concurrency) and `diagnose`. The child times it once untraced (wall time, ru_maxrss
delta over its baseline after imports and input parsing, and the child's whole peak RSS), then
once under tracemalloc (Python heap peak). A child keeps the backends' own threads and allocations
out of the figures. The peak is VmHWM on Linux (bench.common.maxrss_kib says why); it is a
high-water mark, so a delta of 0 means the work fit in memory already resident.

`capture_all` bounds every handshake by one deadline, so a silent peer costs one timeout, paid
in parallel: the whole probe phase costs about ceil(silent requests / workers) timeouts, where a
sequential prober would pay one per silent request.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, log, maxrss_kib

SEED = REPO_ROOT / "sandbox" / "scenarios" / "ilb-ase-v1.json"
SILENT_EVERY = 10  # 10% of the backends never answer
PROBE_WORKERS = 256  # capture_all's default pool bound, which Remediator uses
# One loopback block holds at most 249 addresses (sandbox.backends.AddressBlock): a larger pool
# takes several blocks, 240 addresses each.
BLOCK = 240
# The target for a pool of 1,200 members (docs/performance.md): the probe timeout plus 5 s.
TARGET_SLACK_SECONDS = 5.0
# docs/sources.md#probe-log-texts: the v1 certificate text and the probe timeout text.
NOT_WHITELISTED = "Backend server certificate is not whitelisted with Application Gateway."
TIMED_OUT = (
    "Time taken by the backend to respond to application gateway's health probe is more than "
    "the timeout threshold in the probe setting."
)


def scenario(backends: int) -> dict[str, Any]:
    """The seed scenario with N ILB-like backends in its one pool; every tenth is silent."""
    data = json.loads(SEED.read_text(encoding="utf-8"))
    data["name"] = f"bench-diagnosis-{backends}"
    template = data["backends"][0]
    data["backends"] = [
        {**template, "name": f"b{i}", "behaviour": _behaviour(i)} for i in range(backends)
    ]
    pool = data["gateways"][0]["properties"]["backendAddressPools"][0]
    pool["properties"]["backendAddresses"] = [
        {"ipAddress": f"{{{{backend.b{i}.address}}}}"} for i in range(backends)
    ]
    return data


def _behaviour(index: int) -> str:
    return "silent" if index % SILENT_EVERY == SILENT_EVERY - 1 else "tls"


def health_document(doc: dict[str, Any], silent: set[str]) -> dict[str, Any]:
    """Backend health as ARM returns it (docs/sources.md#arm-shape): every server Unhealthy."""
    props = doc["properties"]
    pool = props["backendAddressPools"][0]
    settings = props["backendHttpSettingsCollection"][0]
    servers = [
        {
            "address": member["ipAddress"],
            "health": "Unhealthy",
            "healthProbeLog": TIMED_OUT if member["ipAddress"] in silent else NOT_WHITELISTED,
        }
        for member in pool["properties"]["backendAddresses"]
    ]
    return {
        "backendAddressPools": [
            {
                "backendAddressPool": {"id": pool["id"]},
                "backendHttpSettingsCollection": [
                    {"backendHttpSettings": {"id": settings["id"]}, "servers": servers}
                ],
            }
        ]
    }


def _start_backends(count: int, stack: ExitStack) -> tuple[dict[str, Any], set[str]]:
    """Real TLS/silent backends on loopback; returns the rendered gateway and the silent IPs."""
    from sandbox.backends import AddressBlock, BackendServer, choose_port
    from sandbox.pki import KeyAllocator
    from sandbox.scenario import (
        backend_specs,
        build_certificates,
        parse_scenario,
        render_gateways,
    )

    s = parse_scenario(scenario(count))
    addresses: list[str] = []
    for start in range(0, count, BLOCK):
        block = AddressBlock(min(BLOCK, count - start))
        stack.callback(block.release)
        addresses += block.addresses
    port = choose_port(addresses, 443)
    endpoints = {b.name: (a, port) for b, a in zip(s.backends, addresses, strict=True)}
    certs = build_certificates(s, endpoints, KeyAllocator())
    for spec in backend_specs(s, certs):
        server = BackendServer(spec, *endpoints[spec.name])
        server.start()
        stack.callback(server.stop)
    doc = render_gateways(s, certs, endpoints, {443: port})[0]
    silent = {endpoints[b.name][0] for b in s.backends if b.behaviour.value == "silent"}
    return doc, silent


def run_one(backends: int, timeout: float) -> dict[str, Any]:
    load = [round(x, 2) for x in os.getloadavg()]
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-diag-") as tmp:
        doc, silent = _start_backends(backends, stack)
        inputs = Path(tmp) / "inputs.json"
        payload = {"doc": doc, "health": health_document(doc, silent), "timeout": timeout}
        inputs.write_text(json.dumps(payload), encoding="utf-8")
        child = subprocess.run(
            [sys.executable, "-m", "bench.diagnosis", "--child", str(inputs)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    if child.returncode != 0:
        raise RuntimeError(f"diagnosis child failed: {child.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    result.update(backends=backends, silent_backends=len(silent), probe_timeout=timeout)
    waves = math.ceil(result["timed_out_requests"] / PROBE_WORKERS)
    result["expected_timeout_waves"] = waves
    result["target_seconds"] = timeout + TARGET_SLACK_SECONDS
    result["meets_target"] = result["wall_seconds"] <= timeout + TARGET_SLACK_SECONDS
    result["load_average"] = load  # before the run: other work on the machine
    result["sequential_timeout_seconds"] = round(result["timed_out_requests"] * timeout, 1)
    return result


def run(counts: list[int], timeout: float) -> list[dict[str, Any]]:
    results = []
    for count in counts:
        log(f"diagnosis: {count} backends ({count // SILENT_EVERY} silent) ...")
        results.append(run_one(count, timeout))
    return results


HEADERS = (
    "backends",
    "silent",
    "probes",
    "timed out",
    "wall s",
    "probe s",
    "diagnose s",
    "timeouts paid",
    "if sequential s",
    "tracemalloc MiB",
    "RSS delta MiB",
    "peak RSS MiB",
    "target s",
    "load avg",
)


def rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["backends"],
            r["silent_backends"],
            r["requests"],
            r["timed_out_requests"],
            r["wall_seconds"],
            r["probe_seconds"],
            r["diagnose_seconds"],
            round(r["probe_seconds"] / r["probe_timeout"], 2),
            r["sequential_timeout_seconds"],
            round(r["tracemalloc_peak_bytes"] / 2**20, 2),
            round(r["maxrss_delta_kib"] / 1024, 2),
            round(r["maxrss_kib"] / 1024, 1),
            f"{r['target_seconds']:g} ({'met' if r['meets_target'] else 'missed'})",
            r["load_average"][0],
        ]
        for r in results
    ]


# ---- the child: the measured work, in a process of its own ------------------------------------


def _diagnose_once(payload: dict[str, Any]) -> dict[str, Any]:
    from shared.core.diagnosis import diagnose, probe_requests, route_hosts
    from shared.core.gateway import parse_gateway
    from shared.core.health import parse_backend_health
    from shared.core.probe_order import slow_first
    from shared.probe.tls import ProbeErrorKind, capture_all

    started = time.perf_counter()
    cpu_start = time.process_time()
    gw = parse_gateway(payload["doc"])
    health = parse_backend_health(payload["health"])
    hosts = route_hosts(payload["doc"])
    requests = slow_first(probe_requests(gw, health, hosts=hosts), health)
    probe_start = time.perf_counter()
    captures = capture_all(requests, timeout=float(payload["timeout"]))
    probe_end = time.perf_counter()
    probe_cpu = time.process_time() - cpu_start
    result = diagnose(gw, health, captures, now=datetime.now(UTC), hosts=hosts)
    ended = time.perf_counter()
    timed_out = sum(1 for c in captures.values() if c.error is ProbeErrorKind.TIMEOUT)
    return {
        "wall_seconds": round(ended - started, 3),
        "probe_seconds": round(probe_end - probe_start, 3),
        "diagnose_seconds": round(ended - probe_end, 3),
        # The bot's own CPU for parsing and probing (every thread of the child): the backends'
        # side of each handshake runs in the parent, on the same cores.
        "probe_cpu_seconds": round(probe_cpu, 3),
        "requests": len(requests),
        "timed_out_requests": timed_out,
        "findings": len(result.findings),
        "causes": dict(Counter(f.cause.value for f in result.findings)),
    }


def child_main(path: Path) -> None:
    # Imported before the baseline, so the RSS delta is the work's, not the imports'.
    import shared.core.diagnosis
    import shared.probe.tls  # noqa: F401

    payload = json.loads(path.read_text(encoding="utf-8"))
    baseline = maxrss_kib()
    result = _diagnose_once(payload)
    result["maxrss_delta_kib"] = maxrss_kib() - baseline
    result["maxrss_kib"] = maxrss_kib()
    tracemalloc.start()
    _diagnose_once(payload)
    result["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", type=Path, required=True)
    child_main(parser.parse_args().child)
