"""`GET {scope}/providers/Microsoft.Authorization/permissions` for the ARM emulator: the caller's
effective permissions at a resource group or a resource, from the roles the emulator enforces.

Authorization REST API, "Permissions - List For Resource" and "Permissions - List For Resource
Group" (api-version 2022-04-01; docs/sources.md#permissions): "Gets all permissions the caller
has for a resource (group)". The answer is a page `{"value": [Permission, ...]}` with one entry
per role that applies, each `{"actions", "notActions", "dataActions", "notDataActions"}`, shaped
like the REST specification's examples (tests/data/arm-examples/Get*Permissions.json).

With `--rbac` the entries are the role definitions of the caller's assignments at the scope or
above it (sandbox/rbac.py), so what this endpoint says and what the emulator then enforces are
one thing. Without `--rbac` any token may do anything, and the answer is one `*` entry (what an
Owner sees). Our reading: the docs name no role action for listing one's own permissions, so the
emulator does not authorize this call itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# /subscriptions/{s}/resourcegroups/{rg}[/providers/{ns}/{type}/{name}...]/providers/
# Microsoft.Authorization/permissions (the path forms of both operations).
_ROUTE = re.compile(
    r"^(?P<scope>/subscriptions/[^/]+/resourcegroups/[^/]+(?:/providers/(?!microsoft\.authorization/"
    r"permissions/?$)[^/]+(?:/[^/]+/[^/]+)+)?)/providers/microsoft\.authorization/permissions/?$",
    re.IGNORECASE,
)
EVERYTHING = {"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []}


def scope_of(path: str) -> str | None:
    """The scope a permissions request asks about, or None when `path` is not one."""
    match = _ROUTE.match(path)
    return match.group("scope") if match else None


def permissions_body(authorizer: Any, token: str, scope: str) -> dict[str, Any]:
    """The 200 body: the caller's permission blocks at `scope`."""
    if authorizer is None:
        return {"value": [dict(EVERYTHING)]}
    claims: Mapping[str, Any] = authorizer._claims(token) or {}
    principal = str(claims.get("oid") or "").lower()
    blocks = [
        {
            "actions": list(a.role.actions),
            "notActions": list(a.role.not_actions),
            "dataActions": [],
            "notDataActions": [],
        }
        for a in authorizer.assignments
        if a.principal_id.lower() == principal and a.covers(scope)
    ]
    return {"value": blocks}


__all__ = ["EVERYTHING", "permissions_body", "scope_of"]
