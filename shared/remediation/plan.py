"""The remediation plan: a pure function from a diagnosis and the raw gateway document.

The imperative apply loop re-reads the gateway, calls `replan` against that fresh document,
`apply_plan` to build the body it sends back whole, and `revert_plan` for rollback. Nothing here
does I/O. Facts: docs/sources.md#backend-trust (v1 authentication certificates, v2 trusted roots,
`data` possibly absent), docs/sources.md#certificate-formats (base64 DER), docs/sources.md#arm-shape
and docs/sources.md#limits (100 certificates of each kind).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from shared.common.errors import BotError, InputError
from shared.common.ids import last_segment, same_id
from shared.core.certs import cert_info, der_from_arm_data
from shared.core.diagnosis import Diagnosis, Finding, Fix, FixAction, FixCertificate
from shared.core.gateway import Generation
from shared.core.gateway import generation_of as tier_generation

CERT_NAME_PREFIX = "appgw-bot-"
AUTH_CERTS = "authenticationCertificates"
TRUSTED_ROOTS = "trustedRootCertificates"
SETTINGS_COLLECTION = "backendHttpSettingsCollection"
# docs/sources.md#limits: 100 authentication certificates and 100 trusted roots per gateway.
MAX_CERTIFICATES = 100
# Cause order when two fixes repair the same number of servers: certificates before host names,
# because host-name changes are only ever proposed (see policy.decide).
REMOVALS = (
    FixAction.REMOVE_AUTHENTICATION_CERTIFICATE,
    FixAction.REMOVE_TRUSTED_ROOT_CERTIFICATE,
)
_ACTION_ORDER = (
    FixAction.ADD_AUTHENTICATION_CERTIFICATE,
    FixAction.ADD_TRUSTED_ROOT_CERTIFICATE,
    FixAction.SET_BACKEND_HOST_NAME,
)


class PlanError(BotError):
    """The fix cannot be planned or no longer applies to the gateway document."""


def certificate_name(sha1: str) -> str:
    """The bot's name for a certificate: it encodes the thumbprint, so a later run recognises it
    even where the document carries no `data` (a Key Vault reference, an older API version)."""
    hex_only = re.sub(r"[\s:]", "", sha1).lower()
    if not re.fullmatch(r"[0-9a-f]{40}", hex_only):
        raise PlanError(f"not a SHA-1 thumbprint: {sha1[:60]!r}")
    return CERT_NAME_PREFIX + hex_only[:16]


@dataclass(frozen=True)
class CertificateAddition:
    collection: str  # AUTH_CERTS (v1) or TRUSTED_ROOTS (v2)
    name: str
    data: str  # base64 DER, what ARM's `data` takes
    sha1: str
    had_collection: bool = True  # False: the gateway had no such list; revert drops it again


@dataclass(frozen=True)
class SettingsChange:
    settings_name: str
    add_reference: str | None  # certificate name to reference, or None
    set_host_name: str | None
    previous_host_name: str | None
    existing_references: tuple[str, ...] = ()  # names referenced before, for az --auth-certs lists
    previous_pick_host_name: bool | None = None  # pickHostNameFromBackendAddress before the change
    had_reference_list: bool = True
    remove_reference: str | None = None  # certificate name to stop referencing (a retirement)


@dataclass(frozen=True)
class Plan:
    gateway_id: str
    action: FixAction
    certificate: CertificateAddition | None  # None when the certificate is already on the gateway
    settings_changes: tuple[SettingsChange, ...]
    noop_reason: str | None
    fix: Fix | None = None  # what was planned, so the apply loop and approval can re-plan it
    collection: str | None = None  # where the referenced certificate lives
    certificate_ref_name: str | None = None  # name referenced (the bot's, or an existing twin)
    # Overlap rotation (shared.remediation.rotation): the reference this addition overlaps, so a
    # later run can retire it; and, for a retirement, the certificate removed (rollback re-adds it).
    replaces: str | None = None
    removed_certificate: CertificateAddition | None = None

    @property
    def is_noop(self) -> bool:
        return self.noop_reason is not None

    @property
    def thumbprint(self) -> str | None:
        cert = self.fix.certificate if self.fix else None
        return cert.sha1.upper() if cert else None

    @property
    def settings_names(self) -> tuple[str, ...]:
        return tuple(c.settings_name for c in self.settings_changes)


# ---- reading the raw document ---------------------------------------------------------------


def _props(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    props = obj.get("properties")
    return props if isinstance(props, Mapping) else {}


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = _props(obj).get(key)
    return value if isinstance(value, list) else []


def generation_of(doc: Mapping[str, Any]) -> Generation:
    """v1 or v2 from the document's `sku.tier` (shared.core.gateway's rule); PlanError when unknown,
    since the generation decides which certificate collection may be written."""
    sku = _props(doc).get("sku") or doc.get("sku") or {}
    tier = sku.get("tier") if isinstance(sku, Mapping) else None
    try:
        return tier_generation(tier)
    except InputError as exc:
        raise PlanError(str(exc)) from None


def _find_by_name(items: Sequence[Any], name: str) -> Any | None:
    # ARM child names compare case-insensitively.
    for item in items:
        if isinstance(item, Mapping) and str(item.get("name", "")).lower() == name.lower():
            return item
    return None


def _ref_names(settings: Mapping[str, Any], collection: str) -> tuple[str, ...]:
    refs = _list(settings, collection)
    return tuple(last_segment(str(r.get("id", ""))) for r in refs if isinstance(r, Mapping))


def _gateway_id(doc: Mapping[str, Any], fallback: str) -> str:
    doc_id = doc.get("id")
    return str(doc_id) if isinstance(doc_id, str) and doc_id else fallback


# ---- choosing the fix -----------------------------------------------------------------------


def _fix_key(fix: Fix) -> tuple[str, str, str]:
    sha1 = fix.certificate.sha1.upper() if fix.certificate else ""
    return (fix.action.value, sha1, (fix.host_name or "").lower())


def group_fixes(diagnosis: Diagnosis) -> list[tuple[Fix, tuple[Finding, ...]]]:
    """Actionable fixes, identical ones merged (settings united), highest priority first.

    Priority: more repaired servers first, then certificate additions before host names.
    """
    groups: dict[tuple[str, str, str], list[Finding]] = {}
    for finding in diagnosis.findings:
        if finding.fix.action is FixAction.NONE:
            continue
        groups.setdefault(_fix_key(finding.fix), []).append(finding)
    merged: list[tuple[Fix, tuple[Finding, ...]]] = []
    for findings in groups.values():
        names: list[str] = []
        for f in findings:
            for name in (*f.fix.settings, f.settings):
                if name and name.lower() not in {n.lower() for n in names}:
                    names.append(name)
        first = findings[0].fix
        fix = Fix(first.action, first.certificate, tuple(names), first.host_name)
        merged.append((fix, tuple(findings)))
    merged.sort(key=lambda g: (-len(g[1]), _ACTION_ORDER.index(g[0].action)))
    return merged


def plan_fix(doc: Mapping[str, Any], diagnosis: Diagnosis) -> Plan:
    """Plan the highest-priority actionable fix of the diagnosis; a noop plan when there is none."""
    groups = group_fixes(diagnosis)
    if not groups:
        gid = _gateway_id(doc, diagnosis.gateway.id)
        return Plan(gid, FixAction.NONE, None, (), "the diagnosis has no actionable fix")
    return plan_for_fix(doc, groups[0][0], gateway_id=diagnosis.gateway.id)


def plan_fixes(doc: Mapping[str, Any], diagnosis: Diagnosis) -> list[Plan]:
    """One plan per distinct actionable fix, in priority order (each planned against `doc`)."""
    return [
        plan_for_fix(doc, fix, gateway_id=diagnosis.gateway.id) for fix, _ in group_fixes(diagnosis)
    ]


def replan(doc: Mapping[str, Any], plan: Plan) -> Plan:
    """Plan the same fix again against a freshly read document (apply loop, approval)."""
    if plan.fix is None:
        return plan
    fresh = plan_for_fix(doc, plan.fix, gateway_id=plan.gateway_id)
    return fresh if plan.replaces is None else replace(fresh, replaces=plan.replaces)


def plan_for_fix(doc: Mapping[str, Any], fix: Fix, *, gateway_id: str = "") -> Plan:
    """Plan one fix against the raw ARM document."""
    gid = _gateway_id(doc, gateway_id)
    if gateway_id and not same_id(gid, gateway_id):
        raise PlanError(f"the document is gateway {gid}, not {gateway_id}")
    if not fix.settings:
        raise PlanError("the fix names no HTTP settings")
    if fix.action in (
        FixAction.ADD_AUTHENTICATION_CERTIFICATE,
        FixAction.ADD_TRUSTED_ROOT_CERTIFICATE,
    ):
        return _plan_certificate(doc, fix, gid)
    if fix.action is FixAction.SET_BACKEND_HOST_NAME:
        return _plan_host_name(doc, fix, gid)
    if fix.action in REMOVALS:
        return _plan_removal(doc, fix, gid)
    return Plan(gid, fix.action, None, (), "nothing to do for this fix", fix)


def _collection_for(doc: Mapping[str, Any], action: FixAction) -> str:
    generation = generation_of(doc)
    if action in (
        FixAction.ADD_AUTHENTICATION_CERTIFICATE,
        FixAction.REMOVE_AUTHENTICATION_CERTIFICATE,
    ):
        if generation is Generation.V2:
            # docs/sources.md#backend-trust: v2 rejects authentication certificates (HTTP 400).
            raise PlanError("v2 gateways do not accept authentication certificates")
        return AUTH_CERTS
    if generation is Generation.V1:
        raise PlanError("v1 gateways take authentication certificates, not trusted roots")
    return TRUSTED_ROOTS


def _settings_entries(doc: Mapping[str, Any], names: Sequence[str]) -> list[Mapping[str, Any]]:
    collection = _list(doc, SETTINGS_COLLECTION)
    entries = []
    for name in names:
        entry = _find_by_name(collection, name)
        if entry is None:
            raise PlanError(f"HTTP settings {name!r} not found on the gateway")
        entries.append(entry)
    return entries


def _existing_cert_name(certs: Sequence[Any], cert: FixCertificate) -> str | None:
    """The name under which this certificate is already stored, by our name or by its data."""
    own = _find_by_name(certs, certificate_name(cert.sha1))
    if own is not None:
        return str(own["name"])
    wanted = cert.sha1.replace(":", "").upper()
    for item in certs:
        # GET returns `data` as sent (tests/data/recorded/cli_ag_root_cert_v2.json: base64 DER,
        # or base64 of PEM text verbatim), so compare thumbprints, whatever the encoding. A Key
        # Vault reference carries no data and is recognised by name only.
        data = _props(item).get("data") if isinstance(item, Mapping) else None
        if data and (data == cert.der_b64 or _data_sha1(data) == wanted):
            return str(item.get("name"))
    return None


def _data_sha1(data: object) -> str | None:
    if not isinstance(data, str) or not data:
        return None
    try:
        return cert_info(der_from_arm_data(data)).sha1
    except InputError:
        return None


def _plan_certificate(doc: Mapping[str, Any], fix: Fix, gid: str) -> Plan:
    cert = fix.certificate
    if cert is None:
        raise PlanError(f"{fix.action.value} without a certificate")
    collection = _collection_for(doc, fix.action)
    certs = _list(doc, collection)
    name = _existing_cert_name(certs, cert)
    addition = None
    if name is None:
        if len(certs) >= MAX_CERTIFICATES:
            raise PlanError(
                f"the gateway already holds {len(certs)} {collection}; "
                f"the limit is {MAX_CERTIFICATES}"
            )
        name = certificate_name(cert.sha1)
        had = isinstance(_props(doc).get(collection), list)
        addition = CertificateAddition(collection, name, cert.der_b64, cert.sha1.upper(), had)
    changes = []
    for entry in _settings_entries(doc, fix.settings):
        refs = _ref_names(entry, collection)
        if name.lower() in {r.lower() for r in refs}:
            continue
        had_list = isinstance(_props(entry).get(collection), list)
        changes.append(SettingsChange(str(entry["name"]), name, None, None, refs, None, had_list))
    noop = None
    if addition is None and not changes:
        noop = f"certificate {name} is already on the gateway and referenced by every settings"
    return Plan(gid, fix.action, addition, tuple(changes), noop, fix, collection, name)


def _plan_removal(doc: Mapping[str, Any], fix: Fix, gid: str) -> Plan:
    """Stop referencing a certificate from the settings (the end of an overlap rotation), and
    drop it from the gateway when nothing else references it then. Never the last reference."""
    cert = fix.certificate
    if cert is None:
        raise PlanError(f"{fix.action.value} without a certificate")
    collection = _collection_for(doc, fix.action)
    certs = _list(doc, collection)
    name = _existing_cert_name(certs, cert)
    if name is None:
        return Plan(
            gid,
            fix.action,
            None,
            (),
            f"{cert.subject} is no longer on the gateway",
            fix,
            collection,
        )
    changes = []
    for entry in _settings_entries(doc, fix.settings):
        refs = _ref_names(entry, collection)
        if name.lower() not in {r.lower() for r in refs}:
            continue
        if len(refs) < 2:
            raise PlanError(
                f"{name} is the only certificate HTTP settings {entry['name']} trusts; "
                "removing it would leave nothing trusted"
            )
        changes.append(
            SettingsChange(str(entry["name"]), None, None, None, refs, remove_reference=name)
        )
    stored = _find_by_name(certs, name)
    data = _props(stored).get("data") if isinstance(stored, Mapping) else None
    removed = CertificateAddition(collection, name, str(data or cert.der_b64), cert.sha1.upper())
    noop = None if changes else f"no HTTP settings references {name} any more"
    return Plan(
        gid,
        fix.action,
        None,
        tuple(changes),
        noop,
        fix,
        collection,
        name,
        removed_certificate=removed,
    )


def _plan_host_name(doc: Mapping[str, Any], fix: Fix, gid: str) -> Plan:
    host = (fix.host_name or "").strip()
    if not host:
        raise PlanError("set_backend_host_name without a host name")
    changes = []
    for entry in _settings_entries(doc, fix.settings):
        props = _props(entry)
        current = props.get("hostName")
        pick = props.get("pickHostNameFromBackendAddress")
        if current == host and not pick:
            continue
        prev_pick = bool(pick) if pick is not None else None
        changes.append(SettingsChange(str(entry["name"]), None, host, current, (), prev_pick, True))
    noop = None if changes else f"every settings already uses host name {host}"
    return Plan(gid, fix.action, None, tuple(changes), noop, fix)


# ---- applying and reverting -----------------------------------------------------------------


def _mutable_list(props: dict[str, Any], key: str) -> list[Any]:
    value = props.get(key)
    if not isinstance(value, list):
        value = []
        props[key] = value
    return value


def _settings_props(new: dict[str, Any], name: str, *, required: bool) -> dict[str, Any] | None:
    entry = _find_by_name(_list(new, SETTINGS_COLLECTION), name)
    if entry is None:
        if required:
            raise PlanError(f"HTTP settings {name!r} no longer exists on the gateway")
        return None
    if not isinstance(entry.get("properties"), dict):
        entry["properties"] = {}
    props: dict[str, Any] = entry["properties"]
    return props


def apply_plan(doc: Mapping[str, Any], plan: Plan) -> dict[str, Any]:
    """A new document with the plan's change; everything else untouched. Idempotent."""
    new: dict[str, Any] = copy.deepcopy(dict(doc))
    if plan.is_noop:
        return new
    gid = _gateway_id(new, plan.gateway_id)
    if not same_id(gid, plan.gateway_id):
        raise PlanError(f"the plan is for {plan.gateway_id}, not {gid}")
    if plan.collection == AUTH_CERTS and generation_of(new) is Generation.V2:
        raise PlanError("v2 gateways do not accept authentication certificates")
    props: dict[str, Any] = new.setdefault("properties", {})
    if plan.certificate is not None:
        certs = _mutable_list(props, plan.certificate.collection)
        if _find_by_name(certs, plan.certificate.name) is None:
            certs.append(
                {"name": plan.certificate.name, "properties": {"data": plan.certificate.data}}
            )
    for change in plan.settings_changes:
        sprops = _settings_props(new, change.settings_name, required=True)
        assert sprops is not None
        if change.add_reference:
            _add_reference(new, props, sprops, plan, change.add_reference, gid)
        if change.remove_reference:
            _remove_reference(sprops, plan.collection or AUTH_CERTS, change.remove_reference, True)
        if change.set_host_name is not None:
            sprops["hostName"] = change.set_host_name
            if sprops.get("pickHostNameFromBackendAddress"):
                sprops["pickHostNameFromBackendAddress"] = False
    removed = plan.removed_certificate
    if removed is not None and not _referenced_anywhere(new, removed):
        _remove_certificate(props, removed)
    return new


