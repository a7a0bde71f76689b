"""Computed back-references: the read-only lists of `{"id"}` by which NRP shows, on every child
of a gateway, which other children use it.

Pure (no I/O). GET and PUT responses carry them (`add`); a PUT body's copies are ignored, as ARM
ignores read-only properties (`strip`), so a full-gateway PUT that replays them, or a stale list
after a rollback, never changes or breaks anything.

Which lists, and their shape, come from recordings whose recorders keep bodies whole
(tests/data/recorded/SOURCES.md):
- backendAddressPools / backendHttpSettingsCollection / httpListeners: `requestRoutingRules`
  (every recording; net_ag_backend_health_v2.json GET 03:16:36)
- frontendIPConfigurations / frontendPorts: `httpListeners` (every recording)
- sslCertificates: `httpListeners` (java_ag_kv_sslcert_identity.json, final GET)
- authenticationCertificates: `backendHttpSettings` (cli_ag_auth_cert_v1.json idx 16,
  ps_ag_crud_v1_backrefs.json)
- probes: `backendHttpSettings` (ps_ag_crud_v1_backrefs.json)
A list appears only when something uses the child (net_ag_backend_health_v2.json: the unused
pool `azsmnet8388` has no `requestRoutingRules` key). Not produced: lists no recording here
shows (trustedRootCertificates, rewrite rule sets) and the `urlPathMaps` / `pathRules` lists a
URL path map puts on pools and settings (docs/sandbox.md, "Fidelity").
"""

from __future__ import annotations

import copy
from typing import Any

# (collection of the referring child, its property naming the target, target collection,
#  the back-reference list on the target)
_EDGES: tuple[tuple[str, str, str, str], ...] = (
    ("requestRoutingRules", "backendAddressPool", "backendAddressPools", "requestRoutingRules"),
    (
        "requestRoutingRules",
        "backendHttpSettings",
        "backendHttpSettingsCollection",
        "requestRoutingRules",
    ),
    ("requestRoutingRules", "httpListener", "httpListeners", "requestRoutingRules"),
    ("httpListeners", "frontendIPConfiguration", "frontendIPConfigurations", "httpListeners"),
    ("httpListeners", "frontendPort", "frontendPorts", "httpListeners"),
    ("httpListeners", "sslCertificate", "sslCertificates", "httpListeners"),
    (
        "backendHttpSettingsCollection",
        "authenticationCertificates",
        "authenticationCertificates",
        "backendHttpSettings",
    ),
    ("backendHttpSettingsCollection", "probe", "probes", "backendHttpSettings"),
)
BACK_REFERENCES: frozenset[tuple[str, str]] = frozenset((e[2], e[3]) for e in _EDGES)


def _children(doc: dict, collection: str) -> list[dict]:
    items = (doc.get("properties") or {}).get(collection)
    return [c for c in items or [] if isinstance(c, dict)]


def _targets(value: Any) -> list[str]:
    """The ids a reference property names: one `{"id"}` or a list of them."""
    refs = value if isinstance(value, list) else [value]
    return [str(r["id"]) for r in refs if isinstance(r, dict) and isinstance(r.get("id"), str)]


def strip(doc: dict) -> dict:
    """A copy of a PUT body without the computed lists (ARM ignores read-only properties)."""
    out = copy.deepcopy(doc)
    for collection, name in BACK_REFERENCES:
        for child in _children(out, collection):
            if isinstance(child.get("properties"), dict):
                child["properties"].pop(name, None)
    return out


def add(doc: dict) -> dict:
    """A copy of a stored document with the computed lists, in document order of the users."""
    out = strip(doc)
    for source, prop, target, name in _EDGES:
        by_id = {str(c.get("id", "")).lower(): c for c in _children(out, target) if c.get("id")}
        for user in _children(out, source):
            user_id = user.get("id")
            if not isinstance(user_id, str):
                continue
            for ref in _targets((user.get("properties") or {}).get(prop)):
                hit = by_id.get(ref.lower())
                if hit is None:
                    continue
                refs = hit.setdefault("properties", {}).setdefault(name, [])
                if all(r.get("id", "").lower() != user_id.lower() for r in refs):
                    refs.append({"id": user_id})
    return out
