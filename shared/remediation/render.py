"""Renderings of a plan: RFC 6902 JSON Patch, a summary, az CLI commands, a Bicep fragment.

All pure. The az commands mirror the plan step by step; note that each az command is its own
gateway update, while the bot sends one (docs/sources.md#overlapping-writes).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from shared.common.ids import parse_gateway_id
from shared.remediation.plan import AUTH_CERTS, Plan

_AZ = "az network application-gateway"


# ---- JSON Patch -----------------------------------------------------------------------------


def _pointer(path: Sequence[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def json_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Minimal RFC 6902 operations (add/replace/remove) turning `before` into `after`."""
    ops: list[dict[str, Any]] = []
    _diff(before, after, [], ops)
    return ops


def _diff(a: Any, b: Any, path: list[str | int], ops: list[dict[str, Any]]) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in a:
            if key not in b:
                ops.append({"op": "remove", "path": _pointer([*path, key])})
        for key in b:
            if key not in a:
                ops.append({"op": "add", "path": _pointer([*path, key]), "value": b[key]})
            else:
                _diff(a[key], b[key], [*path, key], ops)
    elif isinstance(a, list) and isinstance(b, list):
        _diff_list(a, b, path, ops)
    elif a != b or type(a) is not type(b):
        ops.append({"op": "replace", "path": _pointer(path), "value": b})


def _diff_list(
    a: list[Any], b: list[Any], path: list[str | int], ops: list[dict[str, Any]]
) -> None:
    # Common prefix and suffix stay; the middle is diffed element-wise when the lengths agree,
    # otherwise removed (from the back, so indices hold) and added.
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    mid_a, mid_b = a[start:end_a], b[start:end_b]
    if len(mid_a) == len(mid_b):
        for i, (x, y) in enumerate(zip(mid_a, mid_b, strict=True)):
            _diff(x, y, [*path, start + i], ops)
        return
    for i in reversed(range(start, end_a)):
        ops.append({"op": "remove", "path": _pointer([*path, i])})
    for i, value in enumerate(mid_b):
        ops.append({"op": "add", "path": _pointer([*path, start + i]), "value": value})


# ---- summary --------------------------------------------------------------------------------


def summary(plan: Plan) -> str:
    """A few readable lines."""
    gw = plan.gateway_id.rsplit("/", 1)[-1]
    if plan.is_noop:
        return f"Gateway {gw}: nothing to do ({plan.noop_reason})."
    lines = [f"Gateway {gw}: {plan.action.value.replace('_', ' ')}, in one gateway update."]
    if plan.certificate is not None:
        lines.append(
            f"- add {_kind(plan.certificate.collection)} {plan.certificate.name} "
            f"(SHA-1 {plan.certificate.sha1})"
        )
    elif plan.certificate_ref_name:
        lines.append(f"- certificate {plan.certificate_ref_name} is already on the gateway")
    for change in plan.settings_changes:
        if change.add_reference:
            lines.append(
                f"- HTTP settings {change.settings_name}: also trust {change.add_reference} "
                "(existing references stay)"
                + (f"; it overlaps {plan.replaces} for a rotation" if plan.replaces else "")
            )
        if change.remove_reference:
            lines.append(
                f"- HTTP settings {change.settings_name}: stop trusting {change.remove_reference} "
                "(no backend presents it any more; the other references stay)"
            )
        if change.set_host_name is not None:
            prev = change.previous_host_name or "none"
            lines.append(
                f"- HTTP settings {change.settings_name}: "
                f"host name {prev} -> {change.set_host_name}"
            )
    if plan.removed_certificate is not None:
        gone = plan.removed_certificate
        lines.append(
            f"- remove {_kind(gone.collection)} {gone.name} (SHA-1 {gone.sha1}) "
            "unless something else references it"
        )
    return "\n".join(lines)


def _kind(collection: str) -> str:
    return "authentication certificate" if collection == AUTH_CERTS else "trusted root certificate"


# ---- az CLI ---------------------------------------------------------------------------------


def _base(gateway_id: str) -> str:
    gid = parse_gateway_id(gateway_id)
    return (
        f"--subscription {shlex.quote(gid.subscription)} "
        f"--resource-group {shlex.quote(gid.resource_group)} --gateway-name {shlex.quote(gid.name)}"
    )


def _cert_group(collection: str) -> tuple[str, str]:
    """(az subgroup, http-settings flag) for a certificate collection."""
    return (
        ("auth-cert", "--auth-certs") if collection == AUTH_CERTS else ("root-cert", "--root-certs")
    )


def _refs_arg(names: Sequence[str]) -> str:
    return " ".join(shlex.quote(n) for n in names) if names else '""'


def az_commands(plan: Plan, gateway_id: str) -> list[str]:
    """The equivalent az CLI steps (each az command is one gateway update)."""
    if plan.is_noop:
        return []
    base = _base(gateway_id)
    cmds: list[str] = []
    collection = plan.collection or AUTH_CERTS
    group, flag = _cert_group(collection)
    if plan.certificate is not None:
        name = plan.certificate.name
        cert_file = shlex.quote(f"{name}.cer")
        # DER file: az base64-encodes the file bytes, which gives base64(DER)
        # (docs/sources.md#certificate-formats).
        cmds.append(f"echo {shlex.quote(plan.certificate.data)} | base64 -d > {cert_file}")
        cmds.append(
            f"{_AZ} {group} create {base} --name {shlex.quote(name)} --cert-file {cert_file}"
        )
    for change in plan.settings_changes:
        target = f"{_AZ} http-settings update {base} --name {shlex.quote(change.settings_name)}"
        if change.add_reference:
            refs = [*change.existing_references, change.add_reference]
            cmds.append(f"{target} {flag} {_refs_arg(refs)}")
        if change.remove_reference:
            gone = change.remove_reference.lower()
            kept = [r for r in change.existing_references if r.lower() != gone]
            cmds.append(f"{target} {flag} {_refs_arg(kept)}")
        if change.set_host_name is not None:
            extra = " --host-name-from-backend-pool false" if change.previous_pick_host_name else ""
            cmds.append(f"{target} --host-name {shlex.quote(change.set_host_name)}{extra}")
    if plan.removed_certificate is not None:
        name = shlex.quote(plan.removed_certificate.name)
        cmds.append(f"{_AZ} {group} delete {base} --name {name}")
    return cmds


