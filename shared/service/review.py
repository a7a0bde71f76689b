"""The proposal review page (`GET /api/proposals/{id}/review`) and the anti-CSRF checks that
guard approve/reject.

The page is for a person behind App Service Authentication: the diagnosis (the certificates the
backend presented next to the ones the gateway allow-lists, and the gateway's own handshake), the
exact change (JSON patch, `az` commands), its risks, and Approve / Reject buttons. It is built with
the standard library only: every value goes through `html.escape`, nothing is loaded from
elsewhere, and a strict Content-Security-Policy admits only the page's own nonce'd script and
style.

Cross-site protection of `POST /api/proposals/{id}/approve|reject` (docs/operations.md, "Review
page"): a request that carries browser markers (`Origin`, any `Sec-Fetch-*`, `Cookie`) must be
same-origin and carry the review token the page was rendered with (`X-Review-Token` header, or a
`review_token` field), an HMAC over (proposal id, caller, expiry) keyed by REVIEW_TOKEN_SECRET.
A request without browser markers (CLI, automation with a function key) is not a browser's
ambient-credential request, so it needs no token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shared.service.app import AppContext

log = logging.getLogger(__name__)

TOKEN_HEADER = "x-review-token"  # noqa: S105 - a header name
TOKEN_FIELD = "review_token"  # noqa: S105 - a form field name
TOKEN_TTL_SECONDS = 3600
_BROWSER_MARKERS = ("origin", "cookie")
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
_UNFINISHED_JOB = {"queued", "running"}
REFRESH_MS = 1500


# ---- anti-CSRF token ---------------------------------------------------------------------------


def _mac(secret: str, proposal_id: str, caller: str, expiry: int) -> str:
    message = f"{proposal_id}\n{caller.strip().lower()}\n{expiry}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue_token(
    secret: str, proposal_id: str, caller: str, *, now: float | None = None, ttl: int = 0
) -> str:
    """`<expiry>.<mac>`: valid for this proposal and this caller until expiry (epoch seconds)."""
    expiry = int((time.time() if now is None else now) + (ttl or TOKEN_TTL_SECONDS))
    return f"{expiry}.{_mac(secret, proposal_id, caller, expiry)}"


def token_problem(
    secret: str, token: str, proposal_id: str, caller: str, *, now: float | None = None
) -> str | None:
    """None when the token is valid; otherwise the reason code (missing/invalid/expired)."""
    if not token:
        return "review_token_missing"
    expiry_text, _, mac = token.partition(".")
    if not secret or not expiry_text.isdigit() or len(expiry_text) > 12 or not mac:
        return "review_token_invalid"
    expected = _mac(secret, proposal_id, caller, int(expiry_text))
    if not hmac.compare_digest(expected, mac):
        return "review_token_invalid"
    if int(expiry_text) < (time.time() if now is None else now):
        return "review_token_expired"
    return None


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def is_browser_request(headers: Mapping[str, str]) -> bool:
    """A browser sends Origin on every cross-origin and every same-origin POST, Sec-Fetch-* on
    every request (current browsers) and its cookies; a CLI or an automation sends none."""
    lowered = _lowered(headers)
    return any(m in lowered for m in _BROWSER_MARKERS) or any(
        k.startswith("sec-fetch-") for k in lowered
    )


def _own_hosts(headers: Mapping[str, str], env: Mapping[str, str]) -> set[str]:
    lowered = _lowered(headers)
    hosts = {lowered.get("host", ""), lowered.get("x-forwarded-host", "")}
    hosts.add(str(env.get("WEBSITE_HOSTNAME", "")))
    functions_url = str(env.get("FUNCTIONS_URL", ""))
    if functions_url:
        hosts.add(urlsplit(functions_url).netloc)
    return {h.strip().lower() for h in hosts if h and h.strip()}


def _body_token(body: bytes, content_type: str) -> str:
    """`review_token` from a JSON object or a form body; "" when there is none."""
    if not body or len(body) > 64 * 1024:
        return ""
    text = body.decode("utf-8", "replace")
    if "form" in content_type:
        return dict(parse_qsl(text)).get(TOKEN_FIELD, "")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return ""
    value = data.get(TOKEN_FIELD) if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def csrf_refusal(
    headers: Mapping[str, str],
    body: bytes,
    *,
    proposal_id: str,
    caller: str,
    secret: str,
    env: Mapping[str, str],
    now: float | None = None,
) -> tuple[str, str] | None:
    """(reason, message) when a browser request to approve/reject must be refused; else None."""
    if not is_browser_request(headers):
        return None
    lowered = _lowered(headers)
    site = lowered.get("sec-fetch-site")
    # "same-site" covers another port or subdomain of the same site: still another origin.
    if site is not None and site.strip().lower() != "same-origin":
        return "cross_site_request", f"a {site[:40]!r} request may not decide a proposal"
    origin = lowered.get("origin")
    if origin is not None:
        netloc = urlsplit(origin.strip()).netloc.lower() if origin.strip() != "null" else ""
        if not netloc or netloc not in _own_hosts(headers, env):
            return "cross_site_request", f"origin {origin[:80]!r} is not this app"
    token = lowered.get(TOKEN_HEADER) or _body_token(body, lowered.get("content-type", ""))
    problem = token_problem(secret, token.strip(), proposal_id, caller, now=now)
    if problem is None:
        return None
    messages = {
        "review_token_missing": "a browser request needs the review page's token; reload the "
        "review page and use its buttons",
        "review_token_invalid": "the review token does not match this proposal and caller",
        "review_token_expired": "the review token expired; reload the review page",
    }
    return problem, messages[problem]


# ---- the page ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HtmlResponse:
    status: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)


def page_headers(nonce: str) -> dict[str, str]:
    csp = (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'none'; form-action 'none'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def handle_review(
    ctx: AppContext,
    proposal_id: str,
    caller: str | None,
    params: Mapping[str, str],
    *,
    path: str = "",
    headers: Mapping[str, str] | None = None,
) -> HtmlResponse:
    """GET /api/proposals/{id}/review: the page, or an HTML error page with the right status.
    A signed-out browser (Accept: text/html) is sent to sign in and back here (302)."""
    from shared.common.errors import OutOfScopeError
    from shared.common.identity import label_of
    from shared.common.ids import in_scope
    from shared.remediation.proposals import ApprovalError, ProposalNotFound, check_approver
    from shared.service.api import _proposals
    from shared.service.principal import login_url, wants_html
    from shared.service.storage import StorageUnavailable

    nonce = secrets.token_urlsafe(18)
    try:
        if not caller:
            login = login_url(path or "/")
            if path and wants_html(headers or {}):
                return HtmlResponse(302, "", {**page_headers(nonce), "Location": login})
            return _error_page(
                401,
                "Sign in first",
                "The review page needs a caller signed in through App Service Authentication.",
                nonce,
                link=(login, "Sign in") if path else None,
            )
        try:
            found = _proposals(ctx).get(proposal_id)
        except ProposalNotFound:
            return _error_page(404, "Not found", f"No proposal {proposal_id[:80]!r}.", nonce)
        proposal = found.to_dict()
        # Identities are object ids; APPROVERS' labels are shown beside them.
        proposal["requester"] = label_of(str(found.requester), ctx.settings["APPROVERS"])
        if not in_scope(found.gateway_id, ctx.settings.scopes):
            raise OutOfScopeError("the proposal's gateway is outside ALLOWED_SCOPES")
        refusal = None
        try:
            check_approver(found, caller, ctx.settings["APPROVERS"])
        except ApprovalError as exc:
            refusal = exc.message
        secret = str(ctx.settings["REVIEW_TOKEN_SECRET"])
        if refusal is None and not secret:
            refusal = "approvals from this page need REVIEW_TOKEN_SECRET to be set"
        if refusal is None and ctx.settings.kill_switch:
            refusal = "the kill switch is on: approvals are refused"
        job = _job_for(ctx, params.get("job", ""), proposal_id)
        token = issue_token(secret, proposal_id, caller) if refusal is None else ""
        body = render_review(
            proposal,
            caller=label_of(caller, ctx.settings["APPROVERS"]),
            token=token,
            refusal=refusal,
            job=job,
            nonce=nonce,
        )
        return HtmlResponse(200, body, page_headers(nonce))
    except StorageUnavailable as exc:
        log.warning("storage unavailable: %s", exc)
        return _error_page(503, "Try again", "State storage is unavailable; retry.", nonce)
    except OutOfScopeError as exc:
        return _error_page(403, "Out of scope", str(exc), nonce)
    except Exception:
        log.exception("unexpected failure rendering a review page")
        return _error_page(500, "Error", "Unexpected failure; see the function app's logs.", nonce)


def _job_for(ctx: AppContext, job_id: str, proposal_id: str) -> dict[str, Any] | None:
    """The approval job named in `?job=`, when it belongs to this proposal."""
    if not _JOB_ID.match(job_id or ""):
        return None
    job = ctx.storage.get_job(job_id)
    if job is None:
        return None
    data = job.to_dict()
    extra = data.get("extra") if isinstance(data.get("extra"), dict) else {}
    if proposal_id not in {data.get("proposal_id"), (extra or {}).get("proposal_id")}:
        return None
    return dict(data)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


_STYLE = """
:root { color-scheme: light; --line: #d0d7de; --muted: #57606a; --bad: #cf222e; --ok: #1a7f37; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
  color: #1f2328; background: #f6f8fa; }
main { max-width: 1200px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 16px 0 8px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px;
  margin: 16px 0; }
.muted { color: var(--muted); } .mono, code, pre { font-family: ui-monospace, Menlo, Consolas,
  monospace; font-size: 13px; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 10px;
  overflow-x: auto; white-space: pre-wrap; word-break: break-all; margin: 0 0 8px; }
.badge { display: inline-block; padding: 1px 10px; border-radius: 12px; font-size: 13px;
  font-weight: 600; border: 1px solid var(--line); background: #eaeef2; }
.badge.open { background: #ddf4ff; border-color: #54aeff; }
.badge.applied { background: #dafbe1; border-color: #4ac26b; }
.badge.failed, .badge.rejected { background: #ffebe9; border-color: #ff8182; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; overflow-wrap: anywhere; }
.sides { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 16px; }
.cert { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; margin: 0 0 8px; }
.cert.untrusted { border-left: 4px solid var(--bad); } .cert.trusted { border-left: 4px solid
  var(--ok); }
.cert h4 { margin: 0 0 6px; font-size: 14px; overflow-wrap: anywhere; }
ul.risks li { margin: 4px 0; }
.decide { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin-top: 12px; }
button { font: inherit; font-weight: 600; padding: 8px 20px; border-radius: 6px; cursor: pointer;
  border: 1px solid var(--line); }
button.approve { background: #1f883d; color: #fff; border-color: #1a7f37; }
button.reject { background: #fff; color: var(--bad); }
button:disabled { opacity: .5; cursor: default; }
textarea { width: 100%; font: inherit; min-height: 48px; }
#result { font-weight: 600; } .notice { padding: 8px 12px; border-radius: 6px; background: #fff8c5;
  border: 1px solid #d4a72c; }
"""

_SCRIPT = """
(function () {
  var box = document.getElementById("decide");
  if (box) {
    var out = document.getElementById("result");
    var buttons = box.querySelectorAll("button");
    var decide = function (kind) {
      buttons.forEach(function (b) { b.disabled = true; });
      out.textContent = kind === "approve" ? "Approving\\u2026" : "Rejecting\\u2026";
      fetch(box.dataset[kind], {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-Review-Token": box.dataset.token},
        body: JSON.stringify({reason: document.getElementById("reason").value})
      }).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (r.status === 202 && data.job) {
            var url = new URL(window.location.href);
            url.searchParams.set("job", data.job);
            window.location.replace(url.toString());
          } else if (r.ok) {
            window.location.reload();
          } else {
            var why = (data.error && data.error.message) || r.statusText;
            out.textContent = "Refused (" + r.status + "): " + why;
            buttons.forEach(function (b) { b.disabled = false; });
          }
        });
      }).catch(function (err) {
        out.textContent = "The request failed: " + err;
        buttons.forEach(function (b) { b.disabled = false; });
      });
    };
    document.getElementById("approve").addEventListener("click", function () {
      decide("approve");
    });
    document.getElementById("reject").addEventListener("click", function () {
      decide("reject");
    });
  }
  var refresh = Number(document.body.dataset.refresh || 0);
  if (refresh > 0) { window.setTimeout(function () { window.location.reload(); }, refresh); }
})();
"""


def render_review(
    proposal: Mapping[str, Any],
    *,
    caller: str,
    token: str,
    refusal: str | None,
    job: Mapping[str, Any] | None,
    nonce: str,
) -> str:
    """The page for one proposal (pure: data in, HTML out)."""
    status = str(proposal.get("status", ""))
    job_state = str((job or {}).get("state", ""))
    busy = status == "approved" or (job is not None and job_state in _UNFINISHED_JOB)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>Review proposal {_e(proposal.get('id'))}</title>",
        f'<style nonce="{_e(nonce)}">{_STYLE}</style></head>',
        f'<body data-refresh="{REFRESH_MS if busy else 0}"><main>',
        _header(proposal, caller),
        _result(proposal, job),
        _diagnosis(proposal.get("evidence") or []),
        _change(proposal),
        _risks(proposal),
        _decision(proposal, token, refusal),
        "</main>",
        f'<script nonce="{_e(nonce)}">{_SCRIPT}</script>',
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _word(value: Any) -> Any:
    return {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else value


def _kv(rows: Sequence[tuple[str, Any]], *, cls: str = "kv") -> str:
    items = "".join(
        f"<dt>{_e(k)}</dt><dd>{v if isinstance(v, _Raw) else _e(_word(v))}</dd>"
        for k, v in rows
        if v not in (None, "", [])
    )
    return f'<dl class="{cls}">{items}</dl>'


class _Raw(str):
    """Already-escaped HTML for _kv."""


def _header(proposal: Mapping[str, Any], caller: str) -> str:
    status = str(proposal.get("status", ""))
    gateway = str(proposal.get("gateway_id", ""))
    reasons = proposal.get("reasons") or []
    return (
        "<header>"
        f'<h1>Proposal <span class="mono">{_e(proposal.get("id"))}</span> '
        f'<span class="badge {_e(status)}" id="status">{_e(status)}</span></h1>'
        f'<p class="muted">Gateway <strong>{_e(gateway.rsplit("/", 1)[-1])}</strong> '
        f"&middot; requested by {_e(proposal.get('requester'))} "
        f"&middot; {_e(proposal.get('created_at'))} &middot; you are {_e(caller)}</p>"
        + _kv(
            [
                ("Gateway id", _Raw(f'<span class="mono">{_e(gateway)}</span>')),
                ("Why a proposal", "; ".join(str(r) for r in reasons)),
                ("Decided by", proposal.get("decided_by")),
                ("Decided at", proposal.get("decided_at")),
            ]
        )
        + "</header>"
    )


def _result(proposal: Mapping[str, Any], job: Mapping[str, Any] | None) -> str:
    if job is None and not proposal.get("outcome"):
        return ""
    rows: list[tuple[str, Any]] = []
    if job is not None:
        rows.append(("Job", _Raw(f'<span class="mono" id="job-id">{_e(job.get("job_id"))}</span>')))
        rows.append(("Job state", _Raw(f'<strong id="job-state">{_e(job.get("state"))}</strong>')))
        if job.get("error"):
            rows.append(("Error", job.get("error")))
    outcome = (job or {}).get("outcome") or proposal.get("outcome") or {}
    if isinstance(outcome, Mapping):
        rows += [
            ("Outcome", outcome.get("action")),
            ("Verified", outcome.get("verified")),
            ("ARM writes", outcome.get("arm_writes")),
            ("Change", outcome.get("change") or outcome.get("change_id")),
            ("Reason", outcome.get("reason")),
        ]
    return f'<section id="result-section"><h2>Result</h2>{_kv(rows)}</section>'


def _cert(cert: Mapping[str, Any], *, trusted: bool | None = None) -> str:
    cls = "" if trusted is None else " trusted" if trusted else " untrusted"
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
        ("SHA-1", _Raw(f'<span class="mono thumbprint">{_e(cert.get("sha1"))}</span>'))
        if cert.get("sha1")
        else ("SHA-1", None),
        ("SHA-256", _Raw(f'<span class="mono">{_e(cert.get("sha256"))}</span>'))
        if cert.get("sha256")
        else ("SHA-256", None),
    ]
    return f'<div class="cert{cls}"><h4>{_e(title)}</h4>{_kv(rows)}</div>'


def _chain(capture: Mapping[str, Any] | None, allowed: set[str]) -> str:
    if not capture:
        return '<p class="muted">No capture.</p>'
    if capture.get("error"):
        detail = capture.get("detail") or ""
        return f'<p class="notice">Handshake failed: {_e(capture.get("error"))} {_e(detail)}</p>'
    chain = capture.get("chain") or []
    if not chain:
        return '<p class="muted">The backend presented no certificate.</p>'
    return "".join(_cert(c, trusted=str(c.get("sha1", "")).upper() in allowed) for c in chain)


def _diagnosis(findings: Sequence[Any]) -> str:
    if not findings:
        return (
            '<section id="diagnosis"><h2>Diagnosis</h2><p class="muted">No findings.</p></section>'
        )
    blocks = []
    for finding in findings:
        if not isinstance(finding, Mapping):
            continue
        raw = finding.get("evidence")
        ev: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        allow = ev.get("allow_listed") or {}
        listed = [
            *[dict(c, kind="trusted root") for c in allow.get("trusted_root_certificates") or []],
            *[
                dict(c, kind="authentication")
                for c in allow.get("authentication_certificates") or []
            ],
        ]
        allowed = {str(c.get("sha1", "")).upper() for c in listed if c.get("sha1")}
        captures = ev.get("captures") or {}
        gateway_capture = captures.get("gateway")
        target = ev.get("target") or {}
        sni = target.get("sni") if target else (gateway_capture or {}).get("sni")
        handshake = _kv(
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
            f"{_chain(gateway_capture, allowed)}</div>",
            "<div><h3>Allow-listed on the gateway</h3>"
            + (
                "".join(_cert(c, trusted=True) for c in listed)
                or '<p class="muted">Nothing allow-listed on these settings.</p>'
            )
            + "</div>",
        ]
        alternative = captures.get("alternative")
        if alternative:
            columns.append(
                f"<div><h3>Presented under SNI {_e(alternative.get('sni'))}</h3>"
                f"{_chain(alternative, allowed)}</div>"
            )
        title = f"{finding.get('pool')} ~ {finding.get('settings')} \u2192 {finding.get('server')}"
        blocks.append(
            '<article class="finding">'
            f"<h3>{_e(title)}: {_e(finding.get('health'))}, cause "
            f'<span class="mono">{_e(finding.get("cause"))}</span></h3>'
            + (f"<p>{_e(ev.get('explanation'))}</p>" if ev.get("explanation") else "")
            + _kv([("Probe log", finding.get("probe_log"))])
            + "<h3>The gateway's handshake</h3>"
            + handshake
            + '<p class="muted">Green: on the gateway\'s allow-list; red: not on it.</p>'
            + f'<div class="sides">{"".join(columns)}</div>'
            + "".join(f'<p class="notice">{_e(w)}</p>' for w in finding.get("warnings") or [])
            + "</article>"
        )
    return f'<section id="diagnosis"><h2>Diagnosis</h2>{"".join(blocks)}</section>'


def _pre(text: Any, ident: str = "") -> str:
    attr = f' id="{_e(ident)}"' if ident else ""
    return f"<pre{attr}>{_e(text)}</pre>"


def _change(proposal: Mapping[str, Any]) -> str:
    r = proposal.get("renderings") or {}
    patch = json.dumps(r.get("json_patch") or [], indent=2)
    az = "\n".join(str(c) for c in r.get("az") or [])
    rollback = "\n".join(str(c) for c in r.get("az_rollback") or [])
    parts = [
        '<section id="change"><h2>The change</h2>',
        _pre(r.get("summary", "")),
        "<h3>JSON patch of the gateway (RFC 6902)</h3>",
        _pre(patch, "json-patch"),
        "<h3>The same change with the Azure CLI</h3>",
        _pre(az or "(none)", "az"),
        "<details><summary>Undo it with the Azure CLI</summary>",
        _pre(rollback or "(none)", "az-rollback"),
        "</details>",
    ]
    if r.get("bicep"):
        parts += ["<details><summary>Bicep fragment</summary>", _pre(r["bicep"]), "</details>"]
    if proposal.get("certificate_cer"):
        parts += [
            "<details><summary>Certificate to add (Base-64 CER)</summary>",
            _pre(proposal["certificate_cer"]),
            "</details>",
        ]
    parts.append("</section>")
    return "".join(parts)


def _risks(proposal: Mapping[str, Any]) -> str:
    items = [f"<li>{_e(w)}</li>" for w in proposal.get("warnings") or []]
    items.append(
        "<li>The bot reads the gateway again before writing: if the change is no longer needed "
        "the proposal closes as superseded, and a write that fails verification is rolled "
        "back.</li>"
    )
    check = proposal.get("check_after")
    return (
        '<section id="risks"><h2>Risks</h2><ul class="risks">'
        + "".join(items)
        + "</ul>"
        + (f"<h3>How to check it afterwards</h3>{_pre(check)}" if check else "")
        + "</section>"
    )


def _decision(proposal: Mapping[str, Any], token: str, refusal: str | None) -> str:
    status = str(proposal.get("status", ""))
    if status != "open":
        return (
            '<section id="decision"><h2>Decision</h2>'
            f"<p>This proposal is <strong>{_e(status)}</strong>; nothing to decide.</p></section>"
        )
    if refusal is not None:
        return (
            '<section id="decision"><h2>Decision</h2>'
            f'<p class="notice" id="refusal">You cannot decide this proposal: {_e(refusal)}.</p>'
            "</section>"
        )
    return (
        '<section id="decision"><h2>Decision</h2>'
        f'<div id="decide" data-approve="approve" data-reject="reject" data-token="{_e(token)}">'
        '<label for="reason">Reason (optional, kept with a rejection)</label>'
        '<textarea id="reason" maxlength="500"></textarea>'
        '<div class="decide">'
        '<button type="button" class="approve" id="approve">Approve and apply</button>'
        '<button type="button" class="reject" id="reject">Reject</button>'
        '<span id="result" role="status" aria-live="polite"></span></div>'
        '<noscript><p class="notice">The buttons need JavaScript.</p></noscript>'
        "</div></section>"
    )


def _error_page(
    status: int, title: str, message: str, nonce: str, *, link: tuple[str, str] | None = None
) -> HtmlResponse:
    anchor = f'<p><a href="{_e(link[0])}">{_e(link[1])}</a></p>' if link else ""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title>"
        f'<style nonce="{_e(nonce)}">{_STYLE}</style></head><body><main><section>'
        f"<h1>{_e(title)}</h1><p>{_e(message)}</p>{anchor}"
        f'<p class="muted">HTTP {status}</p></section></main></body></html>'
    )
    return HtmlResponse(status, body, page_headers(nonce))


__all__ = [
    "TOKEN_HEADER",
    "HtmlResponse",
    "csrf_refusal",
    "handle_review",
    "is_browser_request",
    "issue_token",
    "render_review",
    "token_problem",
]
