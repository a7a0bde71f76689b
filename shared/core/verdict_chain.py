"""Chain causes: the chain as the gateway builds it (shared.core.chain) against the probe log.

Pure. Out-of-date certificates anywhere on the path (naming which), a lone leaf (an incomplete
chain, whatever the log says), a trusted root that is not a root, an upload in the wrong format,
a v1 authentication certificate that is a CA, and a well-known-CA backend reached without SNI.
The only certificate ever proposed as a v2 trusted root is a self-signed CA root: presented by the
backend, or found in the trusted source; otherwise the root is named and nothing is uploaded.
"""

from __future__ import annotations

from shared.core.certs import CertInfo, is_root, iso_z, issuer_of, matches_host, signed_by
from shared.core.chain import (
    AnchorSource,
    ChainCert,
    ChainStatus,
    Role,
    Validity,
    build_chain,
    describe,
    validity,
)
from shared.core.facts import (
    CHAIN_LOGS,
    ROOT_LOGS,
    VAGUE_LOGS,
    Facts,
    Ref,
    Verdict,
    fix_certificate,
    refs,
)
from shared.core.findings import Cause, Fix, FixAction, RequiredRoot
from shared.core.health import ProbeLogKind
from shared.core.upload_format import UploadFormat, describe_format, upload_format

CERT_LOGS = VAGUE_LOGS | ROOT_LOGS | CHAIN_LOGS

ROOT_ONLY = (
    "only a self-signed root certificate is valid as a trusted root: intermediates belong on the "
    "server (https://learn.microsoft.com/azure/application-gateway/"
    "certificates-for-backend-authentication)"
)


def root_name(top: CertInfo) -> str:
    aki = top.authority_key_identifier
    return f"the root {top.issuer!r}" + (f" (authority key identifier {aki})" if aki else "")


def v2_root_fix(f: Facts, chain: tuple[CertInfo, ...]) -> tuple[Fix, str]:
    """The trusted root to add: only ever a self-signed CA root. A non-CA self-signed leaf is
    never proposed (docs/sources.md#backend-trust), nor an intermediate (Learn, see ROOT_ONLY).
    When the backend does not send its root, the root is looked up in the trusted source by name,
    key identifier and signature; if it is not there, the fix names the root and uploads nothing."""
    top = chain[-1]
    if is_root(top):
        return (
            Fix(FixAction.ADD_TRUSTED_ROOT_CERTIFICATE, fix_certificate(top)),
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
        f"({top.subject}), issued by {root_name(top)}."
    )
    found = issuer_of(top, f.trusted_sources)
    if found is not None:
        return (
            Fix(FixAction.ADD_TRUSTED_ROOT_CERTIFICATE, fix_certificate(found)),
            f"{stops} The trusted source holds that root, {found.sha1} ({found.subject}): "
            "self-signed, its subject key identifier matches and its signature on "
            f"{top.sha1} verifies. Add it as a trusted root certificate; {ROOT_ONLY}.",
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
        f"(or put it in the trusted source). The bot uploads nothing, because {ROOT_ONLY}.",
    )


# ---- dates ----


def dates_verdict(f: Facts) -> Verdict | None:
    """An out-of-date certificate on the path: v1 checks the leaf, v2 the whole path, its anchor
    included ("The solution depends on which part of the certificate chain has expired", Learn's
    backend-health troubleshooting page). The first one from the leaf is named."""
    if f.v1:
        state = validity(f.chain[0], f.now)
        gc = build_chain(f.chain[:1])
        bad: list[tuple[ChainCert, Validity]] = []
        if state is not Validity.VALID:
            bad.append((gc.path[0], state))
    else:
        bad = list(f.gateway_chain().out_of_date(f.now))
    if not bad:
        if f.kind is ProbeLogKind.EXPIRED:
            return Verdict(
                Cause.UNKNOWN,
                explanation="The probe log says expired, every certificate of the presented "
                "chain is within its validity period: conflicting evidence.",
            )
        return None
    if f.kind not in {ProbeLogKind.EXPIRED} | VAGUE_LOGS:
        return None
    link, state = bad[0]
    cert = link.cert
    if state is Validity.NOT_YET_VALID:
        return Verdict(
            Cause.CERTIFICATE_NOT_YET_VALID,
            explanation=f"{_upper_first(describe(link))} is not valid before "
            f"{iso_z(cert.not_before)}: the backend serves a certificate before its start date. "
            "Serve a certificate valid now (or wait for its start date, and check the issuing "
            "system's clock).",
            trust="compared",
        )
    if link.role is Role.LEAF:
        return Verdict(
            Cause.CERTIFICATE_EXPIRED,
            explanation=f"The presented certificate {cert.sha1} ({cert.subject}) is outside its "
            f"validity period (not after {iso_z(cert.not_after)}): renew it on the backend"
            + (", then allow-list the renewed leaf." if f.v1 else "."),
            trust="compared",
        )
    if not link.presented:
        what = (
            f"The trusted root {cert.subject} ({cert.sha1}) that anchors the chain expired on "
            f"{iso_z(cert.not_after)}: reissue the backend certificate from a current root and "
            "add that root as a trusted root certificate."
        )
    else:
        what = (
            f"{_upper_first(describe(link))} presented by the backend expired on "
            f"{iso_z(cert.not_after)}, while the leaf is valid: install the issuing CA's current "
            f"{link.role.value} certificate on the backend (the leaf can stay)."
        )
    return Verdict(Cause.CERTIFICATE_EXPIRED, explanation=what, trust="compared")


