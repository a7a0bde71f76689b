"""The facts of one finding and the verdict type: what the decision modules share.

Pure. `shared.core.verdict` decides; `shared.core.verdict_chain` and `shared.core.verdict_tls` hold
the chain and TLS rules; `shared.core.evidence` renders. They all read these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from shared.common.ids import last_segment
from shared.core.backend_units import Unit
from shared.core.capture import ProbeErrorKind, TlsCapture
from shared.core.certs import (
    CertInfo,
    cert_info,
    der_from_arm_data,
    iso_z,
    to_arm_data,
    to_pem,
)
from shared.core.chain import GatewayChain, build_chain
from shared.core.findings import Cause, Fix, FixAction, FixCertificate
from shared.core.gateway import CertificateRef, Gateway, Generation, HttpSettings
from shared.core.health import ProbeLogKind
from shared.core.tls_target import TlsTarget

UNREACHABLE_ERRORS = {
    ProbeErrorKind.REFUSED,
    ProbeErrorKind.TIMEOUT,
    ProbeErrorKind.NOT_TLS,
    ProbeErrorKind.UNRESOLVED,
}
UNREACHABLE_LOGS = {
    ProbeLogKind.TIMEOUT,
    ProbeLogKind.CONNECTION_FAILED,
    ProbeLogKind.PROBE_NOT_CREATED,
}
NOT_CERT_LOGS = {
    ProbeLogKind.STATUS_MISMATCH,
    ProbeLogKind.BODY_MISMATCH,
    ProbeLogKind.PROXY_PROTOCOL,
}
CHAIN_LOGS = {
    ProbeLogKind.INTERMEDIATE_MISSING,
    ProbeLogKind.LEAF_MISSING,
    ProbeLogKind.LEAF_NOT_TOPMOST,
}
ROOT_LOGS = {ProbeLogKind.ROOT_MISMATCH, ProbeLogKind.NOT_WELL_KNOWN_CA}
# Texts that say nothing specific: evidence alone may decide.
VAGUE_LOGS = {
    ProbeLogKind.EMPTY,
    ProbeLogKind.OTHER,
    ProbeLogKind.VERIFICATION_FAILED,
    ProbeLogKind.INVALID_CERTIFICATE,
}


@dataclass(frozen=True)
class Ref:
    ref: CertificateRef
    # None when the document carries no readable `data`: a Key Vault reference, or an older API
    # version. Real GETs return `data` as sent (tests/data/recorded/cli_ag_auth_cert_v1.json,
    # cli_ag_root_cert_v2.json), so the comparison is the primary path.
    info: CertInfo | None


def refs(gw: Gateway, settings: HttpSettings, ids: tuple[str, ...]) -> list[Ref]:
    refs: list[Ref] = []
    for rid in ids:
        ref = gw.certificate_by_id(rid)
        if ref is None:
            ref = CertificateRef(id=rid, name=last_segment(rid), data=None)
        refs.append(Ref(ref, _decode(ref.data)))
    return refs


def _decode(data: str | None) -> CertInfo | None:
    if not data:
        return None
    return _decode_data(data)


@lru_cache(maxsize=1024)
def _decode_data(data: str) -> CertInfo | None:
    """Remembered: every finding of a gateway reads the same referenced certificates, often
    several times (a pure function of the string)."""
    try:
        return cert_info(der_from_arm_data(data))
    except Exception:  # noqa: BLE001 - unreadable stored data counts as absent data
        return None


@dataclass
class Verdict:
    cause: Cause
    fix: Fix = field(default_factory=lambda: Fix(FixAction.NONE))
    explanation: str = ""
    inferred: bool = False
    trust: str = "not_evaluated"  # compared | inferred_from_probe_log | not_evaluated


def fix_certificate(cert: CertInfo) -> FixCertificate:
    return FixCertificate(
        sha1=cert.sha1,
        sha256=cert.sha256,
        cer=to_pem(cert.der),
        der_b64=to_arm_data(cert.der),
        subject=cert.subject,
        not_after=iso_z(cert.not_after),
    )


@dataclass(frozen=True)
class Facts:
    gw: Gateway
    unit: Unit
    kind: ProbeLogKind
    target: TlsTarget | None
    alt_sni: str | None
    gw_cap: TlsCapture | None
    alt_cap: TlsCapture | None
    now: datetime
    # Certificates of the trusted source (Key Vault, TRUSTED_CERT_NAMES), read by the caller: where
    # a v2 backend does not send its root, the root is looked up here.
    trusted_sources: tuple[CertInfo, ...] = ()
    # The well-known CA store (WELL_KNOWN_CA_BUNDLE), read by the caller; empty when unknown, and
    # then a v2 setting without trusted roots cannot be judged from the chain.
    well_known: tuple[CertInfo, ...] = ()

    @property
    def v1(self) -> bool:
        return self.gw.generation is Generation.V1

    @property
    def chain(self) -> tuple[CertInfo, ...]:
        return self.gw_cap.chain if self.gw_cap else ()

    def gateway_chain(self, chain: tuple[CertInfo, ...] | None = None) -> GatewayChain:
        """`chain` (default: the gateway's capture) as the v2 gateway builds it: anchored at a
        referenced self-signed root, or at the well-known store when the settings reference
        none (docs/sources.md#backend-trust)."""
        presented = self.chain if chain is None else chain
        settings = self.unit.settings
        ids = settings.trusted_root_certificate_ids if settings is not None else ()
        if ids:
            assert settings is not None
            roots = [r.info for r in refs(self.gw, settings, ids) if r.info is not None]
            return build_chain(presented, trusted_roots=roots)
        return build_chain(presented, well_known=self.well_known)
