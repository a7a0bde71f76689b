"""CLI commands for remediation: `fix`, `proposals`, `rollback` (registered into
shared.cli.main).

`fix`, `proposals approve` and `rollback` end with one line of JSON:
{"gateway", "mode", "action", "arm_writes", "verified", "proposal", "reason", "change", "hold"},
and exit with the code of their outcome (shared.cli.exit_codes). With `--format json` that line is
all standard output holds; the preview goes to standard error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from shared.cli.exit_codes import outcome_code
from shared.cli.main import register
from shared.cli.output import emit
from shared.common.settings import Mode, load_settings
from shared.remediation.plan import Plan, plan_from_dict
from shared.remediation.proposals import STATUSES
from shared.remediation.remediate import FixPreview, Remediator, RollbackPreview
from shared.remediation.render import summary


def _remediator(args: argparse.Namespace | None = None) -> Remediator:
    """The CLI's Remediator; with `args`, it reports progress on stderr (shared.cli.progress)."""
    from shared.cli.wiring import local_remediator

    remediator = local_remediator(load_settings())
    progress = getattr(args, "progress", None)
    if progress is not None:
        remediator.progress = progress
    return remediator


def _me(args: argparse.Namespace) -> str:
    return str(getattr(args, "as_user", None) or getpass.getuser())


def _print_json(data: dict[str, Any]) -> None:
    emit(data)


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
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="show the change (JSON Patch, az commands, warnings); write nothing, propose nothing",
    )
    p.add_argument(
        "--trust-local-probe",
        action="store_true",
        help="apply even though the TLS evidence was captured outside the gateway's network "
        "(this machine); without it such a fix becomes a proposal",
    )
    p.add_argument("--as-user", help="identity recorded as the requester (default: login name)")
    p.add_argument(
        "--next-cert",
        metavar="FILE",
        help="the backend's next certificate (PEM or DER; its chain and root may follow in the "
        "same file): its trust is added next to the current one (overlap rotation)",
    )


def _next_certificates(path: str | None) -> list[bytes]:
    """The certificates in --next-cert FILE, as DER; InputError (exit 2) when there are none."""
    if not path:
        return []
    from shared.cli.main import read_input
    from shared.core.certs import load_certificates

    return load_certificates(read_input(path, "--next-cert"))


class _Confirm:
    """Shows the change before asking (once); without a terminal the answer is no."""

    def __init__(self, ask: bool, *, dry_run: bool = False) -> None:
        self.ask = ask
        self.dry_run = dry_run
        self.shown = False
        self.declined = False  # asked (or could not ask) and not confirmed: exit 3
        self.outside: list[str] = []  # warnings about where the evidence came from

    def show(self, preview: FixPreview) -> None:
        """The preview, before anything is written: in full for a dry run or an apply, as a
        summary for a proposal (`proposals show ID` has the rest)."""
        from shared.cli.preview import fix_preview_text

        self.shown = True
        if self.dry_run or preview.outcome == "apply":
            sys.stdout.write(fix_preview_text(preview, dry_run=self.dry_run))
            self.outside += [w for w in preview.warnings if "--trust-local-probe" in w]
        else:
            sys.stdout.write(preview.summary + "\n")

    def __call__(self, plan: Plan) -> bool:
        if not self.shown:
            sys.stdout.write(summary(plan) + "\n")
            self.shown = True
        if not self.ask:
            return True
        if not sys.stdin.isatty():
            sys.stdout.write("not confirmed: no terminal to ask (use --yes)\n")
            self.declined = True
            return False
        answer = input("Apply this change to the gateway? [y/N] ")
        self.declined = answer.strip().lower() not in {"y", "yes"}
        return not self.declined


@register("fix", "diagnose a gateway, then apply or propose the fix policy allows", _fix_arguments)
def _fix(args: argparse.Namespace) -> int:
    confirm = _Confirm(ask=not args.yes, dry_run=args.dry_run)
    next_certificates = _next_certificates(args.next_cert)
    outcome = _remediator(args).fix(
        args.gateway_id,
        requested_mode=Mode(args.mode) if args.mode else None,
        requester=_me(args),
        confirm=confirm,
        show=confirm.show,
        dry_run=args.dry_run,
        trust_local_probe=args.trust_local_probe,
        next_certificates=next_certificates,
    )
    if args.trust_local_probe and confirm.outside and outcome.action == "applied":
        sys.stderr.write(
            "warning: applied from TLS evidence captured outside the gateway's network "
            "(--trust-local-probe)\n"
        )
    if outcome.plan and not confirm.shown:
        sys.stdout.write(summary(plan_from_dict(outcome.plan)) + "\n")
    _print_verification(outcome.verification)
    _print_change(outcome)
    _print_json(outcome.to_json())
    code = outcome_code(outcome, declined=confirm.declined)
    if outcome.action == "refused":
        # Out of scope: bad input (exit 2); ARM refused (a missing role): failed (exit 1).
        sys.stderr.write(f"error: {outcome.reason}\n")
    return code


