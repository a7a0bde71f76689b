"""`gateways list`: the gateways in ALLOWED_SCOPES (listed as the sweep lists them) with a summary
of their backend health."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

from shared.cli.exit_codes import DONE
from shared.cli.main import register
from shared.cli.output import emit, json_requested
from shared.common.errors import BotError, InputError


def _gateways_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list"])
    p.add_argument("--no-health", action="store_true", help="list only; do not read backend health")


@register(
    "gateways", "list the gateways in ALLOWED_SCOPES with their backend health", _gateways_arguments
)
def _gateways(args: argparse.Namespace) -> int:
    from shared.cloud.arm import ArmClient
    from shared.common.settings import load_settings
    from shared.service.sweep import gateways_in_scope

    settings = load_settings()
    if not settings.scopes:
        raise InputError(
            "ALLOWED_SCOPES is empty: set it to the subscriptions or resource groups to list"
        )
    arm = ArmClient(settings)
    errors: list[str] = []
    args.progress(f"listing gateways in {len(settings.scopes)} scope(s)")
    targets = sorted(gateways_in_scope(settings.scopes, arm, errors), key=lambda t: t.gid.key)
    rows = []
    for target in targets:
        row: dict[str, Any] = {"id": target.gid.id, "name": target.gid.name}
        row["location"] = target.location or None
        if not args.no_health:
            args.progress(f"reading backend health of {target.gid.name}")
            row["health"] = _health(arm, target.gid)
        rows.append(row)
    if json_requested(args):
        emit({"gateways": rows, "list_errors": errors})
    else:
        for error in errors:
            sys.stderr.write(f"warning: cannot list {error}\n")
        sys.stdout.write("".join(_line(r) + "\n" for r in rows) or "no gateways in scope\n")
    return DONE


def _health(arm: Any, gid: Any) -> dict[str, Any]:
    """Servers per health state, or the error that kept backend health from being read."""
    from shared.core.health import parse_backend_health

    try:
        servers = parse_backend_health(arm.backend_health(gid))
    except BotError as exc:
        return {"error": " ".join(str(exc).split())[:300]}
    counts = Counter(s.health.value for s in servers)
    return {"servers": len(servers), **dict(sorted(counts.items()))}


def _line(row: dict[str, Any]) -> str:
    health = row.get("health")
    if health is None:
        summary = ""
    elif "error" in health:
        summary = f"  health unknown: {health['error']}"
    else:
        states = ", ".join(f"{v} {k}" for k, v in health.items() if k != "servers")
        summary = f"  {health['servers']} server(s): {states or 'none'}"
    return f"{row['name']:<24} {row.get('location') or '-':<12}{summary}  {row['id']}"
