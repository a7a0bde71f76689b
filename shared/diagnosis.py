"""The diagnosis: a pure function over the gateway, its backend health and TLS evidence.

No I/O and no clock reads here: the captures and `now` are passed in. Precision beats coverage: a
cause is named only when the probe log and the evidence agree; otherwise the finding says `unknown`
and proposes nothing (issue 3). Rules cite ../shared/reference/appgw-backend-tls.md (§n) and
peers.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from itertools import pairwise
from typing import Any

from cryptography import x509

from shared.certs import (
    CertInfo,
    cert_info,
    der_from_arm_data,
    evidence,
    is_valid_at,
    iso_z,
    matches_host,
    to_arm_data,
    to_pem,
)
from shared.gateway import BackendAddress, CertificateRef, Gateway, Generation, HttpSettings, Pool
from shared.health import HealthState, ProbeLogKind, ServerHealth, classify_probe_log
from shared.ids import last_segment
from shared.tls_probe import ProbeErrorKind, TlsCapture, is_ip_literal
from shared.tls_target import TlsTarget, alternate_sni, gateway_target


class Cause(StrEnum):
    HEALTHY = "healthy"
    DEFAULT_CERTIFICATE_WITHOUT_SNI = "default_certificate_without_sni"
    CERTIFICATE_NOT_ALLOWLISTED = "certificate_not_allowlisted"
    TRUSTED_ROOT_MISMATCH = "trusted_root_mismatch"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    CERTIFICATE_EXPIRED = "certificate_expired"
    INCOMPLETE_CHAIN = "incomplete_chain"
    BACKEND_UNREACHABLE = "backend_unreachable"
    NOT_CERTIFICATE_RELATED = "not_certificate_related"
    UNKNOWN = "unknown"


class FixAction(StrEnum):
    ADD_AUTHENTICATION_CERTIFICATE = "add_authentication_certificate"
    ADD_TRUSTED_ROOT_CERTIFICATE = "add_trusted_root_certificate"
    SET_BACKEND_HOST_NAME = "set_backend_host_name"
    NONE = "none"


@dataclass(frozen=True)
class FixCertificate:
    sha1: str
    sha256: str
    cer: str  # PEM text ("Base-64 encoded X.509 .CER")
    der_b64: str  # base64 of the DER: what ARM's `data` takes
    subject: str
    not_after: str  # ISO 8601


@dataclass(frozen=True)
class Fix:
    action: FixAction
    certificate: FixCertificate | None = None
    settings: tuple[str, ...] = ()  # names of every HTTP settings the same fix repairs
    host_name: str | None = None  # for set_backend_host_name


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
    # True when the verdict rests on the probe log because Azure hides certificate data.
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


ProbeRequest = tuple[str, int, str | None]

# Reference §0.1 / peers.md §0.2.
V1_RETIREMENT_WARNING = (
    "Application Gateway v1 (Standard/WAF) was retired on 2026-04-28: Microsoft stops and deletes "
    "remaining v1 gateways; migrate to v2 (Standard_v2/WAF_v2)."
)
INFERRED_WARNING = (
    "Azure hides authentication certificate data: verdict inferred from the probe log"
)
ROOT_INFERRED_WARNING = (
    "Azure hides trusted root certificate data: verdict inferred from the probe log and the "
    "presented chains, not compared with the referenced roots"
)
# Seed article alternatives (reference §3, peers.md §0.1), in the article's order of preference.
ALT_FQDN = (
    "Put the backend's FQDN (resolved by private DNS to the same address) in the backend pool "
    "instead of the IP, so the gateway sends SNI and the backend presents the app certificate."
)
ALT_WILDCARD = (
    "Use a wildcard certificate on the ILB (default certificate) and on the apps, so the same "
    "certificate is presented with or without SNI."
)
ALT_USE_FOR_APP_SERVICE = (
    'Clear "Use for App service" (pickHostNameFromBackendAddress) on these HTTP settings: the '
    "pool holds the ILB IP, so the host name picked from it is the IP."
)

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
# Units of work: one per (pool, settings, server).


@dataclass(frozen=True)
class _Unit:
    pool: Pool | None
    settings: HttpSettings | None
    pool_name: str
    settings_name: str
    server: str
    health: HealthState
    probe_log: str | None
    member: BackendAddress | None  # set only when the server is one of the pool's own members


def _member(pool: Pool | None, address: str) -> BackendAddress | None:
    if pool is None:
        return None
    wanted = address.strip().lower()
    for member in pool.addresses:
        if member.value.strip().lower() == wanted:
            return member
    return None


def _units(gw: Gateway, health: Sequence[ServerHealth]) -> list[_Unit]:
    units: list[_Unit] = []
    seen: set[tuple[str, str, str]] = set()
    for sh in health:
        pool, settings = gw.pool_by_id(sh.pool_id), gw.settings_by_id(sh.settings_id)
        key = (sh.pool_id.lower(), sh.settings_id.lower(), sh.address.lower())
        if key in seen:
            continue
        seen.add(key)
        units.append(
            _Unit(
                pool,
                settings,
                pool.name if pool else last_segment(sh.pool_id),
                settings.name if settings else last_segment(sh.settings_id),
                sh.address,
                sh.health,
                sh.probe_log,
                _member(pool, sh.address),
            )
        )
    # Routed members the health result did not mention still get a finding (health unknown).
    for pool_id, settings_id in gw.routes:
        pool, settings = gw.pool_by_id(pool_id), gw.settings_by_id(settings_id)
        if pool is None or settings is None:
            continue
        for member in pool.addresses:
            key = (pool.id.lower(), settings.id.lower(), member.value.lower())
            if not member.value or key in seen:
                continue
            seen.add(key)
            units.append(
                _Unit(
                    pool,
                    settings,
                    pool.name,
                    settings.name,
                    member.value,
                    HealthState.UNKNOWN,
                    None,
                    member,
                )
            )
    return units


def _is_https(settings: HttpSettings | None) -> bool:
    return settings is not None and (settings.protocol or "").lower() == "https"


RouteHosts = Mapping[tuple[str, str], tuple[str, ...]]


def _view(obj: object) -> Mapping[str, Any]:
    """A child resource's fields: ARM nests them under `properties`, the CLI form flattens them."""
    if not isinstance(obj, Mapping):
        return {}
    props = obj.get("properties")
    return {**obj, **props} if isinstance(props, Mapping) else obj


