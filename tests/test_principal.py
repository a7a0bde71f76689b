"""Issue 17: the caller is the Entra object id App Service Authentication passes on
(shared/service/principal.py), and a signed-out browser is sent to sign in."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from sandbox.easyauth import User, principal_headers
from shared.service.api import signed_out
from shared.service.principal import Unauthenticated, login_url, read_caller, wants_html

ON = {"WEBSITE_AUTH_ENABLED": "True"}
OID = "6f1c2a9e-0b7d-4c39-9d0e-1a2b3c4d5e6f"


def _principal(claims: list[dict[str, Any]], idp: str = "aad") -> dict[str, str]:
    encoded = base64.b64encode(json.dumps({"auth_typ": idp, "claims": claims}).encode()).decode()
    return {"X-MS-CLIENT-PRINCIPAL": encoded, "X-MS-CLIENT-PRINCIPAL-IDP": idp}


def test_the_caller_is_the_oid_claim_and_the_name_only_a_label() -> None:
    caller = read_caller(principal_headers(User(OID.upper(), "Alice Smith")), ON)
    assert caller is not None and (caller.object_id, caller.name) == (OID, "Alice Smith")
    assert str(caller) == f"Alice Smith ({OID})"
    short = read_caller(_principal([{"typ": "oid", "val": OID}]), ON)
    assert short is not None and short.object_id == OID
    # The name header labels a principal; it never replaces the oid claim.
    named = {**_principal([{"typ": "oid", "val": OID}]), "X-MS-CLIENT-PRINCIPAL-NAME": "Bob"}
    assert (read_caller(named, ON) or pytest.fail()).name == "Bob"


def test_no_identity_without_the_platform_or_from_a_name_alone() -> None:
    headers = principal_headers(User(OID, "Alice"))
    assert read_caller(headers, {}) is None  # WEBSITE_AUTH_ENABLED unset: nobody
    assert read_caller(headers, {"WEBSITE_AUTH_ENABLED": "false"}) is None
    assert read_caller({"X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.com"}, ON) is None
    assert read_caller({"X-MS-CLIENT-PRINCIPAL-ID": OID}, ON) is None
    assert read_caller({}, ON) is None


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (_principal([{"typ": "oid", "val": OID}], idp="github"), "only a Microsoft Entra ID"),
        ({**_principal([{"typ": "oid", "val": OID}]), "X-MS-CLIENT-PRINCIPAL-IDP": ""}, "idp"),
        (_principal([{"typ": "name", "val": "Alice"}]), "no object id"),
        (_principal([{"typ": "oid", "val": "alice@contoso.com"}]), "not an Entra object id"),
        ({"X-MS-CLIENT-PRINCIPAL": "not base64!", "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}, "base64"),
    ],
)
def test_unreadable_or_foreign_principals_are_401(headers: dict[str, str], message: str) -> None:
    with pytest.raises(Unauthenticated, match=message):
        read_caller(headers, ON)


def test_a_signed_out_browser_is_redirected_and_an_api_caller_gets_401() -> None:
    review = "/api/proposals/p-1/review"
    login = "/.auth/login/aad?post_login_redirect_uri=/api/proposals/p-1/review"
    assert login_url(review) == login
    assert login_url("//evil.test/x") == "/.auth/login/aad?post_login_redirect_uri=/"
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    assert wants_html(browser) and not wants_html({"Accept": "application/json"})
    redirected = signed_out(browser, "sign in", review=review)
    assert (redirected.status, redirected.headers["Location"]) == (302, login)
    refused = signed_out({"Accept": "*/*"}, "sign in", review=review)
    assert refused.status == 401 and refused.body["error"]["code"] == "Unauthenticated"
    assert refused.body["login"] == login