def _add_reference(
    new: dict[str, Any],
    props: dict[str, Any],
    sprops: dict[str, Any],
    plan: Plan,
    cert_name: str,
    gid: str,
) -> None:
    collection = plan.collection or AUTH_CERTS
    certs = props.get(collection)
    if _find_by_name(certs if isinstance(certs, list) else [], cert_name) is None:
        raise PlanError(f"certificate {cert_name} is no longer on the gateway")
    refs = _mutable_list(sprops, collection)
    if cert_name.lower() not in {last_segment(str(r.get("id", ""))).lower() for r in refs}:
        refs.append({"id": f"{gid}/{collection}/{cert_name}"})


def revert_plan(doc: Mapping[str, Any], plan: Plan) -> dict[str, Any]:
    """A new document without what the plan added: references, the certificate, the host name."""
    new: dict[str, Any] = copy.deepcopy(dict(doc))
    if plan.is_noop:
        return new
    props: dict[str, Any] = new.setdefault("properties", {})
    collection = plan.collection or AUTH_CERTS
    for change in plan.settings_changes:
        sprops = _settings_props(new, change.settings_name, required=False)
        if sprops is None:
            continue  # settings removed since: nothing of ours left there
        if change.add_reference:
            _remove_reference(sprops, collection, change.add_reference, change.had_reference_list)
        if change.remove_reference:
            _restore_reference(new, props, sprops, plan, change.remove_reference)
        if change.set_host_name is not None and sprops.get("hostName") == change.set_host_name:
            if change.previous_host_name is None:
                sprops.pop("hostName", None)
            else:
                sprops["hostName"] = change.previous_host_name
            if change.previous_pick_host_name is not None:
                sprops["pickHostNameFromBackendAddress"] = change.previous_pick_host_name
    if plan.certificate is not None and not _referenced_anywhere(new, plan.certificate):
        _remove_certificate(props, plan.certificate)
    return new


