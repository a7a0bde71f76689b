"""shared.cloud.arm without a network: token scopes per cloud, nested ARM error codes, retries.

Facts: a superseded operation ends `Canceled` with CanceledAndSupersededDueToAnotherOperation only
in `error.details` (azure-cli issue #21156, terraform-provider-iterative issue #341); sovereign
clouds need the scope of their own Resource Manager
(https://learn.microsoft.com/azure/developer/python/sdk/azure-sdk-sovereign-domain).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError

from shared.cloud.arm import ArmClient, ArmError, LroFailed, arm_scope, to_arm_error
from shared.common.settings import load_settings
from shared.remediation.retry import Verdict, decide_retry

SUPERSEDED = "CanceledAndSupersededDueToAnotherOperation"


@pytest.mark.parametrize(
    ("endpoint", "scope"),
    [
        ("https://management.azure.com", "https://management.azure.com/.default"),
        ("https://management.azure.com/", "https://management.azure.com/.default"),
        ("https://Management.ChinaCloudAPI.cn", "https://management.chinacloudapi.cn/.default"),
        ("https://management.usgovcloudapi.net/", "https://management.usgovcloudapi.net/.default"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443/.default"),
        ("https://arm.contoso.example/", "https://arm.contoso.example/.default"),
    ],
)
def test_token_scope_follows_the_cloud_of_the_arm_endpoint(endpoint: str, scope: str) -> None:
    assert arm_scope(endpoint) == scope


class RecordingCredential:
    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("t", 2**31)


@pytest.mark.parametrize(
    "endpoint",
    ["https://management.chinacloudapi.cn", "https://management.usgovcloudapi.net"],
)
def test_the_network_client_asks_for_the_sovereign_scope(endpoint: str) -> None:
    client = ArmClient(load_settings({"ARM_ENDPOINT": endpoint}), credential=RecordingCredential())
    network: Any = client._network("00000000-0000-0000-0000-000000000001")
    assert network._config.credential_scopes == [f"{endpoint}/.default"]
    assert network._config.base_url.rstrip("/") == endpoint


class _Response:
    """Just enough of an azure-core HTTP response for HttpResponseError to parse."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        self.status_code = status
        self.reason = "reason"
        self.headers = headers or {}
        self._body = body
        self.request = None

    def text(self, encoding: str | None = None) -> str:
        return json.dumps(self._body)

    def json(self) -> Any:
        return self._body


def _superseded_poll() -> HttpResponseError:
    body = {
        "status": "Canceled",
        "error": {
            "code": "Canceled",
            "message": "Operation was canceled.",
            "details": [
                {
                    "code": SUPERSEDED,
                    "message": "Operation was canceled and superseded by operation 1234.",
                }
            ],
        },
    }
    return HttpResponseError(response=_Response(200, body))  # type: ignore[arg-type]


def test_nested_detail_codes_are_read() -> None:
    error = to_arm_error(_superseded_poll())
    assert (error.code, error.details, error.codes) == (
        "Canceled",
        (SUPERSEDED,),
        ("Canceled", SUPERSEDED),
    )
    assert SUPERSEDED in str(error) and "superseded by operation 1234" in str(error)


def test_a_superseded_write_is_retried_and_a_plain_cancel_is_not() -> None:
    superseded = to_arm_error(_superseded_poll())
    lro = LroFailed(str(superseded), code=superseded.code, details=superseded.details, status=200)
    decision = decide_retry(lro, 1)
    assert decision.verdict is Verdict.RETRY
    assert SUPERSEDED in decision.reason
    assert decide_retry(LroFailed("x", code="Canceled", status=200), 1).verdict is Verdict.FAIL


def test_detail_codes_that_need_a_human_propose() -> None:
    error = ArmError("x", code="InvalidTemplateDeployment", details=("ScopeLocked",))
    assert decide_retry(error, 1).verdict is Verdict.PROPOSE


def test_error_without_details_keeps_working() -> None:
    body = {"error": {"code": "AnotherOperationInProgress", "message": "busy"}}
    error = to_arm_error(HttpResponseError(response=_Response(409, body)))  # type: ignore[arg-type]
    assert (error.code, error.details, error.status) == ("AnotherOperationInProgress", (), 409)
    assert decide_retry(error, 1).verdict is Verdict.RETRY


def test_key_vault_challenge_check_stays_on_for_sovereign_vaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The Key Vault SDK takes the token scope from the vault's challenge and, with this check on,
    # only accepts a challenge resource under the vault's own domain (vault.azure.cn for
    # *.vault.azure.cn, vault.usgovcloudapi.net ...): it must stay on outside the sandbox.
    from shared.cloud import keyvault

    seen: dict[str, Any] = {}

    def fake_fetch(vault: str, names: Any, credential: Any, **kwargs: Any) -> list[bytes]:
        seen.update(vault=vault, **kwargs)
        return []

    monkeypatch.setattr(keyvault, "fetch_trusted_certificates", fake_fetch)
    settings = load_settings(
        {"KEY_VAULT_URL": "https://corp.vault.azure.cn", "TRUSTED_CERT_NAMES": "root"}
    )
    keyvault.trusted_source(settings, credential=None)()
    assert seen == {"vault": "https://corp.vault.azure.cn", "verify_challenge_resource": True}