# ---- uploads ----


def wrong_format_refs(f: Facts) -> list[tuple[Ref, UploadFormat]]:
    settings = f.unit.settings
    if settings is None:
        return []
    ids = settings.authentication_certificate_ids if f.v1 else settings.trusted_root_certificate_ids
    out: list[tuple[Ref, UploadFormat]] = []
    for r in refs(f.gw, settings, ids):
        if r.ref.data:
            fmt = upload_format(r.ref.data)
            if fmt is not UploadFormat.CER:
                out.append((r, fmt))
    return out


def wrong_format_verdict(f: Facts, trusted: bool | None) -> Verdict | None:
    """A referenced certificate whose data is not one certificate ("Invalid data in .cer",
    MicrosoftDocs/azure-docs#69393): the fix is the right certificate, as one Base-64 .cer."""
    bad = wrong_format_refs(f)
    if not bad or trusted is True:
        return None
    if f.kind not in CERT_LOGS | {ProbeLogKind.NOT_ALLOWLISTED}:
        return None
    names = "; ".join(f"{r.ref.name} holds {describe_format(fmt)}" for r, fmt in bad)
    head = (
        f"The uploaded certificate data is not one Base-64 X.509 (.cer) certificate: {names}. "
        "Azure expects exactly one certificate per upload (docs/sources.md#certificate-formats)."
    )
    if f.v1:
        leaf = f.chain[0]
        return Verdict(
            Cause.UPLOAD_WRONG_FORMAT,
            Fix(FixAction.ADD_AUTHENTICATION_CERTIFICATE, fix_certificate(leaf)),
            f"{head} v1 allow-lists the backend's own certificate: upload the presented leaf "
            f"{leaf.sha1} ({leaf.subject}) as a .cer.",
            trust="compared",
        )
    gc = f.gateway_chain()
    fix, why = v2_root_fix(f, gc.certs or f.chain)
    return Verdict(Cause.UPLOAD_WRONG_FORMAT, fix, f"{head} {why}", trust="compared")


def auth_cert_is_ca_verdict(f: Facts, trusted: bool | None) -> Verdict | None:
    """v1: an authentication certificate that is a CA. v1 matches "the public key of backend
    server certificate and not the root certificate" (docs/sources.md#backend-trust)."""
    settings = f.unit.settings
    if settings is None or trusted is True:
        return None
    cas = [
        r
        for r in refs(f.gw, settings, settings.authentication_certificate_ids)
        if r.info is not None and r.info.is_ca
    ]
    if not cas:
        return None
    leaf = f.chain[0]
    listed = ", ".join(f"{r.ref.name} ({r.info.sha1}, {r.info.subject})" for r in cas if r.info)
    related = any(
        r.info is not None
        and (any(c.sha256 == r.info.sha256 for c in f.chain) or signed_by(f.chain[-1], r.info))
        for r in cas
    )
    return Verdict(
        Cause.AUTH_CERT_IS_CA,
        Fix(FixAction.ADD_AUTHENTICATION_CERTIFICATE, fix_certificate(leaf)),
        f"The settings allow-list {listed}: a CA certificate"
        + (", of the backend's own chain" if related else "")
        + ". v1 matches the public key of the backend's own certificate, not its CA "
        f"(docs/sources.md#backend-trust): upload the presented leaf {leaf.sha1} ({leaf.subject}).",
        trust="compared",
    )


# ---- roots ----


def not_root_verdict(f: Facts) -> Verdict | None:
    """v2: a referenced trusted root that is not a self-signed root (an intermediate or a leaf
    uploaded as the root). The fix is the real root; never the uploaded intermediate."""
    settings = f.unit.settings
    if settings is None or f.kind not in CERT_LOGS:
        return None
    listed = refs(f.gw, settings, settings.trusted_root_certificate_ids)
    bad = [r.info for r in listed if r.info is not None and not is_root(r.info)]
    gc = f.gateway_chain()
    if not bad or gc.status is ChainStatus.TRUSTED:
        return None
    chain = gc.certs
    # A lone leaf issued by the uploaded intermediate: the real root is that intermediate's issuer.
    issuer = next((b for b in bad if b.is_ca and signed_by(chain[-1], b)), None)
    if issuer is not None and not chain[-1].self_signed:
        chain = (*chain, issuer)
    fix, why = v2_root_fix(f, chain)
    if len(gc.path) == 1 and not gc.path[0].cert.self_signed:
        why += (
            " The backend also sends only its leaf: configure its intermediate on the backend "
            "(the gateway does not fetch missing certificates)."
        )
    names = ", ".join(
        f"{r.ref.name} ({r.info.sha1}, {r.info.subject}, "
        f"{'a CA' if r.info.is_ca else 'not a CA'}, not self-signed)"
        for r in listed
        if r.info is not None and not is_root(r.info)
    )
    return Verdict(
        Cause.TRUSTED_ROOT_NOT_ROOT,
        fix,
        f"The settings reference {names} as a trusted root: {ROOT_ONLY}, so it anchors nothing. "
        + why,
        trust="compared",
    )