def _proposals_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "show", "approve", "reject"])
    p.add_argument("id", nargs="?", help="proposal id (show, approve, reject)")
    p.add_argument(
        "--status", choices=sorted(STATUSES), help="list only proposals with this status"
    )
    p.add_argument("--reason", default="", help="why (reject)")
    p.add_argument(
        "--as-user",
        help="the approver's Entra object id, as APPROVERS lists it (default: login name, "
        "which no APPROVERS entry matches)",
    )
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="show and list: text for people (default) or JSON (the stored form)",
    )


@register("proposals", "list, show, approve or reject change proposals", _proposals_arguments)
def _proposals(args: argparse.Namespace) -> int:
    remediator = _remediator(args)
    if args.action == "list" and args.format == "json":
        listed = remediator.proposals.list(status=args.status)
        _print_json({"proposals": [_proposal_row(p) for p in listed]})
        return 0
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
        from shared.cli.preview import proposal_text

        proposal = remediator.proposals.get(args.id)
        if args.format == "json":
            _print_json(proposal.to_dict())
        else:
            sys.stdout.write(proposal_text(proposal))
        return 0
    if args.action == "reject":
        rejected = remediator.reject(args.id, _me(args), args.reason)
        _print_json({"proposal": rejected.id, "status": rejected.status})
        return 0
    outcome = remediator.approve(args.id, _me(args))
    _print_verification(outcome.verification)
    _print_change(outcome)
    _print_json(outcome.to_json())
    if outcome.action == "refused":
        sys.stderr.write(f"error: {outcome.reason}\n")
    return outcome_code(outcome)


def _proposal_row(p: Any) -> dict[str, Any]:
    return {
        "id": p.id,
        "status": p.status,
        "action": p.plan.get("action"),
        "gateway": p.gateway_id,
        "requester": p.requester,
        "created_at": p.created_at,
    }


def _print_change(outcome: Any) -> None:
    """Name the change an apply recorded, and how to undo it (the id is in the JSON line too)."""
    if outcome.change and outcome.action == "applied":
        undo = f"python -m shared rollback --change {outcome.change}"
        sys.stdout.write(f"change: {outcome.change} (undo: {undo})\n")


def _rollback_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--change", required=True, help="change id printed by fix / approve")
    p.add_argument(
        "--gateway-id", help="resource id of the gateway (default: the one the change names)"
    )
    p.add_argument("--yes", action="store_true", help="roll back without asking")
    p.add_argument("--dry-run", action="store_true", help="show what would be removed; no write")
    p.add_argument("--as-user", help="identity recorded for the rollback")


class _ConfirmRollback:
    """Shows the rollback preview, then asks (without a terminal the answer is no)."""

    def __init__(self, ask: bool) -> None:
        self.ask = ask
        self.declined = False

    @staticmethod
    def show(preview: RollbackPreview) -> None:
        out = sys.stdout
        out.write(preview.summary + "\n")
        out.write("JSON Patch of the gateway:\n")
        out.write(json.dumps(preview.patch, indent=2) + "\n")
        out.write("az equivalent (each command is its own gateway update):\n")
        out.write("".join(f"  {cmd}\n" for cmd in preview.az))
        out.write("".join(f"warning: {w}\n" for w in preview.warnings))

    def __call__(self, preview: RollbackPreview) -> bool:
        if not self.ask:
            return True
        if not sys.stdin.isatty():
            sys.stdout.write("not confirmed: no terminal to ask (use --yes)\n")
            self.declined = True
            return False
        answer = input(f"Roll back {preview.change} on the gateway? [y/N] ")
        self.declined = answer.strip().lower() not in {"y", "yes"}
        return not self.declined


@register("rollback", "remove exactly what one change added", _rollback_arguments)
def _rollback(args: argparse.Namespace) -> int:
    confirm = _ConfirmRollback(ask=not args.yes)
    outcome = _remediator(args).rollback(
        args.gateway_id,
        args.change,
        by=_me(args),
        show=confirm.show,
        confirm=confirm,
        dry_run=args.dry_run,
    )
    _print_json(outcome.to_json())
    if outcome.action == "refused":
        # Mode or kill switch: nothing was rolled back, which a script must not take for success.
        sys.stderr.write(f"error: {outcome.reason}\n")
    return outcome_code(outcome, declined=confirm.declined)
