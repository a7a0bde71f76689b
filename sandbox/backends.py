"""Backends that behave like an ILB App Service Environment front end, on loopback.

An ILB ASE presents a default certificate when the client sends no SNI and the app's certificate
only under the app's host name (docs/sources.md#ilb-ase: "When you don't use a host
name ... the backend server returns the configured certificate on the default website"). Each
backend here is a real TLS server on its own 127.x.y.z address whose SNI callback switches the
SSLContext per host name, then answers any HTTP request with a fixed status and body.
"""

from __future__ import annotations

import contextlib
import http
import random
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sandbox.pki import KeyCert

# Bounds how long a connection thread waits for a client that stalls mid-request.
_IO_TIMEOUT = 10.0
_MAX_REQUEST = 64 * 1024
_TLS_HANDSHAKE_RECORD = b"\x16"


class Behaviour(StrEnum):
    TLS = "tls"  # TLS with SNI-selected certificates, then HTTP
    REFUSE = "refuse"  # address and port held, nothing listens: connections are refused
    SILENT = "silent"  # accepts TCP and never answers
    PLAIN_HTTP = "plain_http"  # plain HTTP on the TLS port


@dataclass
class BackendSpec:
    name: str
    behaviour: Behaviour
    # Presented without SNI or under an unknown SNI: leaf first, then the certificates sent.
    default_chain: list[KeyCert] = field(default_factory=list)
    # Lower-case host name -> chain presented under that SNI.
    sni_chains: dict[str, list[KeyCert]] = field(default_factory=dict)
    http_status: int = 200
    body: str = "OK"
    # What `BackendServer.rotate()` switches to (a certificate renewal mid-scenario); empty when
    # the backend never switches.
    rotate_default_chain: list[KeyCert] = field(default_factory=list)
    rotate_sni_chains: dict[str, list[KeyCert]] = field(default_factory=dict)


def _server_context(chain: list[KeyCert]) -> ssl.SSLContext:
    """A server context presenting `chain` (leaf first); load_cert_chain only reads files."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="sandbox-chain-") as tmp:
        cert_file, key_file = Path(tmp) / "chain.pem", Path(tmp) / "key.pem"
        cert_file.write_bytes(b"".join(kc.pem() for kc in chain))
        key_file.write_bytes(chain[0].key_pem())
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


def http_response(status: int, body: str) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    payload = body.encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + payload


def _read_request(conn: socket.socket) -> bytes | None:
    """The request head; None when the peer went away first."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < _MAX_REQUEST:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
        if data[:1] == _TLS_HANDSHAKE_RECORD:
            break  # a TLS client on a plain-HTTP port: answer at once, as web servers do
    return data


class BackendServer:
    """One backend on (address, port); start() binds, stop() closes every socket it opened."""

    def __init__(self, spec: BackendSpec, address: str, port: int) -> None:
        if spec.behaviour is Behaviour.TLS and not spec.default_chain:
            raise ValueError(f"backend {spec.name}: a TLS backend needs a default chain")
        self.spec = spec
        self.address = address
        self.port = port
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._default_ctx: ssl.SSLContext | None = None
        self._sni_ctx: dict[str, ssl.SSLContext] = {}

    def start(self) -> None:
        if self.spec.behaviour is Behaviour.TLS:
            self._build_contexts()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.address, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._sock = sock
        if self.spec.behaviour is Behaviour.REFUSE:
            return  # bound, never listening: the kernel answers connects with RST
        sock.listen(64)
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"backend-{self.spec.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def rotate(self) -> None:
        """Present the declared next chains from the next handshake on (a backend whose
        certificate is renewed); handshakes already under way finish with the old one."""
        if not self.spec.rotate_default_chain:
            raise ValueError(f"backend {self.spec.name} declares no certificate to rotate to")
        self.spec.default_chain = self.spec.rotate_default_chain
        self.spec.sni_chains = self.spec.rotate_sni_chains
        self.spec.rotate_default_chain, self.spec.rotate_sni_chains = [], {}
        self._build_contexts()

    # -- internals ---------------------------------------------------------------------------

    def _build_contexts(self) -> None:
        # Built aside, then swapped in: a handshake sees the old contexts or the new ones.
        sni_ctx = {
            host.lower(): _server_context(chain) for host, chain in self.spec.sni_chains.items()
        }
        default_ctx = _server_context(self.spec.default_chain)
        default_ctx.sni_callback = self._on_sni
        self._sni_ctx, self._default_ctx = sni_ctx, default_ctx

    def _on_sni(self, sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        # Unknown or absent SNI keeps the default certificate, as an ASE front end does.
        if server_name and server_name.lower() in self._sni_ctx:
            sslobj.context = self._sni_ctx[server_name.lower()]

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            if self.spec.behaviour is Behaviour.SILENT:
                continue  # held open until stop(), never read, never answered
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _answer(self, request: bytes) -> bytes:
        if request[:1] == _TLS_HANDSHAKE_RECORD:
            return http_response(400, "The TLS handshake was sent to a plain HTTP port")
        return http_response(self.spec.http_status, self.spec.body)

    def _serve(self, conn: socket.socket) -> None:
        stream: socket.socket = conn
        try:
            conn.settimeout(_IO_TIMEOUT)
            if self.spec.behaviour is Behaviour.TLS:
                assert self._default_ctx is not None
                stream = self._default_ctx.wrap_socket(conn, server_side=True)
            request = _read_request(stream)
            if request is not None:
                stream.sendall(self._answer(request))
            if isinstance(stream, ssl.SSLSocket):
                with contextlib.suppress(OSError, ValueError):
                    stream.unwrap()
        except (OSError, ssl.SSLError, ValueError):
            pass  # the client hung up or failed the handshake: nothing to answer
        finally:
            with self._lock:
                self._conns.discard(conn)
            stream.close()
            conn.close()


# -- loopback addresses --------------------------------------------------------------------------

_used_bases: set[tuple[int, int]] = set()
_bases_lock = threading.Lock()


def _bindable(address: str, port: int = 0) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


class AddressBlock:
    """127.R.S.1..n for one sandbox; R and S are random so two sandboxes rarely collide."""

    def __init__(self, count: int) -> None:
        if not 0 < count < 250:
            raise ValueError("a sandbox holds between 1 and 249 backends")
        self.addresses: list[str] = []
        rng = random.SystemRandom()
        for _ in range(200):
            base = (rng.randint(16, 250), rng.randint(1, 254))
            with _bases_lock:
                if base in _used_bases:
                    continue
                candidates = [f"127.{base[0]}.{base[1]}.{i + 1}" for i in range(count)]
                if all(_bindable(a) for a in candidates):
                    _used_bases.add(base)
                    self._base = base
                    self.addresses = candidates
                    return
        raise OSError("no free loopback block in 127.0.0.0/8")

    def release(self) -> None:
        with _bases_lock:
            _used_bases.discard(self._base)


def choose_port(addresses: list[str], wanted: int) -> int:
    """`wanted` when it binds on every address, else one free port number that binds on all."""
    if wanted and all(_bindable(a, wanted) for a in addresses):
        return wanted
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        if all(_bindable(a, port) for a in addresses):
            return port
    raise OSError(f"no common free port on {addresses}")