def az_rollback_commands(plan: Plan, gateway_id: str) -> list[str]:
    """az steps removing exactly what the plan added."""
    if plan.is_noop:
        return []
    base = _base(gateway_id)
    cmds: list[str] = []
    collection = plan.collection or AUTH_CERTS
    group, flag = _cert_group(collection)
    if plan.removed_certificate is not None:
        gone = plan.removed_certificate
        cert_file = shlex.quote(f"{gone.name}.cer")
        cmds.append(f"echo {shlex.quote(gone.data)} | base64 -d > {cert_file}")
        cmds.append(
            f"{_AZ} {group} create {base} --name {shlex.quote(gone.name)} --cert-file {cert_file}"
        )
    for change in plan.settings_changes:
        target = f"{_AZ} http-settings update {base} --name {shlex.quote(change.settings_name)}"
        if change.add_reference or change.remove_reference:
            cmds.append(f"{target} {flag} {_refs_arg(change.existing_references)}")
        if change.set_host_name is not None:
            prev = shlex.quote(change.previous_host_name or "")
            extra = " --host-name-from-backend-pool true" if change.previous_pick_host_name else ""
            cmds.append(f"{target} --host-name {prev}{extra}")
    if plan.certificate is not None:
        cmds.append(f"{_AZ} {group} delete {base} --name {shlex.quote(plan.certificate.name)}")
    return cmds


def rollback_summary(plan: Plan, change_id: str) -> str:
    """What rolling back change `change_id` removes, in a few readable lines."""
    gw = plan.gateway_id.rsplit("/", 1)[-1]
    if plan.is_noop:
        return f"Gateway {gw}: change {change_id} changed nothing; nothing to roll back."
    lines = [f"Gateway {gw}: roll back {change_id}, in one gateway update."]
    for change in plan.settings_changes:
        if change.add_reference:
            lines.append(
                f"- HTTP settings {change.settings_name}: stop trusting {change.add_reference} "
                "(other references stay)"
            )
        if change.remove_reference:
            lines.append(
                f"- HTTP settings {change.settings_name}: trust {change.remove_reference} again"
            )
        if change.set_host_name is not None:
            prev = change.previous_host_name or "none"
            lines.append(
                f"- HTTP settings {change.settings_name}: "
                f"host name {change.set_host_name} -> {prev}"
            )
    if plan.certificate is not None:
        lines.append(
            f"- remove {_kind(plan.certificate.collection)} {plan.certificate.name} "
            f"(SHA-1 {plan.certificate.sha1}) unless something else references it"
        )
    return "\n".join(lines)


# ---- Bicep ----------------------------------------------------------------------------------


def _bq(value: str) -> str:
    """A Bicep string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def bicep_fragment(plan: Plan) -> str:
    """The change as Bicep for a gateway managed as code: merge into its resource definition."""
    if plan.is_noop:
        return f"// nothing to change: {plan.noop_reason}"
    collection = plan.collection or AUTH_CERTS
    out = [
        "// Merge into the Microsoft.Network/applicationGateways resource; keep existing entries.",
        "properties: {",
    ]
    if plan.certificate is not None:
        out += [
            f"  {collection}: [",
            f"    // ...existing {collection} stay",
            "    {",
            f"      name: {_bq(plan.certificate.name)}",
            f"      properties: {{ data: {_bq(plan.certificate.data)} }}  "
            f"// SHA-1 {plan.certificate.sha1}",
            "    }",
            "  ]",
        ]
    out.append("  backendHttpSettingsCollection: [")
    for change in plan.settings_changes:
        out += ["    {", f"      name: {_bq(change.settings_name)}", "      properties: {"]
        out.append("        // ...existing properties stay")
        if change.add_reference or change.remove_reference:
            gone = (change.remove_reference or "").lower()
            refs = [r for r in change.existing_references if r.lower() != gone]
            refs += [change.add_reference] if change.add_reference else []
            out.append(f"        {collection}: [")
            for ref in refs:
                out.append(
                    "          { id: resourceId('Microsoft.Network/applicationGateways/"
                    f"{collection}', gatewayName, {_bq(ref)}) }}"
                )
            out.append("        ]")
        if change.set_host_name is not None:
            out.append(f"        hostName: {_bq(change.set_host_name)}")
            out.append("        pickHostNameFromBackendAddress: false")
        out += ["      }", "    }"]
    out += ["  ]", "}"]
    return "\n".join(out)


def renderings(plan: Plan, before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Every rendering at once, as a proposal stores them."""
    return {
        "summary": summary(plan),
        "json_patch": json_patch(before, after),
        "az": az_commands(plan, plan.gateway_id),
        "az_rollback": az_rollback_commands(plan, plan.gateway_id),
        "bicep": bicep_fragment(plan),
    }


__all__ = [
    "az_commands",
    "az_rollback_commands",
    "bicep_fragment",
    "json_patch",
    "renderings",
    "rollback_summary",
    "summary",
]
