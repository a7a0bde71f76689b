"""One finding's verdict: the cause and fix the probe log and the TLS evidence agree on.

Pure. Precision beats coverage: a cause is named only when the probe log and the evidence agree;
otherwise the verdict is `unknown` and proposes nothing (issue 3). Rules cite
docs/sources.md (e.g. docs/sources.md#backend-trust).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise

from shared.common.ids import last_segment
from shared.core.backend_units import Unit, is_https
from shared.core.capture import ProbeErrorKind, TlsCapture
from shared.core.certs import (
    CertInfo,
    cert_info,
    der_from_arm_data,
    is_root,
    is_valid_at,
    iso_z,
    issuer_of,
    matches_host,
    signed_by,
    to_arm_data,
    to_pem,
)
from shared.core.findings import Cause, Fix, FixAction, FixCertificate, RequiredRoot
from shared.core.gateway import CertificateRef, Gateway, Generation, HttpSettings
from shared.core.health import HealthState, ProbeLogKind
from shared.core.tls_target import TlsTarget

_UNREACHABLE_ERRORS = {
    ProbeErrorKind.REFUSED,
    ProbeErrorKind.TIMEOUT,
    ProbeErrorKind.NOT_TLS,
    ProbeErrorKind.UNRESOLVED,
}
_UNREACHABLE_LOGS = {
    ProbeLogKind.TIMEOUT,
    ProbeLogKind.CONNECTION_FAILED,
    ProbeLogKind.PROBE_NOT_CREATED,
}
_NOT_CERT_LOGS = {
    ProbeLogKind.STATUS_MISMATCH,
    ProbeLogKind.BODY_MISMATCH,
    ProbeLogKind.PROXY_PROTOCOL,
}
_CHAIN_LOGS = {
    ProbeLogKind.INTERMEDIATE_MISSING,
    ProbeLogKind.LEAF_MISSING,
    ProbeLogKind.LEAF_NOT_TOPMOST,
}
_ROOT_LOGS = {ProbeLogKind.ROOT_MISMATCH, ProbeLogKind.NOT_WELL_KNOWN_CA}
# Texts that say nothing specific: evidence alone may decide.
_VAGUE_LOGS = {
    ProbeLogKind.EMPTY,
    ProbeLogKind.OTHER,
    ProbeLogKind.VERIFICATION_FAILED,
    ProbeLogKind.INVALID_CERTIFICATE,
}


# ---------------------------------------------------------------------------------------------
# Trust: what the settings reference, and whether a presented chain is trusted by it.


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
    try:
        return cert_info(der_from_arm_data(data))
    except Exception:  # noqa: BLE001 - unreadable stored data counts as absent data
        return None


def _v1_trusted(leaf: CertInfo, refs: list[Ref]) -> bool | None:
    """v1 allow-lists by the leaf's public key (docs/sources.md#backend-trust). None: data absent,
    cannot tell."""
    if any(r.info and r.info.public_key_sha256 == leaf.public_key_sha256 for r in refs):
        return True
    if any(r.info is None for r in refs):
        return None
    return False


_signed_by = signed_by


def _v2_trusted(chain: tuple[CertInfo, ...], refs: list[Ref]) -> bool | None:
    """The presented chain ends at a referenced root: the root's thumbprint is in the chain, or
    the root signed the chain's top certificate. None: cannot tell."""
    if not refs:
        return None  # well-known CA store: the bot holds no copy of it
    known = [r.info for r in refs if r.info is not None]
    top = chain[-1]
    for root in known:
        # Only a self-signed CA root anchors a chain: never a non-CA certificate
        # (docs/sources.md#backend-trust), never an intermediate ("only the root certificate is
        # valid here",
        # https://learn.microsoft.com/azure/application-gateway/certificates-for-backend-authentication).
        if not is_root(root):
            continue
        if any(c.sha256 == root.sha256 for c in chain) or _signed_by(top, root):
            return True
    if len(known) < len(refs):
        return None
    return False


def _trusted(gw: Gateway, settings: HttpSettings, chain: tuple[CertInfo, ...]) -> bool | None:
    if not chain:
        return None
    if gw.generation is Generation.V1:
        return _v1_trusted(chain[0], refs(gw, settings, settings.authentication_certificate_ids))
    return _v2_trusted(chain, refs(gw, settings, settings.trusted_root_certificate_ids))


def _leaf_not_topmost(chain: tuple[CertInfo, ...]) -> bool:
    return len(chain) > 1 and chain[0].is_ca and any(not c.is_ca for c in chain[1:])


