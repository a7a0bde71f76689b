"""Notification formats (shape checks) and `send` against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.common.settings import NotifyFormat
from shared.service.notify import EVENTS, format_message, make_event, notify, send

GID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ase"
    "/providers/Microsoft.Network/applicationGateways/agw-v1"
)


def event(kind: str = "proposal_created", **kw: Any) -> dict[str, Any]:
    return make_event(
        kind,
        gateway=GID,
        action="add_authentication_certificate",
        thumbprint="AB" * 20,
        settings=["ase-https", "ase-https-2"],
        proposal="20260301T120000Z-abcd",
        link="https://portal.example/proposals/20260301T120000Z-abcd",
        **kw,
    )


@pytest.mark.parametrize("kind", sorted(EVENTS))
def test_teams_adaptive_card(kind: str) -> None:
    msg = format_message(event(kind), NotifyFormat.TEAMS)
    assert msg["type"] == "message"
    (attachment,) = msg["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    title, facts = card["body"]
    assert title["type"] == "TextBlock" and "agw-v1" in title["text"]
    assert EVENTS[kind] in title["text"]
    values = {f["title"]: f["value"] for f in facts["facts"]}
    assert values["Gateway"] == GID and values["Thumbprint"] == "AB" * 20
    assert values["HTTP settings"] == "ase-https, ase-https-2"
    assert card["actions"][0]["type"] == "Action.OpenUrl"
    json.dumps(msg)


def test_slack_blocks_escape() -> None:
    msg = format_message(event("failed", reason="<script> & co"), "slack")
    assert msg["text"].startswith("Change failed")
    header, section, context = msg["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert section["text"]["type"] == "mrkdwn"
    assert "&lt;script&gt; &amp; co" in section["text"]["text"]
    assert "<script>" not in section["text"]["text"]
    assert context["elements"][0]["text"].startswith("<https://portal.example/")


def test_json_is_the_event() -> None:
    e = event("applied", by="bob")
    assert format_message(e, NotifyFormat.JSON) == e
    with pytest.raises(ValueError):
        make_event("exploded", gateway=GID, action="x")
    with pytest.raises(ValueError):
        format_message(e, "xml")


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[Any], list[int]]]:
    received: list[Any] = []
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append((self.headers["Content-Type"], json.loads(self.rfile.read(length))))
            self.send_response(status[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received, status
    finally:
        server.shutdown()
        server.server_close()


def test_send_posts_json(webhook: tuple[str, list[Any], list[int]]) -> None:
    url, received, _ = webhook
    payload = format_message(event(), NotifyFormat.SLACK)
    assert send(url, payload) is True
    assert received == [("application/json", payload)]
    assert notify(url, "teams", event()) is True
    assert received[-1][1]["type"] == "message"


def test_send_never_raises(webhook: tuple[str, list[Any], list[int]]) -> None:
    url, _, status = webhook
    status[0] = 500
    assert send(url, {"a": 1}) is False
    assert send("file:///etc/passwd", {"a": 1}) is False
    assert send("", {"a": 1}) is False
    assert notify("", "json", event()) is False
    assert send(url + "/bad\x00path", {"a": 1}) is False
    # A closed port on loopback: connection refused, reported as False.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    assert send(f"http://127.0.0.1:{closed_port}/", {"a": 1}, timeout=2) is False


def test_bare_event_dict_gets_a_title() -> None:
    bare = {"event": "proposal_applied", "gateway": GID, "action": "set_backend_host_name"}
    card = format_message(bare, "teams")["attachments"][0]["content"]
    assert card["body"][0]["text"] == "Proposal applied: agw-v1"
    assert "actions" not in card
    assert format_message({"event": "custom"}, "slack")["text"] == "custom"
