"""The ARM emulator driven only through azure-mgmt-network (and raw HTTPS for the control endpoint):
reads, lists, errors and the PUT round trip (writes in detail: test_arm_sdk_writes.py; the
emulator world: tests/sandbox/arm_sdk_helpers.py).

Facts: docs/sources.md#backend-trust (v2 refuses authentication certificates),
docs/sources.md#arm-lro (paths, LRO shapes), docs/sources.md#overlapping-writes
(AnotherOperationInProgress).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from tests.sandbox import arm_sdk_helpers
from tests.sandbox.arm_sdk_helpers import (
    PFX_PASSWORD,
    PREFIX,
    RG,
    V1,
    V2,
    Env,
    v2_gateway,
)

pytestmark = pytest.mark.sandbox

env = arm_sdk_helpers.env


def test_get_returns_read_only_fields_and_certificate_data(env: Env) -> None:
    gw = env.client().application_gateways.get(RG, V1)
    raw = gw.as_dict()
    assert raw["etag"].startswith('W/"')
    assert gw.type == "Microsoft.Network/applicationGateways"
    assert raw["properties"]["provisioningState"] == "Succeeded"
    assert raw["properties"]["operationalState"] == "Running"
    assert raw["properties"]["resourceGuid"]
    pool = raw["properties"]["backendAddressPools"][0]
    assert pool["id"] == f"{PREFIX}/{V1}/backendAddressPools/pool"
    assert pool["etag"] == raw["etag"]
    # Real GETs return `data` exactly as sent (tests/data/recorded/cli_ag_auth_cert_v1.json
    # idx 16, cli_ag_root_cert_v2.json GET 05:26:20).
    assert gw.authentication_certificates[0].data == env.leaf_b64
    assert raw["tags"] == {"owner": "sandbox"}
    roots = env.client().application_gateways.get(RG, V2).trusted_root_certificates
    assert [r.data for r in roots] == [env.root_b64, None]
    assert roots[1].key_vault_secret_id == "https://kv/secrets/root"


def _ssl_certs(served: dict) -> dict[str, dict]:
    return {c["name"]: c["properties"] for c in served["properties"]["sslCertificates"]}


def test_ssl_certificates_never_show_pfx_or_password(env: Env) -> None:
    ops = env.client().application_gateways
    gw = ops.get(RG, V2)
    certs = _ssl_certs(gw.as_dict())
    # Key Vault reference: only keyVaultSecretId (recorded/java_ag_kv_sslcert_identity.json).
    assert certs["kv-listener"] == {
        "provisioningState": "Succeeded",
        "keyVaultSecretId": "https://kv/secrets/listener",
    }
    # Inline PFX: publicCertData (read-only, REST spec), never data or password.
    inline = certs["listener"]
    assert "data" not in inline and "password" not in inline
    public = base64.b64decode(inline["publicCertData"])
    leaf = pkcs7.load_der_pkcs7_certificates(public)[0]
    assert leaf.public_bytes(serialization.Encoding.DER) == env.listener_der
    # The same in the raw PUT response, and a round trip keeps the stored PFX.
    body: Any = json.loads(json.dumps(gw.as_dict()))
    served = _ssl_certs(ops.begin_create_or_update(RG, V2, body).result().as_dict())
    assert set(served["listener"]) == {"provisioningState", "publicCertData"}
    stored = _ssl_certs(env.arm.gateway_document(f"{PREFIX}/{V2}"))["listener"]
    assert (stored["data"], stored["password"]) == (env.pfx_b64, PFX_PASSWORD)
    assert "publicCertData" not in stored


def test_key_vault_reference_without_user_assigned_identity_is_400(env: Env) -> None:
    """Synchronous 400, body as recorded (recorded/cli_ag_root_cert_kv_400.json idx 27)."""
    before = env.arm.gateway_document(f"{PREFIX}/{V2}")["etag"]
    for identity in (None, {"type": "SystemAssigned"}):
        body = v2_gateway(env.root_b64)
        body["properties"]["sslCertificates"] = []
        if identity is None:
            del body["identity"]
        else:
            body["identity"] = identity
        with pytest.raises(HttpResponseError) as err:
            env.client().application_gateways.begin_create_or_update(RG, V2, body)
        assert err.value.status_code == 400
        response: Any = err.value.response
        assert "Azure-AsyncOperation" not in response.headers
        assert response.json() == {
            "error": {
                "code": "ApplicationGatewayKeyVaultSecretRequiresUserAssignedIdentity",
                "message": f"Application Gateway '{PREFIX}/{V2}' requires a 'UserAssigned' "
                "Identity with 'get' access policy to the referenced KeyVault. Please provide so "
                "by using top level 'Identity' property.",
                "details": [],
            }
        }
    assert env.arm.gateway_document(f"{PREFIX}/{V2}")["etag"] == before


def test_paths_are_case_insensitive(env: Env) -> None:
    gw = env.client().application_gateways.get(RG.lower(), V1.upper())
    assert gw.id == f"{PREFIX}/{V1}"


def test_lists_by_resource_group_and_subscription(env: Env) -> None:
    ops = env.client().application_gateways
    assert sorted(str(g.name) for g in ops.list(RG)) == [V1, V2]
    assert sorted(str(g.name) for g in ops.list_all()) == [V1, V2]


def test_not_found_errors_are_arm_shaped(env: Env) -> None:
    ops = env.client().application_gateways
    with pytest.raises(ResourceNotFoundError) as missing:
        ops.get(RG, "nope")
    assert missing.value.error is not None
    assert missing.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as no_rg:
        ops.get("rg-nope", V1)
    assert no_rg.value.error is not None
    assert no_rg.value.error.code == "ResourceGroupNotFound"


def test_rejected_token_gets_401(env: Env) -> None:
    with pytest.raises(ClientAuthenticationError) as err:
        env.client("not-a-valid-token").application_gateways.get(RG, V1)
    assert err.value.status_code == 401
    assert err.value.error is not None
    assert err.value.error.code == "AuthenticationFailed"
    response: Any = err.value.response
    assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_put_is_a_long_running_operation_and_keeps_unknown_properties(env: Env) -> None:
    ops = env.client().application_gateways
    before = ops.get(RG, V1).as_dict()
    body: Any = json.loads(json.dumps(before))
    body["sandboxTopLevel"] = {"kept": [1, 2, 3]}
    body["properties"]["futureFeature"] = {"mode": "On"}
    body["properties"]["backendAddressPools"][0]["properties"]["nestedUnknown"] = "yes"
    result = ops.begin_create_or_update(RG, V1, body).result()
    after = result.as_dict()
    assert after["properties"]["provisioningState"] == "Succeeded"
    assert after["etag"] != before["etag"]
    assert after["sandboxTopLevel"] == {"kept": [1, 2, 3]}
    assert after["properties"]["futureFeature"] == {"mode": "On"}
    assert after["properties"]["backendAddressPools"][0]["properties"]["nestedUnknown"] == "yes"
    served = {(r["method"], r["path"].lower(), r["status"]) for r in env.control("GET", "requests")}
    assert ("PUT", f"{PREFIX}/{V1}".lower(), 200) in served
    assert any(m == "GET" and "/operations/" in p for m, p, _ in served)


def test_round_trip_keeps_certificate_data_and_health_uses_it(env: Env) -> None:
    ops = env.client().application_gateways
    gw = ops.get(RG, V1)
    assert gw.authentication_certificates[0].data == env.leaf_b64
    put = ops.begin_create_or_update(RG, V1, gw)  # model straight back, as az CLI does
    # The PUT response echoes `data` too (tests/data/recorded/cli_ag_auth_cert_v1.json idx 9).
    assert put.result().authentication_certificates[0].data == env.leaf_b64
    stored = env.arm.gateway_document(f"{PREFIX}/{V1}")
    assert stored["properties"]["authenticationCertificates"][0]["properties"]["data"] == (
        env.leaf_b64
    )
    health = ops.begin_backend_health(RG, V1).result().as_dict()
    pool = health["backendAddressPools"][0]
    assert pool["backendAddressPool"]["id"] == f"{PREFIX}/{V1}/backendAddressPools/pool"
    server = pool["backendHttpSettingsCollection"][0]["servers"][0]
    assert server["address"] == "127.0.0.1"
    assert server["health"] == "Healthy", server
    expanded = ops.begin_backend_health(RG, V1, expand="backendhealth/applicationgatewayresource")
    pool = expanded.result().as_dict()["backendAddressPools"][0]
    assert pool["backendAddressPool"]["name"] == "pool"


def test_on_demand_probe(env: Env) -> None:
    ops = env.client().application_gateways
    gw = f"{PREFIX}/{V1}"
    result = ops.begin_backend_health_on_demand(
        RG,
        V1,
        {
            "protocol": "Https",
            "path": "/",
            "timeout": 5,
            "pickHostNameFromBackendHttpSettings": False,
            "backendAddressPool": {"id": f"{gw}/backendAddressPools/pool"},
            "backendHttpSettings": {"id": f"{gw}/backendHttpSettingsCollection/https"},
        },
    ).result()
    servers = result.as_dict()["backendHealthHttpSettings"]["servers"]
    assert [(s["address"], s["health"]) for s in servers] == [("127.0.0.1", "Healthy")]
