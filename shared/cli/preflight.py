"""`python -m shared preflight [--gateway-id ID ...] [--format text|json]`: what the bot's identity
may do at every scope it uses, read from Azure (`Microsoft.Authorization/permissions`), and every
missing action named with its scope. Reads only; writes nothing.

Without --gateway-id it checks every gateway in ALLOWED_SCOPES (listed as the sweep lists them).
Exit 0 when every action is granted, 1 when one is missing or a permission list or gateway listing
cannot be read, 2 for bad input (docs/operations.md#permissions-pre-flight).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from shared.cli.main import register
from shared.cli.output import emit
from shared.common.errors import InputError


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--gateway-id",
        action="append",
        default=[],
        metavar="ID",
        help="a gateway to check (repeatable; a bare name with --resource-group); default: "
        "every gateway in ALLOWED_SCOPES",
    )
    p.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or JSON"
    )


def _gateway_ids(args: argparse.Namespace) -> list[Any]:
    from shared.common.ids import parse_gateway_id, resolve_gateway

    ids = []
    for value in args.gateway_id:
        if not isinstance(value, str) or not value.strip():
            raise InputError("--gateway-id needs a gateway resource id or name")
        if value.strip().startswith("/"):
            ids.append(parse_gateway_id(value.strip()))
        else:
            ids.append(
                resolve_gateway(
                    value,
                    resource_group=getattr(args, "resource_group", None),
                    subscription=os.environ.get("AZURE_SUBSCRIPTION_ID"),
                )
            )
    return ids


@register(
    "preflight",
    "check the bot's Azure permissions at every scope it uses for each gateway; writes nothing",
    _arguments,
)
def preflight(args: argparse.Namespace) -> int:
    from shared.cloud.arm import ArmClient, ArmError, make_credential
    from shared.common.settings import load_settings
    from shared.remediation.policy import check_scope
    from shared.remediation.preflight import gateway_permissions
    from shared.service.sweep import gateways_in_scope

    settings = load_settings()
    progress = args.progress
    arm = ArmClient(settings, credential=make_credential(settings))
    list_errors: list[str] = []
    gids = _gateway_ids(args)
    for gid in gids:
        check_scope(settings, gid.id)  # only gateways the bot may act on
    if not gids:
        progress(f"listing the gateways in {', '.join(settings.scopes)}")
        gids = [t.gid for t in gateways_in_scope(settings.scopes, arm, list_errors)]
    reports = []
    for gid in gids:
        progress(f"reading the permissions for {gid.name}")
        try:
            doc: dict[str, Any] | None = arm.get_gateway(gid).doc
        except ArmError:
            doc = None  # its read permission is reported below; linked resources are unknown
        reports.append(gateway_permissions(arm, gid, doc))
    ok = not list_errors and all(r.ok for r in reports)
    if args.format == "json":
        body = {
            "ok": ok,
            "gateways": [r.to_dict() for r in reports],
            "list_errors": list_errors,
        }
        emit(body)
    else:
        sys.stdout.write(_text(reports, list_errors))
    return 0 if ok else 1


def _text(reports: list[Any], list_errors: list[str]) -> str:
    lines: list[str] = []
    for report in reports:
        scopes = {n.scope.lower() for n in report.needs}
        verdict = "ok" if report.ok else f"{len(report.missing)} missing"
        lines.append(
            f"{report.gateway_id}: {verdict} ({len(report.needs)} actions at {len(scopes)} scopes)"
        )
        for gap in report.missing:
            lines.append(f"  missing  {gap.action}  ({gap.purpose})")
            lines.append(f"           on {gap.scope}")
        for scope, why in report.unreadable.items():
            lines.append(f"  unreadable  {scope}: {why}")
    for error in list_errors:
        lines.append(f"cannot list gateways: {error}")
    if not reports and not list_errors:
        lines.append("no gateway in ALLOWED_SCOPES")
    ok = not list_errors and all(r.ok for r in reports)
    lines.append(
        "every action the bot uses is granted"
        if ok
        else "grant what is missing as infra/ does (docs/deploy.md#permissions)"
    )
    return "\n".join(lines) + "\n"


__all__ = ["preflight"]