def _chain_incomplete(chain: tuple[CertInfo, ...], gw: Gateway, settings: HttpSettings) -> bool:
    """v2: the chain stops below a root and no referenced root with data issued its top."""
    top = chain[-1]
    if top.self_signed:
        return False
    known = [r.info for r in refs(gw, settings, settings.trusted_root_certificate_ids) if r.info]
    roots = [root for root in known if is_root(root)]
    return not any(_signed_by(top, root) for root in roots) and len(chain) == 1


# ---------------------------------------------------------------------------------------------
# One finding: its facts, the decision and the verdict.


@dataclass
class Verdict:
    cause: Cause
    fix: Fix = field(default_factory=lambda: Fix(FixAction.NONE))
    explanation: str = ""
    inferred: bool = False
    trust: str = "not_evaluated"  # compared | inferred_from_probe_log | not_evaluated


def _fix_certificate(cert: CertInfo) -> FixCertificate:
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

    @property
    def v1(self) -> bool:
        return self.gw.generation is Generation.V1

    @property
    def chain(self) -> tuple[CertInfo, ...]:
        return self.gw_cap.chain if self.gw_cap else ()


def decide(f: Facts) -> Verdict:
    unit = f.unit
    if unit.health is HealthState.HEALTHY:
        return Verdict(Cause.HEALTHY, explanation="The gateway's probe succeeds.")
    if unit.health in (HealthState.UNKNOWN, HealthState.DRAINING):
        return Verdict(
            Cause.UNKNOWN,
            explanation=f"Health is {unit.health.value}: not a certificate verdict "
            "(docs/sources.md#health-states).",
        )
    if f.kind in _NOT_CERT_LOGS:
        return Verdict(
            Cause.NOT_CERTIFICATE_RELATED,
            explanation="The probe reached the backend over TLS; its HTTP answer or protocol "
            "does not match the probe settings.",
        )
    if f.kind is ProbeLogKind.HEALTH_UNKNOWN:
        return Verdict(Cause.UNKNOWN, explanation="The probe log reports NSG/UDR/DNS/CRL trouble.")
    if f.kind in _UNREACHABLE_LOGS:
        return Verdict(
            Cause.BACKEND_UNREACHABLE, explanation="The probe log says the gateway cannot connect."
        )
    if not is_https(unit.settings):
        return Verdict(
            Cause.UNKNOWN, explanation="HTTP settings without TLS: no certificate involved."
        )
    if f.gw_cap is None or f.target is None:
        return _without_evidence(f)
    if f.gw_cap.error is not None:
        return _capture_failed(f)
    return _v1_decide(f) if f.v1 else _v2_decide(f)


def _capture_failed(f: Facts) -> Verdict:
    assert f.gw_cap is not None and f.gw_cap.error is not None
    err = f.gw_cap.error
    if err in _UNREACHABLE_ERRORS and f.kind in _VAGUE_LOGS:
        return Verdict(
            Cause.BACKEND_UNREACHABLE,
            explanation=f"The bot's handshake failed too ({err.value}: {f.gw_cap.detail}).",
        )
    return Verdict(
        Cause.UNKNOWN,
        explanation=f"The probe log names a certificate problem but the bot could not capture the "
        f"certificate ({err.value}); the bot's network view may differ from the gateway's.",
    )


def _without_evidence(f: Facts) -> Verdict:
    """No capture (--no-probe, or not a pool member): name the cause only from unambiguous texts."""
    by_log: dict[ProbeLogKind, Cause] = {
        ProbeLogKind.CN_MISMATCH: Cause.HOSTNAME_MISMATCH,
        ProbeLogKind.EXPIRED: Cause.CERTIFICATE_EXPIRED,
        ProbeLogKind.INTERMEDIATE_MISSING: Cause.INCOMPLETE_CHAIN,
        ProbeLogKind.LEAF_MISSING: Cause.INCOMPLETE_CHAIN,
        ProbeLogKind.LEAF_NOT_TOPMOST: Cause.INCOMPLETE_CHAIN,
    }
    if not f.v1:
        by_log |= {k: Cause.TRUSTED_ROOT_MISMATCH for k in _ROOT_LOGS}
    cause = by_log.get(f.kind, Cause.UNKNOWN)
    if (
        f.v1
        and f.kind is ProbeLogKind.NOT_ALLOWLISTED
        and f.target is not None
        and f.target.sni is not None
    ):
        cause = Cause.CERTIFICATE_NOT_ALLOWLISTED  # with SNI sent, the seed cause is excluded
    return Verdict(
        cause,
        explanation="No TLS evidence was captured; cause read from the probe log only, so no "
        "certificate is proposed.",
        inferred=cause is not Cause.UNKNOWN,
        trust="inferred_from_probe_log" if cause is not Cause.UNKNOWN else "not_evaluated",
    )


