"""Conformance of the ARM emulator to recorded real Azure traffic, continued
(tests/sandbox/test_conformance.py describes the method and the recorders' caveats): certificate
data visibility, overlapping writes and backend health. Every test names its recording."""

from __future__ import annotations

import base64
import copy
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from tests.sandbox import conformance_helpers
from tests.sandbox.conformance_helpers import (
    AUTH,
    AUTH_GET,
    HEALTH,
    HEALTH_DONE,
    HEALTH_POST,
    JAVA,
    KV_GET,
    KV_PUT,
    NRP_OPERATION_RESULT,
    ROOT,
    ROOT_GET,
    ROOT_PUT,
    ROOT_PUT2,
    SUB,
    Arm,
    api_version,
    async_operation,
    fresh_body,
    gateway_uri,
    interaction,
    named,
    path_of,
    recorded_cert_data,
    recording,
    states,
    wait_done,
    with_cert,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

arm = conformance_helpers.arm


# ---- certificate data visibility -----------------------------------------------------------------


def test_authentication_certificate_data_returned_as_sent(arm: Arm) -> None:
    """cli_ag_auth_cert_v1.json idx 9 (PUT response) and idx 16 (GET): on v1 the
    authenticationCertificates' `data` comes back exactly as sent, on PUT and on GET."""
    data = recorded_cert_data(interaction(AUTH, 9), "authenticationCertificates")
    assert (
        named(interaction(AUTH, 9)["response"]["body"], "authenticationCertificates", "cert1")[
            "data"
        ]
        == data
    )
    assert (
        named(interaction(AUTH, 16)["response"]["body"], "authenticationCertificates", "cert1")[
            "data"
        ]
        == data
    )

    body = with_cert(fresh_body(arm, AUTH_GET), "authenticationCertificates", "cert1", data)
    reply = arm.put(gateway_uri(AUTH_GET), body)
    assert reply.status == 200, reply.body
    assert named(reply.body, "authenticationCertificates", "cert1").get("data") == data
    got = arm.get(gateway_uri(AUTH_GET)).body
    assert named(got, "authenticationCertificates", "cert1").get("data") == data


def test_trusted_root_data_returned_as_sent_even_pem_text(arm: Arm) -> None:
    """cli_ag_root_cert_v2.json PUT 05:25:58 / GET 05:26:20: trusted root `data` (base64 DER) is
    returned on PUT and GET; the second PUT (cert2 = base64 of PEM text) is echoed verbatim."""
    der_b64 = recorded_cert_data(ROOT_PUT, "trustedRootCertificates")
    after = interaction(ROOT, "date Fri, 06 Nov 2020 05:26:20 GMT (after")["response"]["body"]
    assert named(after, "trustedRootCertificates", "cert1")["data"] == der_b64
    pem_b64 = next(
        c["properties"]["data"]
        for c in ROOT_PUT2["request"]["body"]["properties"]["trustedRootCertificates"]
        if c["properties"]["data"].startswith("LS0tLS1CRUdJTi")
    )
    assert pem_b64 in json.dumps(ROOT_PUT2["response"]["body"])

    body = with_cert(fresh_body(arm, ROOT_GET), "trustedRootCertificates", "cert1", der_b64)
    body = with_cert(body, "trustedRootCertificates", "cert2", pem_b64)
    reply = arm.put(gateway_uri(ROOT_PUT), body)
    assert reply.status == 200, reply.body
    assert named(reply.body, "trustedRootCertificates", "cert1").get("data") == der_b64
    assert named(reply.body, "trustedRootCertificates", "cert2").get("data") == pem_b64
    got = arm.get(gateway_uri(ROOT_GET)).body
    assert named(got, "trustedRootCertificates", "cert1").get("data") == der_b64
    assert named(got, "trustedRootCertificates", "cert2").get("data") == pem_b64


def _pfx_b64(password: bytes) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conformance.example")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    blob = pkcs12.serialize_key_and_certificates(
        b"conformance", key, cert, None, serialization.BestAvailableEncryption(password)
    )
    return base64.b64encode(blob).decode()


