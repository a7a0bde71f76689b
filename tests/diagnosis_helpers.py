"""Gateway and health documents for the diagnosis tests (tests/test_diagnosis.py,
tests/test_diagnosis_v2.py and the tests that import them): log texts as the gateway words them,
v1 and v2 gateways around loopback TLS backends, and `run` (probe, then diagnose).
"""

from __future__ import annotations

import base64
from typing import Any

from test_tls_probe import NOW, Cert, Pki, TlsServer

from shared.core.diagnosis import (
    Diagnosis,
    Finding,
    diagnose,
    probe_requests,
    route_hosts,
)
from shared.core.gateway import parse_gateway
from shared.core.health import parse_backend_health
from shared.probe.tls import capture_all

GW = (
    "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/rg-ase"
    "/providers/Microsoft.Network/applicationGateways/agw"
)
HOST = "test.appgwtestase.com"
NOT_WHITELISTED = "Backend server certificate is not whitelisted with Application Gateway."
V1_INVALID = (
    "Backend certificate has been marked invalid. Either the certificate is not within its "
    "validity period, or it has been revoked by the issuing authority, or there is a problem "
    "with the certificate chain."
)
V1_CN = "The Common Name (CN) of the backend certificate doesn\u2019t match."
V2_CN = (
    "The Common Name of the leaf certificate presented by the backend server does not match the "
    "Probe or Backend Setting hostname of the application gateway."
)
V2_EXPIRED = (
    'Backend certificate is invalid. Current date isn\'t within the "Valid from" and "Valid to" '
    "date range on the certificate."
)
V2_INTERMEDIATE = (
    "The Intermediate certificate is missing from the certificate chain presented by the backend "
    "server. Ensure the certificate chain is complete and correctly ordered on the backend server."
)
V2_ROOT = (
    "The root certificate of the server certificate used by the backend doesn't match the "
    "trusted root certificate added to the application gateway. Ensure that you add the correct "
    "root certificate to allowlist the backend."
)
CONNECT = (
    "Application Gateway could not connect to the backend. Check that the backend responds on "
    "the port used for the probe. Also check whether any NSG/UDR/Firewall is blocking access to "
    "the Ip and port of this backend."
)
STATUS = (
    "Status code of the backend's HTTP response did not match the probe setting. "
    "Expected:200-399 Received:500."
)
UNKNOWN_TEXT = (
    "The backend health status could not be retrieved. This happens when an NSG/UDR/Firewall on "
    "the application gateway subnet is blocking traffic on ports 65503-65534 in case of v1 SKU."
)


def b64(cert: Cert) -> str:
    return base64.b64encode(cert.der).decode()