def _remove_reference(
    sprops: dict[str, Any], collection: str, name: str, had_reference_list: bool
) -> None:
    refs = sprops.get(collection)
    if not isinstance(refs, list):
        return
    target = name.lower()
    kept = [r for r in refs if last_segment(str(r.get("id", ""))).lower() != target]
    if kept or had_reference_list:
        sprops[collection] = kept
    else:
        sprops.pop(collection, None)


def _restore_reference(
    new: dict[str, Any], props: dict[str, Any], sprops: dict[str, Any], plan: Plan, name: str
) -> None:
    """Undo a retirement: the certificate back on the gateway (from the plan) and referenced."""
    removed = plan.removed_certificate
    certs = _mutable_list(props, plan.collection or AUTH_CERTS)
    if _find_by_name(certs, name) is None and removed is not None:
        certs.append({"name": removed.name, "properties": {"data": removed.data}})
    _add_reference(new, props, sprops, plan, name, _gateway_id(new, plan.gateway_id))


def _referenced_anywhere(doc: Mapping[str, Any], cert: CertificateAddition) -> bool:
    for entry in _list(doc, SETTINGS_COLLECTION):
        if isinstance(entry, Mapping) and cert.name.lower() in {
            r.lower() for r in _ref_names(entry, cert.collection)
        }:
            return True
    return False


