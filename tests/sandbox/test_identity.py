"""The sandbox managed-identity endpoint, driven by the real azure-identity credential."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from sandbox.identity import IdentityServer, TokenIssuer

SECRET = "sandbox-header-secret"
ARM = "https://management.azure.com"


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture
def server(issuer: TokenIssuer, monkeypatch: pytest.MonkeyPatch) -> Iterator[IdentityServer]:
    srv = IdentityServer(issuer, SECRET)
    srv.start()
    for name in (
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "MSI_ENDPOINT",
        "MSI_SECRET",
        "IDENTITY_SERVER_THUMBPRINT",
        "IMDS_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", srv.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", SECRET)
    yield srv
    srv.stop()


def test_endpoint_is_loopback_http(server: IdentityServer) -> None:
    assert server.endpoint.startswith("http://127.0.0.1:")
    assert server.endpoint.endswith("/msi/token")


def test_managed_identity_credential_gets_a_verifiable_token(
    server: IdentityServer, issuer: TokenIssuer
) -> None:
    token = ManagedIdentityCredential().get_token(f"{ARM}/.default")
    assert issuer.verify(token.token, ARM)
    assert not issuer.verify(token.token, "https://vault.azure.net")
    assert token.expires_on > 0


def test_user_assigned_client_id_is_echoed(server: IdentityServer, issuer: TokenIssuer) -> None:
    client_id = "11111111-2222-3333-4444-555555555555"
    token = ManagedIdentityCredential(client_id=client_id).get_token(f"{ARM}/.default")
    claims = issuer.claims(token.token)
    assert claims is not None and claims["cid"] == client_id


def test_wrong_header_is_refused(server: IdentityServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential().get_token(f"{ARM}/.default")


def _get(url: str, header: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"X-IDENTITY-HEADER": header} if header else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_protocol_errors(server: IdentityServer) -> None:
    ok = f"{server.endpoint}?api-version=2019-08-01&resource={ARM}"
    status, body = _get(ok, SECRET)
    assert status == 200
    assert body["token_type"] == "Bearer" and body["resource"] == ARM
    assert body["expires_on"].isdigit() and body["client_id"]
    assert _get(ok, None)[0] == 401
    assert _get(f"{server.endpoint}?api-version=2017-09-01&resource={ARM}", SECRET)[0] == 400
    assert _get(f"{server.endpoint}?api-version=2019-08-01", SECRET)[0] == 400


def test_tampered_foreign_and_expired_tokens_fail(issuer: TokenIssuer) -> None:
    token = issuer.issue(ARM)
    body, _, signature = token.partition(".")
    assert issuer.verify(token, ARM)
    assert issuer.verify(issuer.issue(f"{ARM}/"), ARM)
    assert not issuer.verify(f"{body}x.{signature}", ARM)
    assert not issuer.verify("garbage", ARM)
    assert not TokenIssuer().verify(token, ARM)  # another sandbox's key
    expiring = TokenIssuer(lifetime_seconds=-1)
    expired = expiring.issue(ARM)
    assert expiring.claims(expired) is not None  # signature fine, only the date is wrong
    assert not expiring.verify(expired, ARM)
