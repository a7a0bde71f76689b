"""PUT-body validation and ARM-shaped errors for the emulated Microsoft.Network/applicationGateways.

Error codes (facts: docs/sources.md):
- InvalidRequestContent (400): the body is not a JSON object.
- LocationRequired (400): no `location` on a new gateway.
- InvalidResourceReference (400): an `{"id": ...}` under this gateway's id that names no child of
  the same document (docs/sources.md#backend-trust: users
  report it for auth certs referenced on v2).
- ApplicationGatewayFeatureCannotBeEnabledForSelectedSku (400): authentication certificates on a
  v2 SKU, with Azure's message (docs/sources.md#backend-trust).
- ApplicationGatewayAuthenticationCertificateInvalidData /
  ApplicationGatewayTrustedRootCertificateInvalidData (400): `data` is neither base64 of DER nor
  base64 of PEM text (docs/sources.md#certificate-formats; message after "Data for certificate
  is invalid"). The codes are the sandbox's choice.
- ApplicationGatewayAuthenticationCertificateDataMissing /
  ApplicationGatewayTrustedRootCertificateDataOrKeyVaultSecretIdMissing (400): a new certificate
  without data (and, for roots, without keyVaultSecretId). Sandbox's choice of codes.
- ApplicationGatewayAuthenticationCertificateLimitReached /
  ApplicationGatewayTrustedRootCertificateLimitReached (400): over 100 (docs/sources.md#limits).
- ApplicationGatewayKeyVaultSecretRequiresUserAssignedIdentity (400, synchronous, no operation):
  a trusted root or SSL certificate with `keyVaultSecretId` on a gateway without a user-assigned
  identity; code, message and `details: []` exactly as recorded
  (tests/data/recorded/cli_ag_root_cert_kv_400.json, idx 27).

What GET and PUT responses show of certificates (`project_certificates`):
- authenticationCertificates and trustedRootCertificates: `data` exactly as sent
  (tests/data/recorded/cli_ag_auth_cert_v1.json idx 9/11/16; cli_ag_root_cert_v2.json PUT
  05:25:58, GET 05:26:20; the second PUT there echoes base64 of PEM text verbatim).
- sslCertificates: never the PFX `data` or `password`. Inline: the read-only `publicCertData`,
  "Base-64 encoded Public cert data corresponding to pfx specified in data" (REST spec,
  https://learn.microsoft.com/rest/api/application-gateway/application-gateways/get); the sandbox
  renders it as base64 of a certs-only PKCS#7 of the PFX's certificates (the format is the
  sandbox's choice). Key Vault-referenced: only `keyVaultSecretId`, no `publicCertData`
  (tests/data/recorded/java_ag_kv_sslcert_identity.json, PUT 201 and the final GET).
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.serialization import Encoding, pkcs7, pkcs12

from sandbox.health_rules import is_v2_tier, try_load_certificate_data

CERT_LIMIT = 100  # docs/sources.md#limits: 100 of each kind per gateway
ALLOW_LIST_COLLECTIONS = ("authenticationCertificates", "trustedRootCertificates")
SSL_CERTIFICATES = "sslCertificates"
# Collections whose children may name a Key Vault secret instead of carrying data.
KEY_VAULT_COLLECTIONS = ("trustedRootCertificates", SSL_CERTIFICATES)
_KINDS = {
    "authenticationCertificates": ("AuthenticationCertificate", "authentication certificates"),
    "trustedRootCertificates": ("TrustedRootCertificate", "trusted root certificates"),
}


@dataclass
class ArmError(Exception):
    status: int
    code: str
    message: str
    # None: no `details` key, as ARM's own errors (404 ResourceNotFound in
    # tests/data/recorded/cli_ag_auth_cert_v1.json idx 3); the network provider's validation
    # errors carry `details: []` (cli_ag_root_cert_kv_400.json idx 27).
    details: list[dict] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict:
        error: dict = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


def bad_request(code: str, message: str) -> ArmError:
    return ArmError(400, code, message, details=[])


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
    for collection in ALLOW_LIST_COLLECTIONS:
        _check_certificates(properties, collection, gateway_id, previous)
    _check_key_vault_identity(doc, properties, gateway_id)
    _check_references(doc, gateway_id)


def _has_user_assigned_identity(doc: dict) -> bool:
    """`identity.type` names UserAssigned (any casing: the recorded body says `userAssigned`,
    tests/data/recorded/java_ag_kv_sslcert_identity.json) and lists at least one identity."""
    identity = doc.get("identity")
    if not isinstance(identity, dict):
        return False
    kinds = {k.strip().lower() for k in str(identity.get("type") or "").split(",")}
    return "userassigned" in kinds and bool(identity.get("userAssignedIdentities"))


def _check_key_vault_identity(doc: dict, properties: dict, gateway_id: str) -> None:
    """A Key Vault reference needs a user-assigned identity: real ARM answers a synchronous 400
    with exactly this body (tests/data/recorded/cli_ag_root_cert_kv_400.json, idx 27: a
    trustedRootCertificates keyVaultSecretId on a gateway without `identity`). The same identity
    is what an sslCertificates keyVaultSecretId uses (java_ag_kv_sslcert_identity.json)."""
    uses_key_vault = any(
        isinstance(cert, dict) and (cert.get("properties") or {}).get("keyVaultSecretId")
        for collection in KEY_VAULT_COLLECTIONS
        for cert in properties.get(collection) or []
    )
    if uses_key_vault and not _has_user_assigned_identity(doc):
        raise bad_request(
            "ApplicationGatewayKeyVaultSecretRequiresUserAssignedIdentity",
            f"Application Gateway '{gateway_id}' requires a 'UserAssigned' Identity with 'get' "
            "access policy to the referenced KeyVault. Please provide so by using top level "
            "'Identity' property.",
        )


def _check_v2_auth_certs(properties: dict, gateway_id: str) -> None:
    tier = str((properties.get("sku") or {}).get("tier") or "")
    if not is_v2_tier(tier):
        return
    used = bool(properties.get("authenticationCertificates")) or any(
        (s.get("properties") or {}).get("authenticationCertificates")
        for s in properties.get("backendHttpSettingsCollection") or []
        if isinstance(s, dict)
    )
    if used:  # docs/sources.md#backend-trust: the message users quote
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
    """A PUT naming an existing certificate without `data` keeps the stored data. For
    sslCertificates this is how every read-modify-write works, since GET never shows the PFX
    (tests/data/recorded/java_ag_kv_sslcert_identity.json shows no `data`/`password` on GET); a
    certificate that now names a Key Vault secret drops the inline PFX."""
    old_props = (previous or {}).get("properties") or {}
    new_props = doc.get("properties") or {}
    for collection in (*ALLOW_LIST_COLLECTIONS, SSL_CERTIFICATES):
        stored = {
            str(c.get("name", "")).lower(): c
            for c in old_props.get(collection) or []
            if isinstance(c, dict)
        }
        for cert in new_props.get(collection) or []:
            if not isinstance(cert, dict):
                continue
            cert_props = cert.setdefault("properties", {})
            if collection == SSL_CERTIFICATES:
                cert_props.pop("publicCertData", None)  # read-only: recomputed on every read
                if cert_props.get("keyVaultSecretId"):
                    continue
            old = stored.get(str(cert.get("name", "")).lower())
            old_cert_props = (old or {}).get("properties") or {}
            old_data = old_cert_props.get("data")
            if not cert_props.get("data") and old_data:
                cert_props["data"] = old_data
                if collection == SSL_CERTIFICATES and "password" in old_cert_props:
                    cert_props.setdefault("password", old_cert_props["password"])


def public_cert_data(pfx_b64: object, password: object) -> str | None:
    """base64 of a certs-only PKCS#7 holding the PFX's certificates, leaf first; None when the
    PFX cannot be read (the sandbox does not validate listener PFX files)."""
    if not isinstance(pfx_b64, str):
        return None
    secret = password.encode() if isinstance(password, str) and password else None
    try:
        _key, cert, extra = pkcs12.load_key_and_certificates(
            base64.b64decode(pfx_b64, validate=True), secret
        )
    except (ValueError, TypeError, binascii.Error):
        return None
    certs = ([cert] if cert is not None else []) + list(extra)
    if not certs:
        return None
    return base64.b64encode(pkcs7.serialize_certificates(certs, Encoding.DER)).decode("ascii")


def _project_ssl_certificate(cert_props: dict) -> None:
    """Never the PFX or its password. Inline: `publicCertData` (REST spec, read-only, "Base-64
    encoded Public cert data corresponding to pfx specified in data",
    https://learn.microsoft.com/rest/api/application-gateway/application-gateways/get). Key Vault:
    only `keyVaultSecretId` (tests/data/recorded/java_ag_kv_sslcert_identity.json)."""
    data = cert_props.pop("data", None)
    password = cert_props.pop("password", None)
    if cert_props.get("keyVaultSecretId"):
        cert_props.pop("publicCertData", None)
        return
    public = public_cert_data(data, password)
    if public is not None:
        cert_props["publicCertData"] = public
    # Without a readable PFX, a seeded GET document's own publicCertData is served as it is
    # (PUT bodies never keep one: keep_hidden_data drops the read-only field).


def project_certificates(doc: dict) -> dict:
    """What GET and PUT responses show of certificates. Authentication certificates and trusted
    roots keep `data` exactly as sent (tests/data/recorded/cli_ag_auth_cert_v1.json idx 9/11/16,
    cli_ag_root_cert_v2.json PUT 05:25:58 and GET 05:26:20); sslCertificates are projected by
    `_project_ssl_certificate`."""
    out = copy.deepcopy(doc)
    for cert in (out.get("properties") or {}).get(SSL_CERTIFICATES) or []:
        if isinstance(cert, dict) and isinstance(cert.get("properties"), dict):
            _project_ssl_certificate(cert["properties"])
    return out


# The emulator's historical name for the response projection (sandbox/arm.py calls it).
redact = project_certificates
