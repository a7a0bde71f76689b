"""App Service Authentication ("Easy Auth") for the local Functions runner: sign-in sessions for
sandbox users who carry Entra object ids, and the principal headers the platform injects.

What App Service does, as the app sees it (Learn, "Work with user identities in Azure App Service
authentication"; docs/sources.md#easy-auth), and what this emulates:

- Client-sent `X-MS-CLIENT-PRINCIPAL*` (and `X-MS-TOKEN-*`) headers never reach the app: they
  are stripped from every request.
- For a signed-in session the platform injects `X-MS-CLIENT-PRINCIPAL` (base64 JSON
  `{"auth_typ", "claims": [{"typ", "val"}], "name_typ", "role_typ"}`), `X-MS-CLIENT-PRINCIPAL-ID`,
  `-NAME` and `-IDP` (`aad` for Microsoft Entra ID). The claims carry the object id under the
  mapped type `http://schemas.microsoft.com/identity/claims/objectidentifier`.
- `/.auth/login/aad?post_login_redirect_uri=/path` signs in and redirects back to that path on the
  same site; the session is the `AppServiceAuthSession` cookie. `/.auth/logout` ends it and
  `/.auth/me` answers the session's claims.
- A program (not a browser) presents its session token in the `X-ZUMO-AUTH` header instead of
  the cookie (Learn, "Customize sign-ins and sign-outs in Azure App Service authentication",
  client-directed sign-in: "validate the session token ... in the X-ZUMO-AUTH header"); here the
  token is the session cookie's value.

Not emulated: Entra's own sign-in page (a sandbox user is picked with `login_hint=<object id or
name>`, or the runner's default user is signed in at once), tokens, the token store, refresh,
and the platform's own redirect of unauthenticated requests (the app answers those itself).
"""

from __future__ import annotations

import base64
import html
import json
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlsplit

COOKIE = "AppServiceAuthSession"
SESSION_HEADER = "x-zumo-auth"
OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
NAME_CLAIM = "name"
UPN_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
ROLE_CLAIM = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
_PLATFORM_HEADERS = ("x-ms-client-principal", "x-ms-token-")

Reply = tuple[int, list[tuple[str, str]], bytes]


@dataclass(frozen=True)
class User:
    """A sandbox user of the tenant: an Entra object id and a display name."""

    object_id: str
    name: str


# The sandbox tenant's people. Object ids are fixed so APPROVERS can name them in docs and tests.
APPROVER = User("0a0a0a0a-1111-4111-8111-00000000a001", "approver@contoso.com")
SECOND_APPROVER = User("0a0a0a0a-1111-4111-8111-00000000a002", "second.approver@contoso.com")
OPERATOR = User("0a0a0a0a-1111-4111-8111-00000000b001", "operator@contoso.com")
SANDBOX_USERS = (APPROVER, SECOND_APPROVER, OPERATOR)


def principal_headers(user: User | str, idp: str = "aad") -> dict[str, str]:
    """The headers App Service injects for a signed-in `user` (a User, or an object id)."""
    if isinstance(user, str):
        user = User(user, "")
    principal = {
        "auth_typ": idp,
        "claims": [
            {"typ": OBJECT_ID_CLAIM, "val": user.object_id},
            {"typ": NAME_CLAIM, "val": user.name},
            {"typ": UPN_CLAIM, "val": user.name},
        ],
        "name_typ": UPN_CLAIM,
        "role_typ": ROLE_CLAIM,
    }
    encoded = base64.b64encode(json.dumps(principal).encode()).decode()
    return {
        "X-MS-CLIENT-PRINCIPAL": encoded,
        "X-MS-CLIENT-PRINCIPAL-ID": user.object_id,
        "X-MS-CLIENT-PRINCIPAL-NAME": user.name,
        "X-MS-CLIENT-PRINCIPAL-IDP": idp,
    }


