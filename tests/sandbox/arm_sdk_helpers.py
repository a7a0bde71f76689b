"""The emulator world for the azure-mgmt-network tests (tests/sandbox/test_arm_sdk*.py): a v1 and
a v2 gateway in front of a loopback TLS backend, the SDK client with a static token, and the
`env` / `paced_env` fixtures.
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
from azure.mgmt.network import NetworkManagementClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from sandbox.arm import ArmEmulator

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
