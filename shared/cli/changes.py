"""`changes list|show`: the changes the bot made and their rollbacks, from the app's ledger (when
its storage is configured) or the local change log, with any hold a rollback set."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shared.cli.main import register
from shared.cli.output import emit
from shared.common.settings import load_settings


def _changes_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("id", nargs="?", help="change id (show)")
    p.add_argument("--gateway-id", help="only this gateway's changes (list)")
    p.add_argument("--format", choices=("text", "json"), default="text")


@register(
    "changes", "list the changes the bot made, or show one, with its rollback", _changes_arguments
)
def _changes(args: argparse.Namespace) -> int:
    from shared.cli.wiring import change_log, hold_store
    from shared.common.errors import InputError
    from shared.common.ids import parse_gateway_id
    from shared.remediation.changelog import change_detail, history
    from shared.service.holds import holds_of_change

    settings = load_settings()
    log = change_log(settings)
    if args.action == "list":
        records = (
            log.for_gateway(parse_gateway_id(args.gateway_id).id) if args.gateway_id else log.all()
        )
        views = history(records)
        if args.format == "json":
            emit({"changes": views, "source": log.describe()})
        else:
            sys.stderr.write(f"changes from {log.describe()}\n")
            sys.stdout.write("".join(_change_line(v) + "\n" for v in views) or "no changes\n")
        return 0
    if not args.id:
        raise InputError("changes show needs a change id")
    change = log.get(args.id)
    if change is None:
        raise InputError(f"no change {args.id[:80]!r} in {log.describe()}")
    view = change_detail(change, log.for_gateway(change.gateway_id))
    view["holds"] = holds_of_change(hold_store(settings), change.id, change.gateway_id)
    if args.format == "json":
        emit(view)
    else:
        sys.stdout.write(_change_text(view))
    return 0


def _change_line(view: dict[str, Any]) -> str:
    gateway = str(view["gateway"]).rsplit("/", 1)[-1]
    what = view["action"] if view["kind"] == "apply" else f"rollback of {view.get('rolls_back')}"
    settings = ",".join(s for s in view["settings"] if s)
    return (
        f"{view['id']}  {view['when'][:19]}  {view['status']:<12} {gateway}  {what}"
        + (f" on {settings}" if settings and view["kind"] == "apply" else "")
        + f"  by {view['by']}"
    )


def _change_text(view: dict[str, Any]) -> str:
    lines = [
        f"change      {view['id']} ({view['kind']})",
        f"gateway     {view['gateway']}",
        f"when        {view['when']}",
        f"by          {view['by']}" + (f" (job {view['job']})" if view.get("job") else ""),
        f"status      {view['status']}",
    ]
    if view["kind"] == "apply":
        lines.append(f"action      {view['action']} on {', '.join(view['settings'])}")
        if view.get("certificate"):
            lines.append(f"certificate {view['certificate']} (SHA-1 {view['thumbprint']})")
        undone = view.get("rolled_back")
        if undone:
            lines.append(f"rolled back {undone['change']} by {undone['by']} at {undone['when']}")
        else:
            lines.append("rollback would:")
            lines.extend(f"  {line}" for line in view["undo"]["summary"].splitlines())
            lines.append(f"  python -m shared rollback --change {view['id']}")
    else:
        lines.append(f"rolls back  {view.get('rolls_back')}")
    lines.append(f"etags       {view['etag_before']} -> {view['etag_after']}")
    for hold in view.get("holds", []):
        lines.append(
            f"hold        {hold['id']} ({hold['status']}): the bot will not make "
            f"{hold['kind'] or 'a change'} on {', '.join(hold['settings']) or 'the gateway'} again"
            + (f"; release: holds release {hold['id']}" if hold["status"] == "active" else "")
        )
    return "\n".join(lines) + "\n"
