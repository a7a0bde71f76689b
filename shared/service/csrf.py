"""Cross-site protection of `POST /api/proposals/{id}/approve|reject` (docs/operations.md, "Review
page").

A request that carries browser markers (`Origin`, any `Sec-Fetch-*`, `Cookie`) must be
same-origin and carry the review token the page was rendered with (`X-Review-Token` header, or a
`review_token` field), an HMAC over (proposal id, caller, expiry) keyed by REVIEW_TOKEN_SECRET.
A request without browser markers (CLI, automation with a function key) is not a browser's
ambient-credential request, so it needs no token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

TOKEN_HEADER = "x-review-token"  # noqa: S105 - a header name
TOKEN_FIELD = "review_token"  # noqa: S105 - a form field name
TOKEN_TTL_SECONDS = 3600
_BROWSER_MARKERS = ("origin", "cookie")


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
    """The app's own host names: the `Host` the platform routed the request by (App Service's
    front end only routes host names bound to the app), `WEBSITE_HOSTNAME` and the configured
    public URL (`FUNCTIONS_URL`, for a proxy or a custom domain). Never `X-Forwarded-Host`: any
    client can send it, and App Service passes it through."""
    lowered = _lowered(headers)
    hosts = {lowered.get("host", "")}
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


__all__ = [
    "TOKEN_FIELD",
    "TOKEN_HEADER",
    "TOKEN_TTL_SECONDS",
    "csrf_refusal",
    "is_browser_request",
    "issue_token",
    "token_problem",
]
