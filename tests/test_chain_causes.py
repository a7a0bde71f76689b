"""One test per chain and TLS cause, over real TLS on loopback: the chain as the gateway builds it,
certificates out of date anywhere on it, roots that are not roots, uploads in the wrong format,
the well-known CA store, and TLS protocol and cipher mismatches.

Every finding is also checked against the acceptance rule: nothing but a self-signed CA root is
ever proposed as a v2 trusted root (never an intermediate, a leaf or a default certificate).
"""

from __future__ import annotations

import base64
import datetime as dt
import ssl
from typing import Any

import pytest
import test_tls_probe
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from test_diagnosis import (
    CONNECT,
    HOST,
    NOT_WHITELISTED,
    V2_EXPIRED,
    V2_ROOT,
    b64,
    gateway_doc,
    health_doc,
    single_v1,
    v2_doc,
    v2_health,
)
from test_tls_probe import NOW, Cert, TlsServer, make_cert

from shared.core.certs import CertInfo, cert_info
from shared.core.diagnosis import Cause, Diagnosis, Finding, FixAction, diagnose, probe_requests
from shared.core.diagnosis import route_hosts as _route_hosts
from shared.core.gateway import parse_gateway
from shared.core.health import parse_backend_health
from shared.core.report import to_json
from shared.probe.tls import capture_all

servers = test_tls_probe.servers

V2_NOT_WELL_KNOWN = (
    "The backend Server certificate isn't signed by a well-known Certificate Authority (CA). To "
    "use unknown CA certificates, its Root certificate must be uploaded to the Backend Setting of "
    "the application gateway."
)
OPENSSL = (
    "The validity of the backend certificate could not be verified. To find out the reason, check "
    "OpenSSL diagnostics for the message associated with error code 10"
)
UTC = dt.UTC


@pytest.fixture(scope="module")
def ca() -> dict[str, Cert]:
    root = make_cert("Woodgrove Root CA", ca=True)
    inter = make_cert("Woodgrove Issuing CA", issuer=root, ca=True)
    old_inter = make_cert(
        "Woodgrove Issuing CA",
        issuer=root,
        ca=True,
        key=inter.key,
        not_before=dt.datetime(2019, 1, 1, tzinfo=UTC),
        not_after=dt.datetime(2025, 1, 1, tzinfo=UTC),
    )
    return {
        "root": root,
        "inter": inter,
        "leaf": make_cert(HOST, issuer=inter, sans=(HOST,)),
        "expired_inter": old_inter,
        "future_leaf": make_cert(
            HOST,
            issuer=inter,
            sans=(HOST,),
            not_before=dt.datetime(2027, 1, 1, tzinfo=UTC),
        ),
    }


def run(
    doc: dict[str, Any],
    health: dict[str, Any],
    *,
    trusted: tuple[bytes, ...] = (),
    well_known: tuple[CertInfo, ...] = (),
) -> Diagnosis:
    gw = parse_gateway(doc)
    rows = parse_backend_health(health)
    hosts = _route_hosts(doc)
    captures = capture_all(probe_requests(gw, rows, hosts=hosts), timeout=3.0)
    d = diagnose(
        gw,
        rows,
        captures,
        now=NOW,
        hosts=hosts,
        trusted_sources=trusted,
        well_known=well_known,
    )
    for finding in d.findings:
        assert_never_a_bad_root(finding)
    return d


def assert_never_a_bad_root(f: Finding) -> None:
    if f.fix.action is FixAction.ADD_TRUSTED_ROOT_CERTIFICATE:
        assert f.fix.certificate is not None
        root = cert_info(base64.b64decode(f.fix.certificate.der_b64))
        assert root.self_signed and root.is_ca, f.fix.certificate.subject


def start(server: TlsServer, servers: list[TlsServer]) -> TlsServer:
    servers.append(server.start())
    return server


# ---- chains ----


def test_lone_leaf_is_an_incomplete_chain_whatever_the_log_says(
    ca: dict[str, Cert], servers: list[TlsServer]
) -> None:
    backend = start(TlsServer([], {HOST: [ca["leaf"]]}), servers)
    doc = v2_doc(backend.port, host=HOST, roots=[ca["root"]])
    # The log is the root-mismatch text; the leaf's issuer is an intermediate, not a root.
    f = run(doc, v2_health(V2_ROOT), trusted=(ca["inter"].der,)).findings[0]
    assert f.cause is Cause.INCOMPLETE_CHAIN
    assert f.fix.action is FixAction.NONE and f.fix.required_root is None
    why = f.evidence["explanation"]
    assert "cannot tell whether that issuer is a root" in why
    assert ca["inter"].sha1 in why and "install it on the backend" in why
    chain = f.evidence["gateway_chain"]
    assert chain["status"] == "incomplete" and chain["missing_issuer"] == "CN=Woodgrove Issuing CA"


