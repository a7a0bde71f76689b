"""Cause and fix for every cause on v1 and v2: hand-written gateway/health JSON + real captures."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import test_tls_probe
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_tls_probe import NOW, Cert, Pki, TlsServer

from shared.core.certs import cert_info
from shared.core.diagnosis import (
    ALT_FQDN,
    ALT_USE_FOR_APP_SERVICE,
    ALT_WILDCARD,
    INFERRED_WARNING,
    ROOT_INFERRED_WARNING,
    Cause,
    Diagnosis,
    Finding,
    FixAction,
    diagnose,
    probe_requests,
    route_hosts,
)
from shared.core.gateway import parse_gateway
from shared.core.health import parse_backend_health
from shared.core.report import to_json, to_text
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

# Shared loopback TLS fixtures (tests/test_tls_probe.py).
pki = test_tls_probe.pki
servers = test_tls_probe.servers


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


def test_seed_v1_default_certificate_without_sni(pki: Pki, servers: list[TlsServer]) -> None:
    doc, health = seed_v1(pki, servers, auth_data=None)
    d = run(doc, health)

    assert d.gateway.generation == "v1" and len(d.findings) == 3
    for name in ("ase-https", "ase-https-2"):
        f = by_settings(d, name)
        assert f.cause is Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI
        assert f.fix.action is FixAction.ADD_AUTHENTICATION_CERTIFICATE
        assert f.fix.certificate is not None
        assert f.fix.certificate.sha1 == pki.ilb_default.sha1
        assert f.fix.certificate.der_b64 == b64(pki.ilb_default)
        assert f.fix.certificate.cer.startswith("-----BEGIN CERTIFICATE-----\n")
        # Exactly the affected settings: not the healthy one.
        assert f.fix.settings == ("ase-https", "ase-https-2")
        assert f.inferred_from_probe_log and INFERRED_WARNING in f.warnings
        assert any("retired on 2026-04-28" in w for w in f.warnings)
        assert f.alternatives[:2] == (ALT_FQDN, ALT_WILDCARD)
        caps = f.evidence["captures"]
        assert caps["gateway"]["sni"] is None
        assert caps["gateway"]["chain"][0]["sha1"] == pki.ilb_default.sha1
        assert caps["alternative"]["sni"] == HOST
        assert [c["sha1"] for c in caps["alternative"]["chain"]][:2] == [
            pki.app.sha1,
            pki.intermediate.sha1,
        ]
        assert f.evidence["allow_listed"]["authentication_certificates"][0]["name"] == "app-cert"
        assert f.evidence["probe_log_kind"] == "not_allowlisted"
    assert ALT_USE_FOR_APP_SERVICE in by_settings(d, "ase-https-2").alternatives
    assert ALT_USE_FOR_APP_SERVICE not in by_settings(d, "ase-https").alternatives
    healthy = by_settings(d, "other-https")
    assert healthy.cause is Cause.HEALTHY and healthy.fix.action is FixAction.NONE


def test_seed_v1_compared_when_data_known(pki: Pki, servers: list[TlsServer]) -> None:
    doc, health = seed_v1(pki, servers, auth_data=b64(pki.app))
    f = by_settings(run(doc, health), "ase-https")
    assert f.cause is Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI
    assert not f.inferred_from_probe_log and INFERRED_WARNING not in f.warnings
    assert f.evidence["trust"] == "compared"
    assert f.evidence["allow_listed"]["authentication_certificates"][0]["sha1"] == pki.app.sha1


def test_hint_orders_but_whole_gateway_is_diagnosed(pki: Pki, servers: list[TlsServer]) -> None:
    doc, health = seed_v1(pki, servers, auth_data=None)
    d = run(doc, health, hint=("OTHER-pool", "other-https"))
    assert [f.settings for f in d.findings] == ["other-https", "ase-https", "ase-https-2"]


def test_no_probe_does_not_guess_the_seed(pki: Pki, servers: list[TlsServer]) -> None:
    doc, health = seed_v1(pki, servers, auth_data=None)
    f = by_settings(run(doc, health, probe=False), "ase-https")
    assert f.cause is Cause.UNKNOWN and f.fix.action is FixAction.NONE


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


def test_v1_rotated_certificate_not_allowlisted(pki: Pki, servers: list[TlsServer]) -> None:
    backend = TlsServer([pki.rotated_app], {}).start()
    servers.append(backend)
    doc, health = single_v1(backend.port, NOT_WHITELISTED, auth_data=b64(pki.app))
    f = run(doc, health).findings[0]
    assert f.cause is Cause.CERTIFICATE_NOT_ALLOWLISTED
    assert f.fix.action is FixAction.ADD_AUTHENTICATION_CERTIFICATE
    assert f.fix.certificate is not None and f.fix.certificate.sha1 == pki.rotated_app.sha1
    assert f.fix.settings == ("https",) and not f.inferred_from_probe_log


def test_v1_same_key_is_allowlisted_so_conflict_is_unknown(
    pki: Pki, servers: list[TlsServer]
) -> None:
    backend = TlsServer([pki.ilb_default], {}).start()
    servers.append(backend)
    doc, health = single_v1(backend.port, NOT_WHITELISTED, auth_data=b64(pki.ilb_default))
    f = run(doc, health).findings[0]
    assert f.cause is Cause.UNKNOWN and f.fix.action is FixAction.NONE


def test_v1_expired(pki: Pki, servers: list[TlsServer]) -> None:
    backend = TlsServer([pki.expired], {}).start()
    servers.append(backend)
    doc, health = single_v1(backend.port, V1_INVALID)
    f = run(doc, health).findings[0]
    assert f.cause is Cause.CERTIFICATE_EXPIRED and f.fix.action is FixAction.NONE


def test_v1_hostname_mismatch(pki: Pki, servers: list[TlsServer]) -> None:
    backend = TlsServer([pki.wrong_name], {}).start()
    servers.append(backend)
    doc, health = single_v1(backend.port, V1_CN)
    assert run(doc, health).findings[0].cause is Cause.HOSTNAME_MISMATCH


def test_v1_unreachable_from_log_and_from_capture(servers: list[TlsServer]) -> None:
    refused = TlsServer(behaviour="refuse").start()
    silent = TlsServer(behaviour="silent").start()
    servers += [refused, silent]
    doc, health = single_v1(refused.port, CONNECT)
    assert run(doc, health).findings[0].cause is Cause.BACKEND_UNREACHABLE
    doc, health = single_v1(silent.port, "")
    f = run(doc, health, timeout=0.3).findings[0]
    assert f.cause is Cause.BACKEND_UNREACHABLE
    assert f.evidence["captures"]["gateway"]["error"] == "timeout"


def test_v1_not_tls_is_unreachable(servers: list[TlsServer]) -> None:
    http = TlsServer(behaviour="plain_http").start()
    servers.append(http)
    doc, health = single_v1(http.port, None)
    f = run(doc, health).findings[0]
    assert f.cause is Cause.BACKEND_UNREACHABLE
    assert f.evidence["captures"]["gateway"]["error"] == "not_tls"


def test_v1_not_certificate_related(pki: Pki, servers: list[TlsServer]) -> None:
    backend = ilb(pki).start()
    servers.append(backend)
    doc, health = single_v1(backend.port, STATUS)
    f = run(doc, health).findings[0]
    assert f.cause is Cause.NOT_CERTIFICATE_RELATED and f.fix.action is FixAction.NONE


def test_v1_unknown_health(pki: Pki, servers: list[TlsServer]) -> None:
    backend = ilb(pki).start()
    servers.append(backend)
    doc, health = single_v1(backend.port, UNKNOWN_TEXT, health="Unknown")
    f = run(doc, health).findings[0]
    assert f.cause is Cause.UNKNOWN and f.health == "unknown"


def test_routed_member_missing_from_health_gets_unknown_finding(
    pki: Pki, servers: list[TlsServer]
) -> None:
    backend = ilb(pki).start()
    servers.append(backend)
    doc, _ = single_v1(backend.port, None)
    d = run(doc, {"backendAddressPools": []})
    assert [(f.pool, f.settings, f.server, f.health) for f in d.findings] == [
        ("pool", "https", "127.0.0.1", "unknown")
    ]


def test_only_pool_members_are_probed(pki: Pki) -> None:
    doc, _ = single_v1(443, None)
    health = parse_backend_health(
        health_doc([("pool", "https", "192.0.2.66", "Unhealthy", NOT_WHITELISTED)])
    )
    requests = probe_requests(parse_gateway(doc), health)
    assert all(address == "127.0.0.1" for address, _, _ in requests)


# ---- v2 -------------------------------------------------------------------------------------


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


def test_seed_v2_nosni_sets_backend_host_name(pki: Pki, servers: list[TlsServer]) -> None:
    backend = ilb(pki).start()
    servers.append(backend)
    doc = v2_doc(backend.port, roots=[pki.root], listeners={"ase-https": HOST})
    d = run(doc, v2_health(V2_INTERMEDIATE))
    f = d.findings[0]
    assert d.gateway.generation == "v2"
    assert f.cause is Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI
    assert f.fix.action is FixAction.SET_BACKEND_HOST_NAME
    assert f.fix.host_name == HOST and f.fix.certificate is None
    assert f.fix.settings == ("ase-https",)
    assert not any("retired" in w for w in f.warnings)
    assert f.evidence["captures"]["alternative"]["sni"] == HOST


def test_v2_self_signed_leaf_is_never_a_trusted_root(pki: Pki, servers: list[TlsServer]) -> None:
    backend = TlsServer([pki.ilb_default], {}).start()
    servers.append(backend)
    doc = v2_doc(backend.port, host="ilb.appgwtestase.com", roots=[pki.root])
    f = run(doc, v2_health(V2_INTERMEDIATE)).findings[0]
    assert f.cause is Cause.TRUSTED_ROOT_MISMATCH
    assert f.fix.action is FixAction.NONE and f.fix.certificate is None


def test_v2_trusted_root_mismatch_proposes_the_presented_root(
    pki: Pki, servers: list[TlsServer]
) -> None:
    backend = TlsServer([], {HOST: [pki.other_app, pki.other_root]}).start()
    servers.append(backend)
    doc = v2_doc(backend.port, host=HOST, roots=[pki.root])
    f = run(doc, v2_health(V2_ROOT)).findings[0]
    assert f.cause is Cause.TRUSTED_ROOT_MISMATCH
    assert f.fix.action is FixAction.ADD_TRUSTED_ROOT_CERTIFICATE
    assert f.fix.certificate is not None and f.fix.certificate.sha1 == pki.other_root.sha1


def test_v2_incomplete_chain(pki: Pki, servers: list[TlsServer]) -> None:
    backend = TlsServer([], {HOST: [pki.app]}).start()
    servers.append(backend)
    f = run(v2_doc(backend.port, host=HOST, roots=[pki.root]), v2_health(V2_INTERMEDIATE)).findings[
        0
    ]
    assert f.cause is Cause.INCOMPLETE_CHAIN and f.fix.action is FixAction.NONE


def test_v2_leaf_not_topmost(pki: Pki, servers: list[TlsServer]) -> None:
    # Served in the wrong order: the intermediate first. The server needs its key first, so the
    # misordered chain is the intermediate's own "leaf" followed by the app certificate.
    backend = TlsServer([], {HOST: [pki.intermediate, pki.app]}).start()
    servers.append(backend)
    f = run(v2_doc(backend.port, host=HOST, roots=[pki.root]), v2_health(None)).findings[0]
    assert f.cause is Cause.INCOMPLETE_CHAIN


def test_v2_hostname_mismatch(pki: Pki, servers: list[TlsServer]) -> None:
    backend = TlsServer([pki.wrong_name, pki.intermediate], {}).start()
    servers.append(backend)
    f = run(v2_doc(backend.port, host=HOST, roots=[pki.root]), v2_health(V2_CN)).findings[0]
    assert f.cause is Cause.HOSTNAME_MISMATCH and f.fix.action is FixAction.NONE


def test_v2_expired(pki: Pki, servers: list[TlsServer]) -> None:
    backend = TlsServer([pki.expired, pki.intermediate], {}).start()
    servers.append(backend)
    f = run(v2_doc(backend.port, host=HOST, roots=[pki.root]), v2_health(V2_EXPIRED)).findings[0]
    assert f.cause is Cause.CERTIFICATE_EXPIRED


def test_v2_healthy_and_unreachable(pki: Pki, servers: list[TlsServer]) -> None:
    backend = TlsServer([pki.app, pki.intermediate], {}).start()
    refused = TlsServer(behaviour="refuse").start()
    servers += [backend, refused]
    doc = v2_doc(backend.port, host=HOST, roots=[pki.root])
    assert (
        run(doc, v2_health("Success. Received 200 status code", "Up")).findings[0].cause
        is Cause.HEALTHY
    )
    f = run(v2_doc(refused.port, host=HOST), v2_health(CONNECT, "Down")).findings[0]
    assert f.cause is Cause.BACKEND_UNREACHABLE


def test_v2_v1_text_is_conflicting(pki: Pki, servers: list[TlsServer]) -> None:
    backend = ilb(pki).start()
    servers.append(backend)
    f = run(v2_doc(backend.port, host=HOST, roots=[pki.root]), v2_health(NOT_WHITELISTED)).findings[
        0
    ]
    assert f.cause is Cause.UNKNOWN


@pytest.mark.parametrize("hosts", [{"hostName": HOST}, {"hostNames": [HOST, "*.x.test"]}])
def test_route_hosts_reads_listeners(hosts: dict[str, Any]) -> None:
    doc = {
        "httpListeners": [{"id": f"{GW}/httpListeners/L", **hosts}],
        "requestRoutingRules": [
            {
                "httpListener": {"id": f"{GW}/HTTPLISTENERS/l"},
                "backendAddressPool": {"id": f"{GW}/backendAddressPools/p"},
                "backendHttpSettings": {"id": f"{GW}/backendHttpSettingsCollection/s"},
            }
        ],
    }
    got = route_hosts(doc)
    key = (f"{GW}/backendAddressPools/p".lower(), f"{GW}/backendHttpSettingsCollection/s".lower())
    assert got[key][0] == HOST


def test_route_hosts_tolerates_garbage() -> None:
    assert route_hosts({"requestRoutingRules": "x", "httpListeners": [1, None]}) == {}


def hidden_root_doc(port: int) -> dict[str, Any]:
    return gateway_doc(
        "Standard_v2",
        pools={"ase-pool": ["127.0.0.1"]},
        roots={"contoso-root": None},  # no `data`: e.g. a Key Vault reference
        listeners={"ase-https": HOST},
        settings=[
            {"name": "ase-https", "port": port, "pool": "ase-pool", "roots": ["contoso-root"]}
        ],
    )


def test_seed_v2_with_hidden_root_data_is_inferred(pki: Pki, servers: list[TlsServer]) -> None:
    backend = ilb(pki).start()
    servers.append(backend)
    f = run(hidden_root_doc(backend.port), v2_health(V2_INTERMEDIATE)).findings[0]
    assert f.cause is Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI
    assert f.fix.action is FixAction.SET_BACKEND_HOST_NAME and f.fix.host_name == HOST
    assert f.inferred_from_probe_log and ROOT_INFERRED_WARNING in f.warnings


def test_seed_v2_hidden_root_and_incomplete_alt_chain_proposes_nothing(
    pki: Pki, servers: list[TlsServer]
) -> None:
    backend = TlsServer([pki.ilb_default], {HOST: [pki.app, pki.intermediate]}).start()
    servers.append(backend)
    f = run(hidden_root_doc(backend.port), v2_health(V2_INTERMEDIATE)).findings[0]
    assert f.cause is Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI
    assert f.fix.action is FixAction.NONE


# ---- v2: only a self-signed root is ever a trusted root ------------------------------------

V2_NO_ROOT = (
    "The Intermediate certificate not signed by any Root certificates uploaded to the "
    "application gateway. Ensure the certificate chain is complete and correctly ordered on the "
    "backend server."
)


def key_id_cert(cn: str, *, issuer: Cert | None = None, ca: bool = False) -> Cert:
    """A certificate with subject and authority key identifiers, as real CAs issue them."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(test_tls_probe.VALID_FROM)
        .not_valid_after(test_tls_probe.VALID_TO)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), False)
    return Cert(key, builder.sign(signer, hashes.SHA256()))