def test_inline_ssl_certificate_never_returns_data_or_password(arm: Arm) -> None:
    """sslCertificates never show the PFX `data` or `password` (java_ag_kv_sslcert_identity.json
    PUT 201 and final GET show neither); an inline one shows the read-only `publicCertData`
    (Microsoft REST reference, ApplicationGatewaySslCertificate: "Base-64 encoded Public cert data
    corresponding to pfx specified in data. Only applicable in GET request.",
    https://learn.microsoft.com/rest/api/application-gateway/application-gateways/get)."""
    body = fresh_body(arm, ROOT_GET)
    body["properties"]["sslCertificates"] = [
        {"name": "inline", "properties": {"data": _pfx_b64(b"pw-123"), "password": "pw-123"}}
    ]
    reply = arm.put(gateway_uri(ROOT_PUT), body)
    assert reply.status == 200, reply.body
    wait_done(arm, async_operation(reply, gateway_uri(ROOT_PUT)))
    got = arm.get(gateway_uri(ROOT_GET)).body
    for served in (reply.body, got):
        props = named(served, "sslCertificates", "inline")
        assert "data" not in props and "password" not in props, props
    assert base64.b64decode(named(got, "sslCertificates", "inline").get("publicCertData") or "")


def test_key_vault_ssl_certificate_shows_only_the_secret_id(arm: Arm) -> None:
    """java_ag_kv_sslcert_identity.json PUT 201 (06:13:42) and GET (06:28:28): a Key
    Vault-referenced sslCertificate on a gateway with a user-assigned identity shows
    `keyVaultSecretId` (plus provisioningState and listener back-references) and no `data`,
    `password` or `publicCertData`."""
    java = recording(JAVA)["interactions"]
    final_get = java[-2]["response"]["body"]
    recorded_props = final_get["properties"]["sslCertificates"][0]["properties"]
    assert set(recorded_props) <= {"provisioningState", "keyVaultSecretId", "httpListeners"}
    body = fresh_body(arm, ROOT_GET)
    body["identity"] = copy.deepcopy(java[0]["response"]["body"]["identity"])
    secret = recorded_props["keyVaultSecretId"]
    body["properties"]["sslCertificates"] = [
        {"name": "kvcert", "properties": {"keyVaultSecretId": secret}}
    ]
    reply = arm.put(gateway_uri(ROOT_PUT), body)
    assert reply.status == 200, reply.body
    wait_done(arm, async_operation(reply, gateway_uri(ROOT_PUT)))
    got = arm.get(gateway_uri(ROOT_GET)).body
    for served in (reply.body, got):
        props = named(served, "sslCertificates", "kvcert")
        assert props.get("keyVaultSecretId") == secret
        assert not {"data", "password", "publicCertData"} & set(props), props


def test_key_vault_trusted_root_without_user_assigned_identity_is_400(arm: Arm) -> None:
    """cli_ag_root_cert_kv_400.json idx 26/27: a PUT adding a trusted root with `keyVaultSecretId`
    to a gateway without `identity` -> synchronous 400, no Azure-AsyncOperation, body exactly
    `{"error": {"code": "ApplicationGatewayKeyVaultSecretRequiresUserAssignedIdentity",
    "message": "Application Gateway '<id>' requires a 'UserAssigned' Identity ...",
    "details": []}}`; the gateway is unchanged."""
    recorded = KV_PUT["response"]
    before = fresh_body(arm, KV_GET)
    assert "identity" not in before
    body = copy.deepcopy(before)
    body["properties"]["trustedRootCertificates"] = copy.deepcopy(
        KV_PUT["request"]["body"]["properties"]["trustedRootCertificates"]
    )
    reply = arm.put(gateway_uri(KV_PUT), body)
    assert reply.status == recorded["status"] == 400
    assert "azure-asyncoperation" not in reply.headers and "location" not in reply.headers
    gateway_id = path_of(gateway_uri(KV_GET))
    assert reply.body == json.loads(
        json.dumps(recorded["body"]).replace(recorded_gateway_id(recorded), gateway_id)
    )
    assert reply.body["error"]["details"] == []
    assert arm.get(gateway_uri(KV_GET)).headers["etag"] == before["etag"]


def recorded_gateway_id(response: dict[str, Any]) -> str:
    match = re.search(r"Application Gateway '([^']+)'", response["body"]["error"]["message"])
    assert match
    return match.group(1)


# ---- overlapping writes --------------------------------------------------------------------------


