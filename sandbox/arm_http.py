"""The HTTPS side of the local Azure services: a JSON request/response pair and a TLS server
that serves any `JsonApp` on 127.0.0.1 (the ARM, Key Vault and metrics emulators use it)."""

from __future__ import annotations

import contextlib
import json
import ssl
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from sandbox.faults import Effect


class _JsonNull:
    """A response body of exactly `null` (four bytes), as NRP answers backend-health 202s."""

    def __repr__(self) -> str:
        return "JSON_NULL"


JSON_NULL: Any = _JsonNull()


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    effect: Effect | None = None  # what a fault rule decided for this request


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class TlsHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(address, handler)
        # The handshake runs in the request thread, so a slow client cannot stall accept().
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )


class JsonApp(Protocol):
    def handle(self, request: Request) -> Response: ...


class HttpsEndpoint:
    """`app` served over HTTPS on 127.0.0.1 (a free port) in a daemon thread; PEM cert and key."""

    def __init__(self, app: JsonApp, tls: tuple[bytes, bytes], name: str) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert.write_bytes(tls[0])
            key.write_bytes(tls[1])
            context.load_cert_chain(cert, key)
        self._server = TlsHttpServer(("127.0.0.1", 0), _make_handler(app), context)
        # A short poll interval: stop() waits for it (the default 0.5 s adds up over a test run).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=name,
            daemon=True,
        )
        self._thread.start()
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _make_handler(emulator: JsonApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "SandboxARM/1.0"
        # TCP_NODELAY: headers and body go out as two writes; with Nagle the body waits for the
        # client's delayed ACK (about 40 ms per response on Linux loopback).
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            self.request.settimeout(30)
            self._tls_ok = True
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                self._tls_ok = False

        def handle(self) -> None:
            if self._tls_ok:  # a client that failed the handshake gets nothing more
                with contextlib.suppress(ssl.SSLError, ConnectionError, TimeoutError):
                    super().handle()

        def _serve(self) -> None:
            if not self.client_address[0].startswith("127."):
                self.send_error(403)
                return
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            response = emulator.handle(request)
            if response.body is None:
                payload = b""
            elif response.body is JSON_NULL:
                payload = b"null"
            else:
                payload = json.dumps(response.body).encode()
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
