"""What the bot's identity may do at a scope, as Resource Manager computes it.

`GET {scope}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01` (Authorization
REST API, "Permissions - List For Resource" and "Permissions - List For Resource Group";
docs/sources.md#permissions) answers the caller's own effective permissions at a resource group
or a resource: one `{"actions", "notActions", "dataActions", "notDataActions"}` entry per role
that applies there, assignments at parent scopes included, in pages (`nextLink`). The call goes
through the same SDK pipeline (credential, token scope, retries) as the bot's gateway calls.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from shared.cloud.arm import ArmClient, ArmError, to_arm_error

API_VERSION = "2022-04-01"
PERMISSIONS_PATH = "/providers/Microsoft.Authorization/permissions"
MAX_PAGES = 20  # a principal has a handful of roles at one scope; a loop of nextLinks is a bug


def permissions_url(endpoint: str, scope: str) -> str:
    return f"{endpoint.rstrip('/')}{scope.rstrip('/')}{PERMISSIONS_PATH}?api-version={API_VERSION}"


def list_permissions(arm: ArmClient, scope: str) -> list[dict[str, Any]]:
    """The caller's permission entries at `scope` (a resource group or a resource id).
    ArmError on a refusal or an answer that is not a permission list."""
    from azure.core.rest import HttpRequest

    subscription = scope.strip("/").split("/")[1] if scope.count("/") >= 2 else ""
    client = arm._network(subscription)
    endpoint = arm._settings.arm_endpoint
    url: str | None = permissions_url(endpoint, scope)
    entries: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        if not url:
            return entries
        try:
            response = client.send_request(HttpRequest("GET", url))
            response.raise_for_status()
            page = response.json()
        except Exception as exc:
            raise to_arm_error(exc) from exc
        values = page.get("value") if isinstance(page, dict) else None
        if not isinstance(values, list):
            raise ArmError(f"the permissions of {scope} are not a list", code="InvalidResponse")
        entries.extend(v for v in values if isinstance(v, dict))
        url = page.get("nextLink") or None
        if url and urlsplit(url).netloc != urlsplit(endpoint).netloc:
            raise ArmError(f"the permissions of {scope} page elsewhere", code="InvalidResponse")
    raise ArmError(f"the permissions of {scope} have more than {MAX_PAGES} pages")


__all__ = ["API_VERSION", "list_permissions", "permissions_url"]
