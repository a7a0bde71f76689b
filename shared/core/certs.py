"""Certificates as evidence: thumbprints, names, validity, flags; Base-64 CER export.

CONTRACT (types are fixed; functions are implemented by the diagnosis work).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from shared.common.errors import InputError


@dataclass(frozen=True)
class CertInfo:
    der: bytes
    sha1: str  # uppercase hex of SHA-1 over the DER, as Azure shows thumbprints
    sha256: str  # uppercase hex of SHA-256 over the DER
    subject: str  # RFC 4514 string
    issuer: str
    sans: tuple[str, ...]  # DNS names and IP addresses, in certificate order
    not_before: datetime  # timezone-aware UTC
    not_after: datetime
    self_signed: bool  # subject == issuer and the signature verifies with its own key
    is_ca: bool  # basicConstraints CA:TRUE
    public_key_sha256: str  # uppercase hex of SHA-256 over the SubjectPublicKeyInfo DER
    common_name: str | None = None
    # Key identifiers (RFC 5280 §4.2.1.1/§4.2.1.2), uppercase hex; None when the extension is
    # absent. A child's authority key identifier equals its issuer's subject key identifier.
    subject_key_identifier: str | None = None
    authority_key_identifier: str | None = None


# Markers are found one at a time (see `pem_blocks`): one regex spanning BEGIN ... END retries
# from every BEGIN and is quadratic on a document of unterminated BEGIN markers.
_PEM_BEGIN = re.compile(r"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----")
_PEM_END = re.compile(r"-----END (?:X509 |TRUSTED )?CERTIFICATE-----")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]")
_MAX_INPUT = 4 * 1024 * 1024  # certificates are kilobytes; refuse to chew on anything huge
# What cryptography raises for malformed or unusual certificates (not all are ValueErrors).
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
)


def cert_info(der: bytes) -> CertInfo:
    """Evidence for one DER certificate; InputError when the bytes are not a certificate."""
    cert = _load_der(der)
    if cert is None:
        raise InputError("not an X.509 certificate (DER)")
    try:
        spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return CertInfo(
            der=bytes(der),
            sha1=hashlib.sha1(der).hexdigest().upper(),  # noqa: S324 - Azure's thumbprint format
            sha256=hashlib.sha256(der).hexdigest().upper(),
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            sans=_sans(cert),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            self_signed=is_self_signed(cert),
            is_ca=is_ca(cert),
            public_key_sha256=hashlib.sha256(spki).hexdigest().upper(),
            common_name=_common_name(cert),
            subject_key_identifier=_ski(cert),
            authority_key_identifier=_aki(cert),
        )
    except _PARSE_ERRORS as exc:
        raise InputError(f"certificate cannot be read: {exc}") from None


def load_certificates(data: bytes | str) -> list[bytes]:
    """Every certificate in PEM, DER, base64 DER, base64 PEM or UTF-16 PEM input, as DER."""
    if not isinstance(data, bytes | str) or len(data) > _MAX_INPUT:
        raise InputError("no certificate found: unsupported or oversized input")
    found = _decode(data, depth=0)
    if not found:
        raise InputError("no certificate found (expected PEM, DER or base64)")
    return found


def der_from_arm_data(data: str) -> bytes:
    """DER of the (first) certificate in what ARM's `data` may hold
    (docs/sources.md#certificate-formats)."""
    return load_certificates(data)[0]


def to_pem(der: bytes) -> str:
    """Base-64 encoded X.509 (.CER): the format Azure asks for
    (docs/sources.md#certificate-formats)."""
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def to_arm_data(der: bytes) -> str:
    """base64(DER) without newlines, as PowerShell sends it
    (docs/sources.md#certificate-formats)."""
    return base64.b64encode(der).decode("ascii")


def matches_host(info: CertInfo, host: str) -> bool:
    """RFC 6125 name check: DNS SANs when any exists, else the CN; IP hosts match IP SANs only."""
    wanted = _host(host)
    if not wanted:
        return False
    ip = _ip(wanted)
    if ip is not None:
        return any(_ip(san) == ip for san in info.sans)
    dns_sans = [san for san in info.sans if _ip(san) is None]
    # docs/sources.md#sni-rules: "if a SAN exists the SNI verification is done only against that
    # field".
    names = dns_sans if dns_sans else [info.common_name] if info.common_name else []
    return any(_dns_match(_host(name), wanted) for name in names)


def is_valid_at(info: CertInfo, when: datetime) -> bool:
    moment = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return info.not_before <= moment <= info.not_after


def signed_by(child: CertInfo, issuer: CertInfo) -> bool:
    """`issuer` issued `child`: names chain and the signature verifies with the issuer's key."""
    if child.issuer != issuer.subject:
        return False
    cert, parent = _load_der(child.der), _load_der(issuer.der)
    if cert is None or parent is None:
        return False
    try:
        cert.verify_directly_issued_by(parent)
    except (*_PARSE_ERRORS, InvalidSignature):
        return False
    return True


def is_root(info: CertInfo) -> bool:
    """A self-signed CA certificate: the only kind v2 accepts as a trusted root."""
    return info.self_signed and info.is_ca


def issuer_of(child: CertInfo, candidates: Iterable[CertInfo]) -> CertInfo | None:
    """The first candidate root that issued `child`: its subject is the child's issuer name, its
    subject key identifier equals the child's authority key identifier (when both are present),
    and the signature verifies. Only self-signed CA roots qualify."""
    for cand in candidates:
        if not is_root(cand) or cand.subject != child.issuer:
            continue
        aki, ski = child.authority_key_identifier, cand.subject_key_identifier
        if aki and ski and aki != ski:
            continue
        if signed_by(child, cand):
            return cand
    return None


def same_public_key(a: CertInfo, b: CertInfo) -> bool:
    """v1 allow-lists by public key (docs/sources.md#backend-trust), so a re-issued leaf may still
    match."""
    return a.public_key_sha256 == b.public_key_sha256


def evidence(info: CertInfo) -> dict[str, Any]:
    """JSON-ready facts about one certificate."""
    return {
        "sha1": info.sha1,
        "sha256": info.sha256,
        "subject": info.subject,
        "issuer": info.issuer,
        "common_name": info.common_name,
        "sans": list(info.sans),
        "not_before": iso_z(info.not_before),
        "not_after": iso_z(info.not_after),
        "self_signed": info.self_signed,
        "is_ca": info.is_ca,
        "public_key_sha256": info.public_key_sha256,
        "subject_key_identifier": info.subject_key_identifier,
        "authority_key_identifier": info.authority_key_identifier,
    }


def iso_z(when: datetime) -> str:
    """ISO 8601 in UTC with a Z suffix, to the second."""
    moment = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- parsing helpers ----


def _load_der(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(bytes(der))
    except _PARSE_ERRORS:
        return None


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    names: list[str] = []
    for general_name in ext.value:
        if isinstance(general_name, x509.DNSName):
            names.append(general_name.value)
        elif isinstance(general_name, x509.IPAddress):
            names.append(str(general_name.value))
    return tuple(names)


def is_ca(cert: x509.Certificate) -> bool:
    """BasicConstraints CA:TRUE; a certificate without the extension is not a CA."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def is_self_signed(cert: x509.Certificate) -> bool:
    """Subject equals issuer and the signature verifies with the certificate's own key."""
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (*_PARSE_ERRORS, InvalidSignature):
        return False
    return True


def _ski(cert: x509.Certificate) -> str | None:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except (x509.ExtensionNotFound, *_PARSE_ERRORS):
        return None
    return ext.value.digest.hex().upper()


def _aki(cert: x509.Certificate) -> str | None:
    try:
        ext = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except (x509.ExtensionNotFound, *_PARSE_ERRORS):
        return None
    key_id = ext.value.key_identifier
    return key_id.hex().upper() if key_id else None


def _common_name(cert: x509.Certificate) -> str | None:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", errors="replace")


def _decode(data: bytes | str, depth: int) -> list[bytes]:
    """Try every encoding the `data` field has been seen in; recurse once through base64."""
    if depth > 2:
        return []
    if isinstance(data, bytes):
        if _load_der(data) is not None:
            return [data]
        text = _bytes_to_text(data)
    else:
        text = data
    blocks = pem_blocks(text)
    if blocks:
        ders = (_b64(block) for block in blocks)
        return [d for d in ders if d is not None and _load_der(d) is not None]
    decoded = _b64(text)
    return _decode(decoded, depth + 1) if decoded else []


def pem_blocks(text: str) -> list[str]:
    """The bodies between CERTIFICATE BEGIN and END markers, in linear time.

    A body ends at the first END after its BEGIN, and starts at the last BEGIN before that END
    (a stray BEGIN does not swallow the block after it). Once a BEGIN has no END after it, no
    later BEGIN has one either, so the scan stops there.
    """
    blocks: list[str] = []
    pos = 0
    while begin := _PEM_BEGIN.search(text, pos):
        end = _PEM_END.search(text, begin.end())
        if end is None:
            break
        start = begin.end()
        while later := _PEM_BEGIN.search(text, start, end.start()):
            start = later.end()
        blocks.append(text[start : end.start()])
        pos = end.end()
    return blocks


def _bytes_to_text(data: bytes) -> str:
    # UTF-16 PEM (with or without BOM) shows up as NUL bytes between ASCII characters.
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data.count(0) > len(data) // 4:
        for codec in ("utf-16", "utf-16-le", "utf-16-be"):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError:
                continue
            if "CERTIFICATE" in text or not _NOT_BASE64.search(re.sub(r"\s", "", text)):
                return text
    return data.decode("utf-8", errors="replace").lstrip("\ufeff")


def _b64(text: str) -> bytes | None:
    """Strict base64 after dropping whitespace (doubled CRLFs included); None if it is not."""
    compact = re.sub(r"\s", "", text)
    if not compact or _NOT_BASE64.search(compact):
        return None
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _host(name: str | None) -> str:
    return (name or "").strip().rstrip(".").lower()


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def _dns_match(pattern: str, host: str) -> bool:
    """Exact match, or a wildcard that is the whole left-most label and covers one label."""
    if not pattern or not host:
        return False
    if not pattern.startswith("*."):
        return pattern == host
    suffix = pattern[2:]
    # "*.com" style wildcards are refused: the rest must itself have two labels.
    if "*" in suffix or suffix.count(".") < 1:
        return False
    label, _, rest = host.partition(".")
    return bool(label) and rest == suffix