def lone_leaf_verdict(f: Facts) -> Verdict | None:
    """v2: the backend sends only its leaf and nothing anchors it. From a lone leaf the bot cannot
    tell whether its issuer is a root: an incomplete chain, whatever the log says, unless the
    trusted source holds a self-signed root that signed the leaf itself."""
    gc = f.gateway_chain()
    if gc.status is not ChainStatus.INCOMPLETE or len(gc.path) != 1 or f.kind not in CERT_LOGS:
        return None
    leaf = gc.path[0].cert
    root = issuer_of(leaf, f.trusted_sources)
    if root is not None:
        return Verdict(
            Cause.TRUSTED_ROOT_MISMATCH,
            Fix(FixAction.ADD_TRUSTED_ROOT_CERTIFICATE, fix_certificate(root)),
            f"The backend sends only its leaf {leaf.sha1}; the trusted source holds the "
            f"self-signed root {root.sha1} ({root.subject}) that signed it directly: add it as a "
            "trusted root certificate.",
            trust="compared",
        )
    inter = next(
        (c for c in f.trusted_sources if c.is_ca and not c.self_signed and signed_by(leaf, c)),
        None,
    )
    hint = (
        f" The trusted source holds that intermediate, {inter.sha1} ({inter.subject}): install "
        "it on the backend, not on the gateway."
        if inter is not None
        else ""
    )
    return Verdict(
        Cause.INCOMPLETE_CHAIN,
        explanation=f"The backend sends only its leaf {leaf.sha1} ({leaf.subject}); its issuer "
        f"{leaf.issuer!r} is not sent, and the gateway does not fetch missing certificates. From "
        "a lone leaf the bot cannot tell whether that issuer is a root, so it proposes none: "
        "configure the full chain (leaf, then intermediates) on the backend, then diagnose "
        "again (docs/sources.md#backend-trust)." + hint,
        trust="compared",
    )


# ---- well-known CAs ----


def well_known_sni_verdict(f: Facts) -> Verdict | None:
    """v2 with the well-known CA store (no trusted roots) and no SNI: under the host name the
    backend presents a chain to a well-known root (the ASE v3 default domain,
    docs/sources.md#well-known-ca). The fix is the host name, never trusting the default
    certificate."""
    settings, target, alt = f.unit.settings, f.target, f.alt_cap
    if settings is None or target is None or settings.trusted_root_certificate_ids:
        return None
    if not f.well_known or target.sni is not None or f.alt_sni is None:
        return None
    if alt is None or alt.error is not None or not alt.chain:
        return None
    if f.kind not in CERT_LOGS | {ProbeLogKind.CN_MISMATCH}:
        return None
    gc = f.gateway_chain(alt.chain)
    leaf = alt.chain[0]
    if gc.status is not ChainStatus.TRUSTED or gc.anchor_source is not AnchorSource.WELL_KNOWN:
        return None
    if not matches_host(leaf, f.alt_sni) or gc.out_of_date(f.now):
        return None
    anchor = gc.anchor
    assert anchor is not None
    shown = f.chain[0] if f.chain else None
    default = (
        f"without SNI the backend presents {shown.sha1} ({shown.subject})"
        if shown is not None
        else "without SNI the backend presents no certificate the bot could capture"
    )
    return Verdict(
        Cause.WELL_KNOWN_CA_NEEDS_SNI,
        Fix(FixAction.SET_BACKEND_HOST_NAME, host_name=f.alt_sni),
        f"The settings use the well-known CA store (no trusted root), so a backend chaining to a "
        f"well-known CA needs no trusted root. The gateway sends no SNI "
        f"({target.reason.rstrip('.')}); {default}. Under SNI {f.alt_sni!r} it presents "
        f"{leaf.sha1} ({leaf.subject}), which chains to the well-known root {anchor.subject}: set "
        "the host name (or pick it from the backend when the pool holds the FQDN) so the "
        "gateway sends it as SNI. Trusting the default certificate instead is never the fix.",
        trust="compared",
    )


__all__ = [
    "CERT_LOGS",
    "ROOT_ONLY",
    "auth_cert_is_ca_verdict",
    "dates_verdict",
    "lone_leaf_verdict",
    "not_root_verdict",
    "root_name",
    "v2_root_fix",
    "well_known_sni_verdict",
    "wrong_format_refs",
    "wrong_format_verdict",
]


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]
