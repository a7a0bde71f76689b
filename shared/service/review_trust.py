"""Would the gateway trust this chain, and through which allow-listed certificate? Read from a
finding's JSON evidence, for the review page (pure: data in, verdicts out).

The diagnosis core decides with the certificates' DER; a stored proposal keeps the evidence as
JSON (thumbprints, names, key hashes), so this module applies the same rules to what that JSON
can show, through the predicates of `shared.core.certs`, and says "cannot tell" where it shows
too little (docs/sources.md#backend-trust):

- v1 allow-lists authentication certificates by the presented leaf's public key;
- v2: the diagnosis built each presented chain's path with the certificates themselves
  (evidence `gateway_chain` and `alternative_chain`, shared.core.chain), signatures and a root the
  backend did not send included; where the evidence has it, that path decides. Older evidence
  without it: the root's thumbprint must be in the presented chain (only a self-signed CA root
  anchors anything), and a chain whose top merely names a trusted root as its issuer is "cannot
  tell", not "trusted";
- v2 settings with no trusted root trust the well-known CA store, of which the bot holds no
  copy: trusted only when backend health itself says the server is healthy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.core.certs import CertInfo, is_root, same_public_key
from shared.core.findings import Cause
from shared.core.health import ProbeLogKind

TRUSTED = "trusted"
UNTRUSTED = "untrusted"
UNKNOWN = "unknown"

AUTH = "authentication certificate"
ROOT = "trusted root"
WELL_KNOWN = "well-known CA"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ChainTrust:
    """The verdict on one presented chain. `through` names the allow-listed certificate (or the
    well-known CA store) that makes it trusted; `anchor` is the sha1 of the chain's certificate
    that matched (to colour it); `reason` is one sentence for people."""

    verdict: str  # trusted | untrusted | unknown
    reason: str
    through: str | None = None
    through_kind: str | None = None
    anchor: str | None = None

    def headline(self) -> str:
        if self.verdict == TRUSTED:
            if self.through_kind == WELL_KNOWN:
                return "trusted through a well-known CA"
            return f"trusted through {self.through} ({self.through_kind})"
        if self.verdict == UNTRUSTED:
            return "not trusted"
        return "cannot tell"


def _info(cert: Mapping[str, Any]) -> CertInfo:
    """A CertInfo from evidence JSON: no DER, so only the non-signature predicates apply."""

    def text(key: str) -> str:
        value = cert.get(key)
        return str(value).upper() if key in _HEX and value else str(value or "")

    return CertInfo(
        der=b"",
        sha1=text("sha1"),
        sha256=text("sha256"),
        subject=text("subject"),
        issuer=text("issuer"),
        sans=tuple(str(s) for s in cert.get("sans") or ()),
        not_before=_EPOCH,
        not_after=_EPOCH,
        self_signed=bool(cert.get("self_signed")),
        is_ca=bool(cert.get("is_ca")),
        public_key_sha256=text("public_key_sha256"),
        common_name=cert.get("common_name"),
    )


_HEX = {"sha1", "sha256", "public_key_sha256"}


def generation(finding: Mapping[str, Any], action: str | None = None) -> str | None:
    """v1 or v2 from what the evidence shows: which allow-list the settings use, else the fix
    the proposal makes, else whether the gateway's handshake validates the chain (v2 only)."""
    ev = finding.get("evidence") if isinstance(finding.get("evidence"), Mapping) else {}
    allow = (ev or {}).get("allow_listed") or {}
    if allow.get("authentication_certificates"):
        return "v1"
    if allow.get("trusted_root_certificates"):
        return "v2"
    if action == "add_authentication_certificate":
        return "v1"
    if action == "add_trusted_root_certificate":
        return "v2"
    target = (ev or {}).get("target") or {}
    if target.get("validate_chain") is True:
        return "v2"
    return None


def chain_trust(
    chain: Sequence[Mapping[str, Any]],
    allow_listed: Mapping[str, Any],
    gen: str | None,
    *,
    healthy: bool = False,
    built: Mapping[str, Any] | None = None,
) -> ChainTrust:
    """The gateway's verdict on `chain` (leaf first) under these settings' allow-list.
    `healthy`: backend health says this chain's server is healthy (used only for the well-known
    CA store, when the diagnosis did not check it). `built`: the path the diagnosis built from
    this chain with the certificates themselves (evidence `gateway_chain` or
    `alternative_chain`); when given, it decides v2, signatures and all."""
    certs = [c for c in chain if isinstance(c, Mapping)]
    if not certs:
        return ChainTrust(UNKNOWN, "no certificate was presented")
    infos = [_info(c) for c in certs]
    if gen == "v1":
        return _v1(infos, allow_listed.get("authentication_certificates") or [])
    if gen == "v2" and built and built.get("path"):
        return _built(built, allow_listed.get("trusted_root_certificates") or [])
    if gen == "v2":
        return _v2(infos, allow_listed.get("trusted_root_certificates") or [], healthy)
    return ChainTrust(UNKNOWN, "the evidence does not say which allow-list applies")


