"""PUT-body validation and ARM-shaped errors for the emulated Microsoft.Network/applicationGateways.

Error codes (ref = shared/reference/appgw-backend-tls.md):
- InvalidRequestContent (400): the body is not a JSON object.
- LocationRequired (400): no `location` on a new gateway.
- InvalidResourceReference (400): an `{"id": ...}` under this gateway's id that names no child of
  the same document (ref §8.2 quotes it for auth certs referenced on v2).
- ApplicationGatewayFeatureCannotBeEnabledForSelectedSku (400): authentication certificates on a
  v2 SKU, with Azure's message (ref §3).
- ApplicationGatewayAuthenticationCertificateInvalidData /
  ApplicationGatewayTrustedRootCertificateInvalidData (400): `data` is neither base64 of DER nor
  base64 of PEM text (ref §3 "Encoding of data"; message after ref §8.6 "Data for certificate is
  invalid"). The codes are the sandbox's choice.
- ApplicationGatewayAuthenticationCertificateDataMissing /
  ApplicationGatewayTrustedRootCertificateDataOrKeyVaultSecretIdMissing (400): a new certificate
  without data (and, for roots, without keyVaultSecretId). Sandbox's choice of codes.
- ApplicationGatewayAuthenticationCertificateLimitReached /
  ApplicationGatewayTrustedRootCertificateLimitReached (400): over 100 (ref §5 limits).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field

from sandbox.health_rules import is_v2_tier, try_load_certificate_data

CERT_LIMIT = 100  # ref §5: 100 authentication and 100 trusted root certificates per gateway
HIDDEN_CERT_COLLECTIONS = ("authenticationCertificates", "trustedRootCertificates")
_KINDS = {
    "authenticationCertificates": ("AuthenticationCertificate", "authentication certificates"),
    "trustedRootCertificates": ("TrustedRootCertificate", "trusted root certificates"),
}


@dataclass
class ArmError(Exception):
    status: int
    code: str
    message: str
    details: list[dict] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def bad_request(code: str, message: str) -> ArmError:
    return ArmError(400, code, message)


def validate_gateway(doc: object, gateway_id: str, previous: dict | None) -> None:
    """Raise ArmError (400) for what Azure would refuse; `previous` is the stored document."""
    if not isinstance(doc, dict):
        raise bad_request("InvalidRequestContent", "The request content was invalid.")
    if previous is None and not doc.get("location"):
        raise bad_request(
            "LocationRequired", "The location property is required for this definition."
        )
    properties = doc.get("properties") or {}
    if not isinstance(properties, dict):
        raise bad_request("InvalidRequestContent", "The 'properties' member must be an object.")
    _check_v2_auth_certs(properties, gateway_id)
    for collection in HIDDEN_CERT_COLLECTIONS:
        _check_certificates(properties, collection, gateway_id, previous)
    _check_references(doc, gateway_id)


def _check_v2_auth_certs(properties: dict, gateway_id: str) -> None:
    tier = str((properties.get("sku") or {}).get("tier") or "")
    if not is_v2_tier(tier):
        return
    used = bool(properties.get("authenticationCertificates")) or any(
        (s.get("properties") or {}).get("authenticationCertificates")
        for s in properties.get("backendHttpSettingsCollection") or []
        if isinstance(s, dict)
    )
    if used:  # ref §3: the exact message users quote
        raise bad_request(
            "ApplicationGatewayFeatureCannotBeEnabledForSelectedSku",
            f"Application Gateway {gateway_id} does not support AuthenticationCertificates for "
            f"the selected SKU tier {tier}. Supported SKU tiers are Standard,WAF.",
        )


def _stored_names(previous: dict | None, collection: str) -> set[str]:
    children = ((previous or {}).get("properties") or {}).get(collection) or []
    return {
        str(c.get("name", "")).lower()
        for c in children
        if isinstance(c, dict) and (c.get("properties") or {}).get("data")
    }


def _check_certificates(
    properties: dict, collection: str, gateway_id: str, previous: dict | None
) -> None:
    certs = properties.get(collection) or []
    kind, plural = _KINDS[collection]
    if len(certs) > CERT_LIMIT:
        raise bad_request(
            f"ApplicationGateway{kind}LimitReached",
            f"Number of {plural} {len(certs)} in Application Gateway {gateway_id} exceeds the "
            f"maximum allowed value {CERT_LIMIT}.",
        )
    known = _stored_names(previous, collection)
    for cert in certs:
        if not isinstance(cert, dict):
            raise bad_request("InvalidRequestContent", f"Each of {collection} must be an object.")
        name = str(cert.get("name", ""))
        cert_props = cert.get("properties") or {}
        cert_id = f"{gateway_id}/{collection}/{name}"
        data = cert_props.get("data")
        if data:
            if try_load_certificate_data(data) is None:
                raise bad_request(
                    f"ApplicationGateway{kind}InvalidData",
                    f"Data for certificate {cert_id} is invalid.",
                )
        elif not cert_props.get("keyVaultSecretId") and name.lower() not in known:
            missing = (
                "DataMissing"
                if kind == "AuthenticationCertificate"
                else ("DataOrKeyVaultSecretIdMissing")
            )
            raise bad_request(
                f"ApplicationGateway{kind}{missing}",
                f"Certificate {cert_id} has no data"
                + ("" if kind == "AuthenticationCertificate" else " and no keyVaultSecretId")
                + ".",
            )


def child_ids(doc: dict, gateway_id: str) -> set[str]:
    """Lower-cased ids of every named child (nested too), computed from names and as given."""
    ids: set[str] = set()
    for key, value in (doc.get("properties") or {}).items():
        if isinstance(value, list):
            _collect(value, f"{gateway_id}/{key}", ids)
    return ids


def _collect(children: list, prefix: str, ids: set[str]) -> None:
    for child in children:
        if not isinstance(child, dict) or "name" not in child:
            continue
        own = f"{prefix}/{child['name']}"
        ids.add(own.lower())
        if isinstance(child.get("id"), str):
            ids.add(child["id"].lower())
        for key, value in (child.get("properties") or {}).items():
            if isinstance(value, list):
                _collect(value, f"{own}/{key}", ids)


def _references(node: object) -> Iterator[str]:
    """Every `{"id": ...}` reference (a dict whose only key is id) anywhere in the tree."""
    if isinstance(node, dict):
        if set(node) == {"id"} and isinstance(node["id"], str):
            yield node["id"]
            return
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def _check_references(doc: dict, gateway_id: str) -> None:
    prefix = gateway_id.lower() + "/"
    known = child_ids(doc, gateway_id)
    for ref in _references(doc.get("properties") or {}):
        if ref.lower().startswith(prefix) and ref.lower() not in known:
            raise bad_request(
                "InvalidResourceReference",
                f"Resource {ref} referenced by resource {gateway_id} was not found. Please make "
                "sure that the referenced resource exists, and that both resources are in the "
                "same region.",
            )


def keep_hidden_data(doc: dict, previous: dict | None) -> None:
    """A PUT naming an existing certificate without `data` keeps the stored data (ref §3)."""
    old_props = (previous or {}).get("properties") or {}
    new_props = doc.get("properties") or {}
    for collection in HIDDEN_CERT_COLLECTIONS:
        stored = {
            str(c.get("name", "")).lower(): c
            for c in old_props.get(collection) or []
            if isinstance(c, dict)
        }
        for cert in new_props.get(collection) or []:
            cert_props = cert.setdefault("properties", {})
            old = stored.get(str(cert.get("name", "")).lower())
            old_data = ((old or {}).get("properties") or {}).get("data")
            if not cert_props.get("data") and old_data:
                cert_props["data"] = old_data


def redact(doc: dict) -> dict:
    """What GET shows: like Azure, no `data` of authentication or trusted root certificates."""
    out = copy.deepcopy(doc)
    for collection in HIDDEN_CERT_COLLECTIONS:
        for cert in (out.get("properties") or {}).get(collection) or []:
            if isinstance(cert, dict) and isinstance(cert.get("properties"), dict):
                cert["properties"].pop("data", None)
    return out
