"""The review page's pure parts: anti-CSRF tokens and refusals, escaping, the CSP, the review
link in notifications, and the diagnosis section: the gateway's verdict on each presented chain
(through which allow-listed certificate), the probe log tied to the cause, and the rollback
promise the code keeps (the browser test is tests/browser)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import test_tls_probe
from test_diagnosis import HOST as APP_HOST
from test_diagnosis import V2_INTERMEDIATE, ilb, run, seed_v1, v2_doc, v2_health
from test_tls_probe import Pki, TlsServer

from shared.core.report import to_json
from shared.remediation.proposals import ProposalNotFound
from shared.service.notify import format_message, review_url, with_review_url
from shared.service.review import (
    csrf_refusal,
    handle_review,
    is_browser_request,
    issue_token,
    page_headers,
    render_review,
    token_problem,
)
from shared.service.review_trust import chain_trust

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


def test_a_client_sent_forwarded_host_is_not_this_origin() -> None:
    token = issue_token(SECRET, PID, ALICE, now=NOW)
    forged = {
        "Host": "bot.example:7071",
        "X-Forwarded-Host": "evil.example",
        "Origin": "https://evil.example",
        "X-Review-Token": token,
    }
    refused = _refusal(forged)
    assert refused is not None and refused[0] == "cross_site_request"
    # The configured public URL (a proxy or custom domain in front of the app) still counts.
    proxied = {**forged, "Origin": "https://bot.contoso.com"}
    assert (
        csrf_refusal(
            proxied,
            b"",
            proposal_id=PID,
            caller=ALICE,
            secret=SECRET,
            env={"FUNCTIONS_URL": "https://bot.contoso.com/"},
            now=NOW,
        )
        is None
    )


# ---- the diagnosis section: trust per chain ---------------------------------------------------

pki = test_tls_probe.pki
servers = test_tls_probe.servers


def _findings(diagnosis: Any) -> list[dict[str, Any]]:
    return json.loads(json.dumps(to_json(diagnosis)))["findings"]


def _verdicts(page: str) -> list[str]:
    return re.findall(r'data-verdict="(\w+)"', page)


def test_v2_the_chain_under_sni_is_trusted_through_the_uploaded_root(
    pki: Pki, servers: list[TlsServer]
) -> None:
    backend = ilb(pki).start()
    servers.append(backend)
    doc = v2_doc(backend.port, roots=[pki.root], listeners={"ase-https": APP_HOST})
    findings = _findings(run(doc, v2_health(V2_INTERMEDIATE)))
    ev = findings[0]["evidence"]
    allow = ev["allow_listed"]
    gateway = chain_trust(ev["captures"]["gateway"]["chain"], allow, "v2")
    under_sni = chain_trust(ev["captures"]["alternative"]["chain"], allow, "v2")
    assert gateway.verdict == "untrusted" and "self-signed leaf" in gateway.reason
    assert under_sni.verdict == "trusted" and under_sni.through == "root-0"
    assert under_sni.headline() == "trusted through root-0 (trusted root)"

    page = render_review(
        _proposal(evidence=findings, plan={"action": "set_backend_host_name"}),
        caller=ALICE,
        token="t",
        refusal=None,
        job=None,
        nonce="n",
    )
    assert _verdicts(page) == ["untrusted", "trusted"]
    assert "trusted through root-0 (trusted root)" in page
    # Every certificate of the trusted chain is drawn trusted, none of it red.
    sni_column = page.split("Presented under SNI")[1]
    assert 'class="cert untrusted"' not in sni_column
    assert sni_column.count('class="cert trusted"') == 3
    # The probe log is tied to the cause the bot names.
    assert "Backend health says" in page and "intermediate_missing" in page
    assert "it names the cause default_certificate_without_sni" in page


def test_v2_a_chain_without_its_root_is_judged_by_the_chain_the_diagnosis_built(
    pki: Pki, servers: list[TlsServer]
) -> None:
    # Backends rarely send their root. The stored evidence has no signatures to check, but the
    # diagnosis built the path with the certificates themselves: the page shows its verdict.
    backend = TlsServer([pki.ilb_default], {APP_HOST: [pki.app, pki.intermediate]}).start()
    servers.append(backend)
    doc = v2_doc(backend.port, roots=[pki.root], listeners={"ase-https": APP_HOST})
    ev = _findings(run(doc, v2_health(V2_INTERMEDIATE)))[0]["evidence"]
    built = ev["alternative_chain"]
    assert built["status"] == "trusted" and built["anchor_source"] == "trusted_root"
    assert [p["presented"] for p in built["path"]] == [True, True, False]
    chain = ev["captures"]["alternative"]["chain"]
    assert chain_trust(chain, ev["allow_listed"], "v2").verdict == "unknown"  # JSON alone
    under_sni = chain_trust(chain, ev["allow_listed"], "v2", built=built)
    assert under_sni.headline() == "trusted through root-0 (trusted root)"
    assert "not sent by the backend" in under_sni.reason
    page = render_review(
        _proposal(evidence=[{"evidence": ev, "health": "Unhealthy"}], plan={}),
        caller=ALICE,
        token="t",
        refusal=None,
        job=None,
        nonce="n",
    )
    assert "trusted through root-0 (trusted root)" in page

    # Without the intermediate the path stops: not trusted, and the page says which issuer.
    leaf_only = TlsServer([pki.ilb_default], {APP_HOST: [pki.app]}).start()
    servers.append(leaf_only)
    doc = v2_doc(leaf_only.port, roots=[pki.root], listeners={"ase-https": APP_HOST})
    ev = _findings(run(doc, v2_health(V2_INTERMEDIATE)))[0]["evidence"]
    stopped = chain_trust(
        ev["captures"]["alternative"]["chain"],
        ev["allow_listed"],
        "v2",
        built=ev["alternative_chain"],
    )
    assert stopped.verdict == "untrusted" and "was not sent" in stopped.reason


def test_v2_an_intermediate_uploaded_as_root_anchors_nothing(
    pki: Pki, servers: list[TlsServer]
) -> None:
    backend = ilb(pki).start()
    servers.append(backend)
    doc = v2_doc(backend.port, roots=[pki.intermediate], listeners={"ase-https": APP_HOST})
    ev = _findings(run(doc, v2_health(V2_INTERMEDIATE)))[0]["evidence"]
    under_sni = chain_trust(ev["captures"]["alternative"]["chain"], ev["allow_listed"], "v2")
    assert under_sni.verdict != "trusted"


def test_v1_trust_is_by_the_leaf_key_and_absent_data_cannot_tell(
    pki: Pki, servers: list[TlsServer]
) -> None:
    from test_diagnosis import b64

    doc, health = seed_v1(pki, servers, auth_data=b64(pki.app))
    seed = next(f for f in _findings(run(doc, health)) if f["settings"] == "ase-https")
    ev = seed["evidence"]
    gateway = chain_trust(ev["captures"]["gateway"]["chain"], ev["allow_listed"], "v1")
    under_sni = chain_trust(ev["captures"]["alternative"]["chain"], ev["allow_listed"], "v1")
    assert gateway.verdict == "untrusted"
    assert under_sni.verdict == "trusted" and under_sni.through == "app-cert"
    assert under_sni.through_kind == "authentication certificate"

    doc, health = seed_v1(pki, servers, auth_data=None)
    seed = next(f for f in _findings(run(doc, health)) if f["settings"] == "ase-https")
    ev = seed["evidence"]
    assert chain_trust(ev["captures"]["gateway"]["chain"], ev["allow_listed"], "v1").verdict == (
        "unknown"
    )


def test_v2_without_trusted_roots_is_the_well_known_store() -> None:
    chain = [{"sha1": "AA", "subject": "CN=x", "issuer": "CN=Public CA"}]
    empty = {"trusted_root_certificates": [], "authentication_certificates": []}
    assert chain_trust(chain, empty, "v2").verdict == "unknown"
    healthy = chain_trust(chain, empty, "v2", healthy=True)
    assert healthy.verdict == "trusted" and healthy.headline() == "trusted through a well-known CA"


def test_the_page_promises_only_the_rollback_the_code_does() -> None:
    page = render_review(_proposal(), caller=ALICE, token="t", refusal=None, job=None, nonce="n")
    promise = page.split('id="rollback-promise">')[1].split("</li>")[0]
    assert "leaves the gateway <code>Failed</code>, the bot removes what it added" in promise
    assert "stays in place" in promise
    assert "fails verification is rolled back" not in page


def test_the_review_reads_the_store_it_is_given() -> None:
    class Store:
        asked: list[str] = []

        def get(self, proposal_id: str) -> Any:
            self.asked.append(proposal_id)
            raise ProposalNotFound(proposal_id)

    class Ctx:
        settings: dict[str, Any] = {}

    store = Store()
    page = handle_review(Ctx(), PID, ALICE, {}, proposals=store)  # type: ignore[arg-type]
    assert page.status == 404 and store.asked == [PID]