@pytest.fixture(scope="module")
def kid() -> dict[str, Cert]:
    """Root, intermediate and leaf with key identifiers, and a decoy root of the same name."""
    root = key_id_cert("Northwind Root CA 2025", ca=True)
    inter = key_id_cert("Northwind Issuing CA 2025", issuer=root, ca=True)
    return {
        "root": root,
        "inter": inter,
        "app": key_id_cert(HOST, issuer=inter),
        "decoy": key_id_cert("Northwind Root CA 2025", ca=True),  # same name, another key
    }


def no_root_backend(kid: dict[str, Cert], servers: list[TlsServer]) -> TlsServer:
    """The backend sends leaf and intermediate, not its root (as Microsoft recommends)."""
    backend = TlsServer([], {HOST: [kid["app"], kid["inter"]]}).start()
    servers.append(backend)
    return backend


def test_v2_root_not_sent_names_the_root_to_obtain_and_uploads_nothing(
    pki: Pki, kid: dict[str, Cert], servers: list[TlsServer]
) -> None:
    backend = no_root_backend(kid, servers)
    doc = v2_doc(backend.port, host=HOST, roots=[pki.root])
    d = run(doc, v2_health(V2_NO_ROOT), trusted=(kid["decoy"].der, kid["inter"].der))
    f = d.findings[0]
    assert f.cause is Cause.TRUSTED_ROOT_MISMATCH and f.evidence["trust"] == "compared"
    # Never the intermediate (the top of the presented chain), never the same-name decoy.
    assert f.fix.action is FixAction.NONE and f.fix.certificate is None
    needed = f.fix.required_root
    assert needed is not None
    root = cert_info(kid["root"].der)
    assert needed.subject == root.subject == "CN=Northwind Root CA 2025"
    assert needed.authority_key_identifier == root.subject_key_identifier is not None
    assert needed.issued == kid["inter"].sha1
    assert "obtain that root" in f.evidence["explanation"]
    assert root.subject_key_identifier in f.evidence["explanation"]
    out = to_json(d)["findings"][0]["fix"]
    assert out["action"] == "none" and out["certificate"] is None
    assert out["required_root"] == {
        "subject": root.subject,
        "authority_key_identifier": root.subject_key_identifier,
        "issued": kid["inter"].sha1,
    }
    assert "Obtain the root CN=Northwind Root CA 2025" in to_text(d)
    assert not f.inferred_from_probe_log and ROOT_INFERRED_WARNING not in f.warnings