def _expired(f: Facts) -> Verdict | None:
    leaf = f.chain[0]
    if is_valid_at(leaf, f.now):
        if f.kind is ProbeLogKind.EXPIRED:
            return Verdict(
                Cause.UNKNOWN,
                explanation="The probe log says expired, the presented "
                "certificate is within its validity period: conflicting evidence.",
            )
        return None
    if f.kind in {ProbeLogKind.EXPIRED} | _VAGUE_LOGS:
        return Verdict(
            Cause.CERTIFICATE_EXPIRED,
            explanation=f"The presented certificate is outside its validity period "
            f"(not after {iso_z(leaf.not_after)}): renew it on the backend"
            + (", then allow-list the renewed leaf." if f.v1 else "."),
        )
    return None


def _alt_leaf(f: Facts) -> CertInfo | None:
    if f.alt_cap is None or f.alt_cap.error is not None:
        return None
    return f.alt_cap.leaf


def _v1_decide(f: Facts) -> Verdict:
    assert f.target is not None and f.unit.settings is not None
    if (expired := _expired(f)) is not None:
        return expired
    leaf = f.chain[0]
    trusted = _trusted(f.gw, f.unit.settings, f.chain)
    if f.kind is ProbeLogKind.CN_MISMATCH:
        host = f.target.sni or f.target.host_header
        if host and not matches_host(leaf, host):
            return Verdict(
                Cause.HOSTNAME_MISMATCH,
                explanation=f"The presented certificate does "
                f"not cover {host!r}; reissue it with that name or change the host.",
            )
        return Verdict(Cause.UNKNOWN, explanation="CN mismatch reported but not reproduced.")
    if f.kind not in {ProbeLogKind.NOT_ALLOWLISTED} | _VAGUE_LOGS:
        return Verdict(
            Cause.UNKNOWN,
            explanation=f"Probe log kind {f.kind.value} is not a v1 text "
            "the bot can pair with the evidence.",
        )
    if trusted is True:
        return Verdict(
            Cause.UNKNOWN,
            trust="compared",
            explanation="The presented certificate's "
            "public key matches a referenced authentication certificate: conflicting.",
        )
    if trusted is None and f.kind is not ProbeLogKind.NOT_ALLOWLISTED:
        return Verdict(
            Cause.UNKNOWN,
            explanation="Authentication certificate data is absent and "
            "the probe log does not say the certificate is not allow-listed.",
        )
    inferred = trusted is None
    fix = Fix(FixAction.ADD_AUTHENTICATION_CERTIFICATE, _fix_certificate(leaf))
    trust = "inferred_from_probe_log" if inferred else "compared"
    alt = _alt_leaf(f)
    if f.target.sni is None and alt is not None and alt.sha256 != leaf.sha256:
        return Verdict(
            Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI,
            fix,
            inferred=inferred,
            trust=trust,
            explanation=f"The gateway sends no SNI ({f.target.reason.rstrip('.')}); "
            f"without SNI the backend "
            f"presents its default certificate {leaf.sha1} ({leaf.subject}), which is not "
            f"allow-listed, while under SNI {f.alt_sni!r} it presents {alt.sha1}. v1 allow-lists "
            "the presented leaf's public key: upload the default certificate "
            "(docs/sources.md#backend-trust)." + _refs_note(f),
        )
    return Verdict(
        Cause.CERTIFICATE_NOT_ALLOWLISTED,
        fix,
        inferred=inferred,
        trust=trust,
        explanation=f"The presented certificate {leaf.sha1} ({leaf.subject}) is not allow-listed "
        "on these HTTP settings (e.g. the backend rotated it): upload it "
        "(docs/sources.md#backend-trust)." + _refs_note(f),
    )


_ROOT_ONLY = (
    "only a self-signed root certificate is valid as a trusted root: intermediates belong on the "
    "server (https://learn.microsoft.com/azure/application-gateway/"
    "certificates-for-backend-authentication)"
)


def _root_name(top: CertInfo) -> str:
    aki = top.authority_key_identifier
    return f"the root {top.issuer!r}" + (f" (authority key identifier {aki})" if aki else "")