class EasyAuth:
    """Sessions and `/.auth/*` for a FunctionRunner (its `auth=`). `default_user` is whom
    `/.auth/login/aad` signs in when the request picks nobody (None: a page lists the users)."""

    def __init__(
        self, users: tuple[User, ...] = SANDBOX_USERS, *, default_user: User | None = None
    ) -> None:
        self.users = users
        self.default_user = default_user
        self._sessions: dict[str, User] = {}
        self._lock = threading.Lock()

    # -- sessions ----------------------------------------------------------------------------

    def sign_in(self, user: User) -> str:
        """A new session for `user`; returns the cookie value."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[token] = user
        return token

    def session_user(self, headers: Mapping[str, str]) -> User | None:
        token = _cookie(headers, COOKIE) or next(
            (v.strip() for k, v in headers.items() if k.lower() == SESSION_HEADER), ""
        )
        with self._lock:
            return self._sessions.get(token) if token else None

    def find_user(self, hint: str) -> User | None:
        wanted = hint.strip().lower()
        return next(
            (u for u in self.users if wanted in {u.object_id.lower(), u.name.lower()}), None
        )

    # -- the runner's hooks ------------------------------------------------------------------

    def request_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """What the app receives: the caller's principal headers removed, the session's added."""
        kept = {k: v for k, v in headers.items() if not k.lower().startswith(_PLATFORM_HEADERS)}
        user = self.session_user(headers)
        return {**kept, **principal_headers(user)} if user else kept

    def serve(self, method: str, raw_path: str, headers: Mapping[str, str]) -> Reply | None:
        """Answer `/.auth/...` requests; None for every other path (the app's)."""
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/").lower()
        if not path.startswith("/.auth"):
            return None
        query = dict(parse_qsl(parts.query))
        if path == "/.auth/login/aad" and method in {"GET", "POST"}:
            return self._login(query)
        if path == "/.auth/logout":
            return self._logout(headers, query)
        if path == "/.auth/me" and method == "GET":
            return self._me(headers)
        return 404, [], b""

    def _login(self, query: Mapping[str, str]) -> Reply:
        back = _same_site(query.get("post_login_redirect_uri", "/"))
        hint = query.get("login_hint", "")
        user = self.find_user(hint) if hint else self.default_user
        if user is None:
            return 200, [("Content-Type", "text/html; charset=utf-8")], self._picker(back)
        token = self.sign_in(user)
        cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax"
        return 302, [("Location", back), ("Set-Cookie", cookie)], b""

    def _logout(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Reply:
        token = _cookie(headers, COOKIE)
        with self._lock:
            self._sessions.pop(token, None)
        back = _same_site(query.get("post_logout_redirect_uri", "/"))
        expired = f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        return 302, [("Location", back), ("Set-Cookie", expired)], b""

    def _me(self, headers: Mapping[str, str]) -> Reply:
        user = self.session_user(headers)
        if user is None:
            return 401, [], b""
        claims = json.loads(base64.b64decode(principal_headers(user)["X-MS-CLIENT-PRINCIPAL"]))
        body = [{"provider_name": "aad", "user_id": user.name, "user_claims": claims["claims"]}]
        return 200, [("Content-Type", "application/json")], json.dumps(body).encode()

    def _picker(self, back: str) -> bytes:
        links = "".join(
            f'<li><a href="/.auth/login/aad?login_hint={html.escape(u.object_id)}'
            f'&amp;post_login_redirect_uri={html.escape(back)}">{html.escape(u.name)}</a> '
            f"<code>{html.escape(u.object_id)}</code></li>"
            for u in self.users
        )
        return f"<!doctype html><title>Sign in</title><ul>{links}</ul>".encode()


def _same_site(target: str) -> str:
    """A path on this site: Easy Auth redirects elsewhere only to allowed external URLs."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _cookie(headers: Mapping[str, str], name: str) -> str:
    raw = next((v for k, v in headers.items() if k.lower() == "cookie"), "")
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # noqa: BLE001 - an unparsable cookie header is no session
        return ""
    morsel = jar.get(name)
    return morsel.value if morsel else ""


__all__ = [
    "APPROVER",
    "COOKIE",
    "OPERATOR",
    "SANDBOX_USERS",
    "SECOND_APPROVER",
    "EasyAuth",
    "User",
    "principal_headers",
]
