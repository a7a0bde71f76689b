"""`python -m sandbox demo`: start a scenario and show its backend health through the real SDKs."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sandbox.runtime import SandboxHandle, start_sandbox

# azure-identity picks these up ahead of the App Service endpoint; the demo must not see them.
_FOREIGN_IDENTITY_VARS = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "AZURE_FEDERATED_TOKEN_FILE",
)


@contextmanager
def sandbox_environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ pointed at the sandbox for the duration, then restored."""
    saved = dict(os.environ)
    for name in _FOREIGN_IDENTITY_VARS:
        os.environ.pop(name, None)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def network_client(env: dict[str, str]) -> Any:
    """NetworkManagementClient on the sandbox: managed identity, sandbox CA, fast polling."""
    from azure.identity import ManagedIdentityCredential
    from azure.mgmt.network import NetworkManagementClient

    return NetworkManagementClient(
        ManagedIdentityCredential(),
        env["AZURE_SUBSCRIPTION_ID"],
        base_url=env["ARM_ENDPOINT"],
        connection_verify=env["REQUESTS_CA_BUNDLE"],
        polling_interval=float(env.get("ARM_POLLING_INTERVAL", "1")),  # 0 in the fast timing
        retry_total=0,
    )


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))


def _split(gateway_id: str) -> tuple[str, str]:
    parts = gateway_id.split("/")
    return parts[4], parts[8]


def _servers(health: Any) -> Iterator[tuple[str, str, Any]]:
    for pool in health.backend_address_pools or []:
        pool_name = pool.backend_address_pool.id.rsplit("/", 1)[-1]
        for entry in pool.backend_http_settings_collection or []:
            settings_name = entry.backend_http_settings.id.rsplit("/", 1)[-1]
            for server in entry.servers or []:
                yield pool_name, settings_name, server


def show_health(client: Any, gateway_id: str, deadline_seconds: float) -> int:
    """Print the gateway and its unhealthy servers; returns how many are unhealthy."""
    rg, name = _split(gateway_id)
    gw = client.application_gateways.get(rg, name)
    sku, tier, state = (_text(v) for v in (gw.sku.name, gw.sku.tier, gw.provisioning_state))
    print(f"gateway {gw.name}: sku {sku} ({tier}), {state}")
    deadline = time.monotonic() + deadline_seconds
    while True:
        health = client.application_gateways.begin_backend_health(rg, name).result()
        servers = list(_servers(health))
        # Unknown means "no probe result yet" right after start; wait one more probe cycle.
        if all(s.health != "Unknown" for _, _, s in servers) or time.monotonic() > deadline:
            break
        time.sleep(1)
    bad = [(p, st, s) for p, st, s in servers if s.health not in ("Up", "Healthy")]
    for pool, settings, server in servers:
        print(f"  {pool} ~ {settings}: {server.address} {server.health}")
    for pool, settings, server in bad:
        print(f"  UNHEALTHY {pool} ~ {settings} {server.address}: {server.health_probe_log}")
    return len(bad)


def run_sandbox_only(scenario: str, workdir: Path | None = None) -> int:
    """Start the sandbox, show each gateway's backend health, stop."""
    with tempfile.TemporaryDirectory(prefix="appgw-sandbox-") as tmp:
        handle: SandboxHandle = start_sandbox(scenario, workdir=workdir or Path(tmp))
        try:
            print(f"sandbox ready: {handle.scenario.name} ({len(handle.gateway_ids)} gateways)")
            interval = float(handle.scenario.options.get("probe_interval_seconds", 2))
            with sandbox_environment(handle.env):
                client = network_client(handle.env)
                for gateway_id in handle.gateway_ids:
                    show_health(client, gateway_id, deadline_seconds=3 * interval + 10)
        finally:
            handle.stop()
    print("sandbox stopped")
    return 0


def run_demo(
    scenario: str,
    workdir: Path | None = None,
    out_dir: Path | None = None,
    *,
    timing: str = "scenario",
) -> int:
    """The bot end to end on the sandbox: see sandbox/bot_demo.py."""
    from sandbox.bot_demo import run_bot_demo

    return run_bot_demo(scenario, workdir=workdir, out_dir=out_dir or Path("out"), timing=timing)
