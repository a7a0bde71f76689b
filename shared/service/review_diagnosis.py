"""The review page's diagnosis section: per finding, the probe log and the cause it maps to, the
gateway's handshake, and each presented chain with the gateway's verdict on it (trusted, and
through which allow-listed certificate; not trusted; or cannot tell), next to the allow-list.

Pure: JSON findings in, escaped HTML out. The verdicts come from `review_trust`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.service.review_html import Raw, e, kv
from shared.service.review_trust import (
    TRUSTED,
    UNKNOWN,
    UNTRUSTED,
    ChainTrust,
    chain_trust,
    generation,
    probe_log_link,
)

LEGEND = (
    "Green: the gateway would trust this chain (through the certificate named above it); red: it "
    "would not; grey: the stored evidence cannot tell. The allow-list column shows what these "
    "settings trust."
)


def cert_card(cert: Mapping[str, Any], *, verdict: str | None = None) -> str:
    cls = {TRUSTED: " trusted", UNTRUSTED: " untrusted", UNKNOWN: " unknown"}.get(verdict or "", "")
    title = cert.get("subject") or cert.get("name") or cert.get("common_name") or "certificate"
    flags = [
        f for f, on in (("CA", cert.get("is_ca")), ("self-signed", cert.get("self_signed"))) if on
    ]
    validity = ""
    if cert.get("not_before") or cert.get("not_after"):
        validity = f"{cert.get('not_before') or '?'} \u2192 {cert.get('not_after') or '?'}"
    sans = cert.get("sans") or []
    rows = [
        ("Name", cert.get("name") if cert.get("name") != title else None),
        ("Issuer", cert.get("issuer")),
        ("SAN", ", ".join(str(s) for s in sans) if sans else None),
        ("Valid", validity),
        ("Flags", ", ".join(flags)),
        ("SHA-1", Raw(f'<span class="mono thumbprint">{e(cert.get("sha1"))}</span>'))
        if cert.get("sha1")
        else ("SHA-1", None),
        ("SHA-256", Raw(f'<span class="mono">{e(cert.get("sha256"))}</span>'))
        if cert.get("sha256")
        else ("SHA-256", None),
    ]
    return f'<div class="cert{cls}"><h4>{e(title)}</h4>{kv(rows)}</div>'


def _trust_line(trust: ChainTrust) -> str:
    return (
        f'<p class="trust {e(trust.verdict)}" data-verdict="{e(trust.verdict)}">'
        f"{e(trust.headline())}<span class='muted'>: {e(trust.reason)}</span></p>"
    )


def chain_html(
    capture: Mapping[str, Any] | None,
    allow_listed: Mapping[str, Any],
    gen: str | None,
    *,
    healthy: bool = False,
    built: Mapping[str, Any] | None = None,
) -> str:
    if not capture:
        return '<p class="muted">No capture.</p>'
    if capture.get("error"):
        detail = capture.get("detail") or ""
        return f'<p class="notice">Handshake failed: {e(capture.get("error"))} {e(detail)}</p>'
    chain = [c for c in capture.get("chain") or [] if isinstance(c, Mapping)]
    if not chain:
        return '<p class="muted">The backend presented no certificate.</p>'
    trust = chain_trust(chain, allow_listed, gen, healthy=healthy, built=built)
    return _trust_line(trust) + "".join(cert_card(c, verdict=trust.verdict) for c in chain)


def _allow_list(allow: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        *[
            dict(c, kind="trusted root")
            for c in allow.get("trusted_root_certificates") or []
            if isinstance(c, Mapping)
        ],
        *[
            dict(c, kind="authentication certificate")
            for c in allow.get("authentication_certificates") or []
            if isinstance(c, Mapping)
        ],
    ]


def _allowed_card(ref: Mapping[str, Any]) -> str:
    card = cert_card(ref)
    note = f"{ref.get('kind')} {ref.get('name') or ''}".strip()
    if not ref.get("data_known", True):
        note += " (its data is not in the gateway document)"
    return f'<p class="muted">{e(note)}</p>{card}'


def _built(ev: Mapping[str, Any], which: str) -> Mapping[str, Any] | None:
    """The chain the diagnosis built for one capture (v2 evidence), if the evidence has it."""
    value = ev.get(f"{which}_chain")
    return value if isinstance(value, Mapping) else None


def _finding(finding: Mapping[str, Any], action: str | None) -> str:
    raw = finding.get("evidence")
    ev: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    allow = ev.get("allow_listed") if isinstance(ev.get("allow_listed"), Mapping) else {}
    listed = _allow_list(allow or {})
    gen = generation(finding, action)
    captures = ev.get("captures") if isinstance(ev.get("captures"), Mapping) else {}
    gateway_capture = (captures or {}).get("gateway")
    target = ev.get("target") if isinstance(ev.get("target"), Mapping) else {}
    target = target or {}
    sni = target.get("sni") if target else (gateway_capture or {}).get("sni")
    healthy = str(finding.get("health", "")).lower() == "healthy"
    handshake = kv(
        [
            ("Address", target.get("address") or (gateway_capture or {}).get("address")),
            ("Port", target.get("port") or (gateway_capture or {}).get("port")),
            ("SNI", sni or "none (no SNI sent)"),
            ("Host header", target.get("host_header")),
            ("Why", target.get("reason")),
            ("Vantage", ev.get("vantage") or (gateway_capture or {}).get("vantage")),
        ]
    )
    columns = [
        "<div><h3>Presented by the backend to the gateway</h3>"
        + chain_html(
            gateway_capture, allow or {}, gen, healthy=healthy, built=_built(ev, "gateway")
        )
        + "</div>",
        "<div><h3>Allow-listed on these settings</h3>"
        + (
            "".join(_allowed_card(c) for c in listed)
            or '<p class="muted">Nothing allow-listed on these settings.</p>'
        )
        + "</div>",
    ]
    alternative = (captures or {}).get("alternative")
    if alternative:
        # Only the gateway's own handshake is what backend health judged.
        columns.append(
            f"<div><h3>Presented under SNI {e(alternative.get('sni'))}</h3>"
            + chain_html(alternative, allow or {}, gen, built=_built(ev, "alternative"))
            + "</div>"
        )
    link = probe_log_link(finding)
    title = f"{finding.get('pool')} ~ {finding.get('settings')} \u2192 {finding.get('server')}"
    return (
        '<article class="finding">'
        f"<h3>{e(title)}: {e(finding.get('health'))}, cause "
        f'<span class="mono">{e(finding.get("cause"))}</span></h3>'
        + (f"<p>{e(ev.get('explanation'))}</p>" if ev.get("explanation") else "")
        + kv([("Probe log", finding.get("probe_log"))])
        + (f'<p class="probe-link">{e(link)}</p>' if link else "")
        + "<h3>The gateway's handshake</h3>"
        + handshake
        + f'<p class="muted">{e(LEGEND)}</p>'
        + f'<div class="sides">{"".join(columns)}</div>'
        + "".join(f'<p class="notice">{e(w)}</p>' for w in finding.get("warnings") or [])
        + "</article>"
    )


def diagnosis_html(findings: Sequence[Any], *, action: str | None = None) -> str:
    """The section for a proposal's findings; `action` is the plan's fix (it tells v1 from v2
    when the settings allow-list nothing)."""
    blocks = [_finding(f, action) for f in findings if isinstance(f, Mapping)]
    if not blocks:
        return (
            '<section id="diagnosis"><h2>Diagnosis</h2><p class="muted">No findings.</p></section>'
        )
    return f'<section id="diagnosis"><h2>Diagnosis</h2>{"".join(blocks)}</section>'
