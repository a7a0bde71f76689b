"""Reading and diagnosing a gateway for the Remediator: the assessment, and whether it vouches
for a plan's certificate.

One read of the gateway and its backend health, handshakes with its own pool members, the
trusted source read once; shared.core.diagnosis decides from them. The trust check of a plan
(shared.remediation.trust) uses only what this assessment captured and read.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from shared.cloud.arm import GatewayDocument
from shared.common.errors import InputError
from shared.common.ids import GatewayId
from shared.core.capture import TlsCapture
from shared.core.certs import CertInfo, cert_info, signed_by
from shared.core.diagnosis import (
    Diagnosis,
    Finding,
    FixAction,
    diagnose,
    probe_requests,
    route_hosts,
)
from shared.core.expiry import expiring
from shared.core.gateway import Gateway, parse_gateway
from shared.core.health import HealthState, ServerHealth, parse_backend_health
from shared.core.probe_order import slow_first
from shared.probe.tls import capture_all, detect_vantage
from shared.probe.well_known import load_well_known
from shared.remediation import watch
from shared.remediation.plan import Plan
from shared.remediation.trust import TrustResult, check_certificate

if TYPE_CHECKING:
    from shared.remediation.remediate import Remediator

Captures = Mapping[tuple[str, int, str | None], TlsCapture]
ProbeFn = Callable[[Iterable[tuple[str, int, str | None]]], Captures]


@dataclass(frozen=True)
class Assessment:
    """A gateway read and diagnosed: the document, the parsed model, health and captures."""

    current: GatewayDocument
    gateway: Gateway
    health: tuple[ServerHealth, ...]
    captures: Captures
    diagnosis: Diagnosis
    # The trusted source (Key Vault) as read for this assessment: its certificates, or why it
    # could not be read. Read once per run; the diagnosis and the trust checks both use it.
    trusted: tuple[bytes, ...] = ()
    trusted_error: str | None = None
    # SHA-1s an overlap rotation adds for a next certificate found in the pool or the trusted
    # source, or given by the operator: they count as fetched (shared.remediation.watch).
    vouched: frozenset[str] = frozenset()


def issued_chain(top: CertInfo, root_der_b64: str) -> bool:
    """`top` (a presented chain's last certificate) was signed by the root in `root_der_b64`."""
    try:
        root = cert_info(base64.b64decode(root_der_b64, validate=True))
    except (ValueError, InputError):
        return False
    return top.sha256 != root.sha256 and signed_by(top, root)


def gateway_tags(doc: Mapping[str, Any]) -> dict[str, str]:
    """The gateway's tags (ownership and mode overrides: shared.remediation.policy)."""
    tags = doc.get("tags")
    return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {}


def default_probe(rem: Remediator, requests: Iterable[tuple[str, int, str | None]]) -> Captures:
    """Handshakes from this machine (PROBE_TIMEOUT_SECONDS, PROBE_VANTAGE)."""
    return capture_all(
        requests,
        timeout=float(rem.settings["PROBE_TIMEOUT_SECONDS"]),
        vantage=detect_vantage(rem.settings["PROBE_VANTAGE"]),
    )


def assess(rem: Remediator, gid: GatewayId, *, hint: tuple[str, str] | None = None) -> Assessment:
    """Read the gateway and its backend health, probe its own pool members, diagnose."""
    rem.progress(f"reading the gateway {gid.name}")
    current = rem.arm.get_gateway(gid)
    gateway = parse_gateway(current.doc)
    rem.progress("reading backend health (an ARM operation)")
    health = parse_backend_health(rem.arm.backend_health(gid))
    hosts = route_hosts(current.doc)
    # Members the gateway reports as timing out go first: their waits overlap the rest.
    requests = slow_first(dict.fromkeys(probe_requests(gateway, health, hosts=hosts)), health)
    rem.progress(f"probing {len(requests)} backend handshake(s)")
    captures = rem._probe(requests)
    trusted, trusted_error = read_trusted(rem)
    diagnosis = diagnose(
        gateway,
        health,
        captures,
        now=rem.clock(),
        hint=hint,
        hosts=hosts,
        trusted_sources=trusted,
        well_known=well_known(rem) if captures else (),
    )
    soon = expiring(
        gateway,
        captures,
        now=rem.clock(),
        key_vault=trusted,
        warning_days=int(rem.settings["EXPIRY_WARNING_DAYS"]),
    )
    diagnosis = replace(diagnosis, expiring=soon)
    watch.notice_expiring(rem, gid, soon)
    return Assessment(current, gateway, health, captures, diagnosis, trusted, trusted_error)


def well_known(rem: Remediator) -> tuple[CertInfo, ...]:
    """The well-known CA store (WELL_KNOWN_CA_BUNDLE; default: certifi's Mozilla roots)."""
    return load_well_known(rem.settings.values.get("WELL_KNOWN_CA_BUNDLE") or None)


def read_trusted(rem: Remediator) -> tuple[tuple[bytes, ...], str | None]:
    """The trusted source's certificates, or why it could not be read."""
    try:
        return tuple(bytes(d) for d in rem._trusted()), None
    except Exception as exc:  # noqa: BLE001 - any failure of the trusted source means "propose"
        return (), str(exc)


def nothing_to_do(diagnosis: Diagnosis) -> str:
    """Why no plan came out of the diagnosis, and what the operator can do about it."""
    unhealthy = [f for f in diagnosis.findings if f.health != HealthState.HEALTHY.value]
    if not unhealthy:
        return "every backend is healthy"
    causes = sorted({f.cause.value for f in unhealthy})
    reason = "no actionable fix for: " + ", ".join(causes)
    needed = {f.fix.required_root for f in unhealthy if f.fix.required_root is not None}
    for root in sorted(needed, key=lambda r: (r.subject, r.authority_key_identifier or "")):
        aki = root.authority_key_identifier
        reason += (
            f"; obtain the trusted root {root.subject}"
            + (f" (authority key identifier {aki})" if aki else "")
            + " and upload it (the backend does not send it and no trusted source holds it)"
        )
    return reason


def trust_for(rem: Remediator, assessment: Assessment, plan: Plan) -> TrustResult | None:
    """shared.remediation.trust's verdict on the certificate `plan` adds (None: it adds none)."""
    fix = plan.fix
    if fix is None or fix.certificate is None:
        return None
    wanted = fix.certificate.sha1.upper()
    # Only captures the bot made itself, of its own pool members, count as "fetched from pool".
    presented = [c for c in assessment.captures.values() if any(x.sha1 == wanted for x in c.chain)]
    leaf = next((c.leaf.sha1 for c in presented if c.leaf is not None), None)
    if assessment.trusted_error is not None:
        return TrustResult(
            False, (f"the trusted source could not be read: {assessment.trusted_error}",)
        )
    trusted = list(assessment.trusted)
    # A v2 root the backend does not send comes from the trusted source; it counts as fetched
    # when the chain the bot fetched from the pool ends in a certificate it signed.
    signed = fix.action is FixAction.ADD_TRUSTED_ROOT_CERTIFICATE and any(
        c.chain and issued_chain(c.chain[-1], fix.certificate.der_b64)
        for c in assessment.captures.values()
    )
    return check_certificate(
        fix,
        {"presented_sha1": leaf} if leaf else None,
        generation=assessment.gateway.generation,
        fetched_from_pool=bool(presented) or signed or wanted in assessment.vouched,
        now=rem.clock(),
        trusted_ders=trusted,
        subject_pattern=rem.settings["TRUSTED_SUBJECT_PATTERN"],
    )


def affected(assessment: Assessment, plan: Plan) -> list[Finding]:
    """The unhealthy findings on the settings `plan` changes (what verification waits for)."""
    names = {n.lower() for n in plan.settings_names}
    return [
        f
        for f in assessment.diagnosis.findings
        if f.settings.lower() in names and f.health != HealthState.HEALTHY.value
    ]