def test_expired_intermediate_is_named(ca: dict[str, Cert], servers: list[TlsServer]) -> None:
    backend = start(TlsServer([], {HOST: [ca["leaf"], ca["expired_inter"]]}), servers)
    doc = v2_doc(backend.port, host=HOST, roots=[ca["root"]])
    f = run(doc, v2_health(V2_EXPIRED)).findings[0]
    assert f.cause is Cause.CERTIFICATE_EXPIRED and f.fix.action is FixAction.NONE
    why = f.evidence["explanation"]
    assert f"The intermediate CN=Woodgrove Issuing CA ({ca['expired_inter'].sha1})" in why
    assert "the leaf can stay" in why
    path = f.evidence["gateway_chain"]["path"]
    assert [p["role"] for p in path] == ["leaf", "intermediate", "root"]
    assert [p["validity"] for p in path] == ["valid", "expired", "valid"]
    assert path[2]["presented"] is False


def test_chain_and_dates_not_validated_are_no_cause(
    ca: dict[str, Cert], servers: list[TlsServer]
) -> None:
    # validateCertChainAndExpiry false: the gateway checks neither the chain nor the dates, so
    # an expired intermediate explains nothing and no trust change is proposed.
    backend = start(TlsServer([], {HOST: [ca["leaf"], ca["expired_inter"]]}), servers)
    doc = v2_doc(backend.port, host=HOST, roots=[ca["root"]])
    settings = doc["properties"]["backendHttpSettingsCollection"][0]["properties"]
    settings["validateCertChainAndExpiry"] = False
    f = run(doc, v2_health(V2_EXPIRED)).findings[0]
    assert f.cause is Cause.UNKNOWN and f.fix.action is FixAction.NONE
    assert "validateCertChainAndExpiry is false" in f.evidence["explanation"]
    assert f.evidence["target"]["validate_chain"] is False


def test_not_yet_valid_leaf(ca: dict[str, Cert], servers: list[TlsServer]) -> None:
    backend = start(TlsServer([], {HOST: [ca["future_leaf"], ca["inter"]]}), servers)
    doc = v2_doc(backend.port, host=HOST, roots=[ca["root"]])
    f = run(doc, v2_health(OPENSSL)).findings[0]
    assert f.cause is Cause.CERTIFICATE_NOT_YET_VALID and f.fix.action is FixAction.NONE
    assert "not valid before 2027-01-01T00:00:00Z" in f.evidence["explanation"]
    assert ca["future_leaf"].sha1 in f.evidence["explanation"]


def test_intermediate_uploaded_as_root_proposes_the_real_root_from_the_trusted_source(
    ca: dict[str, Cert], servers: list[TlsServer]
) -> None:
    backend = start(TlsServer([], {HOST: [ca["leaf"], ca["inter"]]}), servers)
    doc = v2_doc(backend.port, host=HOST, roots=[ca["inter"]])
    trusted = (ca["inter"].der, ca["root"].der)
    f = run(doc, v2_health(V2_ROOT), trusted=trusted).findings[0]
    assert f.cause is Cause.TRUSTED_ROOT_NOT_ROOT
    assert f.fix.action is FixAction.ADD_TRUSTED_ROOT_CERTIFICATE
    assert f.fix.certificate is not None and f.fix.certificate.sha1 == ca["root"].sha1


def test_intermediate_uploaded_as_root_with_a_lone_leaf_names_the_root(
    ca: dict[str, Cert], servers: list[TlsServer]
) -> None:
    backend = start(TlsServer([], {HOST: [ca["leaf"]]}), servers)
    doc = v2_doc(backend.port, host=HOST, roots=[ca["inter"]])
    f = run(doc, v2_health(OPENSSL)).findings[0]
    assert f.cause is Cause.TRUSTED_ROOT_NOT_ROOT
    assert f.fix.action is FixAction.NONE and f.fix.required_root is not None
    # The intermediate's issuer, never the intermediate itself.
    assert f.fix.required_root.subject == "CN=Woodgrove Root CA"
    assert f.fix.required_root.issued == ca["inter"].sha1
    assert "configure its intermediate on the backend" in f.evidence["explanation"]


# ---- uploads ----


