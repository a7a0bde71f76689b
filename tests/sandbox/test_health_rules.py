"""Table-driven test of computed backend health, through the real SDK against the emulator.

Every backend behaviour of issue #2 on v1 and v2. The expected health and probe-log fragments are
written by hand from docs/sources.md#probe-log-texts and the entries it links, not taken from
sandbox/health_rules.py. The backends are real TLS servers on 127.0.0.1 built here.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from azure.core.credentials import AccessToken
from azure.mgmt.network import NetworkManagementClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sandbox.arm import ArmEmulator

pytestmark = pytest.mark.sandbox

SUB = "11111111-2222-3333-4444-555555555555"
RG = "rg-health"
APP_HOST = "test.appgwtestase.com"
TOKEN = "health-test-token"
NOW = dt.datetime.now(dt.UTC)


# ---- a tiny PKI ------------------------------------------------------------------------------


@dataclass
class Cert:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def b64der(self) -> str:
        return base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()


def make_cert(
    cn: str,
    issuer: Cert | None = None,
    *,
    ca: bool = False,
    sans: list[str] | None = None,
    expired: bool = False,
) -> Cert:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start, end = (
        (NOW - dt.timedelta(days=60), NOW - dt.timedelta(days=1))
        if expired
        else (NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=30))
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    signer = issuer.key if issuer else key
    return Cert(builder.sign(signer, hashes.SHA256()), key)


@dataclass
class Pki:
    root: Cert
    inter: Cert
    app: Cert  # leaf for APP_HOST under inter
    new_root: Cert
    new_inter: Cert
    new_app: Cert  # the same host renewed under a new private root
    ilb: Cert  # the ILB default certificate: a self-signed leaf, not a CA
    expired_app: Cert
    wk_root: Cert
    wk_inter: Cert
    wk_app: Cert


def build_pki() -> Pki:
    root = make_cert("Contoso Private Root", ca=True)
    inter = make_cert("Contoso Issuing CA", root, ca=True)
    new_root = make_cert("Contoso Private Root 2", ca=True)
    new_inter = make_cert("Contoso Issuing CA 2", new_root, ca=True)
    wk_root = make_cert("Well Known Public Root", ca=True)
    wk_inter = make_cert("Well Known Issuing CA", wk_root, ca=True)
    return Pki(
        root=root,
        inter=inter,
        app=make_cert(APP_HOST, inter, sans=[APP_HOST]),
        new_root=new_root,
        new_inter=new_inter,
        new_app=make_cert(APP_HOST, new_inter, sans=[APP_HOST]),
        ilb=make_cert("*.appgwtestase.internal", sans=["*.appgwtestase.internal"]),
        expired_app=make_cert(APP_HOST, inter, sans=[APP_HOST], expired=True),
        wk_root=wk_root,
        wk_inter=wk_inter,
        wk_app=make_cert(APP_HOST, wk_inter, sans=[APP_HOST]),
    )


# ---- backends --------------------------------------------------------------------------------


def _context(chain: list[Cert]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "c.pem"), Path(tmp, "k.pem")
        cert.write_bytes(b"".join(c.pem() for c in chain))
        key.write_bytes(chain[0].key_pem())
        ctx.load_cert_chain(cert, key)
    return ctx


@dataclass
class Backend:
    """mode: tls | refused | silent | plain. TLS: default chain without SNI, per-host by SNI."""

    mode: str
    default: list[Cert] = field(default_factory=list)
    by_sni: dict[str, list[Cert]] = field(default_factory=dict)
    status: int = 200
    port: int = 0
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        if self.mode == "refused":
            sock.close()  # nothing listens on this port any more
            return
        sock.listen(16)
        self._sock = sock
        if self.mode != "silent":  # silent: the kernel completes TCP, nobody ever reads
            threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._sock is not None
        ctx = None
        if self.mode == "tls":
            ctx = _context(self.default)
            sni_ctx = {h: _context(c) for h, c in self.by_sni.items()}

            def pick(obj: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
                if name and name.lower() in sni_ctx:
                    obj.context = sni_ctx[name.lower()]

            ctx.sni_callback = pick
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, ctx), daemon=True).start()

    def _serve(self, conn: socket.socket, ctx: ssl.SSLContext | None) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError), conn:
            stream: Any = ctx.wrap_socket(conn, server_side=True) if ctx else conn
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = stream.recv(4096)
                if not chunk:
                    break
                data += chunk
                if self.mode == "plain":  # a TLS ClientHello is a malformed request: 400 at once
                    break
            status = 400 if self.mode == "plain" else self.status
            stream.sendall(
                f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode()
            )

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()


# ---- the table -------------------------------------------------------------------------------

# Hand-written fragments from the reference (section noted per row).
NOT_WHITELISTED = "certificate is not whitelisted with application gateway"
V1_INVALID = "not within its validity period"  # v1 invalid or expired
CONNECT = "could not connect to the backend"
TIMEOUT = "more than the timeout threshold"
STATUS_500 = "Expected:200-399 Received:500"
SUCCESS = "Success. Received 200 status code"  # success logs
INTERMEDIATE_MISSING = "Intermediate certificate is missing"  # also a non-CA self-signed leaf
ROOT_SENT = "root certificate of the server certificate used by the backend doesn't match"
NO_ROOT = "Intermediate certificate not signed by any Root certificates uploaded"
EXPIRED_V2 = 'isn\'t within the "Valid from" and "Valid to" date range'
CN_V2 = "Common Name of the leaf certificate presented by the backend server does not match"
NOT_WELL_KNOWN = "isn't signed by a well-known Certificate Authority"


@dataclass
class Case:
    name: str
    sku: str  # "v1" | "v2"
    backend: str  # key into the backend factory below
    health: str
    log: str
    trust: list[str] = field(default_factory=list)  # Pki attribute names (auth certs / roots)
    probe_host: str | None = None
    host_name: str | None = None
    fqdn: bool = False  # pool member is APP_HOST (hosts option maps it to 127.0.0.1)
    settings: dict[str, Any] = field(default_factory=dict)


CASES = [
    # v1: pinning by public key; no SNI for an IP; the probe host is only the Host header
    # (docs/sources.md#sni-rules).
    Case(
        "seed-ilb-default", "v1", "ase", "Unhealthy", NOT_WHITELISTED, ["app"], probe_host=APP_HOST
    ),
    Case("ilb-cert-uploaded", "v1", "ase", "Healthy", SUCCESS, ["ilb"], probe_host=APP_HOST),
    Case("fqdn-sends-sni", "v1", "ase", "Healthy", SUCCESS, ["app"], fqdn=True),
    Case("v1-chain-ignored", "v1", "chain-leaf-only", "Healthy", SUCCESS, ["app"]),
    Case("v1-chain-full", "v1", "chain-full", "Healthy", SUCCESS, ["app"]),
    Case("v1-chain-no-root", "v1", "chain-no-root", "Healthy", SUCCESS, ["app"]),
    Case("v1-expired", "v1", "expired", "Unhealthy", V1_INVALID, ["expired_app"]),
    Case("v1-refused", "v1", "refused", "Unhealthy", CONNECT, ["app"]),
    Case("v1-silent", "v1", "silent", "Unhealthy", TIMEOUT, ["app"]),
    Case("v1-plain-http", "v1", "plain", "Unhealthy", CONNECT, ["app"]),
    Case("v1-status-500", "v1", "status500", "Unhealthy", STATUS_500, ["app"]),
    # v2: chain to a referenced trusted root, SNI from probe host > hostName > FQDN.
    Case("v2-no-sni-self-signed", "v2", "ase", "Unhealthy", INTERMEDIATE_MISSING, ["root"]),
    Case("v2-probe-host-is-sni", "v2", "ase", "Healthy", SUCCESS, ["root"], probe_host=APP_HOST),
    Case("v2-full-chain", "v2", "chain-full", "Healthy", SUCCESS, ["root"], host_name=APP_HOST),
    Case(
        "v2-chain-no-root", "v2", "chain-no-root", "Healthy", SUCCESS, ["root"], host_name=APP_HOST
    ),
    Case(
        "v2-leaf-only",
        "v2",
        "chain-leaf-only",
        "Unhealthy",
        INTERMEDIATE_MISSING,
        ["root"],
        host_name=APP_HOST,
    ),
    Case(
        "v2-new-root-sent",
        "v2",
        "renewed-full",
        "Unhealthy",
        ROOT_SENT,
        ["root"],
        host_name=APP_HOST,
    ),
    Case(
        "v2-new-root-not-sent",
        "v2",
        "renewed-no-root",
        "Unhealthy",
        NO_ROOT,
        ["root"],
        host_name=APP_HOST,
    ),
    # An intermediate uploaded as a trusted root anchors nothing: only the root is valid there,
    # intermediates belong on the server
    # (https://learn.microsoft.com/azure/application-gateway/certificates-for-backend-authentication).
    Case(
        "v2-intermediate-as-root",
        "v2",
        "chain-no-root",
        "Unhealthy",
        NO_ROOT,
        ["inter"],
        host_name=APP_HOST,
    ),
    Case(
        "v2-intermediate-as-root-leaf-only",
        "v2",
        "chain-leaf-only",
        "Unhealthy",
        INTERMEDIATE_MISSING,
        ["inter"],
        host_name=APP_HOST,
    ),
    Case("v2-expired", "v2", "expired", "Unhealthy", EXPIRED_V2, ["root"], host_name=APP_HOST),
    Case(
        "v2-expired-unchecked",
        "v2",
        "expired",
        "Healthy",
        SUCCESS,
        ["root"],
        host_name=APP_HOST,
        settings={"validateCertChainAndExpiry": False},
    ),
    Case(
        "v2-cn-mismatch",
        "v2",
        "chain-full",
        "Unhealthy",
        CN_V2,
        ["root"],
        host_name="other.appgwtestase.com",
    ),
    Case(
        "v2-sni-unchecked",
        "v2",
        "chain-full",
        "Healthy",
        SUCCESS,
        ["root"],
        host_name="other.appgwtestase.com",
        settings={"validateSNI": False},
    ),
    Case("v2-well-known-ok", "v2", "well-known", "Healthy", SUCCESS, [], host_name=APP_HOST),
    Case(
        "v2-private-not-well-known",
        "v2",
        "chain-full",
        "Unhealthy",
        NOT_WELL_KNOWN,
        [],
        host_name=APP_HOST,
    ),
    Case("v2-fqdn-sni", "v2", "ase", "Healthy", SUCCESS, ["root"], fqdn=True),
    Case("v2-refused", "v2", "refused", "Unhealthy", CONNECT, ["root"], host_name=APP_HOST),
    Case("v2-silent", "v2", "silent", "Unhealthy", TIMEOUT, ["root"], host_name=APP_HOST),
    Case("v2-plain-http", "v2", "plain", "Unhealthy", CONNECT, ["root"], host_name=APP_HOST),
    Case("v2-status-500", "v2", "status500", "Unhealthy", STATUS_500, ["root"], host_name=APP_HOST),
]


def make_backend(kind: str, pki: Pki) -> Backend:
    app_chain = [pki.app, pki.inter]
    if kind == "ase":  # ILB ASE: ILB default without SNI, the app certificate under its SNI
        return Backend("tls", [pki.ilb], {APP_HOST: app_chain})
    chains = {
        "chain-full": [pki.app, pki.inter, pki.root],
        "chain-no-root": app_chain,
        "chain-leaf-only": [pki.app],
        "renewed-full": [pki.new_app, pki.new_inter, pki.new_root],
        "renewed-no-root": [pki.new_app, pki.new_inter],
        "expired": [pki.expired_app, pki.inter],
        "well-known": [pki.wk_app, pki.wk_inter],
        "status500": app_chain,
    }
    if kind in chains:
        return Backend("tls", chains[kind], status=500 if kind == "status500" else 200)
    return Backend({"refused": "refused", "silent": "silent", "plain": "plain"}[kind])


def gateway_for(sku: str, cases: list[Case], backends: dict[str, Backend], pki: Pki) -> dict:
    gw_id = (
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network"
        f"/applicationGateways/gw-{sku}"
    )
    cert_kind = "authenticationCertificates" if sku == "v1" else "trustedRootCertificates"
    used = sorted({name for c in cases for name in c.trust})
    pools, settings, probes, rules = [], [], [], []
    for case in cases:
        member = {"fqdn": APP_HOST} if case.fqdn else {"ipAddress": "127.0.0.1"}
        pools.append({"name": case.name, "properties": {"backendAddresses": [member]}})
        s_props: dict[str, Any] = {
            "port": backends[case.name].port,
            "protocol": "Https",
            "cookieBasedAffinity": "Disabled",
            cert_kind: [{"id": f"{gw_id}/{cert_kind}/{n}"} for n in case.trust],
            **case.settings,
        }
        if case.host_name:
            s_props["hostName"] = case.host_name
        if case.probe_host:
            probes.append(
                {
                    "name": case.name,
                    "properties": {
                        "protocol": "Https",
                        "host": case.probe_host,
                        "path": "/",
                        "interval": 30,
                        "timeout": 30,
                        "unhealthyThreshold": 3,
                    },
                }
            )
            s_props["probe"] = {"id": f"{gw_id}/probes/{case.name}"}
        settings.append({"name": case.name, "properties": s_props})
        rules.append(
            {
                "name": case.name,
                "properties": {
                    "ruleType": "Basic",
                    "backendAddressPool": {"id": f"{gw_id}/backendAddressPools/{case.name}"},
                    "backendHttpSettings": {
                        "id": f"{gw_id}/backendHttpSettingsCollection/{case.name}"
                    },
                },
            }
        )
    tier = "Standard" if sku == "v1" else "Standard_v2"
    return {
        "id": gw_id,
        "name": f"gw-{sku}",
        "location": "westeurope",
        "properties": {
            "sku": {"name": "Standard_Medium" if sku == "v1" else "Standard_v2", "tier": tier},
            cert_kind: [
                {"name": n, "properties": {"data": getattr(pki, n).b64der()}} for n in used
            ],
            "backendAddressPools": pools,
            "backendHttpSettingsCollection": settings,
            "probes": probes,
            "requestRoutingRules": rules,
        },
    }


class StaticToken:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, 2**31)


@pytest.fixture(scope="module")
def health() -> Iterator[dict[tuple[str, str], dict]]:
    """Backend health of one v1 and one v2 gateway holding every case, via the SDK."""
    pki = build_pki()
    backends = {c.name: make_backend(c.backend, pki) for c in CASES}
    for backend in backends.values():
        backend.start()
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    gateways = [
        gateway_for(sku, [c for c in CASES if c.sku == sku], backends, pki) for sku in ("v1", "v2")
    ]
    arm = ArmEmulator(
        subscription_id=SUB,
        gateways=gateways,
        tls_cert_pem=server_cert.cert_chain_pems[0].bytes(),
        tls_key_pem=server_cert.private_key_pem.bytes(),
        verify_token=lambda t: t == TOKEN,
        well_known_roots=[pki.wk_root.cert.public_bytes(serialization.Encoding.DER)],
        options={
            "lro_delay_seconds": 0,  # backend health answers on its first poll
            "health_lro_seconds": 0,
            "retry_after_seconds": 0,
            "probe_timeout_cap_seconds": 1.0,
            "hosts": {APP_HOST: "127.0.0.1"},
        },
    )
    arm.start()
    try:
        with tempfile.NamedTemporaryFile(suffix=".pem") as ca_file:
            ca.cert_pem.write_to_path(ca_file.name)
            client = NetworkManagementClient(
                StaticToken(TOKEN),
                SUB,
                base_url=arm.url,
                connection_verify=ca_file.name,
                polling_interval=0,
            )
            out: dict[tuple[str, str], dict] = {}
            for sku in ("v1", "v2"):
                result = client.application_gateways.begin_backend_health(RG, f"gw-{sku}").result()
                for pool in result.as_dict()["backendAddressPools"]:
                    name = pool["backendAddressPool"]["id"].rsplit("/", 1)[-1]
                    server = pool["backendHttpSettingsCollection"][0]["servers"][0]
                    out[(sku, name)] = server
        yield out
    finally:
        arm.stop()
        for backend in backends.values():
            backend.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_computed_health(case: Case, health: dict[tuple[str, str], dict]) -> None:
    server = health[(case.sku, case.name)]
    assert server["health"] == case.health, server
    assert case.log.lower() in server["healthProbeLog"].lower(), server


def test_every_backend_behaviour_is_covered_on_both_skus() -> None:
    behaviours = {
        "ase",
        "chain-full",
        "chain-no-root",
        "chain-leaf-only",
        "expired",
        "refused",
        "silent",
        "plain",
        "status500",
    }
    for sku in ("v1", "v2"):
        seen = {c.backend for c in CASES if c.sku == sku}
        missing = behaviours - seen
        assert not missing, (sku, missing)
