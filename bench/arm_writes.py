"""Measurement 1: ARM writes per remediation against N affected HTTP settings (issue #7).

A generated v1 ILB-ASE-like gateway: one ILB backend (the seed's: default certificate without SNI,
the app's certificate only under its host name), one pool holding the ILB's IP, and N HTTP
settings routed to it through a URL path map, each with the seed problem (the app certificate is
allow-listed, the probe sees the ILB default; docs/sources.md#sni-rules,
docs/sources.md#backend-trust).
The bot runs `Remediator.fix` in apply mode; its writes are the PUTs the emulator served.

The manual procedure (docs/sources.md#ilb-ase: upload the ILB certificate in each HTTP
settings) done in the portal or with one `az network application-gateway auth-cert create` plus
one `http-settings update` per settings costs 1 + N writes, each a full gateway update (a
configuration update "will terminate ongoing connections after the connection draining timeout",
docs/sources.md#overlapping-writes).
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, arm_puts, log

SEED = REPO_ROOT / "sandbox" / "scenarios" / "ilb-ase-v1.json"
# Azure allows 100 backend HTTP settings per gateway (docs/sources.md#limits).
MAX_SETTINGS = 100
_GW = "{{gateway.id}}"


def scenario(settings_count: int) -> dict[str, Any]:
    """The seed scenario with N HTTP settings on the one ILB pool, routed by a URL path map."""
    if not 1 <= settings_count <= MAX_SETTINGS:
        raise ValueError(f"settings_count must be 1..{MAX_SETTINGS}")
    data = json.loads(SEED.read_text(encoding="utf-8"))
    data["name"] = f"bench-ilb-ase-v1-{settings_count}"
    data["description"] = f"seed problem on {settings_count} HTTP settings"
    # Short probe interval and LRO delay: the bench measures counts, not Azure's latencies.
    data["options"] = {"probe_interval_seconds": 1, "lro_delay_seconds": 0.5}
    props = data["gateways"][0]["properties"]
    template = props["backendHttpSettingsCollection"][0]
    props["probes"][0]["properties"]["interval"] = 1
    names = [f"ase-https-{i}" for i in range(1, settings_count + 1)]
    props["backendHttpSettingsCollection"] = [_settings(template, n) for n in names]
    props["urlPathMaps"] = [_path_map(names)]
    props["requestRoutingRules"] = [
        {
            "name": "ase-rule",
            "properties": {
                "ruleType": "PathBasedRouting",
                "httpListener": {"id": f"{_GW}/httpListeners/ase-listener"},
                "urlPathMap": {"id": f"{_GW}/urlPathMaps/ase-paths"},
            },
        }
    ]
    return data


def _settings(template: dict[str, Any], name: str) -> dict[str, Any]:
    entry = copy.deepcopy(template)
    entry["name"] = name
    return entry


def _path_map(names: list[str]) -> dict[str, Any]:
    pool = {"id": f"{_GW}/backendAddressPools/ase-pool"}
    rules = [
        {
            "name": f"path-{name}",
            "properties": {
                "paths": [f"/{name}/*"],
                "backendAddressPool": pool,
                "backendHttpSettings": {"id": f"{_GW}/backendHttpSettingsCollection/{name}"},
            },
        }
        for name in names[1:]
    ]
    return {
        "name": "ase-paths",
        "properties": {
            "defaultBackendAddressPool": pool,
            "defaultBackendHttpSettings": {"id": f"{_GW}/backendHttpSettingsCollection/{names[0]}"},
            "pathRules": rules,
        },
    }


def run_one(settings_count: int, workdir: Path, timing: str = "scenario") -> dict[str, Any]:
    """Start the scenario, let the bot fix it in apply mode, count the PUTs the emulator served."""
    from sandbox.demo import sandbox_environment
    from sandbox.runtime import start_sandbox
    from sandbox.scenario import parse_scenario
    from shared.cli.wiring import local_remediator
    from shared.common.settings import load_settings

    handle = start_sandbox(
        parse_scenario(scenario(settings_count)), workdir=workdir / "sandbox", timing=timing
    )
    try:
        env = {
            **handle.env,
            "REMEDIATION_MODE": "apply",
            "ARM_POLLING_INTERVAL": "0",
            "VERIFY_DEADLINE_SECONDS": "30",
            "LRO_TIMEOUT_SECONDS": "60",
            "COOLDOWN_MINUTES": "0",
        }
        with sandbox_environment(env):
            bot = local_remediator(load_settings(), state_dir=workdir / "state")
            started = time.perf_counter()
            outcome = bot.fix(handle.gateway_ids[0], requester="bench")
            seconds = time.perf_counter() - started
        puts = arm_puts(handle.env)
    finally:
        handle.stop()
    plan = outcome.plan or {}
    changed = len(plan.get("settings_changes") or [])
    return {
        "settings": settings_count,
        "bot_writes": puts,
        "bot_reported_writes": outcome.arm_writes,
        "manual_writes": 1 + settings_count,
        "action": outcome.action,
        "verified": outcome.verified,
        "settings_changed": changed,
        "seconds": round(seconds, 2),
        "reason": outcome.reason,
    }


def run(counts: list[int], *, timing: str = "scenario") -> list[dict[str, Any]]:
    results = []
    for count in counts:
        log(f"arm writes: {count} HTTP settings ...")
        with tempfile.TemporaryDirectory(prefix="bench-arm-") as tmp:
            results.append(run_one(count, Path(tmp), timing))
    return results


HEADERS = ("HTTP settings", "bot PUTs", "manual PUTs (1+N)", "action", "verified", "fix s")


def rows(results: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["settings"],
            r["bot_writes"],
            r["manual_writes"],
            r["action"],
            r["verified"],
            r["seconds"],
        ]
        for r in results
    ]