def _v2_root_fix(f: Facts, chain: tuple[CertInfo, ...]) -> tuple[Fix, str]:
    """The trusted root to add: only ever a self-signed CA root. A non-CA self-signed leaf is
    never proposed (docs/sources.md#backend-trust), nor an intermediate (Learn, see _ROOT_ONLY).
    When the backend does not send its root, the root is looked up in the trusted source by name,
    key identifier and signature; if it is not there, the fix names the root and uploads nothing."""
    top = chain[-1]
    if is_root(top):
        return (
            Fix(FixAction.ADD_TRUSTED_ROOT_CERTIFICATE, _fix_certificate(top)),
            f"The presented chain ends in the self-signed root {top.sha1} ({top.subject}), which "
            "the HTTP settings do not reference: add it as a trusted root certificate.",
        )
    if top.self_signed:
        return (
            Fix(FixAction.NONE),
            f"The presented chain ends in {top.sha1} ({top.subject}), which is not a CA "
            "certificate; v2 cannot trust it as a root. Serve a certificate issued by a CA (with "
            "its chain).",
        )
    stops = (
        f"The backend does not send its root: the presented chain stops at {top.sha1} "
        f"({top.subject}), issued by {_root_name(top)}."
    )
    found = issuer_of(top, f.trusted_sources)
    if found is not None:
        return (
            Fix(FixAction.ADD_TRUSTED_ROOT_CERTIFICATE, _fix_certificate(found)),
            f"{stops} The trusted source holds that root, {found.sha1} ({found.subject}): "
            "self-signed, its subject key identifier matches and its signature on "
            f"{top.sha1} verifies. Add it as a trusted root certificate; {_ROOT_ONLY}.",
        )
    where = (
        "No certificate of the trusted source matches it"
        if f.trusted_sources
        else "No trusted source (Key Vault, TRUSTED_CERT_NAMES) holds it"
    )
    return (
        Fix(
            FixAction.NONE,
            required_root=RequiredRoot(top.issuer, top.authority_key_identifier, top.sha1),
        ),
        f"{stops} {where}: obtain that root and upload it as a trusted root certificate "
        f"(or put it in the trusted source). The bot uploads nothing, because {_ROOT_ONLY}.",
    )


def _not_root_refs(f: Facts) -> str:
    """A note on referenced trusted roots whose data shows they are not self-signed roots."""
    settings = f.unit.settings
    if settings is None:
        return ""
    bad = [
        r
        for r in refs(f.gw, settings, settings.trusted_root_certificate_ids)
        if r.info is not None and not is_root(r.info)
    ]
    if not bad:
        return ""
    names = ", ".join(f"{r.ref.name} ({r.info.sha1}, {r.info.subject})" for r in bad if r.info)
    return f" The settings reference {names}, which is not a self-signed root: {_ROOT_ONLY}."


def _refs_note(f: Facts) -> str:
    """Which allow-listed certificates the presented chain was compared with, by thumbprint."""
    settings = f.unit.settings
    if settings is None:
        return ""
    ids = settings.authentication_certificate_ids if f.v1 else settings.trusted_root_certificate_ids
    known = [r for r in refs(f.gw, settings, ids) if r.info is not None]
    if not known:
        return ""
    kind = "authentication certificates" if f.v1 else "trusted roots"
    listed = ", ".join(f"{r.ref.name} {r.info.sha1}" for r in known if r.info)
    return f" Compared with the referenced {kind}: {listed}."


def _complete_private_chain(chain: tuple[CertInfo, ...], settings: HttpSettings) -> bool:
    """Leaf first, each certificate issued by the next, ending in a self-signed CA root, and the
    settings reference trusted roots (so the well-known CA store is not the one in use)."""
    if len(chain) < 2 or not settings.trusted_root_certificate_ids or chain[0].is_ca:
        return False
    top = chain[-1]
    if not (top.self_signed and top.is_ca):
        return False
    return all(_signed_by(child, parent) for child, parent in pairwise(chain))


