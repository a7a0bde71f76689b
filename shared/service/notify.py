"""Notifications of proposals and outcomes to an optional webhook, formatted per target.

Teams: a Workflows webhook taking a message with an Adaptive Card 1.4 attachment. Slack: an
incoming webhook taking `text` plus Block Kit `blocks`. json: the event as is. `send` is the only
I/O and never raises: a lost notification must not fail a remediation.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from shared.common.settings import NotifyFormat, Settings

log = logging.getLogger(__name__)

EVENTS = {
    "proposal_created": "Change proposed",
    "approved": "Proposal approved",
    "rejected": "Proposal rejected",
    "applied": "Change applied",
    "failed": "Change failed",
    "rolled_back": "Change rolled back",
    # The same outcomes reached through a proposal.
    "proposal_approved": "Proposal approved",
    "proposal_rejected": "Proposal rejected",
    "proposal_applied": "Proposal applied",
    "proposal_failed": "Proposal failed",
    # Holds (shared.remediation.holds): what the bot was told to leave alone.
    "hold_set": "Hold set",
    "hold_released": "Hold released",
    # The expiry watch: a certificate the gateway relies on or is presented entered the window.
    "expiring": "Certificate expiring",
}
_FACTS = (
    ("gateway", "Gateway"),
    ("action", "Action"),
    ("thumbprint", "Thumbprint"),
    ("settings", "HTTP settings"),
    ("mode", "Mode"),
    ("proposal", "Proposal"),
    ("change", "Change"),
    ("hold", "Hold"),
    ("by", "By"),
    ("reason", "Reason"),
    ("not_after", "Not after"),
)
_SLACK_TEXT_MAX = 2900  # section text limit is 3000 characters


def make_event(
    kind: str,
    *,
    gateway: str,
    action: str,
    thumbprint: str | None = None,
    settings: tuple[str, ...] | list[str] = (),
    proposal: str | None = None,
    change: str | None = None,
    by: str | None = None,
    reason: str | None = None,
    link: str | None = None,
    mode: str | None = None,
) -> dict[str, Any]:
    """The event every format starts from; unknown kinds are refused."""
    if kind not in EVENTS:
        raise ValueError(f"unknown event {kind!r}")
    return {
        "event": kind,
        "title": EVENTS[kind],
        "gateway": gateway,
        "action": action,
        "thumbprint": thumbprint,
        "settings": list(settings),
        "mode": mode,
        "proposal": proposal,
        "change": change,
        "by": by,
        "reason": reason,
        "link": link,
    }


def _title(event: Mapping[str, Any]) -> str:
    title = event.get("title") or EVENTS.get(str(event.get("event")), str(event.get("event")))
    gateway = str(event.get("gateway") or "").rsplit("/", 1)[-1]
    return f"{title}: {gateway}" if gateway else str(title)


def _facts(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    facts = []
    for key, label in _FACTS:
        value = event.get(key)
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        if value:
            facts.append((label, str(value)))
    return facts


def _teams(event: Mapping[str, Any]) -> dict[str, Any]:
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": _title(event),
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(event)]},
        ],
    }
    if event.get("link"):
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": event["link"]}]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def _slack_escape(text: str) -> str:
    # Slack mrkdwn control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(event: Mapping[str, Any]) -> dict[str, Any]:
    title = _title(event)
    lines = "\n".join(f"*{k}:* {_slack_escape(v)}" for k, v in _facts(event))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": lines[:_SLACK_TEXT_MAX] or "-"}},
    ]
    link = event.get("link")
    if link:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{_slack_escape(str(link))}|Open>"}],
            }
        )
    return {"text": title, "blocks": blocks}


def format_message(event: Mapping[str, Any], fmt: NotifyFormat | str) -> dict[str, Any]:
    """The webhook body for `event` in the target's format."""
    fmt = NotifyFormat(fmt)
    if fmt is NotifyFormat.TEAMS:
        return _teams(event)
    if fmt is NotifyFormat.SLACK:
        return _slack(event)
    return dict(event)


def send(url: str, payload: Mapping[str, Any], *, timeout: float = 5.0) -> bool:
    """POST JSON to the webhook; True on a 2xx answer. Never raises: failures are logged."""
    if not url or not url.lower().startswith(("https://", "http://")):
        log.warning("notification not sent: no http(s) webhook URL")
        return False
    body = json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            ok = 200 <= response.status < 300
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        # The URL is a secret (it carries the webhook's token): log the host only.
        host = urllib.parse.urlsplit(url).hostname
        log.warning("notification to %s failed: %s", host or "webhook", type(exc).__name__)
        return False
    if not ok:
        log.warning("notification answered HTTP %s", response.status)
    return ok


def notify(url: str, fmt: NotifyFormat | str, event: Mapping[str, Any]) -> bool:
    """Format and send; False (and nothing sent) when no webhook is configured."""
    if not url:
        return False
    return send(url, format_message(event, fmt))


def app_base_url(env: Mapping[str, str] | None = None) -> str | None:
    """Where the function app answers: FUNCTIONS_URL (set locally by `python -m sandbox serve
    --functions`, or to name a custom domain), else https://WEBSITE_HOSTNAME (set by App Service);
    None when neither is known (the CLI)."""
    env = os.environ if env is None else env
    explicit = str(env.get("FUNCTIONS_URL") or "").strip().rstrip("/")
    if explicit.lower().startswith(("https://", "http://")):
        return explicit
    host = str(env.get("WEBSITE_HOSTNAME") or "").strip().strip("/")
    return f"https://{host}" if host and "/" not in host else None


def review_url(proposal_id: str, env: Mapping[str, str] | None = None) -> str | None:
    """The review page of a proposal (GET /api/proposals/{id}/review), when the base is known."""
    base = app_base_url(env)
    if not base or not proposal_id:
        return None
    return f"{base}/api/proposals/{urllib.parse.quote(proposal_id, safe='')}/review"


def with_review_url(
    event: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The event with `review_url` (and `link`, unless it has one) for a proposal's events."""
    out = dict(event)
    url = review_url(str(event.get("proposal") or ""), env)
    if url:
        out["review_url"] = url
        out["link"] = out.get("link") or url
    return out


def notifier(settings: Settings) -> Callable[[str, dict[str, Any]], None]:
    """The Remediator's notify callable: events go to NOTIFY_WEBHOOK_URL when one is set, with a
    link to the proposal's review page when the app knows its own URL."""
    url = str(settings["NOTIFY_WEBHOOK_URL"])
    fmt = settings["NOTIFY_WEBHOOK_FORMAT"]

    def send_event(kind: str, event: dict[str, Any]) -> None:
        if url:
            titled = {"title": EVENTS.get(kind, kind.replace("_", " ")), **event}
            notify(url, fmt, with_review_url(titled))

    return send_event


__all__ = [
    "EVENTS",
    "app_base_url",
    "format_message",
    "make_event",
    "notifier",
    "notify",
    "review_url",
    "send",
    "with_review_url",
]
