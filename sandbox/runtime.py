"""Sandbox lifecycle: build the scenario's world, start every server in-process, stop them all."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.backends import AddressBlock, BackendServer, choose_port
from sandbox.identity import IdentityServer, TokenIssuer
from sandbox.pki import KeyAllocator, KeyCert, issue, make_root
from sandbox.scenario import (
    Scenario,
    backend_specs,
    build_certificates,
    load_scenario,
    render_bot_settings,
    render_gateways,
)

ARM_RESOURCE = "https://management.azure.com"
CA_FILE = "sandbox-ca.pem"
# The keys the sandbox itself sets; a scenario's bot_settings cannot override them.
CORE_KEYS = (
    "ARM_ENDPOINT",
    "REQUESTS_CA_BUNDLE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "AZURE_SUBSCRIPTION_ID",
    "SANDBOX_GATEWAY_IDS",
    "SANDBOX_CONTROL_URL",
)
# Set too when the scenario has a `keyvault` section (the sandbox Key Vault's URL).
KEY_VAULT_KEY = "KEY_VAULT_URL"


@dataclass
class SandboxHandle:
    env: dict[str, str]  # exactly the env-file keys
    scenario: Scenario
    workdir: Path
    certs: dict[str, KeyCert] = field(default_factory=dict)  # scenario name -> certificate
    backends: dict[str, BackendServer] = field(default_factory=dict)
    gateways: list[dict[str, Any]] = field(default_factory=list)  # as given to the emulator
    arm: Any = None
    keyvault: Any = None  # sandbox.keyvault.KeyVaultEmulator when the scenario has one
    _stops: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def gateway_ids(self) -> list[str]:
        return [g for g in self.env["SANDBOX_GATEWAY_IDS"].split(",") if g]

    def stop(self) -> None:
        """Stop everything, last started first; safe to call twice."""
        with self._lock:
            stops, self._stops = self._stops, []
        _run_stops(stops)


def _run_stops(stops: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []
    for stop in reversed(stops):
        try:
            stop()
        except Exception as exc:  # noqa: BLE001 - keep stopping the rest, report after
            errors.append(exc)
    if errors:
        raise errors[0]


def _arm_class() -> Any:
    try:
        from sandbox.arm import ArmEmulator
    except ImportError as exc:
        raise RuntimeError(f"the ARM emulator (sandbox/arm.py) is not available: {exc}") from exc
    return ArmEmulator


def _start_backends(
    s: Scenario, stops: list[Callable[[], None]]
) -> tuple[dict[str, tuple[str, int]], dict[int, int], AddressBlock | None]:
    """Addresses and ports for every backend; declared ports map to one real port each."""
    if not s.backends:
        return {}, {}, None
    block = AddressBlock(len(s.backends))
    stops.append(block.release)
    address = {b.name: a for b, a in zip(s.backends, block.addresses, strict=True)}
    port_map: dict[int, int] = {}
    for declared in sorted({b.port for b in s.backends}):
        same = [address[b.name] for b in s.backends if b.port == declared]
        port_map[declared] = choose_port(same, declared)
    endpoints = {b.name: (address[b.name], port_map[b.port]) for b in s.backends}
    return endpoints, port_map, block


def start_sandbox(scenario: str | Path | Scenario, *, workdir: Path) -> SandboxHandle:
    """Start backends, identity endpoint and ARM emulator for a scenario, all as threads."""
    s = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    arm_class = _arm_class()  # fail before anything listens
    workdir.mkdir(parents=True, exist_ok=True)
    stops: list[Callable[[], None]] = []
    try:
        return _start(s, arm_class, workdir, stops)
    except BaseException:
        with contextlib.suppress(Exception):
            _run_stops(stops)
        raise


def _start(
    s: Scenario, arm_class: Any, workdir: Path, stops: list[Callable[[], None]]
) -> SandboxHandle:
    keys = KeyAllocator()
    endpoints, port_map, _ = _start_backends(s, stops)
    certs = build_certificates(s, endpoints, keys)
    servers: dict[str, BackendServer] = {}
    for spec in backend_specs(s, certs):
        address, port = endpoints[spec.name]
        server = BackendServer(spec, address, port)
        server.start()
        stops.append(server.stop)
        servers[spec.name] = server

    # The sandbox CA signs the emulator's HTTPS certificate; clients trust it via the bundle.
    ca = make_root("appgw-cert-bot sandbox CA", key=keys())
    arm_tls = issue(
        ca, "127.0.0.1", dns_names=["localhost"], ip_addresses=["127.0.0.1"], key=keys()
    )
    ca_path = workdir / CA_FILE
    ca_path.write_bytes(ca.pem())

    issuer = TokenIssuer()
    header_secret = secrets.token_urlsafe(24)
    identity = IdentityServer(issuer, header_secret)
    identity.start()
    stops.append(identity.stop)

    gateways = render_gateways(s, certs, endpoints, port_map)
    arm = arm_class(
        subscription_id=s.subscription,
        gateways=gateways,
        tls_cert_pem=arm_tls.pem(),
        tls_key_pem=arm_tls.key_pem(),
        verify_token=lambda token: issuer.verify(token, ARM_RESOURCE),
        well_known_roots=[certs[name].der() for name in s.well_known],
        options=dict(s.options),
    )
    arm.start()
    stops.append(arm.stop)

    env = {
        "ARM_ENDPOINT": arm.url,
        "REQUESTS_CA_BUNDLE": str(ca_path),
        "IDENTITY_ENDPOINT": identity.endpoint,
        "IDENTITY_HEADER": header_secret,
        "AZURE_SUBSCRIPTION_ID": s.subscription,
        "SANDBOX_GATEWAY_IDS": ",".join(g["id"] for g in gateways),
        "SANDBOX_CONTROL_URL": arm.control_url,
    }
    vault = _start_keyvault(s, certs, arm_tls, issuer, stops)
    if vault is not None:
        env[KEY_VAULT_KEY] = vault.url
        # The emulator answers on 127.0.0.1, not a vault domain (shared.cloud.keyvault).
        env["KEY_VAULT_VERIFY_CHALLENGE_RESOURCE"] = "false"
    for key, value in render_bot_settings(s, certs, endpoints).items():
        env.setdefault(key, value)  # the scenario cannot redirect the sandbox's own keys
    handle = SandboxHandle(env, s, workdir, certs, servers, gateways, arm, vault)
    handle._stops = stops
    return handle


def _start_keyvault(
    s: Scenario,
    certs: dict[str, KeyCert],
    tls: KeyCert,
    issuer: TokenIssuer,
    stops: list[Callable[[], None]],
) -> Any:
    """The Key Vault of the scenario's `keyvault` section (public parts only), or None."""
    if not s.keyvault:
        return None
    from sandbox.keyvault import VAULT_RESOURCE, KeyVaultEmulator

    vault = KeyVaultEmulator(
        certificates={kv: certs[name].der() for kv, name in s.keyvault.items()},
        tls_cert_pem=tls.pem(),
        tls_key_pem=tls.key_pem(),
        verify_token=lambda token: issuer.verify(token, VAULT_RESOURCE),
    )
    vault.start()
    stops.append(vault.stop)
    return vault


# -- env file ------------------------------------------------------------------------------------


def write_env_file(env: dict[str, str], path: Path) -> None:
    """One KEY='VALUE' line per key, sourceable by sh; written atomically (readers wait for it)."""
    lines = []
    for key, value in env.items():
        if not key.isidentifier():
            raise ValueError(f"not a shell variable name: {key!r}")
        quoted = "'" + value.replace("'", "'\\''") + "'"
        lines.append(f"{key}={quoted}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)


def read_env_file(path: Path) -> dict[str, str]:
    """The inverse of write_env_file (shell quoting rules)."""
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, raw = line.partition("=")
            env[key.strip()] = "".join(shlex.split(raw)) if raw else ""
    return env
