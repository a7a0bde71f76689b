"""Scenario files: the world a sandbox starts (certificates, backends, gateways, options).

The format is documented in docs/sandbox.md. Loading validates everything that can be checked
without starting servers (names, references, placeholders), so a bad file fails with one clear
message before anything listens.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from sandbox.backends import BackendSpec, Behaviour
from sandbox.faults import FaultError, parse_rules
from sandbox.pki import PFX_PASSWORD, KeyCert, issue, self_signed

BUILTIN_DIR = Path(__file__).parent / "scenarios"
GATEWAY_TYPE = "Microsoft.Network/applicationGateways"
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")
_CERT_ATTRS = {"der_b64", "pem", "thumbprint", "pfx_b64"}
_BACKEND_ATTRS = {"address", "port"}
_KV_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")


class ScenarioError(ValueError):
    """A scenario that cannot be loaded or built; the message names the offending part."""


@dataclass(frozen=True)
class CertDecl:
    """An authority (CA) or a certificate; `issuer` None means self-signed."""

    name: str
    common_name: str
    issuer: str | None
    ca: bool
    well_known: bool = False
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    valid_from_days: float = -1
    valid_to_days: float = 365


@dataclass(frozen=True)
class BackendDecl:
    name: str
    behaviour: Behaviour
    port: int
    default_chain: tuple[str, ...]
    sni: dict[str, tuple[str, ...]]
    http_status: int = 200
    body: str = "OK"
    # `rotate_to`: the chains presented after `SandboxHandle.rotate_backend(name)` (a backend
    # switching certificate mid-scenario); None when the backend never switches.
    rotate_default_chain: tuple[str, ...] | None = None
    rotate_sni: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class Scenario:
    name: str
    description: str
    subscription: str
    resource_group: str
    certs: list[CertDecl]  # authorities first, then certificates, in declaration order
    backends: list[BackendDecl]
    gateways: list[dict[str, Any]]  # raw documents with placeholders
    options: dict[str, Any] = field(default_factory=dict)
    bot_settings: dict[str, str] = field(default_factory=dict)
    keyvault: dict[str, str] = field(default_factory=dict)  # Key Vault name -> certificate name
    source: Path | None = None

    @property
    def well_known(self) -> list[str]:
        return [c.name for c in self.certs if c.well_known]

    def gateway_ids(self) -> list[str]:
        return [_gateway_id(self, doc) for doc in self.gateways]


# -- loading -------------------------------------------------------------------------------------


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.json"))


def builtin_descriptions() -> list[tuple[str, str]]:
    return [(n, load_scenario(n).description) for n in builtin_names()]


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or a scenario JSON file by path."""
    path = Path(name_or_path)
    if not path.suffix and (BUILTIN_DIR / f"{name_or_path}.json").is_file():
        path = BUILTIN_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = ", ".join(builtin_names())
        raise ScenarioError(f"unknown scenario {str(name_or_path)!r} (built-in: {known})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScenarioError(f"{path}: not readable JSON: {exc}") from None
    scenario = parse_scenario(raw)
    scenario.source = path
    return scenario


def _req(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise ScenarioError(f"{where}: {key!r} must be a {kind.__name__}")
    return value


def _str_list(obj: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError(f"{where}: {key!r} must be a list of strings")
    return tuple(value)


def _days(obj: dict[str, Any], key: str, default: float, where: str) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}: {key!r} must be a number of days")
    return float(value)


def _cert_decl(raw: Any, authority: bool, index: int) -> CertDecl:
    where = f"{'authorities' if authority else 'certificates'}[{index}]"
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: must be an object")
    name = _req(raw, "name", str, where)
    where = f"{where} ({name})"
    issuer = raw.get("issuer")
    if issuer is not None and not isinstance(issuer, str):
        raise ScenarioError(f"{where}: 'issuer' must be a certificate name or null")
    decl = CertDecl(
        name=name,
        common_name=raw.get("common_name", name),
        issuer=issuer,
        ca=bool(raw.get("ca", authority)),
        well_known=bool(raw.get("well_known", False)),
        dns_names=_str_list(raw, "dns_names", where),
        ip_addresses=_str_list(raw, "ip_addresses", where),
        valid_from_days=_days(raw, "valid_from_days", -1, where),
        valid_to_days=_days(raw, "valid_to_days", 3650 if authority else 365, where),
    )
    if decl.valid_to_days <= decl.valid_from_days:
        raise ScenarioError(f"{where}: valid_to_days must be after valid_from_days")
    if decl.well_known and not decl.ca:
        raise ScenarioError(f"{where}: only an authority can be well_known")
    return decl


def _backend_decl(raw: Any, index: int) -> BackendDecl:
    where = f"backends[{index}]"
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: must be an object")
    name = _req(raw, "name", str, where)
    where = f"{where} ({name})"
    try:
        behaviour = Behaviour(raw.get("behaviour", "tls"))
    except ValueError:
        allowed = ", ".join(b.value for b in Behaviour)
        raise ScenarioError(f"{where}: 'behaviour' must be one of {allowed}") from None
    sni_raw = raw.get("sni", {})
    if not isinstance(sni_raw, dict):
        raise ScenarioError(f"{where}: 'sni' must map host names to chains")
    sni = {host.lower(): _str_list(sni_raw, host, f"{where} sni") for host in sni_raw}
    port, status = raw.get("port", 443), raw.get("http_status", 200)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ScenarioError(f"{where}: 'port' must be a TCP port")
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise ScenarioError(f"{where}: 'http_status' must be an HTTP status code")
    rotate = raw.get("rotate_to")
    if rotate is not None and not (
        isinstance(rotate, dict) and isinstance(rotate.get("sni", {}), dict)
    ):
        raise ScenarioError(f"{where}: 'rotate_to' must be an object with 'default_chain', 'sni'")
    rotate_sni: dict[str, Any] = (rotate or {}).get("sni", {})
    decl = BackendDecl(
        name=name,
        behaviour=behaviour,
        port=port,
        default_chain=_str_list(raw, "default_chain", where),
        sni=sni,
        http_status=status,
        body=str(raw.get("body", "OK")),
        rotate_default_chain=(
            _str_list(rotate, "default_chain", f"{where} rotate_to") if rotate else None
        ),
        rotate_sni={
            host.lower(): _str_list(rotate_sni, host, f"{where} rotate_to sni")
            for host in rotate_sni
        },
    )
    if rotate is not None and behaviour is not Behaviour.TLS:
        raise ScenarioError(f"{where}: only a tls backend can rotate its certificate")
    if rotate is not None and not decl.rotate_default_chain:
        raise ScenarioError(f"{where}: 'rotate_to' needs a 'default_chain'")
    if behaviour is Behaviour.TLS and not decl.default_chain:
        raise ScenarioError(f"{where}: a tls backend needs a 'default_chain'")
    if any(not chain for chain in sni.values()):
        raise ScenarioError(f"{where}: every 'sni' chain needs at least the leaf")
    return decl


def parse_scenario(raw: Any) -> Scenario:
    if not isinstance(raw, dict):
        raise ScenarioError("a scenario is a JSON object")
    name = _req(raw, "name", str, "scenario")
    certs = [_cert_decl(a, True, i) for i, a in enumerate(raw.get("authorities", []))]
    certs += [_cert_decl(c, False, i) for i, c in enumerate(raw.get("certificates", []))]
    backends = [_backend_decl(b, i) for i, b in enumerate(raw.get("backends", []))]
    gateways = raw.get("gateways", [])
    if not isinstance(gateways, list) or not all(isinstance(g, dict) for g in gateways):
        raise ScenarioError("'gateways' must be a list of ARM documents")
    options, bot_settings = raw.get("options", {}), raw.get("bot_settings", {})
    if not isinstance(options, dict):
        raise ScenarioError("'options' must be an object")
    if not isinstance(bot_settings, dict):
        raise ScenarioError("'bot_settings' must be an object of KEY: VALUE")
    if "faults" in options:
        try:
            parse_rules(options["faults"])
        except FaultError as exc:
            raise ScenarioError(f"options.faults: {exc}") from None
    scenario = Scenario(
        name=name,
        description=str(raw.get("description", "")),
        subscription=str(raw.get("subscription", "00000000-0000-0000-0000-000000000000")),
        resource_group=str(raw.get("resource_group", "rg-sandbox")),
        certs=certs,
        backends=backends,
        gateways=gateways,
        options=options,
        bot_settings={str(k): str(v) for k, v in bot_settings.items()},
        keyvault=_keyvault(raw.get("keyvault", {})),
    )
    _check(scenario)
    return scenario


def _keyvault(raw: Any) -> dict[str, str]:
    """`{"certificates": {"kv-name": "scenario-cert"}}`: what the sandbox Key Vault serves."""
    certs = raw.get("certificates", {}) if isinstance(raw, dict) else None
    if not isinstance(certs, dict) or not all(isinstance(v, str) for v in certs.values()):
        raise ScenarioError("'keyvault' must be {\"certificates\": {KV_NAME: CERT_NAME}}")
    for kv_name in certs:
        if not _KV_NAME.match(kv_name):
            raise ScenarioError(f"keyvault: {kv_name!r} is not a Key Vault name (0-9, a-z, -)")
    return dict(certs)


def _check(s: Scenario) -> None:
    """Unique names, resolvable references and placeholders."""
    seen: set[str] = set()
    for c in s.certs:
        if not _NAME.match(c.name) or c.name in seen:
            raise ScenarioError(f"certificate name {c.name!r} is invalid or used twice")
        if c.issuer is not None and c.issuer not in seen:
            raise ScenarioError(f"{c.name}: issuer {c.issuer!r} must be declared before it")
        if c.issuer is not None and not _decl(s, c.issuer).ca:
            raise ScenarioError(f"{c.name}: issuer {c.issuer!r} is not a CA")
        seen.add(c.name)
    backend_names: set[str] = set()
    for b in s.backends:
        if not _NAME.match(b.name) or b.name in backend_names:
            raise ScenarioError(f"backend name {b.name!r} is invalid or used twice")
        backend_names.add(b.name)
        rotated = (b.rotate_default_chain or (), *b.rotate_sni.values())
        for chain in (b.default_chain, *b.sni.values(), *rotated):
            for cert in chain:
                if cert not in seen:
                    raise ScenarioError(f"backend {b.name}: unknown certificate {cert!r}")
    for kv_name, cert in s.keyvault.items():
        if cert not in seen:
            raise ScenarioError(f"keyvault {kv_name}: unknown certificate {cert!r}")
    gateway_ids = s.gateway_ids()
    if len({g.lower() for g in gateway_ids}) != len(gateway_ids):
        raise ScenarioError("two gateways share one resource id")
    # Resolve every placeholder against stand-in values: catches typos at load time.
    dummy = _Values(s, {n: KeyCert.__new__(KeyCert) for n in seen}, {}, probe_only=True)
    for b in s.backends:
        dummy.endpoints[b.name] = ("127.0.0.1", b.port)
    for c in s.certs:
        for text in c.dns_names:
            _substitute(text, dummy.lookup)
        for text in c.ip_addresses:
            try:
                ipaddress.ip_address(str(_substitute(text, dummy.lookup)))
            except ValueError:
                raise ScenarioError(f"{c.name}: {text!r} is not an IP address") from None
    for doc in s.gateways:
        _render(doc, dummy.for_gateway(_gateway_id(s, doc), doc))
    _render(s.bot_settings, dummy.for_gateway("", {}))


def _decl(s: Scenario, name: str) -> CertDecl:
    return next(c for c in s.certs if c.name == name)


def _gateway_id(s: Scenario, doc: dict[str, Any]) -> str:
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ScenarioError("every gateway needs a valid 'name'")
    raw_id = doc.get("id")
    if raw_id is None:
        return (
            f"/subscriptions/{s.subscription}/resourceGroups/{s.resource_group}"
            f"/providers/{GATEWAY_TYPE}/{name}"
        )
    if not isinstance(raw_id, str):
        raise ScenarioError(f"gateway {name}: 'id' must be a string")
    resolved = raw_id.replace("{{subscription}}", s.subscription)
    if not resolved.lower().endswith(f"/providers/{GATEWAY_TYPE}/{name}".lower()):
        raise ScenarioError(f"gateway {name}: 'id' must end with /{GATEWAY_TYPE}/{name}")
    return resolved


# -- placeholders --------------------------------------------------------------------------------


@dataclass
class _Values:
    scenario: Scenario
    certs: dict[str, KeyCert]
    endpoints: dict[str, tuple[str, int]]
    probe_only: bool = False  # load-time check: names are checked, values are stand-ins
    gateway: dict[str, str] = field(default_factory=dict)

    def for_gateway(self, gid: str, doc: dict[str, Any]) -> _Values:
        rg = gid.split("/")[4] if gid.count("/") >= 4 else ""
        info = {"id": gid, "name": str(doc.get("name", "")), "resource_group": rg}
        return _Values(self.scenario, self.certs, self.endpoints, self.probe_only, info)

    def lookup(self, key: str) -> str | int:
        parts = key.split(".")
        head = parts[0]
        if key == "subscription":
            return self.scenario.subscription
        if key == "pfx_password":
            return PFX_PASSWORD
        if head == "gateway" and len(parts) == 2 and parts[1] in self.gateway:
            return self.gateway[parts[1]]
        if head in {"cert", "backend"} and len(parts) >= 3:
            name, attr = ".".join(parts[1:-1]), parts[-1]
            if head == "cert" and name in self.certs and attr in _CERT_ATTRS:
                return "x" if self.probe_only else self._cert(name, attr)
            if head == "backend" and name in self.endpoints and attr in _BACKEND_ATTRS:
                address, port = self.endpoints[name]
                return address if attr == "address" else port
        raise ScenarioError(f"unknown placeholder {{{{{key}}}}}")

    def _cert(self, name: str, attr: str) -> str:
        kc = self.certs[name]
        if attr == "der_b64":
            return kc.der_b64()
        if attr == "pem":
            return kc.pem().decode("ascii")
        if attr == "thumbprint":
            return kc.thumbprint()
        # A listener PFX carries the certificate's issuers too, as exported PFX files do.
        return kc.pfx_b64(self._issuers(name))

    def _issuers(self, name: str) -> list[KeyCert]:
        chain, decl = [], _decl(self.scenario, name)
        while decl.issuer is not None:
            chain.append(self.certs[decl.issuer])
            decl = _decl(self.scenario, decl.issuer)
        return chain


def _substitute(text: str, lookup: Callable[[str], str | int]) -> str | int:
    whole = _PLACEHOLDER.fullmatch(text.strip())
    if whole:
        return lookup(whole.group(1))  # "{{backend.x.port}}" alone becomes a JSON number
    return _PLACEHOLDER.sub(lambda m: str(lookup(m.group(1))), text)


def _render(value: Any, values: _Values) -> Any:
    if isinstance(value, str):
        return _substitute(value, values.lookup)
    if isinstance(value, list):
        return [_render(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, values) for k, v in value.items()}
    return value


# -- building the world --------------------------------------------------------------------------


def build_certificates(
    s: Scenario,
    endpoints: dict[str, tuple[str, int]],
    key_source: Callable[[], RSAPrivateKey] | None = None,
) -> dict[str, KeyCert]:
    """Every authority and certificate, in declaration order (issuers come first)."""
    now = datetime.now(UTC)
    values = _Values(s, {}, endpoints)
    certs: dict[str, KeyCert] = {}
    for c in s.certs:
        dns = [str(_substitute(d, values.lookup)) for d in c.dns_names]
        ips = [str(_substitute(i, values.lookup)) for i in c.ip_addresses]
        nb = now + timedelta(days=c.valid_from_days)
        na = now + timedelta(days=c.valid_to_days)
        key = key_source() if key_source else None
        if c.issuer is None:
            kc = self_signed(
                c.common_name,
                dns_names=dns,
                ip_addresses=ips,
                ca=c.ca,
                not_before=nb,
                not_after=na,
                key=key,
            )
        else:
            kc = issue(
                certs[c.issuer],
                c.common_name,
                dns_names=dns,
                ip_addresses=ips,
                ca=c.ca,
                not_before=nb,
                not_after=na,
                key=key,
            )
        certs[c.name] = kc
    return certs


def backend_specs(s: Scenario, certs: dict[str, KeyCert]) -> list[BackendSpec]:
    return [
        BackendSpec(
            name=b.name,
            behaviour=b.behaviour,
            default_chain=[certs[n] for n in b.default_chain],
            sni_chains={host: [certs[n] for n in chain] for host, chain in b.sni.items()},
            http_status=b.http_status,
            body=b.body,
            rotate_default_chain=[certs[n] for n in b.rotate_default_chain or ()],
            rotate_sni_chains={
                host: [certs[n] for n in chain] for host, chain in b.rotate_sni.items()
            },
        )
        for b in s.backends
    ]


def _child_lists(props: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for key, value in props.items():
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in value)
        ):
            yield key, value


def render_gateways(
    s: Scenario,
    certs: dict[str, KeyCert],
    endpoints: dict[str, tuple[str, int]],
    port_map: dict[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Gateway documents with placeholders resolved, ids filled in and moved ports rewritten."""
    values = _Values(s, certs, endpoints)
    out = []
    for raw in s.gateways:
        gid = _gateway_id(s, raw)
        doc = _render(copy.deepcopy(raw), values.for_gateway(gid, raw))
        doc["id"] = gid
        doc.setdefault("type", GATEWAY_TYPE)
        props = doc.setdefault("properties", {})
        for key, children in _child_lists(props):
            for child in children:
                child.setdefault("id", f"{gid}/{key}/{child['name']}")
        _rewrite_ports(props, port_map or {})
        out.append(doc)
    return out


def render_bot_settings(
    s: Scenario, certs: dict[str, KeyCert], endpoints: dict[str, tuple[str, int]]
) -> dict[str, str]:
    rendered = _render(dict(s.bot_settings), _Values(s, certs, endpoints).for_gateway("", {}))
    return {k: str(v) for k, v in rendered.items()}


def _rewrite_ports(props: dict[str, Any], port_map: dict[int, int]) -> None:
    """Settings and probe ports written literally follow the port the backends really got."""
    moved = {want: got for want, got in port_map.items() if want != got}
    for key in ("backendHttpSettingsCollection", "probes"):
        for child in props.get(key) or []:
            child_props = child.get("properties") if isinstance(child, dict) else None
            if isinstance(child_props, dict) and child_props.get("port") in moved:
                child_props["port"] = moved[child_props["port"]]
