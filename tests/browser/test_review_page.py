"""The proposal review page in a real browser (issue 13, deliverable 8; issue 17): an approver
follows the link while signed out, is sent through sign-in (App Service Authentication, emulated
by sandbox/easyauth.py) and back, reads the diagnosis and the exact change, approves, and watches
the job finish; a page on another origin that posts to the approve URL is refused and the
proposal stays open."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sandbox.alerts import common_alert
from sandbox.easyauth import APPROVER, principal_headers
from tests.serve_process import Served, start_served

pytestmark = [pytest.mark.slow, pytest.mark.azurite, pytest.mark.sandbox]

WAIT = 60.0  # upper bound on a loaded 2-core machine, not a timed assertion


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    # /.auth/login/aad signs in APPROVER (an object id in APPROVERS), as Entra ID would.
    served = start_served(tmp_path, "ilb-ase-v2-nosni", "--rbac", "infra")
    try:
        yield served
    finally:
        assert served.stop() == 0, served.output()


def _puts(served: Served) -> int:
    context = ssl.create_default_context(cafile=served.env["REQUESTS_CA_BUNDLE"])
    url = served.env["SANDBOX_CONTROL_URL"] + "/requests"
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        return sum(1 for r in json.loads(response.read()) if r["method"] == "PUT")


def _proposal_from_alert(served: Served) -> dict[str, Any]:
    gateway = served.env["SANDBOX_GATEWAY_IDS"].split(",")[0]
    status, accepted = served.call(
        "POST", "alerts", common_alert(gateway, alert_id=str(uuid.uuid4()))
    )
    assert status == 202, accepted
    job = served.wait_job(accepted["jobs"][0])
    assert job["state"] == "proposed", job
    status, proposal = served.call("GET", f"proposals/{job['proposal_id']}")
    assert status == 200 and proposal["status"] == "open"
    return dict(proposal)


class _Forger(BaseHTTPRequestHandler):
    """Another origin (same host, another port: "same-site" to the browser) with a page that
    submits a form to the approve URL as soon as it loads."""

    target = ""

    def do_GET(self) -> None:
        body = (
            "<!doctype html><html><body>"
            f'<form id="f" method="POST" action="{self.target}">'
            '<input name="review_token" value="1999999999.forged"><input name="reason" value="x">'
            "</form><script>document.getElementById('f').submit();</script></body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _responses(browser: Any) -> list[tuple[str, int, str]]:
    """(url, status, Location) of every response since the last call, redirects included, from
    Chromium's performance log (a redirect shows as the next request's redirectResponse)."""
    seen: list[tuple[str, int, str]] = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        response = None
        if message.get("method") == "Network.responseReceived":
            response = params["response"]
        elif message.get("method") == "Network.requestWillBeSent":
            response = params.get("redirectResponse")
        if response:
            headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
            seen.append((response["url"], int(response["status"]), headers.get("location", "")))
    return seen


def _status_of(browser: Any, url: str) -> int | None:
    """The HTTP status of the last response for `url`, from Chromium's performance log."""
    statuses = [status for seen, status, _ in _responses(browser) if seen == url]
    return statuses[-1] if statuses else None


def _wait(browser: Any, predicate: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate(browser):
                return
        except Exception as exc:  # the page reloads itself while the job runs
            last = exc
        time.sleep(0.2)
    pytest.fail(f"the page did not get there within {timeout:.0f} s ({last}): {browser.title}")


def test_review_page_approve_and_forged_post(served: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    proposal = _proposal_from_alert(served)
    pid = proposal["id"]
    review = f"{served.url}/api/proposals/{pid}/review"
    approve = f"{served.url}/api/proposals/{pid}/approve"

    # Forged identities get nowhere: App Service (here sandbox/easyauth.py) strips a caller's own
    # principal headers, and a name alone is no identity to the app either. 401, nothing written.
    for forged in (
        {"X-MS-CLIENT-PRINCIPAL-NAME": APPROVER.name},
        principal_headers(APPROVER),
    ):
        status, body = served.call("POST", f"proposals/{pid}/approve", {}, headers=forged)
        assert status == 401 and body["error"]["code"] == "Unauthenticated", body
        assert (
            body["login"] == f"/.auth/login/aad?post_login_redirect_uri=/api/proposals/{pid}/review"
        )
    assert served.call("GET", f"proposals/{pid}")[1]["status"] == "open"
    assert _puts(served) == 0

    # Signed out, the link sends the browser to sign in and back to the page.
    browser.get(review)
    hops = [hop for hop in _responses(browser) if hop[0].startswith(served.url)]
    login = f"/.auth/login/aad?post_login_redirect_uri=/api/proposals/{pid}/review"
    assert hops[0] == (review, 302, login), hops
    assert hops[1][:2] == (served.url + login, 302), hops
    assert hops[-1][:2] == (review, 200), hops
    assert browser.current_url == review
    assert APPROVER.name in browser.find_element(By.TAG_NAME, "body").text  # APPROVERS' label

    # The page: the diagnosis side by side, the exact change and its risks.
    text = browser.find_element(By.TAG_NAME, "body").text
    finding = proposal["evidence"][0]["evidence"]
    presented = finding["captures"]["gateway"]["chain"][0]
    allowed = finding["allow_listed"]["trusted_root_certificates"][0]
    for thumbprint in (presented["sha1"], presented["sha256"], allowed["sha1"]):
        assert thumbprint in text
    assert "none (no SNI sent)" in text and presented["sans"][0] in text
    # The chain under SNI ends at the uploaded root: drawn trusted, and through which.
    verdicts = [p.text for p in browser.find_elements(By.CSS_SELECTOR, "p.trust")]
    assert verdicts[0].startswith("not trusted")
    assert verdicts[1].startswith(f"trusted through {allowed['name']} (trusted root)")
    assert "Backend health says" in text
    patch = json.loads(browser.find_element(By.ID, "json-patch").text)
    assert patch == proposal["renderings"]["json_patch"]
    assert browser.find_element(By.ID, "az").text == proposal["renderings"]["az"][0]
    assert "connection-draining" in browser.find_element(By.ID, "risks").text
    assert browser.find_element(By.ID, "status").text == "open"

    # Same origin but without the page's token (a script that did not come from the page).
    answer = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('approve', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: '{}'}).then(r => r.json().then(b => done([r.status, b])));"
    )
    assert answer[0] == 403 and answer[1]["error"]["reason"] == "review_token_missing"

    # A page on another origin submits a form to the approve URL: refused, nothing changes.
    _Forger.target = approve
    forger = ThreadingHTTPServer(("127.0.0.1", 0), _Forger)
    threading.Thread(target=forger.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{forger.server_address[1]}/win-a-prize")
        _wait(browser, lambda b: b.current_url == approve)
        _wait(browser, lambda b: "CrossSiteRequest" in b.find_element(By.TAG_NAME, "body").text)
        assert _status_of(browser, approve) == 403
    finally:
        forger.shutdown()
        forger.server_close()
    assert served.call("GET", f"proposals/{pid}")[1]["status"] == "open"
    assert _puts(served) == 0

    # The approver approves on the page and sees the job finish.
    browser.get(review)
    browser.find_element(By.ID, "approve").click()
    _wait(browser, lambda b: b.find_element(By.ID, "job-state").text == "succeeded")
    _wait(browser, lambda b: b.find_element(By.ID, "status").text == "applied")
    assert "verified" in browser.find_element(By.ID, "result-section").text.lower()
    final = served.call("GET", f"proposals/{pid}")[1]
    assert (final["status"], final["decided_by"]) == ("applied", APPROVER.object_id)
    assert _puts(served) == 1
