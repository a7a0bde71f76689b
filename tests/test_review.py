"""The review page's pure parts: anti-CSRF tokens and refusals, escaping, the CSP, and the
review link in notifications (issue 13, deliverable 8; the browser test is tests/browser)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.service.notify import format_message, review_url, with_review_url
from shared.service.review import (
    csrf_refusal,
    is_browser_request,
    issue_token,
    page_headers,
    render_review,
    token_problem,
)

SECRET = "s3cret-for-tests"
PID = "20250603T081530Z-3fa2c1d0"
ALICE = "alice@contoso.com"
HOST = {"Host": "bot.example:7071"}
NOW = 1_800_000_000.0


def test_a_token_is_bound_to_the_proposal_the_caller_and_time() -> None:
    token = issue_token(SECRET, PID, ALICE, now=NOW)
    assert token_problem(SECRET, token, PID, ALICE, now=NOW) is None
    assert token_problem(SECRET, token, PID, " Alice@Contoso.com ", now=NOW) is None
    assert token_problem(SECRET, token, "other", ALICE, now=NOW) == "review_token_invalid"
    assert token_problem(SECRET, token, PID, "bob@contoso.com", now=NOW) == "review_token_invalid"
    assert token_problem("another", token, PID, ALICE, now=NOW) == "review_token_invalid"
    assert token_problem("", token, PID, ALICE, now=NOW) == "review_token_invalid"
    assert token_problem(SECRET, token, PID, ALICE, now=NOW + 3601) == "review_token_expired"
    expiry, mac = token.split(".")
    forged = f"{int(expiry) + 10**6}.{mac}"  # a later expiry does not keep the signature
    assert token_problem(SECRET, forged, PID, ALICE, now=NOW) == "review_token_invalid"
    for junk in ("", ".", "abc", "1.", "9" * 40 + ".x"):
        assert token_problem(SECRET, junk, PID, ALICE, now=NOW) is not None


def _refusal(headers: dict[str, str], body: bytes = b"{}") -> tuple[str, str] | None:
    return csrf_refusal(
        headers, body, proposal_id=PID, caller=ALICE, secret=SECRET, env={}, now=NOW
    )


def test_non_browser_clients_need_no_token() -> None:
    for headers in ({}, {"x-functions-key": "k", **HOST}, {"User-Agent": "curl/8", **HOST}):
        assert not is_browser_request(headers)
        assert _refusal(headers) is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Origin": "http://bot.example:7072"}, "cross_site_request"),  # another port
        ({"Origin": "https://evil.example"}, "cross_site_request"),
        ({"Origin": "null"}, "cross_site_request"),  # sandboxed frame, data: URL
        ({"Sec-Fetch-Site": "same-site"}, "cross_site_request"),
        ({"Sec-Fetch-Site": "cross-site"}, "cross_site_request"),
        ({"Sec-Fetch-Site": "none"}, "cross_site_request"),
        (
            {"Origin": "http://bot.example:7071", "Sec-Fetch-Site": "same-origin"},
            "review_token_missing",
        ),
        ({"Cookie": "AppServiceAuthSession=x"}, "review_token_missing"),
        ({"Sec-Fetch-Mode": "cors", "X-Review-Token": "1.x"}, "review_token_invalid"),
    ],
)
def test_browser_requests_are_refused_unless_same_origin_with_a_token(
    headers: dict[str, str], reason: str
) -> None:
    refused = _refusal({**HOST, **headers})
    assert refused is not None and refused[0] == reason


def test_a_same_origin_request_with_the_pages_token_passes() -> None:
    token = issue_token(SECRET, PID, ALICE, now=NOW)
    same = {**HOST, "Origin": "http://bot.example:7071", "Sec-Fetch-Site": "same-origin"}
    assert _refusal({**same, "X-Review-Token": token}) is None
    # A form field or a JSON field carries it too.
    form = {**same, "Content-Type": "application/x-www-form-urlencoded"}
    assert _refusal(form, f"review_token={token}".encode()) is None
    assert _refusal(same, f'{{"review_token": "{token}"}}'.encode()) is None
    # Behind App Service's front ends the app's own host name counts as this origin.
    azure = {"Host": "internal", "Origin": "https://bot.azurewebsites.net"}
    assert (
        csrf_refusal(
            {**azure, "X-Review-Token": token},
            b"",
            proposal_id=PID,
            caller=ALICE,
            secret=SECRET,
            env={"WEBSITE_HOSTNAME": "bot.azurewebsites.net"},
            now=NOW,
        )
        is None
    )


HOSTILE = '<script>alert("x")</script>&"\''


def _proposal(**changes: Any) -> dict[str, Any]:
    cert = {"subject": HOSTILE, "sha1": "AB" * 20, "sha256": "CD" * 32, "sans": [HOSTILE]}
    proposal = {
        "id": PID,
        "status": "open",
        "gateway_id": f"/subscriptions/s/resourceGroups/rg/providers/x/{HOSTILE}",
        "requester": HOSTILE,
        "created_at": "2025-06-03T08:15:30+00:00",
        "reasons": [HOSTILE],
        "renderings": {
            "summary": HOSTILE,
            "json_patch": [{"op": "add", "path": "/x", "value": HOSTILE}],
            "az": [f"az network application-gateway ... {HOSTILE}"],
            "az_rollback": [],
            "bicep": HOSTILE,
        },
        "evidence": [
            {
                "pool": HOSTILE,
                "settings": "s",
                "server": "10.0.0.1",
                "health": "unhealthy",
                "cause": HOSTILE,
                "evidence": {
                    "explanation": HOSTILE,
                    "target": {"address": "10.0.0.1", "port": 443, "sni": HOSTILE},
                    "captures": {"gateway": {"chain": [cert]}},
                    "allow_listed": {"trusted_root_certificates": [dict(cert, name=HOSTILE)]},
                },
            }
        ],
        "certificate_cer": HOSTILE,
        "check_after": HOSTILE,
        "warnings": [HOSTILE],
    }
    proposal.update(changes)
    return proposal


def test_the_page_escapes_everything_and_scripts_only_with_its_nonce() -> None:
    page = render_review(_proposal(), caller=HOSTILE, token="t", refusal=None, job=None, nonce="N1")
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)" in page
    assert re.findall(r"<script[^>]*>", page) == ['<script nonce="N1">']
    assert re.findall(r"<style[^>]*>", page) == ['<style nonce="N1">']
    assert " on" + "click=" not in page and "javascript:" not in page
    assert 'data-token="t"' in page and 'id="approve"' in page
    csp = page_headers("N1")["Content-Security-Policy"]
    assert "script-src 'nonce-N1'" in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp


def test_decided_or_refused_proposals_have_no_buttons() -> None:
    applied = render_review(
        _proposal(status="applied"), caller=ALICE, token="", refusal=None, job=None, nonce="n"
    )
    assert 'id="approve"' not in applied and "nothing to decide" in applied
    own = render_review(
        _proposal(), caller=ALICE, token="", refusal="the requester cannot", job=None, nonce="n"
    )
    assert 'id="approve"' not in own and "the requester cannot" in own
    running = render_review(
        _proposal(status="approved"),
        caller=ALICE,
        token="",
        refusal=None,
        job={"job_id": "j", "state": "running"},
        nonce="n",
    )
    assert 'data-refresh="1500"' in running and 'id="job-state">running<' in running


def test_notifications_link_to_the_review_page() -> None:
    assert review_url(PID, {}) is None  # the CLI does not know an app URL
    assert review_url(PID, {"WEBSITE_HOSTNAME": "bot.azurewebsites.net"}) == (
        f"https://bot.azurewebsites.net/api/proposals/{PID}/review"
    )
    local = {"FUNCTIONS_URL": "http://127.0.0.1:7071/", "WEBSITE_HOSTNAME": "x"}
    assert review_url(PID, local) == f"http://127.0.0.1:7071/api/proposals/{PID}/review"
    event = with_review_url({"event": "proposal_created", "proposal": PID}, local)
    assert event["review_url"] == event["link"] == review_url(PID, local)
    assert "review_url" not in with_review_url({"event": "applied", "proposal": None}, local)
    card = format_message(event, "teams")["attachments"][0]["content"]
    assert card["actions"][0]["url"] == event["review_url"]
