"""Real TLS handshakes against the sandbox backends (loopback only)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from sandbox.backends import AddressBlock, BackendServer, BackendSpec, Behaviour, choose_port
from sandbox.pki import KeyCert, issue, make_root, self_signed

APP_HOST = "test.appgwtestase.com"


@pytest.fixture(scope="module")
def pki() -> dict[str, KeyCert]:
    root = make_root("Test Root")
    inter = issue(root, "Test Issuing CA", ca=True)
    now = datetime.now(UTC)
    return {
        "root": root,
        "int": inter,
        "app": issue(inter, APP_HOST, dns_names=[APP_HOST]),
        "ilb": self_signed("*.appgwtestase.com", dns_names=["*.appgwtestase.com"]),
        "expired": issue(
            root,
            "old.appgwtestase.com",
            dns_names=["old.appgwtestase.com"],
            not_before=now - timedelta(days=400),
            not_after=now - timedelta(days=30),
        ),
    }


@pytest.fixture
def block() -> Iterator[AddressBlock]:
    addresses = AddressBlock(2)
    yield addresses
    addresses.release()


@pytest.fixture
def serve(block: AddressBlock) -> Iterator:
    servers: list[BackendServer] = []

    def start(spec: BackendSpec) -> BackendServer:
        server = BackendServer(spec, block.addresses[len(servers)], 0)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def peer_chain(server: BackendServer, sni: str | None) -> list[bytes]:
    """DER of every certificate the server sends, via pyOpenSSL (no verification)."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    sock = socket.create_connection((server.address, server.port), timeout=5)
    sock.settimeout(None)  # pyOpenSSL wants a blocking socket
    conn = SSL.Connection(ctx, sock)
    if sni:
        conn.set_tlsext_host_name(sni.encode())
    conn.set_connect_state()
    try:
        conn.do_handshake()
        chain = conn.get_peer_cert_chain(as_cryptography=True) or []
        return [c.public_bytes(serialization.Encoding.DER) for c in chain]
    finally:
        conn.close()
        sock.close()


def https_get(server: BackendServer, sni: str | None, cafile: bytes | None = None) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if cafile is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=cafile.decode())
    with (
        socket.create_connection((server.address, server.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {sni or server.address}\r\n\r\n".encode())
        return _read_all(tls)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def ase(pki: dict[str, KeyCert], **kw: object) -> BackendSpec:
    return BackendSpec(
        name="ilb",
        behaviour=Behaviour.TLS,
        default_chain=[pki["ilb"]],
        sni_chains={APP_HOST: [pki["app"], pki["int"]]},
        **kw,  # type: ignore[arg-type]
    )


def test_default_certificate_without_sni(pki, serve) -> None:
    server = serve(ase(pki))
    assert peer_chain(server, None) == [pki["ilb"].der()]


def test_app_certificate_under_its_sni(pki, serve) -> None:
    server = serve(ase(pki))
    assert peer_chain(server, APP_HOST) == [pki["app"].der(), pki["int"].der()]


def test_sni_is_case_insensitive_and_unknown_sni_gets_default(pki, serve) -> None:
    server = serve(ase(pki))
    assert peer_chain(server, APP_HOST.upper())[0] == pki["app"].der()
    assert peer_chain(server, "other.appgwtestase.com") == [pki["ilb"].der()]


def test_chain_sent_as_configured_with_root(pki, serve) -> None:
    chain = [pki["app"], pki["int"], pki["root"]]
    server = serve(BackendSpec("full", Behaviour.TLS, default_chain=chain, sni_chains={}))
    assert peer_chain(server, None) == [c.der() for c in chain]


def test_chain_without_intermediate_fails_verification(pki, serve) -> None:
    leaf_only = serve(BackendSpec("leaf", Behaviour.TLS, [pki["app"]], {}))
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(leaf_only, APP_HOST, cafile=pki["root"].pem())
    complete = serve(BackendSpec("complete", Behaviour.TLS, [pki["app"], pki["int"]], {}))
    assert https_get(complete, APP_HOST, cafile=pki["root"].pem()).startswith(b"HTTP/1.1 200")


def test_expired_certificate_is_served_and_rejected_by_a_verifier(pki, serve) -> None:
    server = serve(BackendSpec("old", Behaviour.TLS, [pki["expired"]], {}))
    assert peer_chain(server, None) == [pki["expired"].der()]
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        https_get(server, None, cafile=pki["root"].pem())


def test_http_answer_with_chosen_status_and_body(pki, serve) -> None:
    server = serve(ase(pki, http_status=503, body="maintenance"))
    response = https_get(server, APP_HOST)
    assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert response.endswith(b"\r\n\r\nmaintenance")


def test_refused_port(serve) -> None:
    server = serve(BackendSpec("down", Behaviour.REFUSE))
    assert server.port > 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.address, server.port), timeout=5)


def test_silent_peer_accepts_and_never_answers(serve) -> None:
    server = serve(BackendSpec("silent", Behaviour.SILENT))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((server.address, server.port), timeout=0.5) as raw,
        pytest.raises(TimeoutError),
    ):
        ctx.wrap_socket(raw, server_hostname=APP_HOST)


def test_plain_http_on_the_tls_port(serve) -> None:
    server = serve(BackendSpec("plain", Behaviour.PLAIN_HTTP, http_status=200, body="plain"))
    with socket.create_connection((server.address, server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 200 OK")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((server.address, server.port), timeout=5) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        ctx.wrap_socket(raw, server_hostname=APP_HOST)


def test_stop_releases_the_port(pki, serve) -> None:
    server = serve(ase(pki))
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.address, server.port), timeout=5)


def test_address_blocks_are_loopback_and_distinct() -> None:
    first, second = AddressBlock(3), AddressBlock(3)
    try:
        assert all(a.startswith("127.") for a in first.addresses + second.addresses)
        assert not set(first.addresses) & set(second.addresses)
        assert len(set(first.addresses)) == 3
    finally:
        first.release()
        second.release()


def test_choose_port_falls_back_when_taken(block: AddressBlock) -> None:
    with socket.socket() as holder:
        holder.bind((block.addresses[0], 0))
        holder.listen()
        taken = holder.getsockname()[1]
        port = choose_port(block.addresses, taken)
    assert port != taken
    for address in block.addresses:
        with socket.socket() as probe:
            probe.bind((address, port))
