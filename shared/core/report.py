"""Reports of a Diagnosis: the stable JSON contract (docs/diagnosis.md) and text for people."""

from __future__ import annotations

import textwrap
from collections import Counter
from itertools import groupby
from typing import Any

from shared.core.capture import Vantage
from shared.core.diagnosis import Diagnosis, Finding, Fix, FixAction, FixCertificate

WIDTH = 100


def _certificate_json(cert: FixCertificate | None) -> dict[str, Any] | None:
    if cert is None:
        return None
    return {
        "sha1": cert.sha1,
        "sha256": cert.sha256,
        "cer": cert.cer,
        "der_b64": cert.der_b64,
        "subject": cert.subject,
        "not_after": cert.not_after,
    }


def _fix_json(fix: Fix) -> dict[str, Any]:
    return {
        "action": fix.action.value,
        "certificate": _certificate_json(fix.certificate),
        "settings": list(fix.settings),
        "host_name": fix.host_name,
        "required_root": _required_root_json(fix),
    }


def _required_root_json(fix: Fix) -> dict[str, Any] | None:
    root = fix.required_root
    if root is None:
        return None
    return {
        "subject": root.subject,
        "authority_key_identifier": root.authority_key_identifier,
        "issued": root.issued,
    }


def _finding_json(f: Finding) -> dict[str, Any]:
    return {
        "pool": f.pool,
        "settings": f.settings,
        "server": f.server,
        "health": f.health,
        "probe_log": f.probe_log,
        "cause": f.cause.value,
        "evidence": f.evidence,
        "fix": _fix_json(f.fix),
        "alternatives": list(f.alternatives),
        "warnings": list(f.warnings),
        "inferred_from_probe_log": f.inferred_from_probe_log,
    }


def vantage_json(v: Vantage | None) -> dict[str, Any] | None:
    """Where the captures were made from (issue 13); None when nothing was probed."""
    if v is None:
        return None
    return {
        "kind": v.kind.value,
        "host": v.host,
        "in_gateway_network": v.in_gateway_network,
        "warning": v.warning(),
    }


def to_json(d: Diagnosis) -> dict[str, Any]:
    """The contract of issue 3; keys only ever get added, never renamed."""
    return {
        "gateway": {
            "id": d.gateway.id,
            "name": d.gateway.name,
            "sku_tier": d.gateway.sku_tier,
            "generation": d.gateway.generation,
        },
        "findings": [_finding_json(f) for f in d.findings],
        "vantage": vantage_json(d.vantage),
        "expiring": [e.to_json() for e in d.expiring],
    }


# ---- text ----


def _wrap(text: str, indent: str, first: str | None = None) -> list[str]:
    # Never break inside a word: a resource id, URL or thumbprint longer than a line goes whole
    # on its own line, so it can be copied (the only lines allowed past WIDTH).
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=first if first is not None else indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [(first or indent).rstrip()]


def _cert_line(chain: list[dict[str, Any]]) -> str:
    if not chain:
        return "no certificate"
    leaf = chain[0]
    names = ", ".join(leaf.get("sans") or []) or "-"
    extra = f" (+{len(chain) - 1} more in chain)" if len(chain) > 1 else ""
    return (
        f"{leaf.get('subject')} [SANs {names}] SHA-1 {leaf.get('sha1')} "
        f"not after {leaf.get('not_after')}{extra}"
    )


def _capture_lines(label: str, cap: dict[str, Any] | None) -> list[str]:
    if cap is None:
        return []
    where = f"{cap['address']}:{cap['port']}, " + (f"SNI {cap['sni']}" if cap["sni"] else "no SNI")
    if cap.get("error"):
        body = f"{label}: {where} -> {cap['error']} ({cap.get('detail')})"
    else:
        body = f"{label}: {where} -> {_cert_line(cap.get('chain') or [])}"
        if cap.get("protocol"):
            cipher = f" ({cap['cipher']})" if cap.get("cipher") else ""
            body += f" over {cap['protocol']}{cipher}"
    return _wrap(body, " " * 8, " " * 6)


