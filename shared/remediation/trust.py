"""Trust checks: may the bot add this certificate without a human looking at it?

Rules from issue #4 ("Policy and trust"): applied automatically only if the bot fetched it itself
from an address in the gateway's own backend pool, it is in date, it is a CA certificate when it is
to be a v2 trusted root (docs/sources.md#backend-trust: a root without CA:TRUE gives
"Invalid CA"), and it matches a configured trusted source. A v2 trusted root needs a matching
Key Vault certificate: a subject pattern alone is not enough to trust a whole CA.

`check_certificate` is pure; reading the trusted source (Key Vault) is shared.cloud.keyvault.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from shared.core.certs import is_ca, is_self_signed
from shared.core.diagnosis import Fix, FixAction
from shared.core.gateway import Generation


@dataclass(frozen=True)
class TrustResult:
    ok: bool
    reasons: tuple[str, ...]


def _load(der_b64: str) -> tuple[x509.Certificate, bytes]:
    der = base64.b64decode(der_b64, validate=True)
    return x509.load_der_x509_certificate(der), der


def _names(cert: x509.Certificate) -> list[str]:
    """Subject (RFC 4514), its common names, and every DNS/IP SAN: what a pattern may match."""
    names = [cert.subject.rfc4514_string()]
    names += [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    names += san.get_values_for_type(x509.DNSName)
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


def _in_date(cert: x509.Certificate, now: datetime) -> bool:
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _evidence_sha1(evidence: Mapping[str, Any] | None) -> str | None:
    """The thumbprint the finding says the backend presented, when the evidence carries one."""
    if not evidence:
        return None
    for key in ("presented_sha1", "leaf_sha1", "sha1", "thumbprint"):
        value = evidence.get(key)
        if isinstance(value, str) and value:
            return value.replace(":", "").upper()
    return None


def check_certificate(
    fix: Fix,
    finding_evidence: Mapping[str, Any] | None,
    *,
    generation: Generation | str,
    fetched_from_pool: bool,
    now: datetime,
    trusted_ders: Sequence[bytes],
    subject_pattern: re.Pattern[str] | None,
) -> TrustResult:
    """Every failed check is a reason; ok only when there are none."""
    if fix.action not in (
        FixAction.ADD_AUTHENTICATION_CERTIFICATE,
        FixAction.ADD_TRUSTED_ROOT_CERTIFICATE,
    ):
        return TrustResult(False, (f"{fix.action.value} adds no certificate to check",))
    if fix.certificate is None:
        return TrustResult(False, ("the fix carries no certificate",))
    try:
        cert, der = _load(fix.certificate.der_b64)
    except (ValueError, binascii.Error) as exc:
        return TrustResult(False, (f"the certificate does not parse: {exc}",))

    reasons: list[str] = []
    sha1 = hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()
    if sha1 != fix.certificate.sha1.replace(":", "").upper():
        reasons.append("the certificate's data does not match its stated thumbprint")
    presented = _evidence_sha1(finding_evidence)
    if presented is not None and presented != sha1 and not _is_root_fix(fix):
        reasons.append("the certificate is not the one the backend presented")
    v2_root = fix.action is FixAction.ADD_TRUSTED_ROOT_CERTIFICATE
    if Generation(generation) is Generation.V2 and not v2_root:
        reasons.append("v2 gateways take trusted roots, never authentication certificates")
    if not fetched_from_pool:
        reasons.append("the bot did not fetch it itself from an address in the gateway's pool")
    if not _in_date(cert, now):
        reasons.append(
            f"not in date: valid {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d}"
        )
    if v2_root and not is_ca(cert):
        reasons.append("a v2 trusted root must be a CA certificate (basicConstraints CA:TRUE)")
    if v2_root and not is_self_signed(cert):
        # https://learn.microsoft.com/azure/application-gateway/certificates-for-backend-authentication:
        # only the root is valid as a trusted root; intermediates belong on the server.
        reasons.append("a v2 trusted root must be a self-signed root, never an intermediate")
    reasons += _trusted_source_reasons(cert, der, v2_root, trusted_ders, subject_pattern)
    return TrustResult(not reasons, tuple(reasons))


def _is_root_fix(fix: Fix) -> bool:
    # For a trusted root, the backend presents the leaf; the root sits further up the chain.
    return fix.action is FixAction.ADD_TRUSTED_ROOT_CERTIFICATE


def _trusted_source_reasons(
    cert: x509.Certificate,
    der: bytes,
    v2_root: bool,
    trusted_ders: Sequence[bytes],
    pattern: re.Pattern[str] | None,
) -> list[str]:
    kv_match = any(der == t for t in trusted_ders)
    # fullmatch: a pattern for "app.contoso.com" must not accept "app.contoso.com.evil.example".
    pattern_match = pattern is not None and any(pattern.fullmatch(n) for n in _names(cert))
    if v2_root:
        if kv_match:
            return []
        if trusted_ders:
            return ["the trusted root does not match any trusted Key Vault certificate"]
        return ["a v2 trusted root is applied automatically only with a Key Vault trusted source"]
    if not trusted_ders and pattern is None:
        return []  # no trusted source configured: the other checks decide
    if kv_match or pattern_match:
        return []
    sources = []
    if trusted_ders:
        sources.append("no trusted Key Vault certificate")
    if pattern is not None:
        sources.append(f"not the subject pattern {pattern.pattern!r}")
    return ["the certificate matches " + " and ".join(sources)]


__all__ = ["TrustResult", "check_certificate"]