def _remove_certificate(props: dict[str, Any], cert: CertificateAddition) -> None:
    certs = props.get(cert.collection)
    if not isinstance(certs, list):
        return
    kept = [c for c in certs if str(c.get("name", "")).lower() != cert.name.lower()]
    if kept or cert.had_collection:
        props[cert.collection] = kept
    else:
        props.pop(cert.collection, None)


# ---- serialisation (proposals store plans as JSON) --------------------------------------------


def _jsonable(value: Any) -> Any:
    # Tuples become lists so a plan compares equal after a JSON round trip.
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """JSON-ready form (enums as values, tuples as lists)."""
    data: dict[str, Any] = _jsonable(asdict(plan))
    data["action"] = plan.action.value
    if plan.fix is not None:
        data["fix"]["action"] = plan.fix.action.value
    return data


def plan_from_dict(data: Mapping[str, Any]) -> Plan:
    cert = data.get("certificate")
    fix_data = data.get("fix")
    fix = None
    if fix_data:
        fc = fix_data.get("certificate")
        fix = Fix(
            FixAction(fix_data["action"]),
            FixCertificate(**fc) if fc else None,
            tuple(fix_data.get("settings", ())),
            fix_data.get("host_name"),
        )
    changes = tuple(
        SettingsChange(**{**c, "existing_references": tuple(c.get("existing_references", ()))})
        for c in data.get("settings_changes", ())
    )
    removed = data.get("removed_certificate")
    return Plan(
        gateway_id=data["gateway_id"],
        action=FixAction(data["action"]),
        certificate=CertificateAddition(**cert) if cert else None,
        settings_changes=changes,
        noop_reason=data.get("noop_reason"),
        fix=fix,
        collection=data.get("collection"),
        certificate_ref_name=data.get("certificate_ref_name"),
        replaces=data.get("replaces"),
        removed_certificate=CertificateAddition(**removed) if removed else None,
    )


__all__ = [
    "AUTH_CERTS",
    "CERT_NAME_PREFIX",
    "MAX_CERTIFICATES",
    "REMOVALS",
    "TRUSTED_ROOTS",
    "CertificateAddition",
    "Plan",
    "PlanError",
    "SettingsChange",
    "apply_plan",
    "certificate_name",
    "generation_of",
    "group_fixes",
    "plan_fix",
    "plan_fixes",
    "plan_for_fix",
    "plan_from_dict",
    "plan_to_dict",
    "replan",
    "revert_plan",
]
