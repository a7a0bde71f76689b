"""Text for people: the preview of a fix (before it is written) and a stored proposal.

Both show the same parts (shared.remediation.render): the summary, the RFC 6902 JSON Patch of the
gateway document (the bot PUTs the whole document; the patch is the difference), the equivalent
az commands with their rollback, and the warnings (connection draining, where the evidence came
from). Long values (certificate data) are printed whole: what is shown is what is sent.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.remediation.proposals import Proposal
from shared.remediation.remediate import FixPreview

WIDTH = 100
_CERT_NOTE = "<the certificate below, base64 DER>"


def _wrapped(text: str, indent: str = "  ", first: str | None = None) -> list[str]:
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent.rstrip()]


def _section(title: str, body: Iterable[str]) -> list[str]:
    lines = list(body)
    return ["", title, *lines] if lines else []


def _patch(patch: Sequence[Mapping[str, Any]]) -> list[str]:
    if not patch:
        return ["  (no difference: nothing would be sent)"]
    return ["  " + line for line in json.dumps(list(patch), indent=2).splitlines()]


def _elide(value: Any, data: str | None) -> Any:
    """`value` with the certificate's base64 (printed once, as PEM) replaced by a note."""
    if not data:
        return value
    if isinstance(value, str):
        return value.replace(data, _CERT_NOTE) if len(data) > 80 else value
    if isinstance(value, Mapping):
        return {k: _elide(v, data) for k, v in value.items()}
    if isinstance(value, list):
        return [_elide(v, data) for v in value]
    return value


def change_lines(
    summary: str,
    patch: Sequence[Mapping[str, Any]],
    az: Sequence[str],
    az_rollback: Sequence[str],
    warnings: Sequence[str],
) -> list[str]:
    """The parts every preview shares, as lines."""
    lines = summary.splitlines()
    lines += _section(
        "JSON Patch (RFC 6902) of the gateway document; the bot sends the whole document in one "
        "PUT:",
        _patch(patch),
    )
    lines += _section(
        "The same with az (each command is its own gateway update):", [f"  {c}" for c in az]
    )
    lines += _section("To undo it with az:", [f"  {c}" for c in az_rollback])
    lines += _section("Warnings:", [line for w in warnings for line in _wrapped(w, "    ", "  - ")])
    return lines


def fix_preview_text(preview: FixPreview, *, dry_run: bool) -> str:
    verb = {"apply": "apply", "propose": "propose", "diagnose": "only report"}.get(
        preview.outcome, preview.outcome
    )
    head = f"{'Dry run: the bot would' if dry_run else 'The bot will'} {verb} this change."
    lines = [head]
    for reason in preview.reasons:
        lines += _wrapped(reason, "    ", "  - ")
    lines.append("")
    lines += change_lines(
        preview.summary, preview.patch, preview.az, preview.az_rollback, preview.warnings
    )
    return "\n".join(lines) + "\n"


def _capture(label: str, cap: Mapping[str, Any] | None) -> list[str]:
    if not isinstance(cap, Mapping):
        return []
    where = f"{cap.get('address')}:{cap.get('port')}, " + (
        f"SNI {cap['sni']}" if cap.get("sni") else "no SNI"
    )
    chain = cap.get("chain") or []
    if cap.get("error"):
        seen = f"{cap['error']} ({cap.get('detail')})"
    elif chain:
        leaf = chain[0]
        seen = f"{leaf.get('subject')} SHA-1 {leaf.get('sha1')} not after {leaf.get('not_after')}"
    else:
        seen = "no certificate"
    vantage = cap.get("vantage") or "unknown"
    return _wrapped(f"{label}: {where} -> {seen} [captured from: {vantage}]", "        ", "      ")


def _evidence(findings: Sequence[Any]) -> list[str]:
    lines: list[str] = []
    for f in findings:
        if not isinstance(f, Mapping):
            continue
        lines += _wrapped(
            f"{f.get('settings')} / {f.get('server')}: {f.get('health')}, cause {f.get('cause')}",
            "      ",
            "  - ",
        )
        evidence = f.get("evidence") if isinstance(f.get("evidence"), Mapping) else {}
        captures = evidence.get("captures") if isinstance(evidence, Mapping) else None
        if isinstance(captures, Mapping):
            lines += _capture("presented to the gateway", captures.get("gateway"))
            lines += _capture("presented the other way", captures.get("alternative"))
    return lines


def proposal_text(p: Proposal) -> str:
    """A proposal for an approver: who, what, why, the exact change, how to check and undo it."""
    # The certificate's base64 once (as PEM, at the end), not in the patch and Bicep too;
    # `--format json` keeps every rendering whole. The az commands stay copyable as they are.
    cert = p.plan.get("certificate") if isinstance(p.plan, Mapping) else None
    data = cert.get("data") if isinstance(cert, Mapping) else None
    r = dict(p.renderings)
    r["json_patch"] = _elide(r.get("json_patch") or [], data)
    r["bicep"] = _elide(str(r.get("bicep", "")), data)
    lines = [f"Proposal {p.id}: {p.status}"]
    lines += _wrapped(f"Gateway: {p.gateway_id}")
    lines += _wrapped(f"Requested by {p.requester} at {p.created_at}")
    if p.decided_by:
        lines += _wrapped(f"Decided by {p.decided_by} at {p.decided_at}")
    if isinstance(p.outcome, Mapping) and p.outcome:
        detail = p.outcome.get("reason") or p.outcome.get("action") or ""
        if detail:
            lines += _wrapped(f"Outcome: {detail}")
    lines += _section(
        "Why a proposal and not a change:",
        [line for why in p.reasons for line in _wrapped(why, "    ", "  - ")],
    )
    lines += _section("Evidence:", _evidence(p.evidence))
    lines.append("")
    lines += change_lines(
        str(r.get("summary", "")),
        r.get("json_patch") or [],
        r.get("az") or [],
        r.get("az_rollback") or [],
        p.warnings,
    )
    lines += _section(
        "Bicep (for a gateway managed as code):", str(r.get("bicep", "")).splitlines()
    )
    if p.certificate_cer:
        lines += _section("Certificate to add (Base-64 CER):", p.certificate_cer.splitlines())
    lines += _section("After the change:", _wrapped(p.check_after))
    lines += [
        "",
        f"Approve: python -m shared proposals approve {p.id}",
        f"Reject:  python -m shared proposals reject {p.id} --reason TEXT",
    ]
    return "\n".join(lines) + "\n"


__all__ = ["change_lines", "fix_preview_text", "proposal_text"]
