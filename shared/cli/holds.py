"""`holds list|show|add|release`: what the bot was told to leave alone (shared.remediation.holds).

A rollback sets a hold on what it undid; `holds add` holds a gateway (or some of its HTTP
settings) by hand. Releasing needs an approver (APPROVERS) and a confirmation (`--yes`).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from typing import Any

from shared.cli.exit_codes import DONE, WAITING
from shared.cli.main import register
from shared.cli.output import emit, json_requested
from shared.common.errors import InputError
from shared.common.settings import load_settings
from shared.core.findings import FixAction
from shared.remediation.holds import Hold, new_hold_id, parse_expiry

_STATUSES = ("active", "released", "expired", "all")
_KINDS = tuple(a.value for a in FixAction if a is not FixAction.NONE)


def _holds_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "show", "add", "release"])
    p.add_argument("id", nargs="?", help="hold id (show, release)")
    p.add_argument("--gateway-id", help="the gateway (add; a filter for list)")
    p.add_argument("--status", choices=_STATUSES, default="active", help="list: which holds")
    p.add_argument("--reason", help="why the gateway is held (add; required)")
    p.add_argument(
        "--settings",
        action="append",
        metavar="NAME",
        help="add: hold only these HTTP settings (repeatable; default: the whole gateway)",
    )
    p.add_argument("--kind", choices=_KINDS, help="add: hold only this kind of change")
    p.add_argument(
        "--expires", metavar="WHEN", help="add: ISO 8601 time or a duration (30m, 12h, 7d)"
    )
    p.add_argument("--yes", action="store_true", help="release without asking")
    p.add_argument("--as-user", help="identity recorded (default: login name)")


@register("holds", "list, add or release holds that keep the bot off a change", _holds_arguments)
def _holds(args: argparse.Namespace) -> int:
    from shared.cli.wiring import hold_store
    from shared.common.ids import parse_gateway_id

    settings = load_settings()
    store = hold_store(settings)
    now = datetime.now(UTC)
    me = str(args.as_user or getpass.getuser())
    if args.action == "list":
        gid = parse_gateway_id(args.gateway_id).id if args.gateway_id else None
        views = [h.view(now) for h in store.list(gid)]
        if args.status != "all":
            views = [v for v in views if v["status"] == args.status]
        if json_requested(args):
            emit({"holds": views, "source": store.describe()})
        else:
            sys.stderr.write(f"holds from {store.describe()}\n")
            sys.stdout.write("".join(_line(v) + "\n" for v in views) or "no holds\n")
        return DONE
    if args.action == "add":
        if not args.gateway_id or not (args.reason or "").strip():
            raise InputError("holds add needs --gateway-id and --reason")
        hold = Hold(
            id=new_hold_id(now),
            gateway_id=parse_gateway_id(args.gateway_id).id,
            reason=" ".join(args.reason.split())[:500],
            by=me,
            created_at=now.isoformat(),
            settings=tuple(args.settings or ()),
            kind=args.kind or "",
            expires_at=parse_expiry(args.expires, now) if args.expires else None,
        )
        store.add(hold)
        _notify(settings, "hold_set", hold, me)
        return _show(args, hold.view(now), f"added {hold.id}: {hold.describe()}")
    if not args.id:
        raise InputError(f"holds {args.action} needs a hold id")
    hold = store.get(args.id)
    if args.action == "show":
        return _show(args, hold.view(now), _text(hold.view(now)))
    _check_approver(me, settings["APPROVERS"])
    if hold.status(now) != "active":
        raise InputError(f"hold {hold.id} is already {hold.status(now)}")
    sys.stdout.write(f"release {hold.id}: {hold.describe()}\n")
    if not args.yes:
        if not sys.stdin.isatty():
            sys.stdout.write("not confirmed: no terminal to ask (use --yes)\n")
            return _waiting(args, hold, now)
        answer = input(f"Release {hold.id}? The bot may make this change again. [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            return _waiting(args, hold, now)
    done = store.release(hold.id, me, now)
    _notify(settings, "hold_released", done, me)
    return _show(args, done.view(now), f"released {done.id} by {me}")


def _check_approver(me: str, approvers: Any) -> None:
    from shared.common.identity import approver_ids

    allowed = approver_ids(approvers)
    if not allowed:
        raise InputError("releasing a hold needs an approver: APPROVERS is empty, set it")
    if me.strip().lower() not in allowed:
        raise InputError(f"{me} is not in APPROVERS: only an approver releases a hold")


def _waiting(args: argparse.Namespace, hold: Hold, now: datetime) -> int:
    if json_requested(args):
        emit({**hold.view(now), "released": False, "reason": "not confirmed"})
    return WAITING


def _show(args: argparse.Namespace, view: dict[str, Any], text: str) -> int:
    if json_requested(args):
        emit(view)
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")
    return DONE


def _notify(settings: Any, kind: str, hold: Hold, by: str) -> None:
    from shared.service.notify import notifier

    notifier(settings)(
        kind,
        {
            "event": kind,
            "gateway": hold.gateway_id,
            "action": hold.kind or "any",
            "settings": list(hold.settings),
            "change": hold.change,
            "hold": hold.id,
            "by": by,
            "reason": hold.reason,
        },
    )


def _line(view: dict[str, Any]) -> str:
    gateway = str(view["gateway_id"]).rsplit("/", 1)[-1]
    scope = ",".join(view["settings"]) or "*"
    return (
        f"{view['id']}  {view['status']:<8} {gateway}  {view['kind'] or 'any change'} on {scope}"
        f"  by {view['by']}  ({view['reason']})"
        + (f"  until {view['expires_at']}" if view.get("expires_at") else "")
    )


def _text(view: dict[str, Any]) -> str:
    rows = [
        ("hold", f"{view['id']} ({view['status']})"),
        ("gateway", view["gateway_id"]),
        ("settings", ", ".join(view["settings"]) or "all"),
        ("kind", view["kind"] or "any change"),
        ("reason", view["reason"]),
        ("by", f"{view['by']} at {view['created_at']}"),
        ("expires", view.get("expires_at") or "never"),
        ("change", view.get("change") or "-"),
        (
            "released",
            f"{view['released_by']} at {view['released_at']}" if view.get("released_at") else "-",
        ),
    ]
    return "".join(f"{k:<9} {v}\n" for k, v in rows)