def _ref(obj: object) -> str | None:
    rid = obj.get("id") if isinstance(obj, Mapping) else None
    return rid.lower().rstrip("/") if isinstance(rid, str) else None


def _items(view: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = view.get(key)
    return [_view(v) for v in value] if isinstance(value, list) else []


def route_hosts(doc: Mapping[str, Any]) -> dict[tuple[str, str], tuple[str, ...]]:
    """Listener host names per routed (pool id, settings id), ids lower-case.

    On v2 "the application gateway uses the incoming request's host header as the SNI" for real
    traffic (reference §2.3), so a listener's host name is the natural name to try when the probe
    sends no SNI (the ilb-ase-v2-nosni case). Never raises: odd documents give fewer names.
    """
    view = _view(doc)
    listeners = {_ref(v): v for v in _items(view, "httpListeners")}
    path_maps = {_ref(v): v for v in _items(view, "urlPathMaps")}
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for rule in _items(view, "requestRoutingRules"):
        listener = listeners.get(_ref(rule.get("httpListener"))) or {}
        extra = listener.get("hostNames")
        names = [listener.get("hostName"), *(extra if isinstance(extra, list) else [])]
        hosts = [n.strip().rstrip(".") for n in names if isinstance(n, str) and n.strip()]
        pairs = [(rule.get("backendAddressPool"), rule.get("backendHttpSettings"))]
        path_map = path_maps.get(_ref(rule.get("urlPathMap")))
        if path_map is not None:
            pairs.append(
                (
                    path_map.get("defaultBackendAddressPool"),
                    path_map.get("defaultBackendHttpSettings"),
                )
            )
            pairs += [
                (pr.get("backendAddressPool"), pr.get("backendHttpSettings"))
                for pr in _items(path_map, "pathRules")
            ]
        for pool_ref, settings_ref in pairs:
            key = (_ref(pool_ref), _ref(settings_ref))
            if key[0] and key[1]:
                out[(key[0], key[1])] += [h for h in hosts if h not in out[(key[0], key[1])]]
    return {k: tuple(v) for k, v in out.items()}


def _usable_name(name: str) -> bool:
    return bool(name) and "*" not in name and not is_ip_literal(name)


def _targets(
    gw: Gateway, unit: _Unit, hosts: RouteHosts | None = None
) -> tuple[TlsTarget, str | None] | None:
    """The gateway's own handshake and the alternative SNI, for pool members over HTTPS only."""
    if unit.member is None or unit.pool is None or unit.settings is None:
        return None  # security rule: never probe an address that is not in the gateway's pools
    if not _is_https(unit.settings):
        return None
    target = gateway_target(gw, unit.settings, unit.member)
    alt = alternate_sni(gw, unit.settings, unit.member)
    if alt is None and target.sni is None and hosts:
        key = (unit.pool.id.lower().rstrip("/"), unit.settings.id.lower().rstrip("/"))
        alt = next((h for h in hosts.get(key, ()) if _usable_name(h)), None)
    return target, alt


def probe_requests(
    gw: Gateway, health: Sequence[ServerHealth], *, hosts: RouteHosts | None = None
) -> list[ProbeRequest]:
    """Every handshake worth capturing: the gateway's own way and the alternative, deduplicated.

    `hosts` (from `route_hosts(doc)`) adds listener host names as alternative SNI names.
    """
    requests: dict[ProbeRequest, None] = {}
    for unit in _units(gw, health):
        found = _targets(gw, unit, hosts)
        if found is None:
            continue
        target, alt = found
        requests[(target.address, target.port, target.sni)] = None
        if alt != target.sni:
            requests[(target.address, target.port, alt)] = None
    return list(requests)


# ---------------------------------------------------------------------------------------------
# Trust: what the settings reference, and whether a presented chain is trusted by it.


@dataclass(frozen=True)
class _Ref:
    ref: CertificateRef
    info: CertInfo | None  # None when Azure hid the data (the usual case on GET, reference §3)


def _refs(gw: Gateway, settings: HttpSettings, ids: tuple[str, ...]) -> list[_Ref]:
    refs: list[_Ref] = []
    for rid in ids:
        ref = gw.certificate_by_id(rid)
        if ref is None:
            ref = CertificateRef(id=rid, name=last_segment(rid), data=None)
        refs.append(_Ref(ref, _decode(ref.data)))
    return refs


def _decode(data: str | None) -> CertInfo | None:
    if not data:
        return None
    try:
        return cert_info(der_from_arm_data(data))
    except Exception:  # noqa: BLE001 - unreadable stored data counts as hidden data
        return None


def _v1_trusted(leaf: CertInfo, refs: list[_Ref]) -> bool | None:
    """v1 allow-lists by the leaf's public key (reference §3). None: data hidden, cannot tell."""
    if any(r.info and r.info.public_key_sha256 == leaf.public_key_sha256 for r in refs):
        return True
    if any(r.info is None for r in refs):
        return None
    return False


def _signed_by(child: CertInfo, issuer: CertInfo) -> bool:
    if child.issuer != issuer.subject:
        return False
    try:
        cert = x509.load_der_x509_certificate(child.der)
        cert.verify_directly_issued_by(x509.load_der_x509_certificate(issuer.der))
    except Exception:  # noqa: BLE001 - any verification failure means "not issued by"
        return False
    return True


def _v2_trusted(chain: tuple[CertInfo, ...], refs: list[_Ref]) -> bool | None:
    """The presented chain ends at a referenced root (reference §3). None: cannot tell."""
    if not refs:
        return None  # well-known CA store: the bot holds no copy of it
    known = [r.info for r in refs if r.info is not None]
    top = chain[-1]
    for root in known:
        if not root.is_ca:
            continue  # a non-CA certificate never anchors a chain (reference §3, §8.3)
        if any(c.sha256 == root.sha256 for c in chain) or _signed_by(top, root):
            return True
    if len(known) < len(refs):
        return None
    return False


def _trusted(gw: Gateway, settings: HttpSettings, chain: tuple[CertInfo, ...]) -> bool | None:
    if not chain:
        return None
    if gw.generation is Generation.V1:
        return _v1_trusted(chain[0], _refs(gw, settings, settings.authentication_certificate_ids))
    return _v2_trusted(chain, _refs(gw, settings, settings.trusted_root_certificate_ids))


def _leaf_not_topmost(chain: tuple[CertInfo, ...]) -> bool:
    return len(chain) > 1 and chain[0].is_ca and any(not c.is_ca for c in chain[1:])


def _chain_incomplete(chain: tuple[CertInfo, ...], gw: Gateway, settings: HttpSettings) -> bool:
    """v2: the chain stops below a root and no referenced root with data issued its top."""
    top = chain[-1]
    if top.self_signed:
        return False
    known = [r.info for r in _refs(gw, settings, settings.trusted_root_certificate_ids) if r.info]
    return not any(_signed_by(top, root) for root in known) and len(chain) == 1


# ---------------------------------------------------------------------------------------------
# One finding.


@dataclass
class _Verdict:
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


def _capture_json(cap: TlsCapture | None) -> dict[str, Any] | None:
    if cap is None:
        return None
    return {
        "address": cap.address,
        "port": cap.port,
        "sni": cap.sni,
        "error": cap.error.value if cap.error else None,
        "detail": cap.detail,
        "chain": [evidence(c) for c in cap.chain],
    }


def _ref_json(r: _Ref) -> dict[str, Any]:
    out: dict[str, Any] = {"name": r.ref.name, "id": r.ref.id, "data_known": r.info is not None}
    if r.info is not None:
        out |= {
            "sha1": r.info.sha1,
            "sha256": r.info.sha256,
            "subject": r.info.subject,
            "public_key_sha256": r.info.public_key_sha256,
        }
    if r.ref.key_vault_secret_id:
        out["key_vault_secret_id"] = r.ref.key_vault_secret_id
    return out


@dataclass(frozen=True)
class _Facts:
    gw: Gateway
    unit: _Unit
    kind: ProbeLogKind
    target: TlsTarget | None
    alt_sni: str | None
    gw_cap: TlsCapture | None
    alt_cap: TlsCapture | None
    now: datetime

    @property
    def v1(self) -> bool:
        return self.gw.generation is Generation.V1

    @property
    def chain(self) -> tuple[CertInfo, ...]:
        return self.gw_cap.chain if self.gw_cap else ()


def _decide(f: _Facts) -> _Verdict:
    unit = f.unit
    if unit.health is HealthState.HEALTHY:
        return _Verdict(Cause.HEALTHY, explanation="The gateway's probe succeeds.")
    if unit.health in (HealthState.UNKNOWN, HealthState.DRAINING):
        return _Verdict(
            Cause.UNKNOWN,
            explanation=f"Health is {unit.health.value}: not a certificate verdict (§1.4).",
        )
    if f.kind in _NOT_CERT_LOGS:
        return _Verdict(
            Cause.NOT_CERTIFICATE_RELATED,
            explanation="The probe reached the backend over TLS; its HTTP answer or protocol "
            "does not match the probe settings.",
        )
    if f.kind is ProbeLogKind.HEALTH_UNKNOWN:
        return _Verdict(Cause.UNKNOWN, explanation="The probe log reports NSG/UDR/DNS/CRL trouble.")
    if f.kind in _UNREACHABLE_LOGS:
        return _Verdict(
            Cause.BACKEND_UNREACHABLE, explanation="The probe log says the gateway cannot connect."
        )
    if not _is_https(unit.settings):
        return _Verdict(
            Cause.UNKNOWN, explanation="HTTP settings without TLS: no certificate involved."
        )
    if f.gw_cap is None or f.target is None:
        return _without_evidence(f)
    if f.gw_cap.error is not None:
        return _capture_failed(f)
    return _v1_decide(f) if f.v1 else _v2_decide(f)


def _capture_failed(f: _Facts) -> _Verdict:
    assert f.gw_cap is not None and f.gw_cap.error is not None
    err = f.gw_cap.error
    if err in _UNREACHABLE_ERRORS and f.kind in _VAGUE_LOGS:
        return _Verdict(
            Cause.BACKEND_UNREACHABLE,
            explanation=f"The bot's handshake failed too ({err.value}: {f.gw_cap.detail}).",
        )
    return _Verdict(
        Cause.UNKNOWN,
        explanation=f"The probe log names a certificate problem but the bot could not capture the "
        f"certificate ({err.value}); the bot's network view may differ from the gateway's.",
    )


def _without_evidence(f: _Facts) -> _Verdict:
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
    return _Verdict(
        cause,
        explanation="No TLS evidence was captured; cause read from the probe log only, so no "
        "certificate is proposed.",
        inferred=cause is not Cause.UNKNOWN,
        trust="inferred_from_probe_log" if cause is not Cause.UNKNOWN else "not_evaluated",
    )


def _expired(f: _Facts) -> _Verdict | None:
    leaf = f.chain[0]
    if is_valid_at(leaf, f.now):
        if f.kind is ProbeLogKind.EXPIRED:
            return _Verdict(
                Cause.UNKNOWN,
                explanation="The probe log says expired, the presented "
                "certificate is within its validity period: conflicting evidence.",
            )
        return None
    if f.kind in {ProbeLogKind.EXPIRED} | _VAGUE_LOGS:
        return _Verdict(
            Cause.CERTIFICATE_EXPIRED,
            explanation=f"The presented certificate is outside its validity period "
            f"(not after {iso_z(leaf.not_after)}): renew it on the backend"
            + (", then allow-list the renewed leaf." if f.v1 else "."),
        )
    return None


def _alt_leaf(f: _Facts) -> CertInfo | None:
    if f.alt_cap is None or f.alt_cap.error is not None:
        return None
    return f.alt_cap.leaf


def _v1_decide(f: _Facts) -> _Verdict:
    assert f.target is not None and f.unit.settings is not None
    if (expired := _expired(f)) is not None:
        return expired
    leaf = f.chain[0]
    trusted = _trusted(f.gw, f.unit.settings, f.chain)
    if f.kind is ProbeLogKind.CN_MISMATCH:
        host = f.target.sni or f.target.host_header
        if host and not matches_host(leaf, host):
            return _Verdict(
                Cause.HOSTNAME_MISMATCH,
                explanation=f"The presented certificate does "
                f"not cover {host!r}; reissue it with that name or change the host.",
            )
        return _Verdict(Cause.UNKNOWN, explanation="CN mismatch reported but not reproduced.")
    if f.kind not in {ProbeLogKind.NOT_ALLOWLISTED} | _VAGUE_LOGS:
        return _Verdict(
            Cause.UNKNOWN,
            explanation=f"Probe log kind {f.kind.value} is not a v1 text "
            "the bot can pair with the evidence.",
        )
    if trusted is True:
        return _Verdict(
            Cause.UNKNOWN,
            trust="compared",
            explanation="The presented certificate's "
            "public key matches a referenced authentication certificate: conflicting.",
        )
    if trusted is None and f.kind is not ProbeLogKind.NOT_ALLOWLISTED:
        return _Verdict(
            Cause.UNKNOWN,
            explanation="Authentication certificate data is hidden and "
            "the probe log does not say the certificate is not allow-listed.",
        )
    inferred = trusted is None
    fix = Fix(FixAction.ADD_AUTHENTICATION_CERTIFICATE, _fix_certificate(leaf))
    trust = "inferred_from_probe_log" if inferred else "compared"
    alt = _alt_leaf(f)
    if f.target.sni is None and alt is not None and alt.sha256 != leaf.sha256:
        return _Verdict(
            Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI,
            fix,
            inferred=inferred,
            trust=trust,
            explanation=f"The gateway sends no SNI ({f.target.reason.rstrip('.')}); "
            f"without SNI the backend "
            f"presents its default certificate {leaf.sha1} ({leaf.subject}), which is not "
            f"allow-listed, while under SNI {f.alt_sni!r} it presents {alt.sha1}. v1 allow-lists "
            "the presented leaf's public key: upload the default certificate (reference §3).",
        )
    return _Verdict(
        Cause.CERTIFICATE_NOT_ALLOWLISTED,
        fix,
        inferred=inferred,
        trust=trust,
        explanation=f"The presented certificate {leaf.sha1} ({leaf.subject}) is not allow-listed "
        "on these HTTP settings (e.g. the backend rotated it): upload it (reference §3).",
    )


def _v2_root_fix(chain: tuple[CertInfo, ...]) -> tuple[Fix, str]:
    """v2 trusts CA roots; a non-CA self-signed leaf is never proposed (reference §3, §8.3)."""
    top = chain[-1]
    if top.is_ca:
        kind = "self-signed root" if top.self_signed else "top CA certificate (not a root)"
        return (
            Fix(FixAction.ADD_TRUSTED_ROOT_CERTIFICATE, _fix_certificate(top)),
            f"The presented chain ends in {kind} {top.sha1} ({top.subject}), which the HTTP "
            "settings do not reference: add it as a trusted root certificate.",
        )
    return (
        Fix(FixAction.NONE),
        f"The presented chain ends in {top.sha1} ({top.subject}), which is not a CA certificate; "
        "v2 cannot trust it as a root. Serve a certificate issued by a CA (with its chain).",
    )


def _complete_private_chain(chain: tuple[CertInfo, ...], settings: HttpSettings) -> bool:
    """Leaf first, each certificate issued by the next, ending in a self-signed CA root, and the
    settings reference trusted roots (so the well-known CA store is not the one in use)."""
    if len(chain) < 2 or not settings.trusted_root_certificate_ids or chain[0].is_ca:
        return False
    top = chain[-1]
    if not (top.self_signed and top.is_ca):
        return False
    return all(_signed_by(child, parent) for child, parent in pairwise(chain))


def _v2_sni_fix(f: _Facts) -> _Verdict | None:
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
        # Azure hides trusted-root data on GET (the sandbox does too), so the roots cannot be
        # compared; a complete, self-consistent chain to a self-signed CA root is the best
        # evidence left. Flagged as inferred; the apply flow verifies health afterwards.
        alt_trusted, inferred = True, True
    alt_ok = alt_trusted is True and matches_host(alt, f.alt_sni) and is_valid_at(alt, f.now)
    if alt_ok:
        fix = Fix(FixAction.SET_BACKEND_HOST_NAME, host_name=f.alt_sni)
        tail = f"set the host name {f.alt_sni!r} so the gateway sends it as SNI (reference §2.1)."
    else:
        fix = Fix(FixAction.NONE)
        tail = (
            "the bot cannot show that this certificate is trusted by the settings, so it "
            "proposes nothing."
        )
    return _Verdict(
        Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI,
        fix,
        inferred=inferred,
        trust="inferred_from_probe_log" if inferred else "compared",
        explanation=f"The gateway sends no SNI ({f.target.reason.rstrip('.')}); "
        f"without SNI the backend "
        f"presents its default certificate {leaf.sha1} ({leaf.subject}), not trusted by the "
        f"settings, while under SNI {f.alt_sni!r} it presents {alt.sha1}; " + tail,
    )


def _v2_decide(f: _Facts) -> _Verdict:
    assert f.target is not None and f.unit.settings is not None
    settings, chain = f.unit.settings, f.chain
    if f.kind is ProbeLogKind.NOT_ALLOWLISTED:
        return _Verdict(Cause.UNKNOWN, explanation="A v1 probe text on a v2 gateway: conflicting.")
    if (seed := _v2_sni_fix(f)) is not None:
        return seed
    if f.kind is ProbeLogKind.LEAF_NOT_TOPMOST or _leaf_not_topmost(chain):
        return _Verdict(
            Cause.INCOMPLETE_CHAIN,
            explanation="The leaf is not the first certificate "
            "presented: fix the chain order on the backend (reference §8.4).",
        )
    leaf_self_signed_non_ca = chain[0].self_signed and not chain[0].is_ca
    if f.kind in {ProbeLogKind.INTERMEDIATE_MISSING, ProbeLogKind.LEAF_MISSING} and not (
        leaf_self_signed_non_ca
    ):
        return _Verdict(
            Cause.INCOMPLETE_CHAIN,
            explanation="The backend does not send the "
            "intermediate certificates: configure the full chain (reference §8.4).",
        )
    validate_sni = f.target.validate_sni
    sni = f.target.sni
    if f.kind is ProbeLogKind.CN_MISMATCH or (
        validate_sni and sni and not matches_host(chain[0], sni) and f.kind in _VAGUE_LOGS
    ):
        if sni and not matches_host(chain[0], sni):
            return _Verdict(
                Cause.HOSTNAME_MISMATCH,
                explanation=f"The presented certificate does "
                f"not cover the SNI {sni!r} (reference §2.2, RFC 6125).",
            )
        return _Verdict(Cause.UNKNOWN, explanation="CN mismatch reported but not reproduced.")
    if (expired := _expired(f)) is not None:
        return expired
    trusted = _trusted(f.gw, settings, chain)
    if trusted is True:
        return _Verdict(
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
            return _Verdict(
                Cause.INCOMPLETE_CHAIN,
                trust="compared",
                explanation="Only the leaf "
                "is presented and no referenced root issued it: send the full chain.",
            )
        fix, why = _v2_root_fix(chain)
        return _Verdict(Cause.TRUSTED_ROOT_MISMATCH, fix, why, trust="compared")
    if trusted is None and root_log:
        fix, why = _v2_root_fix(chain)
        return _Verdict(
            Cause.TRUSTED_ROOT_MISMATCH, fix, why, inferred=True, trust="inferred_from_probe_log"
        )
    return _Verdict(
        Cause.UNKNOWN,
        explanation=f"Probe log kind {f.kind.value} and the evidence do not point to one cause.",
    )


# ---------------------------------------------------------------------------------------------
# Alternatives, warnings, evidence, assembly.


def _alternatives(f: _Facts, cause: Cause) -> tuple[str, ...]:
    if cause not in {
        Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI,
        Cause.CERTIFICATE_NOT_ALLOWLISTED,
        Cause.TRUSTED_ROOT_MISMATCH,
    }:
        return ()
    ip_member = f.unit.member is not None and f.unit.member.fqdn is None
    no_sni = f.target is not None and f.target.sni is None
    alts: list[str] = []
    if ip_member and no_sni:
        alts.append(ALT_FQDN)
    if cause is Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI:
        alts.append(ALT_WILDCARD)
    settings = f.unit.settings
    if ip_member and settings is not None and settings.pick_host_name_from_backend_address:
        alts.append(ALT_USE_FOR_APP_SERVICE)
    return tuple(alts)


def _warnings(f: _Facts, verdict: _Verdict) -> tuple[str, ...]:
    warnings: list[str] = []
    if f.v1:
        warnings.append(V1_RETIREMENT_WARNING)
    if verdict.inferred:
        warnings.append(INFERRED_WARNING if f.v1 else ROOT_INFERRED_WARNING)
    return tuple(warnings)


def _allow_listed(f: _Facts) -> dict[str, Any]:
    settings = f.unit.settings
    if settings is None:
        return {"authentication_certificates": [], "trusted_root_certificates": []}
    return {
        "authentication_certificates": [
            _ref_json(r) for r in _refs(f.gw, settings, settings.authentication_certificate_ids)
        ],
        "trusted_root_certificates": [
            _ref_json(r) for r in _refs(f.gw, settings, settings.trusted_root_certificate_ids)
        ],
    }


def _evidence(f: _Facts, verdict: _Verdict) -> dict[str, Any]:
    target = None
    if f.target is not None:
        target = {
            "address": f.target.address,
            "port": f.target.port,
            "sni": f.target.sni,
            "host_header": f.target.host_header,
            "validate_sni": f.target.validate_sni,
            "validate_chain": f.target.validate_chain,
            "reason": f.target.reason,
        }
    return {
        "target": target,
        "alternate_sni": f.alt_sni,
        "captures": {"gateway": _capture_json(f.gw_cap), "alternative": _capture_json(f.alt_cap)},
        "allow_listed": _allow_listed(f),
        "probe_log_kind": f.kind.value,
        "trust": verdict.trust,
        "explanation": verdict.explanation,
    }


def _facts(
    gw: Gateway,
    unit: _Unit,
    captures: Mapping[ProbeRequest, TlsCapture] | None,
    now: datetime,
    hosts: RouteHosts | None,
) -> _Facts:
    found = _targets(gw, unit, hosts)
    target, alt = found if found else (None, None)
    gw_cap = alt_cap = None
    if target is not None and captures is not None:
        gw_cap = captures.get((target.address, target.port, target.sni))
        if alt != target.sni:
            alt_cap = captures.get((target.address, target.port, alt))
    return _Facts(gw, unit, classify_probe_log(unit.probe_log), target, alt, gw_cap, alt_cap, now)


def _finding(f: _Facts) -> Finding:
    verdict = _decide(f)
    return Finding(
        pool=f.unit.pool_name,
        settings=f.unit.settings_name,
        server=f.unit.server,
        health=f.unit.health.value,
        probe_log=f.unit.probe_log,
        cause=verdict.cause,
        evidence=_evidence(f, verdict),
        fix=verdict.fix,
        alternatives=_alternatives(f, verdict.cause),
        warnings=_warnings(f, verdict),
        inferred_from_probe_log=verdict.inferred,
    )


def _fix_key(fix: Fix) -> tuple[str, str | None, str | None] | None:
    if fix.action is FixAction.NONE:
        return None
    return (fix.action.value, fix.certificate.sha256 if fix.certificate else None, fix.host_name)


def _with_fix_settings(findings: list[Finding]) -> list[Finding]:
    """fix.settings: every HTTP settings whose findings carry the same fix, sorted."""
    groups: dict[tuple[str, str | None, str | None], set[str]] = defaultdict(set)
    for finding in findings:
        key = _fix_key(finding.fix)
        if key is not None:
            groups[key].add(finding.settings)
    out = []
    for finding in findings:
        key = _fix_key(finding.fix)
        names = tuple(sorted(groups[key])) if key is not None else ()
        out.append(replace(finding, fix=replace(finding.fix, settings=names)))
    return out


def _order(findings: list[Finding], hint: tuple[str, str] | None) -> list[Finding]:
    if hint is None:
        return findings
    pool, settings = (h.lower() for h in hint)

    def rank(finding: Finding) -> int:
        return 0 if (finding.pool.lower(), finding.settings.lower()) == (pool, settings) else 1

    return sorted(findings, key=rank)  # stable: document order within each group


def diagnose(
    gw: Gateway,
    health: Sequence[ServerHealth],
    captures: Mapping[ProbeRequest, TlsCapture] | None,
    *,
    now: datetime,
    hint: tuple[str, str] | None = None,
    hosts: RouteHosts | None = None,
) -> Diagnosis:
    """One finding per (pool, settings, server) of the whole gateway; `hint` only orders them.

    Pass the same `hosts` as to `probe_requests` so the alternative captures are found.
    """
    findings = [_finding(_facts(gw, unit, captures, now, hosts)) for unit in _units(gw, health)]
    summary = GatewaySummary(gw.id, gw.name, gw.sku_tier, gw.generation.value)
    return Diagnosis(summary, tuple(_order(_with_fix_settings(findings), hint)))
