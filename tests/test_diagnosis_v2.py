"""Cause and fix on v2 gateways (trusted roots, host names, chains, a root the backend does not
send): hand-written gateway/health JSON + real captures (helpers: tests/diagnosis_helpers.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import test_tls_probe
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_tls_probe import Cert, Pki, TlsServer

from shared.core.certs import cert_info
from shared.core.diagnosis import (
    ROOT_INFERRED_WARNING,
    Cause,
    FixAction,
    route_hosts,
)
from shared.core.report import to_json, to_text
from tests.diagnosis_helpers import (
    CONNECT,
    GW,
    HOST,
    NOT_WHITELISTED,
    V2_CN,
    V2_EXPIRED,
    V2_INTERMEDIATE,
    V2_ROOT,
    gateway_doc,
    ilb,
    run,
    v2_doc,
    v2_health,
)

# Shared loopback TLS fixtures (tests/test_tls_probe.py).
pki = test_tls_probe.pki
servers = test_tls_probe.servers


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
