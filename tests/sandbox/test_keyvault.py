"""The sandbox Key Vault (sandbox/keyvault.py) through azure-keyvault-certificates 4.12.

The client authenticates with the sandbox ManagedIdentityCredential
(docs/sources.md#managed-identity) after Key Vault's 401 challenge, and trusts the sandbox CA
through REQUESTS_CA_BUNDLE only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.certificates import CertificateClient

from sandbox.keyvault import SANDBOX_TENANT
from sandbox.runtime import KEY_VAULT_KEY, SandboxHandle
from sandbox.scenario import ScenarioError, load_scenario, parse_scenario

pytestmark = pytest.mark.sandbox

KV_NAME = "contoso-root-2025"


@pytest.fixture
def handle(sandbox_factory: Any) -> SandboxHandle:
    return sandbox_factory("ilb-ase-v2-root")


@pytest.fixture
def client(handle: SandboxHandle) -> Iterator[CertificateClient]:
    # No connection_verify: REQUESTS_CA_BUNDLE (set by sandbox_factory) must be enough.
    kv = CertificateClient(
        handle.env[KEY_VAULT_KEY], ManagedIdentityCredential(), verify_challenge_resource=False
    )
    yield kv
    kv.close()


def _raw(handle: SandboxHandle, path: str, token: str | None = None) -> tuple[int, Any, Any]:
    ctx = ssl.create_default_context(cafile=handle.env["REQUESTS_CA_BUNDLE"])
    req = urllib.request.Request(f"{handle.env[KEY_VAULT_KEY]}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read())


def _vault_token() -> str:
    return ManagedIdentityCredential().get_token("https://vault.azure.net/.default").token


def test_env_names_the_vault_and_the_trusted_source(handle: SandboxHandle) -> None:
    assert handle.env[KEY_VAULT_KEY].startswith("https://127.0.0.1:")
    assert handle.env["TRUSTED_CERT_NAMES"] == KV_NAME
    assert handle.env["REMEDIATION_MODE"] == "apply"


def test_challenge_flow_and_certificate_matches_the_new_root(
    handle: SandboxHandle, client: CertificateClient
) -> None:
    cert = client.get_certificate(KV_NAME)
    der = handle.certs["new-root"].der()
    assert cert.cer is not None and bytes(cert.cer) == der
    assert cert.properties.x509_thumbprint == hashlib.sha1(der, usedforsecurity=False).digest()
    assert cert.name == KV_NAME
    assert (
        cert.id == f"{handle.env[KEY_VAULT_KEY]}/certificates/{KV_NAME}/{cert.properties.version}"
    )
    assert cert.key_id is not None and "/keys/" in cert.key_id
    assert cert.secret_id is not None and "/secrets/" in cert.secret_id
    assert cert.properties.enabled is True
    assert cert.properties.expires_on == handle.certs["new-root"].cert.not_valid_after_utc
    assert cert.policy is not None and cert.policy.subject is not None
    assert "CN=Contoso Private Root CA 2025" in cert.policy.subject
    # First a bodiless request without a token (401 challenge), then the authorized retry.
    served = [(r["status"], r["authorized"]) for r in handle.keyvault.requests]
    assert served == [(401, False), (200, True)]


def test_version_and_list(client: CertificateClient) -> None:
    latest = client.get_certificate(KV_NAME)
    version = latest.properties.version
    assert version is not None and len(version) == 32
    same = client.get_certificate_version(KV_NAME, version)
    assert same.cer == latest.cer
    with pytest.raises(ResourceNotFoundError):
        client.get_certificate_version(KV_NAME, "0" * 32)
    names = [p.name for p in client.list_properties_of_certificates()]
    assert names == [KV_NAME]


def test_unknown_certificate_is_not_found(client: CertificateClient) -> None:
    with pytest.raises(ResourceNotFoundError) as err:
        client.get_certificate("app-cert")  # in the scenario, but not named for the vault
    assert err.value.error is not None
    assert err.value.error.code == "CertificateNotFound"


def test_raw_challenge_and_token_audience(handle: SandboxHandle) -> None:
    path = f"/certificates/{KV_NAME}?api-version=7.6"
    status, headers, body = _raw(handle, path)
    assert status == 401
    assert headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.microsoftonline.com/{SANDBOX_TENANT}", '
        'resource="https://vault.azure.net"'
    )
    assert body["error"]["code"] == "Unauthorized"
    arm_token = ManagedIdentityCredential().get_token("https://management.azure.com/.default")
    assert _raw(handle, path, arm_token.token)[0] == 401  # a token for ARM is not for the vault
    assert _raw(handle, path, "forged.token")[0] == 401
    status, _, bundle = _raw(handle, path, _vault_token())
    assert status == 200
    assert set(bundle) == {"id", "kid", "sid", "x5t", "cer", "attributes", "tags", "policy"}
    assert base64.b64decode(bundle["cer"]) == handle.certs["new-root"].der()
    digest = hashlib.sha1(handle.certs["new-root"].der(), usedforsecurity=False).digest()
    assert base64.urlsafe_b64decode(bundle["x5t"] + "=") == digest
    assert _raw(handle, f"/certificates/{KV_NAME}", _vault_token())[0] == 400  # no api-version


def test_sdk_refuses_a_non_vault_host_unless_told(handle: SandboxHandle) -> None:
    strict = CertificateClient(handle.env[KEY_VAULT_KEY], ManagedIdentityCredential())
    with pytest.raises(ValueError, match="verify_challenge_resource=False"):
        strict.get_certificate(KV_NAME)
    strict.close()


def test_the_bots_trusted_source_reads_the_sandbox_vault(handle: SandboxHandle) -> None:
    from shared.cloud.arm import make_credential
    from shared.cloud.keyvault import trusted_source
    from shared.common.settings import load_settings

    settings = load_settings(handle.env)
    fetch = trusted_source(settings, make_credential(settings))
    assert list(fetch()) == [handle.certs["new-root"].der()]


def test_scenarios_without_a_keyvault_have_no_vault(sandbox_factory: Any) -> None:
    handle = sandbox_factory("ilb-ase-v1")
    assert KEY_VAULT_KEY not in handle.env
    assert handle.keyvault is None


def test_keyvault_section_is_validated() -> None:
    source = load_scenario("ilb-ase-v2-root").source
    raw = json.loads(Path(source or "").read_text())
    raw["keyvault"] = {"certificates": {"root": "no-such-cert"}}
    with pytest.raises(ScenarioError, match="unknown certificate 'no-such-cert'"):
        parse_scenario(raw)
    raw["keyvault"] = {"certificates": {"bad_name": "new-root"}}
    with pytest.raises(ScenarioError, match="not a Key Vault name"):
        parse_scenario(raw)
    raw["keyvault"] = ["new-root"]
    with pytest.raises(ScenarioError, match="'keyvault' must be"):
        parse_scenario(raw)
