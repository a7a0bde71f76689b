"""What a diagnosis says: causes, fixes and findings, the public result types.

Re-exported by `shared.core.diagnosis` (their import path for callers); they live here, below the
decision and evidence modules, so those can build them without importing the orchestration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.core.capture import Vantage
from shared.core.expiry import ExpiringCertificate


class Cause(StrEnum):
    HEALTHY = "healthy"
    DEFAULT_CERTIFICATE_WITHOUT_SNI = "default_certificate_without_sni"
    CERTIFICATE_NOT_ALLOWLISTED = "certificate_not_allowlisted"
    TRUSTED_ROOT_MISMATCH = "trusted_root_mismatch"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    CERTIFICATE_EXPIRED = "certificate_expired"
    INCOMPLETE_CHAIN = "incomplete_chain"
    CERTIFICATE_NOT_YET_VALID = "certificate_not_yet_valid"
    TRUSTED_ROOT_NOT_ROOT = "trusted_root_not_root"
    UPLOAD_WRONG_FORMAT = "upload_wrong_format"
    AUTH_CERT_IS_CA = "auth_cert_is_ca"
    WELL_KNOWN_CA_NEEDS_SNI = "well_known_ca_needs_sni"
    TLS_PROTOCOL_MISMATCH = "tls_protocol_mismatch"
    TLS_CIPHER_MISMATCH = "tls_cipher_mismatch"
    BACKEND_UNREACHABLE = "backend_unreachable"
    NOT_CERTIFICATE_RELATED = "not_certificate_related"
    UNKNOWN = "unknown"


class FixAction(StrEnum):
    ADD_AUTHENTICATION_CERTIFICATE = "add_authentication_certificate"
    ADD_TRUSTED_ROOT_CERTIFICATE = "add_trusted_root_certificate"
    SET_BACKEND_HOST_NAME = "set_backend_host_name"
    NONE = "none"
    # The end of an overlap rotation (shared.remediation.rotation): never a finding's fix, only
    # ever proposed once no backend presents the old certificate.
    REMOVE_AUTHENTICATION_CERTIFICATE = "remove_authentication_certificate"
    REMOVE_TRUSTED_ROOT_CERTIFICATE = "remove_trusted_root_certificate"


@dataclass(frozen=True)
class FixCertificate:
    sha1: str
    sha256: str
    cer: str  # PEM text ("Base-64 encoded X.509 .CER")
    der_b64: str  # base64 of the DER: what ARM's `data` takes
    subject: str
    not_after: str  # ISO 8601


@dataclass(frozen=True)
class RequiredRoot:
    """The v2 trusted root a backend's chain needs but does not send, and the bot could not find
    in the trusted source: the operator obtains it and uploads it (intermediates belong on the
    server, https://learn.microsoft.com/azure/application-gateway/certificates-for-backend-authentication)."""

    subject: str  # RFC 4514: the issuer name of the top certificate presented
    authority_key_identifier: str | None  # the top certificate's AKI, uppercase hex (root's SKI)
    issued: str  # SHA-1 of the presented certificate the root must have issued


@dataclass(frozen=True)
class Fix:
    action: FixAction
    certificate: FixCertificate | None = None
    settings: tuple[str, ...] = ()  # names of every HTTP settings the same fix repairs
    host_name: str | None = None  # for set_backend_host_name
    required_root: RequiredRoot | None = None  # with action none: the root to obtain and upload


@dataclass(frozen=True)
class Finding:
    pool: str  # names
    settings: str
    server: str
    health: str  # HealthState value
    probe_log: str | None
    cause: Cause
    evidence: dict[str, Any]
    fix: Fix
    alternatives: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # True when the verdict rests on the probe log because the certificate data is absent
    # (an older API version, or a Key Vault reference).
    inferred_from_probe_log: bool = False


@dataclass(frozen=True)
class GatewaySummary:
    id: str
    name: str
    sku_tier: str | None
    generation: str


@dataclass(frozen=True)
class Diagnosis:
    gateway: GatewaySummary
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    # Where the TLS captures were made from; None when there were none (--no-probe).
    vantage: Vantage | None = None
    # Certificates ending within EXPIRY_WARNING_DAYS (shared.core.expiry), soonest first; the
    # shell that read Key Vault fills it in.
    expiring: tuple[ExpiringCertificate, ...] = ()
