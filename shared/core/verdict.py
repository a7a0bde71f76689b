"""One finding's verdict: the cause and fix the probe log and the TLS evidence agree on.

Pure. Precision beats coverage: a cause is named only when the probe log and the evidence agree;
otherwise the verdict is `unknown` and proposes nothing (issue 3). Rules cite
docs/sources.md (e.g. docs/sources.md#backend-trust).
"""

from __future__ import annotations

from itertools import pairwise

from shared.core.backend_units import is_https
from shared.core.certs import CertInfo, is_root, is_valid_at, matches_host, signed_by
from shared.core.chain import ChainStatus, build_chain
from shared.core.facts import CHAIN_LOGS as _CHAIN_LOGS
from shared.core.facts import NOT_CERT_LOGS as _NOT_CERT_LOGS
from shared.core.facts import ROOT_LOGS as _ROOT_LOGS
from shared.core.facts import UNREACHABLE_ERRORS as _UNREACHABLE_ERRORS
from shared.core.facts import UNREACHABLE_LOGS as _UNREACHABLE_LOGS
from shared.core.facts import VAGUE_LOGS as _VAGUE_LOGS
from shared.core.facts import Facts, Ref, Verdict, fix_certificate, refs
from shared.core.findings import Cause, Fix, FixAction
from shared.core.gateway import Gateway, Generation, HttpSettings
from shared.core.health import HealthState, ProbeLogKind
from shared.core.verdict_chain import (
    ROOT_ONLY,
    auth_cert_is_ca_verdict,
    dates_verdict,
    lone_leaf_verdict,
    not_root_verdict,
    v2_root_fix,
    well_known_sni_verdict,
    wrong_format_verdict,
)
from shared.core.verdict_tls import tls_verdict

__all__ = ["Facts", "Ref", "Verdict", "decide", "refs"]


# ---------------------------------------------------------------------------------------------
# Trust: what the settings reference, and whether a presented chain is trusted by it.


def _v1_trusted(leaf: CertInfo, refs: list[Ref]) -> bool | None:
    """v1 allow-lists by the leaf's public key (docs/sources.md#backend-trust). None: data absent,
    cannot tell."""
    if any(r.info and r.info.public_key_sha256 == leaf.public_key_sha256 for r in refs):
        return True
    if any(r.info is None for r in refs):
        return None
    return False


_signed_by = signed_by


def _v2_trusted(
    chain: tuple[CertInfo, ...], refs: list[Ref], well_known: tuple[CertInfo, ...] = ()
) -> bool | None:
    """The presented chain ends at a referenced root: the root's thumbprint is in the chain, or
    the root signed the chain's top certificate. Without trusted roots the well-known CA store
    decides (WELL_KNOWN_CA_BUNDLE). None: cannot tell."""
    if not refs:
        if not well_known:
            return None  # the well-known CA store is not known here
        return build_chain(chain, well_known=well_known).status is ChainStatus.TRUSTED
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


def _trusted(
    gw: Gateway,
    settings: HttpSettings,
    chain: tuple[CertInfo, ...],
    well_known: tuple[CertInfo, ...] = (),
) -> bool | None:
    if not chain:
        return None
    if gw.generation is Generation.V1:
        return _v1_trusted(chain[0], refs(gw, settings, settings.authentication_certificate_ids))
    roots = refs(gw, settings, settings.trusted_root_certificate_ids)
    return _v2_trusted(chain, roots, well_known)


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
    if is_https(unit.settings) and (tls := tls_verdict(f)) is not None:
        return tls
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


def _alt_leaf(f: Facts) -> CertInfo | None:
    if f.alt_cap is None or f.alt_cap.error is not None:
        return None
    return f.alt_cap.leaf


