"""The App Service managed-identity endpoint, so the bot's azure-identity code runs unchanged.

Protocol (docs/sources.md#managed-identity): GET {IDENTITY_ENDPOINT}?api-version=2019-08-01
&resource=<uri> with header X-IDENTITY-HEADER; 200 JSON {access_token, expires_on (epoch seconds,
string), resource, token_type, client_id}. Errors are JSON {statusCode, message}.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

API_VERSION = "2019-08-01"
ENDPOINT_PATH = "/msi/token"
# Stands in for the system-assigned identity's application id.
SYSTEM_CLIENT_ID = "5a1c0b0e-5a1c-4b0e-8b0e-5a1c0b0e5a1c"
_OBJECT_IDS = uuid.UUID("0b1ec7d0-5a1c-4b0e-8b0e-000000000000")


def object_id_for(client_id: str | None) -> str:
    """The identity's principal (object) id: what role assignments name and ARM reports as
    "object id" (Entra access tokens carry it as the `oid` claim). Stable per client id."""
    return str(uuid.uuid5(_OBJECT_IDS, (client_id or SYSTEM_CLIENT_ID).lower()))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _norm_resource(resource: str) -> str:
    return resource.strip().rstrip("/").lower()


class TokenIssuer:
    """HMAC-signed opaque tokens: base64url(claims) '.' base64url(HMAC-SHA256)."""

    def __init__(self, lifetime_seconds: int = 3600, secret: bytes | None = None) -> None:
        self.lifetime_seconds = lifetime_seconds
        self._secret = secret or secrets.token_bytes(32)

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode("ascii"), hashlib.sha256).digest())

    def issue(self, resource: str, client_id: str | None = None) -> str:
        claims = {
            "res": _norm_resource(resource),
            "cid": client_id or SYSTEM_CLIENT_ID,
            "oid": object_id_for(client_id),
            "exp": int(time.time()) + self.lifetime_seconds,
            "jti": secrets.token_hex(8),
        }
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def claims(self, token: str) -> dict[str, object] | None:
        """The claims of a token with a valid signature, else None."""
        body, _, signature = token.strip().partition(".")
        if not body or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            claims = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            return None
        return claims if isinstance(claims, dict) else None

    def expires_on(self, token: str) -> int:
        claims = self.claims(token) or {}
        exp = claims.get("exp", 0)
        return exp if isinstance(exp, int) else 0

    def verify(self, token: str, resource_prefix: str) -> bool:
        """Valid signature, not expired, and issued for a resource under `resource_prefix`."""
        claims = self.claims(token)
        if claims is None:
            return False
        exp, res = claims.get("exp"), claims.get("res")
        if not isinstance(exp, int) or exp <= time.time() or not isinstance(res, str):
            return False
        return res.startswith(_norm_resource(resource_prefix))


class _Handler(BaseHTTPRequestHandler):
    server: _IdentityHTTPServer
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall

    def log_message(self, format: str, *args: object) -> None:
        return  # keep test and CLI output clean

    def _json(self, status: int, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"statusCode": status, "message": message})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        header = self.headers.get("X-IDENTITY-HEADER", "")
        if url.path.rstrip("/") != ENDPOINT_PATH:
            self._error(404, f"no such endpoint: {url.path}")
        elif not hmac.compare_digest(header.encode(), self.server.header_secret.encode()):
            self._error(401, "missing or invalid X-IDENTITY-HEADER")
        elif query.get("api-version") != API_VERSION:
            self._error(400, f"api-version must be {API_VERSION}")
        elif not query.get("resource"):
            self._error(400, "resource is required")
        else:
            resource = query["resource"]
            client_id = query.get("client_id")
            token = self.server.issuer.issue(resource, client_id)
            self._json(
                200,
                {
                    "access_token": token,
                    "expires_on": str(self.server.issuer.expires_on(token)),
                    "resource": resource,
                    "token_type": "Bearer",
                    "client_id": client_id or SYSTEM_CLIENT_ID,
                },
            )


class _IdentityHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, issuer: TokenIssuer, header_secret: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.issuer = issuer
        self.header_secret = header_secret


class IdentityServer:
    """Plain HTTP on 127.0.0.1 (as on App Service, the endpoint is local and not TLS)."""

    def __init__(self, issuer: TokenIssuer, header_secret: str) -> None:
        self.issuer = issuer
        self.header_secret = header_secret
        self._server: _IdentityHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    def start(self) -> None:
        self._server = _IdentityHTTPServer(self.issuer, self.header_secret)
        port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{port}{ENDPOINT_PATH}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits for one poll
            daemon=True,
            name="sandbox-identity",
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