def _v1(infos: list[CertInfo], refs: Sequence[Mapping[str, Any]]) -> ChainTrust:
    if not refs:
        return ChainTrust(UNKNOWN, "no authentication certificate is on these settings")
    leaf = infos[0]
    for ref in refs:
        if ref.get("data_known") and same_public_key(leaf, _info(ref)):
            return ChainTrust(
                TRUSTED,
                f"the leaf's public key is that of authentication certificate {ref.get('name')}",
                through=str(ref.get("name")),
                through_kind=AUTH,
                anchor=leaf.sha1,
            )
    if any(not ref.get("data_known") for ref in refs):
        return ChainTrust(
            UNKNOWN,
            "the data of an authentication certificate on these settings is not in the gateway "
            "document, so the leaf could not be compared with it",
        )
    return ChainTrust(
        UNTRUSTED,
        "the leaf's public key matches no authentication certificate on these settings",
    )


def _built(built: Mapping[str, Any], refs: Sequence[Mapping[str, Any]]) -> ChainTrust:
    """The verdict of the chain the diagnosis built (shared.core.chain's JSON)."""
    path = [p for p in built.get("path") or [] if isinstance(p, Mapping)]
    top = path[-1] if path else {}
    status = built.get("status")
    if status == "trusted":
        sha1 = str(top.get("sha1") or "").upper()
        if built.get("anchor_source") == "well_known":
            return ChainTrust(
                TRUSTED,
                f"the chain ends at {top.get('subject')}, a root of the well-known CA store",
                through="the well-known CA store",
                through_kind=WELL_KNOWN,
                anchor=sha1,
            )
        name = next(
            (r.get("name") for r in refs if str(r.get("sha1") or "").upper() == sha1),
            top.get("subject"),
        )
        sent = "" if top.get("presented") else " (not sent by the backend; the gateway holds it)"
        return ChainTrust(
            TRUSTED,
            f"the chain ends at {top.get('subject')}, trusted root {name}{sent}",
            through=str(name),
            through_kind=ROOT,
            anchor=sha1,
        )
    if status == "incomplete":
        why = (
            f"the chain stops at {top.get('subject')}: its issuer {built.get('missing_issuer')} "
            "was not sent, and the gateway does not fetch it"
        )
    elif status == "self_signed_leaf":
        why = "the chain ends at a self-signed leaf, which no trusted root anchors"
    else:
        why = f"the chain ends at {top.get('subject')}, which is no trusted root on these settings"
    return ChainTrust(UNTRUSTED, why)


def _v2(infos: list[CertInfo], refs: Sequence[Mapping[str, Any]], healthy: bool) -> ChainTrust:
    if not refs:
        if healthy:
            return ChainTrust(
                TRUSTED,
                "no trusted root is on these settings, so the gateway uses the well-known CA "
                "store, and backend health says the server is healthy",
                through="the well-known CA store",
                through_kind=WELL_KNOWN,
            )
        return ChainTrust(
            UNKNOWN,
            "no trusted root is on these settings: the gateway uses the well-known CA store, "
            "of which the bot holds no copy",
        )
    known = [(ref, _info(ref)) for ref in refs if ref.get("data_known")]
    top = infos[-1]
    for ref, root in known:
        # A root counts only as a self-signed CA (docs/sources.md#backend-trust); a trusted
        # root's evidence carries no flags, so the presented copy in the chain must show them.
        for cert in infos:
            if cert.sha256 == root.sha256 and is_root(cert):
                return ChainTrust(
                    TRUSTED,
                    f"the chain ends at {cert.subject}, trusted root {ref.get('name')}",
                    through=str(ref.get("name")),
                    through_kind=ROOT,
                    anchor=cert.sha1,
                )
    for ref, root in known:
        if not top.self_signed and top.issuer == root.subject:
            return ChainTrust(
                UNKNOWN,
                f"the chain's top certificate names trusted root {ref.get('name')} as its "
                "issuer, but the root is not in the chain, and its signature cannot be checked "
                "from the stored evidence",
            )
    if len(known) < len(refs):
        return ChainTrust(
            UNKNOWN,
            "the data of a trusted root on these settings is not in the gateway document",
        )
    if top.self_signed and not top.is_ca:
        why = "the chain ends at a self-signed leaf, which no trusted root anchors"
    else:
        why = f"the chain ends at {top.subject}, which is no trusted root on these settings"
    return ChainTrust(UNTRUSTED, why)