def _fix_lines(fix: Fix) -> list[str]:
    if fix.action is FixAction.NONE and fix.required_root is not None:
        root = fix.required_root
        aki = root.authority_key_identifier
        text = f"Fix: none uploaded. Obtain the root {root.subject}" + (
            f" (authority key identifier {aki})" if aki else ""
        )
        return _wrap(text + " and upload it as a trusted root certificate", " " * 8, " " * 6)
    if fix.action is FixAction.NONE:
        return _wrap("Fix: none proposed", " " * 8, " " * 6)
    text = f"Fix: {fix.action.value}"
    if fix.certificate is not None:
        c = fix.certificate
        text += f" with {c.subject} SHA-1 {c.sha1} (SHA-256 {c.sha256}, not after {c.not_after})"
    if fix.host_name is not None:
        text += f" host name {fix.host_name!r}"
    if fix.settings:
        text += f" on HTTP settings: {', '.join(fix.settings)}"
    return _wrap(text, " " * 8, " " * 6)


def _finding_lines(f: Finding) -> list[str]:
    lines = _wrap(
        f"Server {f.server}: {f.health}, cause {f.cause.value}"
        + (" (inferred from the probe log)" if f.inferred_from_probe_log else ""),
        " " * 6,
        " " * 4,
    )
    if f.probe_log:
        lines += _wrap(f"Probe log: {f.probe_log}", " " * 8, " " * 6)
    target = f.evidence.get("target")
    if isinstance(target, dict) and target.get("reason"):
        lines += _wrap(f"Gateway's handshake: {target['reason']}", " " * 8, " " * 6)
    captures = f.evidence.get("captures") or {}
    lines += _capture_lines("Presented to the gateway", captures.get("gateway"))
    lines += _capture_lines("Presented the other way", captures.get("alternative"))
    if f.evidence.get("explanation") and f.cause.value != "healthy":
        lines += _wrap(f"Why: {f.evidence['explanation']}", " " * 8, " " * 6)
    if f.cause.value != "healthy":
        lines += _fix_lines(f.fix)
    if f.alternatives:
        lines.append(" " * 6 + "Alternatives:")
        for rank, alt in enumerate(f.alternatives, 1):
            lines += _wrap(alt, " " * 11, f"{' ' * 8}{rank}. ")
    for warning in f.warnings:
        if not warning.startswith("Application Gateway v1"):
            lines += _wrap(f"Warning: {warning}", " " * 8, " " * 6)
    return lines


def _vantage_lines(v: Vantage | None) -> list[str]:
    if v is None:
        return _wrap("Evidence: no TLS captures (backend health and the gateway only)", "  ", "  ")
    lines = _wrap(f"Evidence: TLS captures from {v.describe()}", "  ", "  ")
    warning = v.warning()
    return lines + (_wrap(f"WARNING: {warning}", "  ", "  ") if warning else [])


def _expiring_lines(d: Diagnosis) -> list[str]:
    if not d.expiring:
        return ["", "  Expiring certificates: none within the warning window"]
    lines = ["", f"  Expiring certificates ({len(d.expiring)}):"]
    for e in d.expiring:
        left = f"{e.days_left} days left" if e.days_left >= 0 else f"{-e.days_left} days ago"
        text = f"{e.where.value}: {e.subject} SHA-1 {e.sha1} not after {e.not_after} ({left})"
        lines += _wrap(text, " " * 8, " " * 6)
    return lines


def to_text(d: Diagnosis) -> str:
    """Per pool/settings: status, cause, thumbprints, fix; every line fits 100 columns, except
    one holding a single word too long for it (a resource id: never broken)."""
    gw = d.gateway
    lines = _wrap(f"Gateway {gw.name} ({gw.sku_tier or 'unknown tier'}, {gw.generation})", "  ", "")
    lines += _wrap(gw.id, "  ", "  ")
    lines += _vantage_lines(d.vantage)
    warnings = {w for f in d.findings for w in f.warnings if w.startswith("Application Gateway v1")}
    for warning in sorted(warnings):
        lines += _wrap(f"WARNING: {warning}", "  ", "  ")
    for (pool, settings), group in groupby(d.findings, key=lambda f: (f.pool, f.settings)):
        lines.append("")
        lines += _wrap(f"Pool {pool} / HTTP settings {settings}", "    ", "  ")
        for finding in group:
            lines += _finding_lines(finding)
    lines += _expiring_lines(d)
    counts = Counter(f.cause.value for f in d.findings)
    summary = ", ".join(f"{n} {cause}" for cause, n in sorted(counts.items())) or "no servers"
    lines.append("")
    lines += _wrap(f"Summary: {len(d.findings)} finding(s): {summary}", "  ", "")
    return "\n".join(lines) + "\n"