def _v2_sni_fix(f: Facts) -> Verdict | None:
    """The ilb-ase-v2-nosni case: no SNI gets the default certificate; under SNI a trusted one."""
    assert f.target is not None and f.unit.settings is not None
    alt = _alt_leaf(f)
    if f.target.sni is not None or f.alt_sni is None or alt is None or f.alt_cap is None:
        return None
    leaf = f.chain[0]
    if alt.sha256 == leaf.sha256:
        return None
    gw_trusted = _trusted(f.gw, f.unit.settings, f.chain)
    inferred = gw_trusted is None
    if gw_trusted is True or (inferred and f.kind not in _ROOT_LOGS | _CHAIN_LOGS):
        return None
    alt_trusted = _trusted(f.gw, f.unit.settings, f.alt_cap.chain)
    if alt_trusted is None and _complete_private_chain(f.alt_cap.chain, f.unit.settings):
        # The trusted-root data is absent (a Key Vault reference, an older API version), so the
        # roots cannot be compared; a complete, self-consistent chain to a self-signed CA root is
        # the best evidence left. Flagged as inferred; the apply flow verifies health afterwards.
        alt_trusted, inferred = True, True
    alt_ok = alt_trusted is True and matches_host(alt, f.alt_sni) and is_valid_at(alt, f.now)
    if alt_ok:
        fix = Fix(FixAction.SET_BACKEND_HOST_NAME, host_name=f.alt_sni)
        tail = (
            f"set the host name {f.alt_sni!r} so the gateway sends it as SNI "
            "(docs/sources.md#sni-rules)."
        )
    else:
        fix = Fix(FixAction.NONE)
        tail = (
            "the bot cannot show that this certificate is trusted by the settings, so it "
            "proposes nothing."
        )
    return Verdict(
        Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI,
        fix,
        inferred=inferred,
        trust="inferred_from_probe_log" if inferred else "compared",
        explanation=f"The gateway sends no SNI ({f.target.reason.rstrip('.')}); "
        f"without SNI the backend "
        f"presents its default certificate {leaf.sha1} ({leaf.subject}), not trusted by the "
        f"settings, while under SNI {f.alt_sni!r} it presents {alt.sha1}; " + tail,
    )


def _v2_decide(f: Facts) -> Verdict:
    assert f.target is not None and f.unit.settings is not None
    settings, chain = f.unit.settings, f.chain
    if f.kind is ProbeLogKind.NOT_ALLOWLISTED:
        return Verdict(Cause.UNKNOWN, explanation="A v1 probe text on a v2 gateway: conflicting.")
    if (seed := _v2_sni_fix(f)) is not None:
        return seed
    if f.kind is ProbeLogKind.LEAF_NOT_TOPMOST or _leaf_not_topmost(chain):
        return Verdict(
            Cause.INCOMPLETE_CHAIN,
            explanation="The leaf is not the first certificate "
            "presented: fix the chain order on the backend (docs/sources.md#backend-trust).",
        )
    leaf_self_signed_non_ca = chain[0].self_signed and not chain[0].is_ca
    if f.kind in {ProbeLogKind.INTERMEDIATE_MISSING, ProbeLogKind.LEAF_MISSING} and not (
        leaf_self_signed_non_ca
    ):
        return Verdict(
            Cause.INCOMPLETE_CHAIN,
            explanation="The backend does not send the "
            "intermediate certificates: configure the full chain (docs/sources.md#backend-trust).",
        )
    validate_sni = f.target.validate_sni
    sni = f.target.sni
    if f.kind is ProbeLogKind.CN_MISMATCH or (
        validate_sni and sni and not matches_host(chain[0], sni) and f.kind in _VAGUE_LOGS
    ):
        if sni and not matches_host(chain[0], sni):
            return Verdict(
                Cause.HOSTNAME_MISMATCH,
                explanation=f"The presented certificate does "
                f"not cover the SNI {sni!r} (docs/sources.md#sni-rules, RFC 6125).",
            )
        return Verdict(Cause.UNKNOWN, explanation="CN mismatch reported but not reproduced.")
    if (expired := _expired(f)) is not None:
        return expired
    trusted = _trusted(f.gw, settings, chain)
    if trusted is True:
        return Verdict(
            Cause.UNKNOWN,
            trust="compared",
            explanation="The presented chain ends at "
            "a referenced trusted root: the evidence does not explain the probe log.",
        )
    root_log = f.kind in _ROOT_LOGS or (
        leaf_self_signed_non_ca and f.kind is ProbeLogKind.INTERMEDIATE_MISSING
    )
    if trusted is False and f.kind in _VAGUE_LOGS | _ROOT_LOGS | _CHAIN_LOGS:
        if f.kind not in _ROOT_LOGS and _chain_incomplete(chain, f.gw, settings):
            return Verdict(
                Cause.INCOMPLETE_CHAIN,
                trust="compared",
                explanation="Only the leaf "
                "is presented and no referenced root issued it: send the full chain.",
            )
        fix, why = _v2_root_fix(f, chain)
        why += _not_root_refs(f) + _refs_note(f)
        return Verdict(Cause.TRUSTED_ROOT_MISMATCH, fix, why, trust="compared")
    if trusted is None and root_log:
        fix, why = _v2_root_fix(f, chain)
        return Verdict(
            Cause.TRUSTED_ROOT_MISMATCH, fix, why, inferred=True, trust="inferred_from_probe_log"
        )
    return Verdict(
        Cause.UNKNOWN,
        explanation=f"Probe log kind {f.kind.value} and the evidence do not point to one cause.",
    )