# ---- the probe log and the cause ---------------------------------------------------------------

# What each probe-log class means, in the words of backend health
# (docs/sources.md#probe-log-texts).
PROBE_LOG_MEANING = {
    ProbeLogKind.SUCCESS: "the probe succeeded",
    ProbeLogKind.NOT_ALLOWLISTED: "the presented certificate is not on the gateway's allow-list",
    ProbeLogKind.CN_MISMATCH: "the certificate's name does not match the host name",
    ProbeLogKind.EXPIRED: "the certificate has expired",
    ProbeLogKind.INVALID_CERTIFICATE: "the certificate or its CA is invalid",
    ProbeLogKind.INTERMEDIATE_MISSING: "the chain lacks its intermediate certificate",
    ProbeLogKind.LEAF_MISSING: "the chain lacks the leaf certificate",
    ProbeLogKind.LEAF_NOT_TOPMOST: "the leaf is not the first certificate of the chain",
    ProbeLogKind.NOT_WELL_KNOWN_CA: "the chain's root is not a well-known CA",
    ProbeLogKind.ROOT_MISMATCH: "the chain's root does not match the trusted root",
    ProbeLogKind.VERIFICATION_FAILED: "certificate verification failed",
    ProbeLogKind.TIMEOUT: "the backend did not answer in time",
    ProbeLogKind.CONNECTION_FAILED: "the connection failed",
    ProbeLogKind.PROBE_NOT_CREATED: "no probe could be created (name resolution)",
    ProbeLogKind.STATUS_MISMATCH: "the HTTP status did not match",
    ProbeLogKind.BODY_MISMATCH: "the response body did not match",
    ProbeLogKind.PROXY_PROTOCOL: "a proxy-protocol problem",
    ProbeLogKind.HEALTH_UNKNOWN: "health could not be retrieved (NSG, UDR, DNS or CRL)",
    ProbeLogKind.EMPTY: "no message",
    ProbeLogKind.OTHER: "a message the bot does not classify",
}

CAUSE_MEANING = {
    Cause.HEALTHY: "healthy",
    Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI: "without SNI the backend presents its default "
    "certificate, not the one the gateway allow-lists",
    Cause.CERTIFICATE_NOT_ALLOWLISTED: "the presented certificate is not allow-listed",
    Cause.TRUSTED_ROOT_MISMATCH: "the chain ends at another root than the trusted one",
    Cause.HOSTNAME_MISMATCH: "the certificate does not name the host the gateway checks",
    Cause.CERTIFICATE_EXPIRED: "the presented certificate has expired",
    Cause.INCOMPLETE_CHAIN: "the backend sends an incomplete chain",
    Cause.BACKEND_UNREACHABLE: "the backend cannot be reached",
    Cause.NOT_CERTIFICATE_RELATED: "the failure is not about certificates",
    Cause.UNKNOWN: "the probe log and the evidence do not agree on a cause",
}


def probe_log_link(finding: Mapping[str, Any]) -> str | None:
    """One sentence connecting backend health's message to the bot's cause; None without a
    probe log."""
    log_text = finding.get("probe_log")
    if not log_text:
        return None
    ev = finding.get("evidence") if isinstance(finding.get("evidence"), Mapping) else {}
    kind = str((ev or {}).get("probe_log_kind") or "")
    cause = str(finding.get("cause") or "")
    meaning = PROBE_LOG_MEANING.get(ProbeLogKind(kind)) if kind in _KINDS else None
    cause_meaning = CAUSE_MEANING.get(Cause(cause)) if cause in _CAUSES else None
    read = f"the bot reads it as {kind}" + (f" ({meaning})" if meaning else "")
    inferred = bool(finding.get("inferred_from_probe_log"))
    basis = (
        "from this message alone (the allow-listed data could not be compared)"
        if inferred
        else "from this message and the chains below"
    )
    return f"Backend health says {str(log_text)!r}: {read}; {basis} it names the cause {cause}" + (
        f": {cause_meaning}." if cause_meaning else "."
    )


_KINDS = {k.value for k in ProbeLogKind}
_CAUSES = {c.value for c in Cause}
