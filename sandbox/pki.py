"""Certificates for the sandbox, generated with `cryptography` at start-up (RSA 2048).

Key generation dominates start-up time, so keys come from a process-wide cache. A `KeyAllocator`
hands each certificate of one sandbox a *different* cached key: v1 health compares public keys
(docs/sources.md#backend-trust, "public key of the backend server certificate"), so two
certificates of one sandbox must never share a key. Calls without an allocator get a fresh key.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_SIZE = 2048
DEFAULT_VALIDITY = timedelta(days=365)
# Password of the listener PFX files the scenarios embed (sslCertificates need data + password).
PFX_PASSWORD = "sandbox-pfx"  # noqa: S105 - a throwaway test fixture, not a secret


@dataclass(frozen=True)
class KeyCert:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def der_b64(self) -> str:
        """base64(DER): the canonical `data` of authentication and trusted root certificates."""
        return base64.b64encode(self.der()).decode("ascii")

    def thumbprint(self) -> str:
        """SHA-1 of the DER, upper-case hex, as Azure shows thumbprints."""
        return hashlib.sha1(self.der(), usedforsecurity=False).hexdigest().upper()

    def pfx_b64(self, chain: Sequence[KeyCert] = (), password: str = PFX_PASSWORD) -> str:
        """base64 PKCS#12 with the key, as a listener sslCertificate's `data`."""
        blob = pkcs12.serialize_key_and_certificates(
            name=None,
            key=self.key,
            cert=self.cert,
            cas=[c.cert for c in chain] or None,
            encryption_algorithm=serialization.BestAvailableEncryption(password.encode()),
        )
        return base64.b64encode(blob).decode("ascii")


_cache: list[rsa.RSAPrivateKey] = []
_cache_lock = threading.Lock()


def fresh_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)


def cached_key(index: int) -> rsa.RSAPrivateKey:
    """The index-th key of the process-wide cache, generated on first use."""
    with _cache_lock:
        while len(_cache) <= index:
            _cache.append(fresh_key())
        return _cache[index]


class KeyAllocator:
    """Hands out distinct cached keys: distinct within one allocator, reused across allocators."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> rsa.RSAPrivateKey:
        key = cached_key(self._next)
        self._next += 1
        return key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "appgw-cert-bot sandbox"),
        ]
    )


def _window(not_before: datetime | None, not_after: datetime | None) -> tuple[datetime, datetime]:
    start = not_before or datetime.now(UTC) - timedelta(days=1)
    return start, not_after or start + DEFAULT_VALIDITY


def _build(
    subject: str,
    issuer_name: x509.Name,
    signer: rsa.RSAPrivateKey,
    key: rsa.RSAPrivateKey,
    *,
    issuer_key_id: x509.SubjectKeyIdentifier | None,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    ca: bool,
    not_before: datetime | None,
    not_after: datetime | None,
) -> x509.Certificate:
    start, end = _window(not_before, not_after)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id or ski),
            critical=False,
        )
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    else:
        usage = x509.KeyUsage(True, False, True, False, False, False, False, False, False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    builder = builder.add_extension(usage, critical=True)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _ski(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value


def make_root(
    common_name: str,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key: rsa.RSAPrivateKey | None = None,
) -> KeyCert:
    """A self-signed CA root (basicConstraints CA:TRUE, keyCertSign)."""
    return self_signed(common_name, ca=True, not_before=not_before, not_after=not_after, key=key)


def issue(
    issuer: KeyCert,
    common_name: str,
    *,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    ca: bool = False,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key: rsa.RSAPrivateKey | None = None,
) -> KeyCert:
    """A certificate signed by `issuer`: an intermediate when `ca`, else a TLS server leaf."""
    key = key or fresh_key()
    cert = _build(
        common_name,
        issuer.cert.subject,
        issuer.key,
        key,
        issuer_key_id=_ski(issuer.cert),
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        ca=ca,
        not_before=not_before,
        not_after=not_after,
    )
    return KeyCert(cert, key)


def self_signed(
    common_name: str,
    *,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    ca: bool = False,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key: rsa.RSAPrivateKey | None = None,
) -> KeyCert:
    """A self-signed certificate; with ca=False this is a leaf like an ILB default certificate."""
    key = key or fresh_key()
    cert = _build(
        common_name,
        _name(common_name),
        key,
        key,
        issuer_key_id=None,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        ca=ca,
        not_before=not_before,
        not_after=not_after,
    )
    return KeyCert(cert, key)