def test_second_put_while_updating_is_accepted_and_supersedes_the_first(arm: Arm) -> None:
    """cli_ag_auth_cert_v1.json idx 9, 11, 13, 15: PUTs 1-4 s apart while the gateway is Updating
    are each accepted with 200 and their own Azure-AsyncOperation (no 409). The earlier operation
    then ends Canceled: NRP's status body is `{"status": "Canceled", "error": {"code": "Canceled",
    "message": "Operation was canceled.", "details": [{"code":
    "CanceledAndSupersededDueToAnotherOperation", ...}]}}` (https://github.com/Azure/azure-cli/
    issues/21156; the same nesting in https://github.com/Azure/application-gateway-kubernetes-
    ingress/issues/187). Not in a recording: the CLI ran with --no-wait and never polled."""
    urls = {
        interaction(AUTH, i)["response"]["headers"]["azure-asyncoperation"] for i in (9, 11, 13, 15)
    }
    assert len(urls) == 4
    data = recorded_cert_data(interaction(AUTH, 9), "authenticationCertificates")
    base = fresh_body(arm, AUTH_GET)
    first = arm.put(
        gateway_uri(AUTH_GET), with_cert(base, "authenticationCertificates", "cert1", data)
    )
    assert first.status == 200, first.body
    second_body = with_cert(
        with_cert(base, "authenticationCertificates", "cert1", data),
        "authenticationCertificates",
        "cert2",
        data,
    )
    second = arm.put(gateway_uri(AUTH_GET), second_body)
    assert second.status == 200, second.body
    first_op = async_operation(first, gateway_uri(AUTH_GET))
    second_op = async_operation(second, gateway_uri(AUTH_GET))
    assert path_of(first_op) != path_of(second_op)

    first_end = wait_done(arm, first_op)[-1].body
    assert first_end["status"] == "Canceled", first_end
    assert first_end["error"]["code"] == "Canceled"
    assert [d["code"] for d in first_end["error"]["details"]] == [
        "CanceledAndSupersededDueToAnotherOperation"
    ]
    assert wait_done(arm, second_op)[-1].body == {"status": "Succeeded"}
    got = arm.get(gateway_uri(AUTH_GET)).body
    assert {c["name"] for c in got["properties"]["authenticationCertificates"]} == {
        "cert1",
        "cert2",
    }
    assert states(got) == {"Succeeded"}


# ---- backend health ------------------------------------------------------------------------------


def test_backend_health_is_a_location_lro(arm: Arm) -> None:
    """cli_ag_backend_health_v2.json POST 00:43:09 and polls 00:43:09 / 00:43:20: POST
    .../backendhealth -> 202 with body `null`, a Location to .../locations/{loc}/operationResults/
    {id} with the POST's api-version, no Azure-AsyncOperation; the Location answers 202 (body
    `null`) while running, then 200 with the BackendHealth body. (azure-cli's recorder drops
    Retry-After; test_recorded_headers.py compares it.)"""
    post = HEALTH_POST["response"]
    assert post["status"] == 202 and post["raw_body"] == "null"
    assert "azure-asyncoperation" not in post["headers"]
    uri = gateway_uri(HEALTH_POST)
    reply = arm.call("POST", uri)
    assert reply.status == 202, reply
    assert reply.raw == post["raw_body"].encode() == b"null"  # the four bytes, as recorded
    location = reply.headers.get("location", "")
    match = NRP_OPERATION_RESULT.match(path_of(location))
    assert match, location
    assert match["loc"] == "westus" and match["sub"] == SUB
    assert api_version(location) == api_version(uri) == "2023-11-01"
    assert "azure-asyncoperation" not in reply.headers

    polls = arm.poll(location, until=lambda r: r.status != 202)
    first_recorded = interaction(HEALTH, "date Tue, 28 Oct 2025 00:43:09 GMT (poll 1")["response"]
    assert first_recorded["status"] == 202 and first_recorded["body"] is None
    for early in polls[:-1]:
        assert early.status == 202 and early.raw == b"null"
        assert early.headers.get("location")
    assert polls[-1].status == HEALTH_DONE["response"]["status"] == 200


def test_backend_health_body_matches_the_recorded_shape(arm: Arm) -> None:
    """cli_ag_backend_health_v2.json poll 00:43:20: for the recorded gateway (one rule, empty pool)
    the result is exactly `{"backendAddressPools": [{"backendAddressPool": {"id"},
    "backendHttpSettingsCollection": [{"backendHttpSettings": {"id"}, "servers": []}]}]}`
    (ids compared case-insensitively)."""
    reply = arm.call("POST", gateway_uri(HEALTH_POST))
    final = arm.poll(reply.headers["location"], until=lambda r: r.status != 202)[-1]
    assert final.status == 200
    assert _lower_ids(final.body) == _lower_ids(HEALTH_DONE["response"]["body"])


def _lower_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (v.lower() if k == "id" else _lower_ids(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_lower_ids(v) for v in node]
    return node
