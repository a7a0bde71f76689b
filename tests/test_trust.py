"""Trust checks with real certificates, and the Key Vault read against a local HTTPS endpoint."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.cloud.keyvault import fetch_trusted_certificates
from shared.core.diagnosis import Fix, FixAction, FixCertificate
from shared.core.gateway import Generation
from shared.remediation.trust import check_certificate

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def make_cert(
    cn: str,
    *,
    ca: bool = False,
    sans: tuple[str, ...] = (),
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=300),
) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)


def fix_for(der: bytes, action: FixAction, sha1: str | None = None) -> Fix:
    fc = FixCertificate(
        sha1=sha1 or hashlib.sha1(der).hexdigest().upper(),
        sha256=hashlib.sha256(der).hexdigest().upper(),
        cer="",
        der_b64=base64.b64encode(der).decode(),
        subject="",
        not_after="",
    )
    return Fix(action, fc, ("ase-https",))


AUTH = FixAction.ADD_AUTHENTICATION_CERTIFICATE
ROOT = FixAction.ADD_TRUSTED_ROOT_CERTIFICATE


def check(fix: Fix, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "generation": Generation.V1,
        "fetched_from_pool": True,
        "now": NOW,
        "trusted_ders": (),
        "subject_pattern": None,
    }
    evidence = kw.pop("evidence", None)
    args.update(kw)
    return check_certificate(fix, evidence, **args)


ILB = make_cert("*.ase.internal", sans=("*.ase.internal", "*.scm.ase.internal"))


def test_v1_fetched_in_date_no_source_configured_is_ok() -> None:
    result = check(fix_for(ILB, AUTH))
    assert result.ok and result.reasons == ()


def test_not_fetched_from_pool() -> None:
    result = check(fix_for(ILB, AUTH), fetched_from_pool=False)
    assert not result.ok and any("pool" in r for r in result.reasons)


def test_expired_and_not_yet_valid() -> None:
    old = make_cert("old", not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1))
    assert any("not in date" in r for r in check(fix_for(old, AUTH)).reasons)
    future = make_cert("f", not_before=NOW + timedelta(days=1), not_after=NOW + timedelta(days=9))
    assert not check(fix_for(future, AUTH)).ok


def test_attacker_cert_vs_key_vault_cert() -> None:
    attacker = make_cert("*.ase.internal", sans=("*.ase.internal",))  # same names, other key
    kv = (ILB,)
    assert check(fix_for(ILB, AUTH), trusted_ders=kv).ok
    bad = check(fix_for(attacker, AUTH), trusted_ders=kv)
    assert not bad.ok and any("Key Vault" in r for r in bad.reasons)


def test_subject_pattern_matches_san_fully() -> None:
    pattern = re.compile(r"\*\.ase\.internal")
    assert check(fix_for(ILB, AUTH), subject_pattern=pattern).ok
    evil = make_cert("x", sans=("*.ase.internal.evil.example",))
    assert not check(fix_for(evil, AUTH), subject_pattern=pattern).ok
    # Either configured source may match.
    assert check(fix_for(ILB, AUTH), subject_pattern=re.compile("nope"), trusted_ders=(ILB,)).ok


def test_v2_root_needs_ca_and_key_vault() -> None:
    root = make_cert("Corp Root CA", ca=True)
    assert check(fix_for(root, ROOT), generation=Generation.V2, trusted_ders=(root,)).ok
    # No Key Vault source: a pattern alone is not enough for a whole CA.
    only_pattern = check(
        fix_for(root, ROOT), generation=Generation.V2, subject_pattern=re.compile("CN=Corp.*")
    )
    assert not only_pattern.ok and any("Key Vault" in r for r in only_pattern.reasons)
    other = check(fix_for(root, ROOT), generation="v2", trusted_ders=(ILB,))
    assert not other.ok and any("does not match" in r for r in other.reasons)
    leaf = make_cert("not-a-ca")
    non_ca = check(fix_for(leaf, ROOT), generation=Generation.V2, trusted_ders=(leaf,))
    assert not non_ca.ok and any("CA" in r for r in non_ca.reasons)


def test_v2_never_authentication_certificate() -> None:
    result = check(fix_for(ILB, AUTH), generation=Generation.V2)
    assert not result.ok and any("never authentication" in r for r in result.reasons)


def test_thumbprint_and_evidence_mismatch() -> None:
    lying = check(fix_for(ILB, AUTH, sha1="00" * 20))
    assert not lying.ok and any("thumbprint" in r for r in lying.reasons)
    evidence = {"presented_sha1": "11" * 20}
    assert not check(fix_for(ILB, AUTH), evidence=evidence).ok
    ok_evidence = {"presented_sha1": hashlib.sha1(ILB).hexdigest()}
    assert check(fix_for(ILB, AUTH), evidence=ok_evidence).ok


def test_garbage_and_non_certificate_actions() -> None:
    garbage = Fix(AUTH, FixCertificate("00", "00", "", "!!!", "", ""), ("s",))
    assert not check(garbage).ok
    assert not check(Fix(FixAction.SET_BACKEND_HOST_NAME, None, ("s",), "h")).ok


# ---- Key Vault, through the real SDK against a local HTTPS endpoint ---------------------------


class _Credential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("local-token", int(datetime.now(UTC).timestamp()) + 3600)


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, bytes]]]:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    store = {"ilb-default": ILB}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.headers.get("Authorization") != "Bearer local-token":
                # Key Vault's challenge: the SDK then asks the credential for a token.
                self.send_response(401)
                self.send_header(
                    "WWW-Authenticate",
                    'Bearer authorization="https://login.microsoftonline.com/tenant", '
                    'resource="https://vault.azure.net"',
                )
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            name = self.path.split("?")[0].strip("/").split("/")[1]
            if name not in store:
                body = json.dumps({"error": {"code": "CertificateNotFound", "message": "no"}})
                self.send_response(404)
            else:
                host = f"https://127.0.0.1:{self.server.server_address[1]}"
                body = json.dumps(
                    {
                        "id": f"{host}/certificates/{name}/0123456789abcdef",
                        "cer": base64.b64encode(store[name]).decode(),
                        "attributes": {"enabled": True},
                    }
                )
                self.send_response(200)
            data = body.encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(ctx)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", str(ca_file), store
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_trusted_certificates_from_local_vault(
    vault: tuple[str, str, dict[str, bytes]],
) -> None:
    url, ca_file, store = vault
    kwargs = {"connection_verify": ca_file, "verify_challenge_resource": False}
    ders = fetch_trusted_certificates(url, ["ilb-default"], _Credential(), **kwargs)
    assert ders == [store["ilb-default"]]
    assert check(fix_for(ILB, AUTH), trusted_ders=ders).ok
    assert fetch_trusted_certificates(url, [], _Credential()) == []
    with pytest.raises(Exception, match=r"CertificateNotFound|not found|Not Found"):
        fetch_trusted_certificates(url, ["missing"], _Credential(), **kwargs)


def test_v2_intermediate_is_never_a_trusted_root() -> None:
    """Only a self-signed root is valid there; intermediates belong on the server
    (https://learn.microsoft.com/azure/application-gateway/certificates-for-backend-authentication)."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Corp Root")])
    int_key = ec.generate_private_key(ec.SECP256R1())
    inter = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Corp Issuing CA")]))
        .issuer_name(root_name)
        .public_key(int_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=300))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    result = check(fix_for(inter, ROOT), generation=Generation.V2, trusted_ders=(inter,))
    assert not result.ok
    assert result.reasons == (
        "a v2 trusted root must be a self-signed root, never an intermediate",
    )
