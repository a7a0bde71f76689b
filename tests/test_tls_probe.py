"""TLS evidence capture against real TLS servers on loopback.

The helpers here (make_cert, TlsServer, PKI fixtures) are shared by the diagnosis, report and CLI
tests; they stand in for sandbox/backends.py, which may replace them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.probe.tls import ProbeErrorKind, capture, capture_all

UTC = dt.UTC
VALID_FROM = dt.datetime(2024, 1, 1, tzinfo=UTC)
VALID_TO = dt.datetime(2035, 1, 1, tzinfo=UTC)
NOW = dt.datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Cert:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def sha1(self) -> str:
        return self.cert.fingerprint(hashes.SHA1()).hex().upper()


def make_cert(
    cn: str,
    *,
    issuer: Cert | None = None,
    sans: tuple[str, ...] = (),
    ca: bool = False,
    not_before: dt.datetime = VALID_FROM,
    not_after: dt.datetime = VALID_TO,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Cert:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    signer = issuer.key if issuer else key
    return Cert(key, builder.sign(signer, hashes.SHA256()))


@dataclass(frozen=True)
class Pki:
    root: Cert
    intermediate: Cert
    app: Cert  # test.appgwtestase.com, issued by the intermediate
    ilb_default: Cert  # self-signed non-CA, *.appgwtestase.com: the ILB's default certificate
    other_root: Cert
    other_app: Cert  # test.appgwtestase.com issued by a CA the gateway does not reference
    expired: Cert
    wrong_name: Cert
    rotated_app: Cert  # same name as app, new key


@pytest.fixture(scope="session")
def pki() -> Pki:
    root = make_cert("Contoso Private Root CA", ca=True)
    inter = make_cert("Contoso Issuing CA 1", issuer=root, ca=True)
    other_root = make_cert("Fabrikam Root CA", ca=True)
    host = "test.appgwtestase.com"
    return Pki(
        root=root,
        intermediate=inter,
        app=make_cert(host, issuer=inter, sans=(host,)),
        ilb_default=make_cert(
            "*.appgwtestase.com", sans=("*.appgwtestase.com", "*.scm.appgwtestase.com")
        ),
        other_root=other_root,
        other_app=make_cert(host, issuer=other_root, sans=(host,)),
        expired=make_cert(
            host,
            issuer=inter,
            sans=(host,),
            not_before=dt.datetime(2020, 1, 1, tzinfo=UTC),
            not_after=dt.datetime(2021, 1, 1, tzinfo=UTC),
        ),
        wrong_name=make_cert("other.example.test", issuer=inter, sans=("other.example.test",)),
        rotated_app=make_cert(host, issuer=inter, sans=(host,)),
    )


def _context(chain: list[Cert]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
        cert_file.write_bytes(b"".join(c.pem for c in chain))
        key_file.write_bytes(chain[0].key_pem)
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


@dataclass
class TlsServer:
    """A loopback backend: `tls` (SNI-selected chains), `refuse`, `silent` or `plain_http`."""

    default_chain: list[Cert] = field(default_factory=list)
    sni_chains: dict[str, list[Cert]] = field(default_factory=dict)
    behaviour: str = "tls"
    # Limits of the backend's TLS (None: the library default): the highest protocol it speaks and
    # its OpenSSL cipher string (TLS 1.2 and below).
    max_version: ssl.TLSVersion | None = None
    ciphers: str | None = None
    address: str = "127.0.0.1"
    port: int = 0
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _conns: list[socket.socket] = field(default_factory=list)

    def start(self) -> TlsServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.address, 0))
        self.port = sock.getsockname()[1]
        self._sock = sock
        if self.behaviour == "refuse":
            return self  # bound, not listening: connections are refused
        sock.listen(16)
        sock.settimeout(0.2)
        self._contexts = {n.lower(): _context(c) for n, c in self.sni_chains.items()}
        any_chain = self.default_chain or next(iter(self.sni_chains.values()), [])
        self._default = _context(any_chain) if any_chain else None
        if self._default is not None:
            self._default.sni_callback = self._on_sni
        for ctx in [*self._contexts.values(), *([self._default] if self._default else [])]:
            self._limit(ctx)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _limit(self, ctx: ssl.SSLContext) -> None:
        if self.max_version is not None:
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = self.max_version
        if self.ciphers is not None:
            ctx.set_ciphers(self.ciphers)

    def _on_sni(self, sslobj: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> int | None:
        ctx = self._contexts.get((name or "").lower())
        if ctx is not None:
            sslobj.context = ctx
            return None
        # A backend without a default certificate resets the handshake (docs/sources.md#sni-rules).
        return None if self.default_chain else ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @property
    def accepted(self) -> int:
        """TCP connections accepted so far (each capture opens exactly one)."""
        return len(self._conns)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError, ssl.SSLError):
            if self.behaviour == "silent":
                self._stop.wait()
            elif self.behaviour == "plain_http":
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            elif self._default is not None:
                tls = self._default.wrap_socket(conn, server_side=True)
                tls.recv(4096)
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()
        if self._sock is not None:
            self._sock.close()


@pytest.fixture
def servers() -> Iterator[list[TlsServer]]:
    """Start servers with `servers.append(TlsServer(...).start())`; all stop at teardown."""
    started: list[TlsServer] = []
    yield started
    for server in started:
        server.stop()


# ---- tests ----


def test_no_sni_gets_default_and_sni_gets_app_chain(pki: Pki, servers: list[TlsServer]) -> None:
    ilb = TlsServer([pki.ilb_default], {"test.appgwtestase.com": [pki.app, pki.intermediate]})
    servers.append(ilb.start())

    plain = capture(ilb.address, ilb.port, None, timeout=5)
    named = capture(ilb.address, ilb.port, "test.appgwtestase.com", timeout=5)

    assert plain.error is None and plain.sni is None
    assert [c.sha1 for c in plain.chain] == [pki.ilb_default.sha1]
    assert named.error is None and named.sni == "test.appgwtestase.com"
    assert [c.sha1 for c in named.chain] == [pki.app.sha1, pki.intermediate.sha1]
    assert named.leaf is not None and named.leaf.sans == ("test.appgwtestase.com",)
    assert named.chain[1].is_ca and not plain.chain[0].is_ca and plain.chain[0].self_signed


def test_ip_is_never_sent_as_sni(pki: Pki, servers: list[TlsServer]) -> None:
    ilb = TlsServer([pki.ilb_default], {"127.0.0.1": [pki.app]})
    servers.append(ilb.start())
    cap = capture(ilb.address, ilb.port, "127.0.0.1", timeout=5)
    assert cap.sni is None
    assert cap.leaf is not None and cap.leaf.sha1 == pki.ilb_default.sha1


def test_refused(servers: list[TlsServer]) -> None:
    closed = TlsServer(behaviour="refuse").start()
    servers.append(closed)
    cap = capture(closed.address, closed.port, None, timeout=5)
    assert cap.error is ProbeErrorKind.REFUSED and cap.chain == ()


def test_plain_http_is_not_tls(servers: list[TlsServer]) -> None:
    http = TlsServer(behaviour="plain_http").start()
    servers.append(http)
    cap = capture(http.address, http.port, "test.appgwtestase.com", timeout=5)
    assert cap.error is ProbeErrorKind.NOT_TLS
    assert cap.detail and "HTTP/1.1 400" in cap.detail


def test_handshake_failure_is_tls_error(pki: Pki, servers: list[TlsServer]) -> None:
    # No default certificate: without a known SNI the backend aborts the handshake.
    strict = TlsServer([], {"test.appgwtestase.com": [pki.app]}).start()
    servers.append(strict)
    cap = capture(strict.address, strict.port, None, timeout=5)
    assert cap.error is ProbeErrorKind.TLS_ERROR and cap.chain == ()


def test_unresolvable_name_is_unresolved() -> None:
    # A 64-character label cannot be encoded: fails locally, no DNS query leaves the machine.
    cap = capture("a" * 64 + ".example", 443, None, timeout=1)
    assert cap.error is ProbeErrorKind.UNRESOLVED


def test_silent_peer_times_out(servers: list[TlsServer]) -> None:
    silent = TlsServer(behaviour="silent").start()
    servers.append(silent)
    cap = capture(silent.address, silent.port, None, timeout=0.3)
    assert cap.error is ProbeErrorKind.TIMEOUT


def test_capture_all_deduplicates_identical_requests(pki: Pki, servers: list[TlsServer]) -> None:
    ilb = TlsServer([pki.ilb_default], {"test.appgwtestase.com": [pki.app]}).start()
    other = TlsServer([pki.ilb_default]).start()
    servers += [ilb, other]
    plain, named = (ilb.address, ilb.port, None), (ilb.address, ilb.port, "test.appgwtestase.com")
    requests = [plain, named, plain, (other.address, other.port, None), plain, named]

    results = capture_all(requests, timeout=5)

    assert set(results) == set(requests) and len(results) == 3
    assert results[plain].leaf.sha1 == pki.ilb_default.sha1  # type: ignore[union-attr]
    assert results[named].leaf.sha1 == pki.app.sha1  # type: ignore[union-attr]
    # One TCP connection per distinct (address, port, SNI), however often it was asked for.
    assert (ilb.accepted, other.accepted) == (2, 1)


@pytest.mark.parametrize(("peers", "max_workers"), [(8, None), (6, 3)])
def test_capture_all_pays_one_timeout_per_round_of_the_pool(
    servers: list[TlsServer], peers: int, max_workers: int | None
) -> None:
    """n silent peers with a pool of k workers cost ceil(n / k) timeouts: not one more (they run
    concurrently), not one less (the pool really is that size)."""
    timeout = 1.0
    silent = [TlsServer(behaviour="silent").start() for _ in range(peers)]
    servers.extend(silent)
    requests = [(s.address, s.port, None) for s in silent]
    kwargs = {} if max_workers is None else {"max_workers": max_workers}
    rounds = -(-peers // (max_workers or peers))  # the default pool (256) holds every peer

    started = time.monotonic()
    results = capture_all(requests, timeout=timeout, **kwargs)
    elapsed = time.monotonic() - started

    assert all(results[r].error is ProbeErrorKind.TIMEOUT for r in requests)
    assert [s.accepted for s in silent] == [1] * peers
    assert rounds * timeout * 0.9 <= elapsed < (rounds + 1) * timeout, (rounds, elapsed)


def test_capture_all_empty() -> None:
    assert capture_all([], timeout=1) == {}
