"""CLI commands for remediation: `fix`, `proposals`, `rollback` (registered into shared.cli.main).

`fix` and `rollback` end with one line of JSON:
{"gateway", "mode", "action", "arm_writes", "verified", "proposal", "reason"}.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from shared.cli.main import register
from shared.common.settings import Mode, load_settings
from shared.remediation.plan import Plan, plan_from_dict
from shared.remediation.remediate import Remediator
from shared.remediation.render import summary


def _remediator() -> Remediator:
    from shared.cli.wiring import local_remediator

    return local_remediator(load_settings())


def _me(args: argparse.Namespace) -> str:
    return str(getattr(args, "as_user", None) or getpass.getuser())


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, sort_keys=False) + "\n")


def _print_verification(checks: list[dict[str, Any]]) -> None:
    for check in checks:
        source = check.get("source", "backend-health")
        sys.stdout.write(
            f"after ({source}): {check['settings']} {check['server']}: {check['health']}\n"
        )


def _fix_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gateway-id", required=True, help="resource id of the Application Gateway")
    p.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        help="lower the mode for this run (it can never raise the configured one)",
    )
    p.add_argument("--yes", action="store_true", help="apply without asking")
    p.add_argument("--as-user", help="identity recorded as the requester (default: login name)")


class _Confirm:
    """Shows the plan before asking (once); without a terminal the answer is no."""

    def __init__(self, ask: bool) -> None:
        self.ask = ask
        self.shown = False

    def __call__(self, plan: Plan) -> bool:
        sys.stdout.write(summary(plan) + "\n")
        self.shown = True
        if not self.ask:
            return True
        if not sys.stdin.isatty():
            sys.stdout.write("not confirmed: no terminal to ask (use --yes)\n")
            return False
        answer = input("Apply this change to the gateway? [y/N] ")
        return answer.strip().lower() in {"y", "yes"}


@register("fix", "diagnose a gateway, then apply or propose the fix policy allows", _fix_arguments)
def _fix(args: argparse.Namespace) -> int:
    confirm = _Confirm(ask=not args.yes)
    outcome = _remediator().fix(
        args.gateway_id,
        requested_mode=Mode(args.mode) if args.mode else None,
        requester=_me(args),
        confirm=confirm,
    )
    if outcome.plan and not confirm.shown:
        sys.stdout.write(summary(plan_from_dict(outcome.plan)) + "\n")
    _print_verification(outcome.verification)
    _print_json(outcome.to_json())
    if outcome.action == "refused":
        # Bad input for this bot (out of scope): exit 2 with one line, as for any input error.
        sys.stderr.write(f"error: {outcome.reason}\n")
        return 2
    return 0


def _proposals_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "show", "approve", "reject"])
    p.add_argument("id", nargs="?", help="proposal id (show, approve, reject)")
    p.add_argument("--status", help="list only proposals with this status")
    p.add_argument("--reason", default="", help="why (reject)")
    p.add_argument("--as-user", help="identity of the approver (default: login name)")


@register("proposals", "list, show, approve or reject change proposals", _proposals_arguments)
def _proposals(args: argparse.Namespace) -> int:
    remediator = _remediator()
    if args.action == "list":
        for p in remediator.proposals.list(status=args.status):
            plan = p.plan
            sys.stdout.write(
                f"{p.id}  {p.status:<9} {plan.get('action', '')}  {p.gateway_id.rsplit('/', 1)[-1]}"
                f"  by {p.requester}\n"
            )
        return 0
    if not args.id:
        from shared.common.errors import InputError

        raise InputError(f"proposals {args.action} needs a proposal id")
    if args.action == "show":
        _print_json(remediator.proposals.get(args.id).to_dict())
        return 0
    if args.action == "reject":
        rejected = remediator.reject(args.id, _me(args), args.reason)
        _print_json({"proposal": rejected.id, "status": rejected.status})
        return 0
    outcome = remediator.approve(args.id, _me(args))
    _print_verification(outcome.verification)
    _print_json(outcome.to_json())
    return 0


def _rollback_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gateway-id", required=True)
    p.add_argument("--change", required=True, help="change id reported by fix")
    p.add_argument("--as-user", help="identity recorded for the rollback")


@register("rollback", "remove exactly what one change added", _rollback_arguments)
def _rollback(args: argparse.Namespace) -> int:
    _print_json(_remediator().rollback(args.gateway_id, args.change, by=_me(args)).to_json())
    return 0