def test_v2_root_not_sent_but_in_the_trusted_source_is_proposed(
    pki: Pki, kid: dict[str, Cert], servers: list[TlsServer]
) -> None:
    backend = no_root_backend(kid, servers)
    doc = v2_doc(backend.port, host=HOST, roots=[pki.root])
    trusted = (kid["decoy"].der, kid["inter"].der, kid["root"].der)
    f = run(doc, v2_health(V2_NO_ROOT), trusted=trusted).findings[0]
    assert f.cause is Cause.TRUSTED_ROOT_MISMATCH
    assert f.fix.action is FixAction.ADD_TRUSTED_ROOT_CERTIFICATE
    assert f.fix.certificate is not None and f.fix.certificate.sha1 == kid["root"].sha1
    assert f.fix.required_root is None
    assert cert_info(base64.b64decode(f.fix.certificate.der_b64)).self_signed


def test_v2_intermediate_referenced_as_trusted_root_is_no_anchor(
    kid: dict[str, Cert], servers: list[TlsServer]
) -> None:
    backend = no_root_backend(kid, servers)
    doc = v2_doc(backend.port, host=HOST, roots=[kid["inter"]])
    f = run(doc, v2_health(V2_NO_ROOT)).findings[0]
    assert f.cause is Cause.TRUSTED_ROOT_NOT_ROOT and f.evidence["trust"] == "compared"
    assert f.fix.action is FixAction.NONE and f.fix.required_root is not None
    assert "not self-signed" in f.evidence["explanation"]
    refs = f.evidence["allow_listed"]["trusted_root_certificates"]
    assert refs[0]["data_known"] and refs[0]["sha1"] == kid["inter"].sha1


def test_v2_trusted_root_compared_by_thumbprint_when_data_known(
    pki: Pki, servers: list[TlsServer]
) -> None:
    backend = TlsServer([], {HOST: [pki.other_app, pki.other_root]}).start()
    servers.append(backend)
    f = run(v2_doc(backend.port, host=HOST, roots=[pki.root]), v2_health(V2_ROOT)).findings[0]
    assert f.evidence["trust"] == "compared" and not f.inferred_from_probe_log
    assert f.warnings == ()
    assert pki.root.sha1 in f.evidence["explanation"]
