"""The ARM emulator driven through azure-mgmt-network, continued (tests/sandbox/test_arm_sdk.py):
the PUT's wire shape, overlapping writes, validation errors, the control endpoint, health
refresh and injected faults.

Facts: docs/sources.md#backend-trust (v2 refuses authentication certificates),
docs/sources.md#arm-lro (paths, LRO shapes), docs/sources.md#overlapping-writes
(AnotherOperationInProgress)."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import (
    HttpResponseError,
)

from tests.sandbox import arm_sdk_helpers
from tests.sandbox.arm_sdk_helpers import (
    PREFIX,
    RG,
    TOKEN,
    V1,
    V2,
    Env,
    v1_gateway,
    v2_gateway,
)

pytestmark = pytest.mark.sandbox

env = arm_sdk_helpers.env
paced_env = arm_sdk_helpers.paced_env


def _raw(env: Env, method: str, url: str, body: Any = None) -> tuple[int, Any, Any]:
    """(status, headers, JSON body) of one ARM request sent by hand with the test token."""
    if not url.startswith("https://"):
        url = f"{env.arm.url}{url}?api-version=2020-06-01"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, method=method, data=data)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", "application/json")
    ctx = ssl.create_default_context(cafile=str(env.ca_file))
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        return resp.status, resp.headers, json.loads(resp.read() or b"null")


def test_put_and_poll_match_the_recorded_wire_shape(paced_env: Env) -> None:
    env = paced_env
    # tests/data/recorded/cli_ag_auth_cert_v1.json (idx 7-16) and cli_ag_root_cert_v2.json: GET
    # 200 has an ETag header; an update PUT is 200 with Azure-AsyncOperation (no Location or
    # ETag), body Updating with a new etag; polls are exactly InProgress/Succeeded. Retry-After
    # as net_ag_backend_health_v2.json records it (5), never past the operation's end.
    status, headers, doc = _raw(env, "GET", f"{PREFIX}/{V1}")
    assert status == 200 and headers["ETag"] == doc["etag"]
    status, headers, put = _raw(env, "PUT", f"{PREFIX}/{V1}", doc)
    assert status == 200
    assert headers.get("Location") is None and headers.get("ETag") is None
    assert 0 <= float(headers["Retry-After"]) <= 5
    op_url = headers["Azure-AsyncOperation"]
    assert "/providers/Microsoft.Network/locations/westeurope/operations/" in op_url
    assert op_url.endswith("?api-version=2020-06-01")
    assert put["properties"]["provisioningState"] == "Updating"
    assert put["etag"] != doc["etag"]
    _, _, during = _raw(env, "GET", f"{PREFIX}/{V1}")
    assert during["properties"]["provisioningState"] == "Updating"
    status, headers, polled = _raw(env, "GET", op_url)
    assert (status, polled) == (200, {"status": "InProgress"})
    assert 0 <= float(headers["Retry-After"]) <= 1  # the first poll's recorded value
    env.client().application_gateways.begin_create_or_update(RG, V1, during).result()
    assert _raw(env, "GET", op_url)[2]["status"] == "Canceled"  # superseded by that PUT
    _, _, done = _raw(env, "GET", f"{PREFIX}/{V1}")
    assert done["properties"]["provisioningState"] == "Succeeded"


def test_overlapping_put_is_accepted_and_supersedes(paced_env: Env) -> None:
    env = paced_env
    ops = env.client().application_gateways
    body: Any = ops.get(RG, V1).as_dict()
    first = ops.begin_create_or_update(RG, V1, body)
    second = ops.begin_create_or_update(RG, V1, body)  # accepted, as Azure does
    assert second.result().provisioning_state == "Succeeded"
    with pytest.raises(HttpResponseError) as err:
        first.result()
    assert err.value.error is not None
    assert err.value.error.code == "Canceled"
    assert [d.code for d in err.value.error.details] == [
        "CanceledAndSupersededDueToAnotherOperation"
    ]


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("409", 409, "AnotherOperationInProgress"),
        ("429", 429, "RetryableErrorDueToAnotherOperation"),
    ],
)
def test_overlapping_put_is_refused_in_the_409_and_429_modes(
    tmp_path: Path, mode: str, status: int, code: str
) -> None:
    env = Env(tmp_path, conflict=mode)
    try:
        ops = env.client().application_gateways
        body: Any = ops.get(RG, V1).as_dict()
        first = ops.begin_create_or_update(RG, V1, body)
        with pytest.raises(HttpResponseError) as err:
            env.client().application_gateways.begin_create_or_update(RG, V1, body, retry_total=0)
        assert err.value.status_code == status
        assert err.value.error is not None
        assert err.value.error.code == code
        assert first.result().provisioning_state == "Succeeded"
    finally:
        env.close()


def _put_error(env: Env, name: str, body: Any) -> tuple[str, str]:
    """(code, message) of the 400 a PUT of `body` gets."""
    with pytest.raises(HttpResponseError) as err:
        env.client().application_gateways.begin_create_or_update(RG, name, body)
    assert err.value.status_code == 400
    assert err.value.error is not None
    return str(err.value.error.code), str(err.value.error.message)


def test_v2_refuses_authentication_certificates(env: Env) -> None:
    body = v2_gateway(env.root_b64)
    body["properties"]["authenticationCertificates"] = [
        {"name": "leaf", "properties": {"data": env.leaf_b64}}
    ]
    code, message = _put_error(env, V2, body)
    assert code == "ApplicationGatewayFeatureCannotBeEnabledForSelectedSku"
    assert "does not support AuthenticationCertificates" in message


def test_validation_errors(env: Env) -> None:
    gw = f"{PREFIX}/{V1}"
    dangling = v1_gateway(env.backend.port, env.leaf_b64)
    settings = dangling["properties"]["backendHttpSettingsCollection"][0]["properties"]
    settings["probe"] = {"id": f"{gw}/probes/missing"}
    assert _put_error(env, V1, dangling)[0] == "InvalidResourceReference"

    bad_data = v1_gateway(env.backend.port, "bm90IGEgY2VydA==")
    assert (
        _put_error(env, V1, bad_data)[0] == "ApplicationGatewayAuthenticationCertificateInvalidData"
    )

    no_data = v1_gateway(env.backend.port, env.leaf_b64)
    no_data["properties"]["authenticationCertificates"].append({"name": "new", "properties": {}})
    assert "DataMissing" in _put_error(env, V1, no_data)[0]

    too_many = v1_gateway(env.backend.port, env.leaf_b64)
    too_many["properties"]["authenticationCertificates"] = [
        {"name": f"c{i}", "properties": {"data": env.other_leaf_b64}} for i in range(101)
    ]
    assert "LimitReached" in _put_error(env, V1, too_many)[0]

    assert _put_error(env, V1, b"{not json")[0] == "InvalidRequestContent"


def test_pem_text_data_is_accepted(env: Env) -> None:
    body: Any = v1_gateway(env.backend.port, env.leaf_b64)
    pem = env.backend_ca.cert_pem.bytes()
    body["properties"]["authenticationCertificates"].append(
        {"name": "pem", "properties": {"data": base64.b64encode(pem).decode()}}
    )
    result = env.client().application_gateways.begin_create_or_update(RG, V1, body).result()
    assert result.provisioning_state == "Succeeded"


def test_control_endpoint_lists_and_resets(env: Env) -> None:
    env.control("POST", "reset-requests")
    env.client().application_gateways.get(RG, V1)
    assert env.control("GET", "requests") == [
        {"method": "GET", "path": f"{PREFIX}/{V1}", "status": 200}
    ]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _server_health(ops: Any) -> tuple[str, str]:
    pool = ops.begin_backend_health(RG, V1).result().as_dict()["backendAddressPools"][0]
    server = pool["backendHttpSettingsCollection"][0]["servers"][0]
    return server["health"], server["healthProbeLog"]


def test_health_refreshes_per_probe_interval_not_per_put(tmp_path: Path) -> None:
    clock = FakeClock()
    # The write's delay runs on the fake clock; backend health answers on its first poll.
    env = Env(tmp_path, clock=clock, health_lro_seconds=0, retry_after_seconds=0)
    try:
        ops = env.client().application_gateways
        assert _server_health(ops)[0] == "Healthy"
        body: Any = v1_gateway(env.backend.port, env.other_leaf_b64)  # wrong leaf allow-listed
        poller = ops.begin_create_or_update(RG, V1, body)
        clock.now += 1.5  # past lro_delay_seconds
        assert poller.result().provisioning_state == "Succeeded"
        # cached: same probe cycle (docs/sources.md#health-states)
        assert _server_health(ops)[0] == "Healthy"
        clock.now += 30  # default probe interval (docs/sources.md#health-states)
        health, log = _server_health(ops)
        assert health == "Unhealthy"
        assert "not whitelisted" in log
    finally:
        env.close()


def test_injected_fault_is_served_once(env: Env) -> None:
    env.control("POST", "reset-requests")
    fault = {"method": "GET", "route": "get", "status": 429, "code": "TooManyRequests"}
    env.control("POST", "faults", {"once": [{**fault, "headers": {"Retry-After": "0"}}]})
    env.client().application_gateways.get(RG, V1)  # the SDK retries the 429 by itself
    assert [r["status"] for r in env.control("GET", "requests")] == [429, 200]