def test_v2_pem_bundle_uploaded_as_trusted_root(
    ca: dict[str, Cert], servers: list[TlsServer]
) -> None:
    backend = start(TlsServer([], {HOST: [ca["leaf"], ca["inter"], ca["root"]]}), servers)
    doc = v2_doc(backend.port, host=HOST)
    bundle = base64.b64encode(ca["inter"].pem + ca["root"].pem).decode()
    props = doc["properties"]
    props["trustedRootCertificates"] = [
        {"name": "chain", "id": f"{doc['id']}/trustedRootCertificates/chain", "properties": {}}
    ]
    props["trustedRootCertificates"][0]["properties"]["data"] = bundle
    props["backendHttpSettingsCollection"][0]["properties"]["trustedRootCertificates"] = [
        {"id": f"{doc['id']}/trustedRootCertificates/chain"}
    ]
    f = run(doc, v2_health(V2_ROOT)).findings[0]
    assert f.cause is Cause.UPLOAD_WRONG_FORMAT
    assert "several certificates" in f.evidence["explanation"]
    # The fix is the root the backend presents, as one .cer: never the bundle's intermediate.
    assert f.fix.action is FixAction.ADD_TRUSTED_ROOT_CERTIFICATE
    assert f.fix.certificate is not None and f.fix.certificate.sha1 == ca["root"].sha1


def test_v1_pkcs7_uploaded_as_authentication_certificate(
    ca: dict[str, Cert], servers: list[TlsServer]
) -> None:
    backend = start(TlsServer([ca["leaf"], ca["inter"]], {}), servers)
    p7b = pkcs7.serialize_certificates([ca["leaf"].cert, ca["inter"].cert], Encoding.DER)
    doc, health = single_v1(backend.port, NOT_WHITELISTED, auth_data=base64.b64encode(p7b).decode())
    f = run(doc, health).findings[0]
    assert f.cause is Cause.UPLOAD_WRONG_FORMAT
    assert "PKCS#7" in f.evidence["explanation"]
    assert f.fix.action is FixAction.ADD_AUTHENTICATION_CERTIFICATE
    assert f.fix.certificate is not None and f.fix.certificate.sha1 == ca["leaf"].sha1


def test_v1_authentication_certificate_that_is_the_ca(
    ca: dict[str, Cert], servers: list[TlsServer]
) -> None:
    backend = start(TlsServer([ca["leaf"], ca["inter"], ca["root"]], {}), servers)
    doc, health = single_v1(backend.port, NOT_WHITELISTED, auth_data=b64(ca["root"]))
    f = run(doc, health).findings[0]
    assert f.cause is Cause.AUTH_CERT_IS_CA
    assert f.fix.action is FixAction.ADD_AUTHENTICATION_CERTIFICATE
    assert f.fix.certificate is not None and f.fix.certificate.sha1 == ca["leaf"].sha1
    assert "of the backend's own chain" in f.evidence["explanation"]


# ---- well-known CAs ----


@pytest.fixture(scope="module")
def public() -> dict[str, Cert]:
    """A stand-in public CA and an ASE v3 default-domain certificate it issued."""
    root = make_cert("Stand-in Public Root G2", ca=True)
    inter = make_cert("Stand-in Public TLS CA", issuer=root, ca=True)
    name = "*.ase-demo.appserviceenvironment.net"
    return {
        "root": root,
        "inter": inter,
        "ase": make_cert(name, issuer=inter, sans=(name,)),
        "default": make_cert("ase-demo ILB default", sans=("ase-demo-ilb",)),
    }


def well_known_doc(port: int, listener_host: str) -> dict[str, Any]:
    """v2, IP pool member, no host name, no trusted roots: "well-known CA certificate: Yes"."""
    return gateway_doc(
        "Standard_v2",
        pools={"ase-pool": ["127.0.0.1"]},
        listeners={"ase-https": listener_host},
        settings=[{"name": "ase-https", "port": port, "pool": "ase-pool"}],
    )


def test_ase_v3_default_domain_without_sni_gets_the_host_name(
    public: dict[str, Cert], servers: list[TlsServer]
) -> None:
    app = "web.ase-demo.appserviceenvironment.net"
    backend = start(
        TlsServer([public["default"]], {app: [public["ase"], public["inter"]]}), servers
    )
    store = (cert_info(public["root"].der),)
    f = run(well_known_doc(backend.port, app), v2_health(V2_NOT_WELL_KNOWN), well_known=store)
    f = f.findings[0]
    assert f.cause is Cause.WELL_KNOWN_CA_NEEDS_SNI
    assert f.fix.action is FixAction.SET_BACKEND_HOST_NAME and f.fix.host_name == app
    assert f.fix.certificate is None  # never the default certificate as a root
    assert "Stand-in Public Root G2" in f.evidence["explanation"]


