"""The proposal review page (`GET /api/proposals/{id}/review`).

The page is for a person behind App Service Authentication: the diagnosis (each chain the backend
presented, whether and through which allow-listed certificate the gateway would trust it, and the
probe log tied to the cause: `review_diagnosis`), the exact change (JSON patch, `az` commands),
its risks, and Approve / Reject buttons. It is built with the standard library only: every value
goes through `html.escape`, nothing is loaded from elsewhere, and a strict
Content-Security-Policy admits only the page's own nonce'd script and style.

The anti-CSRF checks that guard approve/reject live in `shared.service.csrf` (re-exported here).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.remediation.proposals import ProposalStore
from shared.service.app import AppContext
from shared.service.csrf import (
    TOKEN_HEADER,
    csrf_refusal,
    is_browser_request,
    issue_token,
    token_problem,
)
from shared.service.review_diagnosis import diagnosis_html
from shared.service.review_html import Raw, e, kv, pre

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
_UNFINISHED_JOB = {"queued", "running"}
REFRESH_MS = 1500


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
    proposals: ProposalStore | None = None,
    headers: Mapping[str, str] | None = None,
) -> HtmlResponse:
    """GET /api/proposals/{id}/review: the page, or an HTML error page with the right status.
    `proposals` is the store to read (the app's blob store when not given). A signed-out
    browser (Accept: text/html) is sent to sign in and back here (302)."""
    from shared.common.errors import OutOfScopeError
    from shared.common.identity import label_of
    from shared.common.ids import in_scope
    from shared.remediation.proposals import ApprovalError, ProposalNotFound, check_approver
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
            found = (proposals or _blob_store(ctx)).get(proposal_id)
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


def _blob_store(ctx: AppContext) -> ProposalStore:
    from shared.service.proposals_blob import BlobProposalStore

    return BlobProposalStore(ctx.storage)


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
.cert.unknown { border-left: 4px dashed var(--muted); }
.trust { font-weight: 600; margin: 0 0 6px; } .trust.trusted { color: var(--ok); }
.trust.untrusted { color: var(--bad); } .trust.unknown { color: var(--muted); }
.trust .muted { font-weight: 400; }
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
        f"<title>Review proposal {e(proposal.get('id'))}</title>",
        f'<style nonce="{e(nonce)}">{_STYLE}</style></head>',
        f'<body data-refresh="{REFRESH_MS if busy else 0}"><main>',
        _header(proposal, caller),
        _result(proposal, job),
        diagnosis_html(proposal.get("evidence") or [], action=_action(proposal)),
        _change(proposal),
        _risks(proposal),
        _decision(proposal, token, refusal),
        "</main>",
        f'<script nonce="{e(nonce)}">{_SCRIPT}</script>',
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _action(proposal: Mapping[str, Any]) -> str | None:
    plan = proposal.get("plan")
    action = plan.get("action") if isinstance(plan, Mapping) else None
    return str(action) if action else None


def _header(proposal: Mapping[str, Any], caller: str) -> str:
    status = str(proposal.get("status", ""))
    gateway = str(proposal.get("gateway_id", ""))
    reasons = proposal.get("reasons") or []
    return (
        "<header>"
        f'<h1>Proposal <span class="mono">{e(proposal.get("id"))}</span> '
        f'<span class="badge {e(status)}" id="status">{e(status)}</span></h1>'
        f'<p class="muted">Gateway <strong>{e(gateway.rsplit("/", 1)[-1])}</strong> '
        f"&middot; requested by {e(proposal.get('requester'))} "
        f"&middot; {e(proposal.get('created_at'))} &middot; you are {e(caller)}</p>"
        + kv(
            [
                ("Gateway id", Raw(f'<span class="mono">{e(gateway)}</span>')),
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
        rows.append(("Job", Raw(f'<span class="mono" id="job-id">{e(job.get("job_id"))}</span>')))
        rows.append(("Job state", Raw(f'<strong id="job-state">{e(job.get("state"))}</strong>')))
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
    return f'<section id="result-section"><h2>Result</h2>{kv(rows)}</section>'


def _change(proposal: Mapping[str, Any]) -> str:
    r = proposal.get("renderings") or {}
    patch = json.dumps(r.get("json_patch") or [], indent=2)
    az = "\n".join(str(c) for c in r.get("az") or [])
    rollback = "\n".join(str(c) for c in r.get("az_rollback") or [])
    parts = [
        '<section id="change"><h2>The change</h2>',
        pre(r.get("summary", "")),
        "<h3>JSON patch of the gateway (RFC 6902)</h3>",
        pre(patch, "json-patch"),
        "<h3>The same change with the Azure CLI</h3>",
        pre(az or "(none)", "az"),
        "<details><summary>Undo it with the Azure CLI</summary>",
        pre(rollback or "(none)", "az-rollback"),
        "</details>",
    ]
    if r.get("bicep"):
        parts += ["<details><summary>Bicep fragment</summary>", pre(r["bicep"]), "</details>"]
    if proposal.get("certificate_cer"):
        parts += [
            "<details><summary>Certificate to add (Base-64 CER)</summary>",
            pre(proposal["certificate_cer"]),
            "</details>",
        ]
    parts.append("</section>")
    return "".join(parts)


def _risks(proposal: Mapping[str, Any]) -> str:
    items = [f"<li>{e(w)}</li>" for w in proposal.get("warnings") or []]
    items.append(
        "<li>The bot reads the gateway again before writing: if the change is no longer needed "
        "the proposal closes as superseded.</li>",
    )
    items.append(
        '<li id="rollback-promise">If the gateway update fails and leaves the gateway '
        "<code>Failed</code>, the bot removes what it added. A change that is written but does "
        "not turn backend health healthy before the verification deadline stays in place "
        "(reported with <em>verified: no</em>): undo it with the <code>az</code> commands "
        "above, or roll the change back from the CLI or the API.</li>"
    )
    check = proposal.get("check_after")
    return (
        '<section id="risks"><h2>Risks</h2><ul class="risks">'
        + "".join(items)
        + "</ul>"
        + (f"<h3>How to check it afterwards</h3>{pre(check)}" if check else "")
        + "</section>"
    )


def _decision(proposal: Mapping[str, Any], token: str, refusal: str | None) -> str:
    status = str(proposal.get("status", ""))
    if status != "open":
        return (
            '<section id="decision"><h2>Decision</h2>'
            f"<p>This proposal is <strong>{e(status)}</strong>; nothing to decide.</p></section>"
        )
    if refusal is not None:
        return (
            '<section id="decision"><h2>Decision</h2>'
            f'<p class="notice" id="refusal">You cannot decide this proposal: {e(refusal)}.</p>'
            "</section>"
        )
    return (
        '<section id="decision"><h2>Decision</h2>'
        f'<div id="decide" data-approve="approve" data-reject="reject" data-token="{e(token)}">'
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
    anchor = f'<p><a href="{e(link[0])}">{e(link[1])}</a></p>' if link else ""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title>"
        f'<style nonce="{e(nonce)}">{_STYLE}</style></head><body><main><section>'
        f"<h1>{e(title)}</h1><p>{e(message)}</p>{anchor}"
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
