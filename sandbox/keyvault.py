"""A local Key Vault certificates data plane, enough for azure-keyvault-certificates 4.12.

It serves the PUBLIC part (`cer`) of the certificates a scenario names, read-only:

  GET /certificates?api-version=...                      list_properties_of_certificates
  GET /certificates/{name}[/]?api-version=...            get_certificate (latest version)
  GET /certificates/{name}/{version}?api-version=...     get_certificate_version

Authentication is Key Vault's challenge protocol (the SDK's ChallengeAuthPolicy): a request
without a valid bearer token gets 401 with `WWW-Authenticate: Bearer authorization="<authority>/
<tenant>", resource="https://vault.azure.net"`; the client then asks its credential (the sandbox
managed-identity endpoint, docs/sources.md#managed-identity) for a token for that resource and
retries. The vault listens on 127.0.0.1, not *.vault.azure.net, so clients must pass
`verify_challenge_resource=False`: the env file sets KEY_VAULT_VERIFY_CHALLENGE_RESOURCE=false.

Each certificate has one version, derived from its SHA-1 (32 hex digits, as Key Vault's are).
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from sandbox.arm_http import HttpsEndpoint, Request, Response

VAULT_RESOURCE = "https://vault.azure.net"
AUTHORITY = "https://login.microsoftonline.com"
# Stands in for the tenant of the vault (the challenge names it; the sandbox identity ignores it).
SANDBOX_TENANT = "5a7d0b0c-0000-4000-8000-00000000a0a0"
NAME_PATTERN = re.compile(r"^[0-9A-Za-z-]{1,127}$")  # Key Vault object names
_ROUTE = re.compile(r"^/certificates(?:/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?)?/?$")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _subject(cert: x509.Certificate) -> str:
    """The subject as a policy shows it, e.g. "CN=..., O=..."."""
    return ", ".join(rdn.rfc4514_string() for rdn in cert.subject.rdns)


def _epoch(cert: x509.Certificate, attr: str) -> int:
    return int(getattr(cert, attr).timestamp())


@dataclass(frozen=True)
class VaultCertificate:
    name: str
    der: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    @property
    def sha1(self) -> bytes:
        return hashlib.sha1(self.der, usedforsecurity=False).digest()

    @property
    def version(self) -> str:
        return self.sha1.hex()[:32]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, {"error": {"code": code, "message": message}}, headers or {})


class KeyVaultEmulator:
    """HTTPS on 127.0.0.1; `url` is the vault URL (KEY_VAULT_URL)."""

    def __init__(
        self,
        *,
        certificates: Mapping[str, bytes],
        tls_cert_pem: bytes,
        tls_key_pem: bytes,
        verify_token: Callable[[str], bool],
        tenant_id: str = SANDBOX_TENANT,
    ) -> None:
        for name in certificates:
            if not NAME_PATTERN.match(name):
                raise ValueError(f"not a Key Vault certificate name: {name!r}")
        self._certs = {n.lower(): VaultCertificate(n, der) for n, der in certificates.items()}
        self._tls = (tls_cert_pem, tls_key_pem)
        self._verify_token = verify_token
        self._tenant = tenant_id
        self._endpoint: HttpsEndpoint | None = None
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []  # method, path, status, authorized
        self.url = ""

    def start(self) -> None:
        self._endpoint = HttpsEndpoint(self, self._tls, "keyvault-emulator")
        self.url = self._endpoint.url

    def stop(self) -> None:
        if self._endpoint is not None:
            self._endpoint.stop()
            self._endpoint = None

    # ---- requests --------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        authorized = self._authorized(request)
        response = self._answer(request) if authorized else self._challenge(request)
        with self._lock:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "authorized": authorized,
                }
            )
        return response

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and bool(token) and self._verify_token(token.strip())

    def _challenge(self, request: Request) -> Response:
        """Key Vault's 401: the challenge tells the client where and for what to get a token."""
        has_token = bool(request.headers.get("authorization"))
        message = (
            "AKV10022: Invalid audience or expired token."
            if has_token
            else "AKV10000: Request is missing a Bearer or PoP token."
        )
        header = f'Bearer authorization="{AUTHORITY}/{self._tenant}", resource="{VAULT_RESOURCE}"'
        return _error(401, "Unauthorized", message, {"WWW-Authenticate": header})

    def _answer(self, request: Request) -> Response:
        if not (request.query.get("api-version") or [""])[0]:
            return _error(400, "BadParameter", "The 'api-version' query parameter is missing.")
        match = _ROUTE.match(request.path)
        if match is None:
            return _error(404, "NotFound", f"No route for {request.path}.")
        if request.method != "GET":
            return _error(405, "MethodNotAllowed", "The sandbox vault is read-only.")
        name, version = match.group("name"), match.group("version")
        if name is None:
            return Response(200, {"value": [self._item(c) for c in self._certs.values()]})
        cert = self._certs.get(name.lower())
        if cert is None or (version and version.lower() != cert.version):
            what = f"{name}/{version}" if version else name
            return _error(
                404,
                "CertificateNotFound",
                f"A certificate with (name/id) {what} was not found in this key vault. If you "
                "recently deleted this certificate you may be able to recover it using the "
                "correct recovery command. For help resolving this issue, please see "
                "https://go.microsoft.com/fwlink/?linkid=2125182",
            )
        return Response(200, self._bundle(cert))

    # ---- JSON shapes -----------------------------------------------------------------------

    def _attributes(self, cert: VaultCertificate) -> dict[str, Any]:
        x = cert.cert
        created = _epoch(x, "not_valid_before_utc")
        return {
            "enabled": True,
            "nbf": created,
            "exp": _epoch(x, "not_valid_after_utc"),
            "created": created,
            "updated": created,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        }

    def _item(self, cert: VaultCertificate) -> dict[str, Any]:
        """A list entry: the certificate's id without version, thumbprint and attributes."""
        return {
            "id": f"{self.url}/certificates/{cert.name}",
            "x5t": _b64url(cert.sha1),
            "attributes": self._attributes(cert),
            "tags": {},
        }

    def _bundle(self, cert: VaultCertificate) -> dict[str, Any]:
        """A CertificateBundle: ids of the certificate, key and secret; public DER in `cer`."""
        base, v = self.url, cert.version
        attributes = self._attributes(cert)
        return {
            "id": f"{base}/certificates/{cert.name}/{v}",
            "kid": f"{base}/keys/{cert.name}/{v}",
            "sid": f"{base}/secrets/{cert.name}/{v}",
            "x5t": _b64url(cert.sha1),
            "cer": base64.b64encode(cert.der).decode("ascii"),
            "attributes": attributes,
            "tags": {},
            "policy": self._policy(cert, attributes),
        }

    def _policy(self, cert: VaultCertificate, attributes: dict[str, Any]) -> dict[str, Any]:
        """The policy of an imported certificate (issuer Unknown)."""
        return {
            "id": f"{self.url}/certificates/{cert.name}/policy",
            "key_props": {"exportable": True, "kty": "RSA", "key_size": 2048, "reuse_key": False},
            "secret_props": {"contentType": "application/x-pkcs12"},
            "x509_props": {"subject": _subject(cert.cert), "validity_months": 12},
            "issuer": {"name": "Unknown"},
            "attributes": {
                "enabled": True,
                "created": attributes["created"],
                "updated": attributes["updated"],
            },
        }
