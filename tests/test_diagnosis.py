"""Cause and fix for every cause on v1 (v2: tests/test_diagnosis_v2.py): hand-written
gateway/health JSON + real captures (helpers: tests/diagnosis_helpers.py)."""

from __future__ import annotations

import test_tls_probe
from test_tls_probe import Pki, TlsServer

from shared.core.diagnosis import (
    ALT_FQDN,
    ALT_USE_FOR_APP_SERVICE,
    ALT_WILDCARD,
    INFERRED_WARNING,
    Cause,
    FixAction,
    probe_requests,
)
from shared.core.gateway import parse_gateway
from shared.core.health import parse_backend_health
from tests.diagnosis_helpers import (
    CONNECT,
    HOST,
    NOT_WHITELISTED,
    STATUS,
    UNKNOWN_TEXT,
    V1_CN,
    V1_INVALID,
    V2_EXPIRED,
    V2_INTERMEDIATE,
    V2_ROOT,
    b64,
    by_settings,
    gateway_doc,
    health_doc,
    ilb,
    run,
    seed_v1,
    single_v1,
    v2_doc,
    v2_health,
)

# Other test modules import these from here.
__all__ = [
    "CONNECT",
    "HOST",
    "NOT_WHITELISTED",
    "V2_EXPIRED",
    "V2_INTERMEDIATE",
    "V2_ROOT",
    "b64",
    "gateway_doc",
    "health_doc",
    "ilb",
    "run",
    "seed_v1",
    "single_v1",
    "v2_doc",
    "v2_health",
]


# Shared loopback TLS fixtures (tests/test_tls_probe.py).
pki = test_tls_probe.pki
servers = test_tls_probe.servers


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