def _v1_decide(f: Facts) -> Verdict:
    assert f.target is not None and f.unit.settings is not None
    if (expired := dates_verdict(f)) is not None:
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
    if (wrong := wrong_format_verdict(f, trusted)) is not None:
        return wrong
    if trusted is None and f.kind is not ProbeLogKind.NOT_ALLOWLISTED:
        return Verdict(
            Cause.UNKNOWN,
            explanation="Authentication certificate data is absent and "
            "the probe log does not say the certificate is not allow-listed.",
        )
    inferred = trusted is None
    fix = Fix(FixAction.ADD_AUTHENTICATION_CERTIFICATE, fix_certificate(leaf))
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
    if (ca := auth_cert_is_ca_verdict(f, trusted)) is not None:
        return ca
    return Verdict(
        Cause.CERTIFICATE_NOT_ALLOWLISTED,
        fix,
        inferred=inferred,
        trust=trust,
        explanation=f"The presented certificate {leaf.sha1} ({leaf.subject}) is not allow-listed "
        "on these HTTP settings (e.g. the backend rotated it): upload it "
        "(docs/sources.md#backend-trust)." + _refs_note(f),
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
    return f" The settings reference {names}, which is not a self-signed root: {ROOT_ONLY}."


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
    gw_trusted = _trusted(f.gw, f.unit.settings, f.chain, f.well_known)
    inferred = gw_trusted is None
    if gw_trusted is True or (inferred and f.kind not in _ROOT_LOGS | _CHAIN_LOGS):
        return None
    alt_trusted = _trusted(f.gw, f.unit.settings, f.alt_cap.chain, f.well_known)
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


def _unvalidated_chain_verdict(f: Facts) -> Verdict:
    """v2 settings with validateCertChainAndExpiry false: the gateway checks neither the chain
    nor the dates (docs/sources.md#backend-trust), only the name when validateSNI is on. No
    certificate fix can help; a name the certificate does not cover still can be the cause."""
    assert f.target is not None
    sni = f.target.sni
    if f.target.validate_sni and sni and not matches_host(f.chain[0], sni):
        return Verdict(
            Cause.HOSTNAME_MISMATCH,
            explanation=f"The presented certificate does not cover the SNI {sni!r}, and "
            "validateSNI is on (docs/sources.md#sni-rules, RFC 6125).",
        )
    return Verdict(
        Cause.UNKNOWN,
        explanation="validateCertChainAndExpiry is false on these settings: the gateway checks "
        "neither the chain nor the dates of what the backend presents, so no certificate "
        "explains the probe log, and no trust change would help.",
    )


def _v2_decide(f: Facts) -> Verdict:
    assert f.target is not None and f.unit.settings is not None
    settings, chain = f.unit.settings, f.chain
    if f.kind is ProbeLogKind.NOT_ALLOWLISTED:
        return Verdict(Cause.UNKNOWN, explanation="A v1 probe text on a v2 gateway: conflicting.")
    if not f.target.validate_chain:
        return _unvalidated_chain_verdict(f)
    if (well_known := well_known_sni_verdict(f)) is not None:
        return well_known
    if (seed := _v2_sni_fix(f)) is not None:
        return seed
    if f.kind is ProbeLogKind.LEAF_NOT_TOPMOST or _leaf_not_topmost(chain):
        return Verdict(
            Cause.INCOMPLETE_CHAIN,
            explanation="The leaf is not the first certificate "
            "presented: fix the chain order on the backend (docs/sources.md#backend-trust).",
        )
    trusted = _trusted(f.gw, settings, chain, f.well_known)
    for rule in (
        lambda: wrong_format_verdict(f, trusted),
        lambda: not_root_verdict(f),
        lambda: lone_leaf_verdict(f),
    ):
        if (verdict := rule()) is not None:
            return verdict
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
    if (expired := dates_verdict(f)) is not None:
        return expired
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
        fix, why = v2_root_fix(f, chain)
        why += _not_root_refs(f) + _refs_note(f)
        return Verdict(Cause.TRUSTED_ROOT_MISMATCH, fix, why, trust="compared")
    if trusted is None and root_log:
        fix, why = v2_root_fix(f, chain)
        return Verdict(
            Cause.TRUSTED_ROOT_MISMATCH, fix, why, inferred=True, trust="inferred_from_probe_log"
        )
    return Verdict(
        Cause.UNKNOWN,
        explanation=f"Probe log kind {f.kind.value} and the evidence do not point to one cause.",
    )