def test_public_chain_is_trusted_by_the_well_known_store(
    public: dict[str, Cert], servers: list[TlsServer]
) -> None:
    app = "web.ase-demo.appserviceenvironment.net"
    backend = start(TlsServer([public["ase"], public["inter"]], {}), servers)
    doc = well_known_doc(backend.port, app)
    doc["properties"]["backendHttpSettingsCollection"][0]["properties"]["hostName"] = app
    store = (cert_info(public["root"].der),)
    f = run(doc, v2_health(OPENSSL), well_known=store).findings[0]
    # Chains to a well-known root: no trusted root is missing, so none is proposed.
    assert f.cause is Cause.UNKNOWN and f.fix.action is FixAction.NONE
    assert f.evidence["gateway_chain"]["anchor_source"] == "well_known"


def test_certifi_bundle_does_not_trust_a_private_chain(
    ca: dict[str, Cert], servers: list[TlsServer]
) -> None:
    from shared.probe.well_known import load_well_known

    store = load_well_known()
    assert len(store) > 100 and all(c.is_ca for c in store)
    backend = start(TlsServer([ca["leaf"], ca["inter"], ca["root"]], {}), servers)
    doc = well_known_doc(backend.port, HOST)
    doc["properties"]["backendHttpSettingsCollection"][0]["properties"]["hostName"] = HOST
    f = run(doc, v2_health(V2_NOT_WELL_KNOWN), well_known=store).findings[0]
    assert f.cause is Cause.TRUSTED_ROOT_MISMATCH and f.evidence["trust"] == "compared"
    assert f.fix.certificate is not None and f.fix.certificate.sha1 == ca["root"].sha1


# ---- TLS protocol and cipher ----


def tls_doc(port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    return v2_doc(port, host=HOST), v2_health(CONNECT)


def test_backend_below_tls_1_2_is_a_protocol_mismatch(
    ca: dict[str, Cert], servers: list[TlsServer]
) -> None:
    old = TlsServer(
        [ca["leaf"], ca["inter"]],
        {},
        max_version=ssl.TLSVersion.TLSv1_1,
        ciphers="DEFAULT:@SECLEVEL=0",
    )
    backend = start(old, servers)
    d = run(*tls_doc(backend.port))
    f = d.findings[0]
    assert f.cause is Cause.TLS_PROTOCOL_MISMATCH and f.fix.action is FixAction.NONE
    cap = f.evidence["captures"]["gateway"]
    assert cap["error"] == "protocol_mismatch" and cap["protocol"] == "TLSv1.1"
    assert "TLS 1.2" in f.evidence["explanation"]
    assert to_json(d)["findings"][0]["cause"] == "tls_protocol_mismatch"


def test_backend_without_a_gateway_cipher_is_a_cipher_mismatch(
    ca: dict[str, Cert], servers: list[TlsServer]
) -> None:
    chacha = TlsServer(
        [ca["leaf"], ca["inter"]],
        {},
        max_version=ssl.TLSVersion.TLSv1_2,
        ciphers="ECDHE-ECDSA-CHACHA20-POLY1305",
    )
    backend = start(chacha, servers)
    # Reported to users as "certificate expired" (MicrosoftDocs/azure-docs#41492).
    doc, _ = tls_doc(backend.port)
    f = run(doc, v2_health(V2_EXPIRED)).findings[0]
    assert f.cause is Cause.TLS_CIPHER_MISMATCH and f.fix.action is FixAction.NONE
    cap = f.evidence["captures"]["gateway"]
    assert cap["error"] == "cipher_mismatch"
    assert cap["cipher"] == "ECDHE-ECDSA-CHACHA20-POLY1305" and cap["protocol"] == "TLSv1.2"


def test_healthy_capture_records_protocol_and_cipher(
    ca: dict[str, Cert], servers: list[TlsServer]
) -> None:
    backend = start(TlsServer([ca["leaf"], ca["inter"]], {}), servers)
    doc = v2_doc(backend.port, host=HOST, roots=[ca["root"]])
    health = health_doc([("ase-pool", "ase-https", "127.0.0.1", "Up", "Success.")])
    f = run(doc, health).findings[0]
    cap = f.evidence["captures"]["gateway"]
    assert cap["protocol"] == "TLSv1.3" and cap["cipher"].startswith("TLS_AES_")
    assert f.evidence["gateway_chain"]["status"] == "trusted"
