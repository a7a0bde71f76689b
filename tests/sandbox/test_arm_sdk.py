"""The ARM emulator driven only through azure-mgmt-network (and raw HTTPS for the control endpoint).

Facts: docs/sources.md#backend-trust (v2 refuses authentication certificates),
docs/sources.md#arm-lro (paths, LRO shapes), docs/sources.md#overlapping-writes
(AnotherOperationInProgress).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.mgmt.network import NetworkManagementClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from sandbox.arm import ArmEmulator

pytestmark = pytest.mark.sandbox

SUB = "aaaaaaaa-0000-0000-0000-000000000001"
RG = "rg-Sandbox"
V1 = "gw-v1"
V2 = "gw-v2"
TOKEN = "arm-sdk-test-token"
PREFIX = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/applicationGateways"


class StaticToken:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, 2**31)


class TlsBackend:
    """One TLS server on 127.0.0.1 presenting `leaf` and answering 200."""

    def __init__(self, cert: trustme.LeafCert) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(self.ctx)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError), self.ctx.wrap_socket(conn, server_side=True) as tls:
            data = b""
            while b"\r\n\r\n" not in data and (chunk := tls.recv(4096)):
                data += chunk
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self.sock.close()


def der_b64(pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(pem)
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def v1_gateway(port: int, leaf_b64: str) -> dict:
    gw = f"{PREFIX}/{V1}"
    return {
        "id": gw,
        "name": V1,
        "location": "westeurope",
        "tags": {"owner": "sandbox"},
        "properties": {
            "sku": {"name": "Standard_Medium", "tier": "Standard", "capacity": 2},
            "authenticationCertificates": [{"name": "backend", "properties": {"data": leaf_b64}}],
            "backendAddressPools": [
                {"name": "pool", "properties": {"backendAddresses": [{"ipAddress": "127.0.0.1"}]}}
            ],
            "backendHttpSettingsCollection": [
                {
                    "name": "https",
                    "properties": {
                        "port": port,
                        "protocol": "Https",
                        "cookieBasedAffinity": "Disabled",
                        "requestTimeout": 30,
                        "authenticationCertificates": [
                            {"id": f"{gw}/authenticationCertificates/backend"}
                        ],
                    },
                }
            ],
            "requestRoutingRules": [
                {
                    "name": "rule",
                    "properties": {
                        "ruleType": "Basic",
                        "backendAddressPool": {"id": f"{gw}/backendAddressPools/pool"},
                        "backendHttpSettings": {"id": f"{gw}/backendHttpSettingsCollection/https"},
                    },
                }
            ],
        },
    }


UAI = (
    f"/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.ManagedIdentity/"
    "userAssignedIdentities/agw-identity"
)
PFX_PASSWORD = "pfx-test-password"


def v2_gateway(root_b64: str, pfx_b64: str | None = None) -> dict:
    ssl_certs: list[dict] = [
        {"name": "kv-listener", "properties": {"keyVaultSecretId": "https://kv/secrets/listener"}}
    ]
    if pfx_b64 is not None:
        ssl_certs.append(
            {"name": "listener", "properties": {"data": pfx_b64, "password": PFX_PASSWORD}}
        )
    return {
        "id": f"{PREFIX}/{V2}",
        "name": V2,
        "location": "westeurope",
        # Key Vault references need a user-assigned identity; shape and `userAssigned` casing as
        # recorded (tests/data/recorded/java_ag_kv_sslcert_identity.json).
        "identity": {"type": "userAssigned", "userAssignedIdentities": {UAI: {}}},
        "properties": {
            "sku": {"name": "Standard_v2", "tier": "Standard_v2"},
            "sslCertificates": ssl_certs,
            "trustedRootCertificates": [
                {"name": "corp-root", "properties": {"data": root_b64}},
                {"name": "kv-root", "properties": {"keyVaultSecretId": "https://kv/secrets/root"}},
            ],
            "backendAddressPools": [],
            "backendHttpSettingsCollection": [],
        },
    }


def pfx_b64(cert: trustme.LeafCert) -> tuple[str, bytes]:
    """(base64 PKCS#12 of the leaf, its key and its chain; the leaf's DER)."""
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    leaf, *chain = (x509.load_pem_x509_certificate(p.bytes()) for p in cert.cert_chain_pems)
    pfx = pkcs12.serialize_key_and_certificates(
        b"listener",
        key,  # type: ignore[arg-type]
        leaf,
        chain or None,
        serialization.BestAvailableEncryption(PFX_PASSWORD.encode()),
    )
    return base64.b64encode(pfx).decode(), leaf.public_bytes(serialization.Encoding.DER)


class Env:
    def __init__(self, tmp: Path, **options: Any) -> None:
        self.backend_ca = trustme.CA()
        served = self.backend_ca.issue_cert("backend.sandbox.test")
        self.backend = TlsBackend(served)
        leaf_pem = self.backend_ca.issue_cert("backend.sandbox.test")  # a different key
        self.other_leaf_b64 = der_b64(leaf_pem.cert_chain_pems[0].bytes())
        self.root_b64 = der_b64(self.backend_ca.cert_pem.bytes())
        arm_ca = trustme.CA()
        arm_cert = arm_ca.issue_cert("127.0.0.1")
        self.ca_file = tmp / "arm-ca.pem"
        arm_ca.cert_pem.write_to_path(str(self.ca_file))
        self.leaf_b64 = _served_leaf_b64(self.backend.port)
        assert self.leaf_b64 == der_b64(served.cert_chain_pems[0].bytes())  # the backend's leaf
        self.pfx_b64, self.listener_der = pfx_b64(self.backend_ca.issue_cert("www.sandbox.test"))
        self.arm = ArmEmulator(
            subscription_id=SUB,
            gateways=[
                v1_gateway(self.backend.port, self.leaf_b64),
                v2_gateway(self.root_b64, self.pfx_b64),
            ],
            tls_cert_pem=arm_cert.cert_chain_pems[0].bytes(),
            tls_key_pem=arm_cert.private_key_pem.bytes(),
            verify_token=lambda t: t == TOKEN,
            well_known_roots=[],
            options={"lro_delay_seconds": 1.0, "probe_timeout_cap_seconds": 2.0, **options},
        )
        self.arm.start()

    def client(self, token: str = TOKEN) -> NetworkManagementClient:
        return NetworkManagementClient(
            StaticToken(token),
            SUB,
            base_url=self.arm.url,
            connection_verify=str(self.ca_file),
            polling_interval=0,
        )

    def control(self, method: str, route: str, body: Any = None) -> Any:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        data = b"" if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.arm.control_url}/{route}", method=method, data=data)
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return json.loads(resp.read())

    def close(self) -> None:
        self.arm.stop()
        self.backend.close()


def _served_leaf_b64(port: int) -> str:
    """The backend's leaf, fetched the way an operator would (no verification, no SNI)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    return base64.b64encode(der or b"").decode()


# Operations and backend health end on their first poll (docs/sandbox.md, "Timing profiles"):
# most tests only need them to end. `paced_env` keeps the 1 s write delay for the tests that
# look at an operation while it runs.
FAST = {"lro_delay_seconds": 0, "health_lro_seconds": 0, "retry_after_seconds": 0}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = Env(tmp_path_factory.mktemp("arm"), **FAST)
    yield e
    e.close()


@pytest.fixture
def paced_env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.close()


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