def gateway_doc(
    tier: str,
    *,
    pools: dict[str, list[str]],
    settings: list[dict[str, Any]],
    probes: list[dict[str, Any]] = (),  # type: ignore[assignment]
    auth: dict[str, str | None] | None = None,
    roots: dict[str, str | None] | None = None,
    listeners: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An ARM gateway. settings: {name, port, pool, probe?, auth?, roots?, host?, pick?}."""

    def cert_refs(kind: str, names: list[str]) -> list[dict[str, str]]:
        return [{"id": f"{GW}/{kind}/{n}"} for n in names]

    def certs(kind: str, entries: dict[str, str | None] | None) -> list[dict[str, Any]]:
        return [
            {"name": n, "id": f"{GW}/{kind}/{n}", "properties": {"data": d} if d else {}}
            for n, d in (entries or {}).items()
        ]

    http_settings = []
    rules = []
    for s in settings:
        props: dict[str, Any] = {"port": s["port"], "protocol": s.get("protocol", "Https")}
        props["pickHostNameFromBackendAddress"] = s.get("pick", False)
        if s.get("host"):
            props["hostName"] = s["host"]
        if s.get("probe"):
            props["probe"] = {"id": f"{GW}/probes/{s['probe']}"}
        if s.get("auth"):
            props["authenticationCertificates"] = cert_refs("authenticationCertificates", s["auth"])
        if s.get("roots"):
            props["trustedRootCertificates"] = cert_refs("trustedRootCertificates", s["roots"])
        http_settings.append(
            {
                "name": s["name"],
                "id": f"{GW}/backendHttpSettingsCollection/{s['name']}",
                "properties": props,
            }
        )
        rule: dict[str, Any] = {
            "backendAddressPool": {"id": f"{GW}/backendAddressPools/{s['pool']}"},
            "backendHttpSettings": {"id": f"{GW}/backendHttpSettingsCollection/{s['name']}"},
        }
        if listeners and s["name"] in listeners:
            rule["httpListener"] = {"id": f"{GW}/httpListeners/l-{s['name']}"}
        rules.append({"name": f"r-{s['name']}", "properties": rule})
    return {
        "id": GW,
        "name": "agw",
        "type": "Microsoft.Network/applicationGateways",
        "properties": {
            "sku": {"name": f"{tier}_Medium" if "_v2" not in tier else tier, "tier": tier},
            "authenticationCertificates": certs("authenticationCertificates", auth),
            "trustedRootCertificates": certs("trustedRootCertificates", roots),
            "backendAddressPools": [
                {
                    "name": n,
                    "id": f"{GW}/backendAddressPools/{n}",
                    "properties": {
                        "backendAddresses": [
                            {"ipAddress": a} if a[0].isdigit() else {"fqdn": a} for a in addrs
                        ]
                    },
                }
                for n, addrs in pools.items()
            ],
            "probes": [
                {"name": p["name"], "id": f"{GW}/probes/{p['name']}", "properties": p["props"]}
                for p in probes
            ],
            "backendHttpSettingsCollection": http_settings,
            "httpListeners": [
                {"name": f"l-{s}", "id": f"{GW}/httpListeners/l-{s}", "properties": {"hostName": h}}
                for s, h in (listeners or {}).items()
            ],
            "requestRoutingRules": rules,
        },
    }


def health_doc(rows: list[tuple[str, str, str, str, str | None]]) -> dict[str, Any]:
    """ARM backend health from (pool, settings, address, health, log) rows."""
    pools: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for pool, settings, address, health, log in rows:
        server = {"address": address, "health": health, "healthProbeLog": log}
        pools.setdefault(pool, {}).setdefault(settings, []).append(server)
    return {
        "backendAddressPools": [
            {
                "backendAddressPool": {"id": f"{GW}/backendAddressPools/{p}"},
                "backendHttpSettingsCollection": [
                    {
                        "backendHttpSettings": {"id": f"{GW}/backendHttpSettingsCollection/{s}"},
                        "servers": servers,
                    }
                    for s, servers in by_settings.items()
                ],
            }
            for p, by_settings in pools.items()
        ]
    }


def run(
    doc: dict[str, Any],
    health: dict[str, Any],
    *,
    probe: bool = True,
    hint: tuple[str, str] | None = None,
    timeout: float = 3.0,
    trusted: tuple[bytes, ...] = (),
) -> Diagnosis:
    gw = parse_gateway(doc)
    servers_health = parse_backend_health(health)
    hosts = route_hosts(doc)
    captures = None
    if probe:
        captures = capture_all(probe_requests(gw, servers_health, hosts=hosts), timeout=timeout)
    return diagnose(
        gw, servers_health, captures, now=NOW, hint=hint, hosts=hosts, trusted_sources=trusted
    )


def by_settings(d: Diagnosis, name: str) -> Finding:
    return next(f for f in d.findings if f.settings == name)


ASE_PROBE = {
    "name": "ase-probe",
    "props": {
        "protocol": "Https",
        "host": HOST,
        "path": "/",
        "pickHostNameFromBackendHttpSettings": False,
    },
}


def ilb(pki: Pki) -> TlsServer:
    """The ILB ASE: its default certificate without SNI, the app chain under the app's name."""
    return TlsServer([pki.ilb_default], {HOST: [pki.app, pki.intermediate, pki.root]})


# ---- v1 -------------------------------------------------------------------------------------


def seed_v1(pki: Pki, servers: list[TlsServer], auth_data: str | None) -> tuple[dict, dict]:
    ase = ilb(pki).start()
    other = TlsServer([pki.app], address="127.0.0.2").start()
    servers += [ase, other]
    doc = gateway_doc(
        "Standard",
        pools={"ase-pool": ["127.0.0.1"], "other-pool": ["127.0.0.2"]},
        probes=[ASE_PROBE],
        auth={"app-cert": auth_data},
        settings=[
            {
                "name": "ase-https",
                "port": ase.port,
                "pool": "ase-pool",
                "probe": "ase-probe",
                "auth": ["app-cert"],
            },
            {
                "name": "ase-https-2",
                "port": ase.port,
                "pool": "ase-pool",
                "probe": "ase-probe",
                "auth": ["app-cert"],
                "pick": True,
            },
            {"name": "other-https", "port": other.port, "pool": "other-pool", "auth": ["app-cert"]},
        ],
    )
    health = health_doc(
        [
            ("ase-pool", "ase-https", "127.0.0.1", "Unhealthy", NOT_WHITELISTED),
            ("ase-pool", "ase-https-2", "127.0.0.1", "Unhealthy", NOT_WHITELISTED),
            (
                "other-pool",
                "other-https",
                "127.0.0.2",
                "Healthy",
                "Success. Received 200 status code",
            ),
        ]
    )
    return doc, health


def single_v1(
    port: int, log: str | None, health: str = "Unhealthy", **kw: Any
) -> tuple[dict, dict]:
    doc = gateway_doc(
        "Standard",
        pools={"pool": ["127.0.0.1"]},
        probes=[ASE_PROBE],
        auth={"app-cert": kw.get("auth_data")},
        settings=[
            {
                "name": "https",
                "port": port,
                "pool": "pool",
                "probe": "ase-probe",
                "auth": ["app-cert"],
            }
        ],
    )
    return doc, health_doc([("pool", "https", "127.0.0.1", health, log)])


def v2_doc(
    port: int,
    *,
    host: str | None = None,
    roots: list[Cert] | None = None,
    listeners: dict[str, str] | None = None,
) -> dict[str, Any]:
    root_entries = {f"root-{i}": b64(c) for i, c in enumerate(roots or [])}
    return gateway_doc(
        "Standard_v2",
        pools={"ase-pool": ["127.0.0.1"]},
        roots=root_entries,
        listeners=listeners,
        settings=[
            {
                "name": "ase-https",
                "port": port,
                "pool": "ase-pool",
                "host": host,
                "roots": list(root_entries),
            }
        ],
    )


def v2_health(log: str | None, health: str = "Unhealthy") -> dict[str, Any]:
    return health_doc([("ase-pool", "ase-https", "127.0.0.1", health, log)])
