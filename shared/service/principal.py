"""Who is calling: the Entra object id App Service Authentication puts in front of the app, and
where a signed-out browser is sent to sign in.

App Service Authentication ("Easy Auth") injects `X-MS-CLIENT-PRINCIPAL` (base64 JSON of the
token's claims), `-ID`, `-NAME` and `-IDP`, and external requests cannot set them: the platform
strips them (Learn, "Work with user identities in Azure App Service authentication";
docs/sources.md#easy-auth). So the bot trusts them only while the platform says authentication is
on (`WEBSITE_AUTH_ENABLED`), and then:

- the caller is the `oid` claim (`http://schemas.microsoft.com/identity/claims/objectidentifier`
  after the platform's claim mapping, or `oid`) of `X-MS-CLIENT-PRINCIPAL`, with
  `X-MS-CLIENT-PRINCIPAL-IDP` `aad`: an object id never changes, a display name can;
- `X-MS-CLIENT-PRINCIPAL-NAME` alone names nobody (a request carrying only that header is
  treated as signed out: 401), and names are kept only as a label;
- principal headers that are present but unreadable are a 401, never an anonymous caller.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from shared.common.errors import InputError
from shared.common.identity import is_object_id

MAX_PRINCIPAL_BYTES = 16 * 1024  # x-ms-client-principal: base64 JSON of a few claims
OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
_NAME_CLAIMS = (
    "name",
    "preferred_username",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "upn",
)
ENTRA_IDP = "aad"
LOGIN_PATH = "/.auth/login/aad"
_NAME_CHARS = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")


class Unauthenticated(InputError):
    """The caller's identity header cannot be read (answered 401)."""


@dataclass(frozen=True)
class Caller:
    """A signed-in caller: the object id compared and recorded, the name shown beside it."""

    object_id: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.name} ({self.object_id})" if self.name else self.object_id


def auth_enabled(env: Mapping[str, str]) -> bool:
    return str(env.get("WEBSITE_AUTH_ENABLED", "")).strip().lower() == "true"


def read_caller(headers: Mapping[str, str], env: Mapping[str, str]) -> Caller | None:
    """The signed-in caller, None when nobody is signed in (or authentication is off), or
    Unauthenticated when the principal headers are there but are not an Entra user's."""
    if not auth_enabled(env):
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    encoded = lowered.get("x-ms-client-principal", "").strip()
    if not encoded:
        return None  # a name header alone is not an identity
    claims = _claims(encoded)
    idp = lowered.get("x-ms-client-principal-idp", "").strip().lower()
    if idp != ENTRA_IDP:
        raise Unauthenticated(
            f"x-ms-client-principal-idp is {idp[:40]!r}: only a Microsoft Entra ID (aad) "
            "sign-in names an approver"
        )
    oid = next((v for t, v in claims if t in OBJECT_ID_CLAIMS and v), "")
    if not oid:
        raise Unauthenticated("x-ms-client-principal has no object id (oid) claim")
    if not is_object_id(oid):
        raise Unauthenticated("x-ms-client-principal's oid claim is not an Entra object id")
    name = next((v for t, v in claims if t in _NAME_CLAIMS and v), "")
    name = name or lowered.get("x-ms-client-principal-name", "")
    name = name.strip() if _NAME_CHARS.match(name.strip()) else ""
    return Caller(oid.strip().lower(), name)


def _claims(encoded: str) -> list[tuple[str, str]]:
    if len(encoded) > MAX_PRINCIPAL_BYTES:
        raise Unauthenticated(f"x-ms-client-principal is larger than {MAX_PRINCIPAL_BYTES} bytes")
    try:
        principal = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise Unauthenticated("x-ms-client-principal is not base64-encoded JSON") from None
    except RecursionError:
        raise Unauthenticated("x-ms-client-principal is nested too deeply") from None
    claims = principal.get("claims") if isinstance(principal, dict) else None
    if not isinstance(claims, list):
        raise Unauthenticated("x-ms-client-principal has no claims list")
    found: list[tuple[str, str]] = []
    for claim in claims:
        if not isinstance(claim, dict):
            raise Unauthenticated("x-ms-client-principal has a claim that is not an object")
        typ, val = claim.get("typ"), claim.get("val")
        if isinstance(typ, str) and isinstance(val, str):
            found.append((typ.lower() if typ.startswith("http") else typ, val))
    return found


# ---- sign-in for a browser ----------------------------------------------------------------------


def wants_html(headers: Mapping[str, str]) -> bool:
    """A browser navigating (Accept names text/html); fetch() and API clients do not."""
    accept = next((str(v) for k, v in headers.items() if str(k).lower() == "accept"), "")
    return "text/html" in accept.lower()


def login_url(path: str) -> str:
    """App Service Authentication's sign-in, coming back to `path` (a path on this site)."""
    safe_path = path if path.startswith("/") and not path.startswith("//") else "/"
    return f"{LOGIN_PATH}?post_login_redirect_uri={quote(safe_path, safe='/')}"


__all__ = [
    "LOGIN_PATH",
    "MAX_PRINCIPAL_BYTES",
    "OBJECT_ID_CLAIMS",
    "Caller",
    "Unauthenticated",
    "auth_enabled",
    "login_url",
    "read_caller",
    "wants_html",
]
