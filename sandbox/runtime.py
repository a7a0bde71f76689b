"""Sandbox lifecycle: build the scenario's world, start every server in-process, stop them all."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shlex
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
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
# The keys the sandbox itself sets; a scenario's bot_settings cannot override them, except
# PROBE_VANTAGE, which is only a default.
CORE_KEYS = (
    "ARM_ENDPOINT",
    "REQUESTS_CA_BUNDLE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "AZURE_SUBSCRIPTION_ID",
    "SANDBOX_GATEWAY_IDS",
    "SANDBOX_CONTROL_URL",
    "METRICS_ENDPOINT",
    "PROBE_VANTAGE",
)
# Set too when the scenario has a `keyvault` section (the sandbox Key Vault's URL).
KEY_VAULT_KEY = "KEY_VAULT_URL"

# Timing profiles (docs/sandbox.md, "Timing profiles"). "scenario" keeps the scenario's own
# pacing (what `make demo` shows); "fast" is for tests: no write or health delays, operation
# polls answered at once, short probe timeouts, and the bot's own waits set to zero; "recorded"
# runs Azure's recorded timeline (sandbox/arm_ops.py) compressed by one factor: every write
# takes the slowest recorded gateway operation, backend health the recorded 11 s, Retry-After
# as recorded, and the bot's own waits and budgets at their defaults, all times the factor.
TIMINGS = ("scenario", "fast", "recorded")
RECORDED_SCALE = 0.002  # 886 s -> 1.8 s; the option `time_scale` sets another
FAST_OPTIONS: dict[str, Any] = {
    "lro_delay_seconds": 0,  # a PUT's operation ends on its first poll
    "health_lro_seconds": 0,  # so does backend health
    "retry_after_seconds": 0,  # polls say Retry-After: 0 (the SDK polls again at once)
    "probe_interval_seconds": 0,  # every backend-health read probes afresh (no stale window)
    "probe_timeout_cap_seconds": 1,  # a silent backend costs 1 s, not 3
}
FAST_BOT_SETTINGS: dict[str, str] = {
    "ARM_POLLING_INTERVAL": "0",
    "WRITE_BACKOFF_SECONDS": "0",
    "VERIFY_POLL_MIN_SECONDS": "0",
    "PROBE_TIMEOUT_SECONDS": "2",
}


# The bot's waits the recorded profile scales (their defaults: shared.common.settings).
RECORDED_BOT_WAITS = (
    "ARM_POLLING_INTERVAL",
    "WRITE_BACKOFF_SECONDS",
    "VERIFY_POLL_MIN_SECONDS",
    "VERIFY_DEADLINE_SECONDS",
    "LRO_TIMEOUT_SECONDS",
    "BUSY_WAIT_SECONDS",
)


def recorded_options(scale: float = RECORDED_SCALE) -> dict[str, Any]:
    """Emulator options of the recorded profile at `scale` (sandbox/arm_ops.py's numbers)."""
    from sandbox import arm_ops

    return {
        "time_scale": scale,
        "lro_delay_seconds": arm_ops.SLOWEST_WRITE * scale,
        "health_lro_seconds": arm_ops.RECORDED_SECONDS["health"] * scale,
        "probe_interval_seconds": 0,  # verification reads fresh health; the LROs carry the time
        "probe_timeout_cap_seconds": 1,
    }


def recorded_bot_settings(scale: float = RECORDED_SCALE) -> dict[str, str]:
    """The bot's own defaults for RECORDED_BOT_WAITS, times `scale`."""
    from shared.common.settings import load_settings

    defaults = load_settings({})
    return {name: f"{float(defaults[name]) * scale:.6g}" for name in RECORDED_BOT_WAITS} | {
        "PROBE_TIMEOUT_SECONDS": "2"
    }


def _profile_options(timing: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    if timing == "fast":
        return dict(FAST_OPTIONS)
    if timing == "recorded":
        return recorded_options(float((options or {}).get("time_scale", RECORDED_SCALE)))
    return {}


def apply_timing(s: Scenario, timing: str, options: Mapping[str, Any] | None = None) -> Scenario:
    """The scenario with `timing`'s emulator options, then `options`, over its own (a copy)."""
    if timing not in TIMINGS:
        raise ValueError(f"unknown timing {timing!r}: one of {', '.join(TIMINGS)}")
    if timing == "scenario" and not options:
        return s
    merged = {**s.options, **_profile_options(timing, options), **(options or {})}
    return replace(s, options=merged)


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
    authorizer: Any = None  # sandbox.rbac.Authorizer when started with rbac=...
    metrics: Any = None  # sandbox.metrics.MetricsEmulator (metrics:getBatch)
    fleet: Any = None  # sandbox.fleet.Fleet when started with fleet=...
    _stops: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def gateway_ids(self) -> list[str]:
        return [g for g in self.env["SANDBOX_GATEWAY_IDS"].split(",") if g]

    def rotate_backend(self, name: str) -> None:
        """Backend `name` presents its `rotate_to` chains from now on (docs/sandbox.md)."""
        if name not in self.backends:
            raise KeyError(f"no backend {name!r} in scenario {self.scenario.name}")
        self.backends[name].rotate()

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


def start_sandbox(
    scenario: str | Path | Scenario,
    *,
    workdir: Path,
    timing: str = "scenario",
    options: Mapping[str, Any] | None = None,
    rbac: str | Path | None = None,
    fleet: Any = None,
) -> SandboxHandle:
    """Start backends, identity endpoint and ARM emulator for a scenario, all as threads.

    `fleet` (a sandbox.fleet.FleetSpec or its text, e.g. "2000x20@0.02") adds that many
    lightweight gateways in their own subscriptions (sandbox/fleet.py) and puts those
    subscriptions in ALLOWED_SCOPES.

    `rbac` ("infra" or a directory laid out like infra/) makes the emulator authorize every
    request against the role assignments that Bicep makes for the bot (sandbox/rbac.py), and
    sets ALLOWED_SCOPES to the gateway ids, as infra/main.bicep does. Without it, any valid
    token may do anything.

    `timing="fast"` replaces the scenario's pacing with FAST_OPTIONS and adds FAST_BOT_SETTINGS
    to the env; `timing="recorded"` with recorded_options() and recorded_bot_settings() at
    RECORDED_SCALE (or the option `time_scale`); `options` (emulator options) win over both, for
    a test about one delay."""
    s = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    s = apply_timing(s, timing, options)
    arm_class = _arm_class()  # fail before anything listens
    workdir.mkdir(parents=True, exist_ok=True)
    stops: list[Callable[[], None]] = []
    try:
        handle = _start(s, arm_class, workdir, stops, rbac=rbac, fleet=fleet)
        if timing == "fast":
            handle.env.update(FAST_BOT_SETTINGS)  # over the scenario's bot_settings too
        elif timing == "recorded":
            handle.env.update(recorded_bot_settings(float(s.options["time_scale"])))
        return handle
    except BaseException:
        with contextlib.suppress(Exception):
            _run_stops(stops)
        raise


def _start(
    s: Scenario,
    arm_class: Any,
    workdir: Path,
    stops: list[Callable[[], None]],
    *,
    rbac: str | Path | None = None,
    fleet: Any = None,
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
    bot_settings = render_bot_settings(s, certs, endpoints)
    built_fleet = _build_fleet(fleet)
    fleet_docs = built_fleet.gateways if built_fleet is not None else []
    options = {**s.options, **(built_fleet.emulator_options() if built_fleet else {})}
    authorizer = _authorizer(s, gateways + fleet_docs, issuer, bot_settings, rbac) if rbac else None

    def arm_token_ok(token: str) -> bool:
        # The public cloud's audience (plain SDK clients), or exactly the emulator's own URL: the
        # scope the bot asks for when ARM_ENDPOINT is no known cloud (shared.cloud.arm.arm_scope).
        if issuer.verify(token, ARM_RESOURCE):
            return True
        own = str(arm.url).rstrip("/").lower()
        return issuer.verify(token, own) and (issuer.claims(token) or {}).get("res") == own

    arm = arm_class(
        subscription_id=s.subscription,
        gateways=gateways + fleet_docs,
        tls_cert_pem=arm_tls.pem(),
        tls_key_pem=arm_tls.key_pem(),
        verify_token=arm_token_ok,
        well_known_roots=[certs[name].der() for name in s.well_known],
        options=options,
        **({"authorizer": authorizer} if authorizer is not None else {}),
    )
    arm.start()
    stops.append(arm.stop)
    metrics = _start_metrics(arm, arm_tls, issuer, authorizer, stops)

    env = {
        "ARM_ENDPOINT": arm.url,
        "REQUESTS_CA_BUNDLE": str(ca_path),
        "IDENTITY_ENDPOINT": identity.endpoint,
        "IDENTITY_HEADER": header_secret,
        "AZURE_SUBSCRIPTION_ID": s.subscription,
        "SANDBOX_GATEWAY_IDS": ",".join(g["id"] for g in gateways),
        "SANDBOX_CONTROL_URL": arm.control_url,
        "METRICS_ENDPOINT": metrics.endpoint_template,
    }
    vault = _start_keyvault(s, certs, arm_tls, issuer, stops)
    if vault is not None:
        env[KEY_VAULT_KEY] = vault.url
        # The emulator answers on 127.0.0.1, not a vault domain (shared.cloud.keyvault).
        env["KEY_VAULT_VERIFY_CHALLENGE_RESOURCE"] = "false"
    if authorizer is not None:
        env["ALLOWED_SCOPES"] = ",".join(g["id"] for g in gateways)  # as infra/main.bicep sets it
    for key, value in bot_settings.items():
        env.setdefault(key, value)  # the scenario cannot redirect the sandbox's own keys
    if built_fleet is not None:
        # The fleet is scoped by subscription: 2,000 gateway ids would not fit one setting.
        fleet_scopes = [f"/subscriptions/{sub}" for sub in built_fleet.subscriptions]
        env["ALLOWED_SCOPES"] = ",".join(
            [x for x in env.get("ALLOWED_SCOPES", "").split(",") if x] + fleet_scopes
        )
    # The emulated gateway reaches its backends on this machine's loopback, so a probe from here
    # sees what it sees (shared.probe.tls.detect_vantage); a scenario may say otherwise.
    env.setdefault("PROBE_VANTAGE", "gateway_network")
    handle = SandboxHandle(env, s, workdir, certs, servers, gateways, arm, vault, authorizer)
    handle.metrics, handle.fleet = metrics, built_fleet
    handle._stops = stops
    return handle


def _build_fleet(fleet: Any) -> Any:
    if fleet is None:
        return None
    from sandbox.fleet import build_fleet

    return build_fleet(fleet)


def _start_metrics(
    arm: Any, tls: KeyCert, issuer: TokenIssuer, authorizer: Any, stops: list[Callable[[], None]]
) -> Any:
    """metrics:getBatch for the emulator's gateways (sandbox/metrics.py)."""
    from sandbox.metrics import AUDIENCE, MetricsEmulator

    metrics = MetricsEmulator(
        arm,
        tls_cert_pem=tls.pem(),
        tls_key_pem=tls.key_pem(),
        verify_token=lambda token: issuer.verify(token, AUDIENCE),
        authorizer=authorizer,
    )
    metrics.start()
    stops.append(metrics.stop)
    return metrics


def _infra_grants(infra_dir: Path) -> list[Any]:
    """sandbox.rbac.read_infra, parsed once per process while infra/'s Bicep files are unchanged
    (parsing them takes most of a second, and tests start a sandbox each)."""
    stamp = tuple(
        sorted((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in infra_dir.rglob("*.bicep"))
    )
    return list(_read_infra(infra_dir.resolve(), stamp))


@functools.lru_cache(maxsize=8)
def _read_infra(infra_dir: Path, stamp: tuple[tuple[str, int, int], ...]) -> tuple[Any, ...]:
    from sandbox import rbac as authz

    return tuple(authz.read_infra(infra_dir))


def _authorizer(
    s: Scenario,
    gateways: list[dict[str, Any]],
    issuer: TokenIssuer,
    bot_settings: Mapping[str, str],
    rbac: str | Path,
) -> Any:
    """RBAC for the emulator: infra/'s grants, placed on this world's resources, for the bot."""
    from sandbox import rbac as authz
    from sandbox.identity import object_id_for

    grants = _infra_grants(authz.resolve_infra_dir(rbac))
    group = f"/subscriptions/{s.subscription}/resourceGroups/{s.resource_group}"
    # Every vault a gateway certificate references is taken to live in the scenario's group.
    vaults = {
        authz.vault_name(str(secret)): f"{group}/providers/Microsoft.KeyVault/vaults/"
        + authz.vault_name(str(secret))
        for doc in gateways
        for collection in ("sslCertificates", "trustedRootCertificates")
        for cert in (doc.get("properties") or {}).get(collection) or []
        if (secret := (cert.get("properties") or {}).get("keyVaultSecretId"))
    }
    trusted_vault = f"{group}/providers/Microsoft.KeyVault/vaults/sandbox-kv" if s.keyvault else ""
    parameters = authz.infra_parameters(gateways, key_vault_ids=vaults, key_vault_id=trusted_vault)
    principal = object_id_for(bot_settings.get("AZURE_CLIENT_ID") or None)
    return authz.Authorizer(
        authz.assignments_for(grants, parameters, principal),
        claims=issuer.claims,
        key_vault_ids=vaults,
    )


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
