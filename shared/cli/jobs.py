"""`jobs list|show`: the function app's jobs (alerts, sweeps, approvals, rollbacks) and how each
ended. Jobs live in the app's storage only: the command needs its settings."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shared.cli.exit_codes import DONE
from shared.cli.main import register
from shared.cli.output import emit, json_requested
from shared.common.errors import InputError

NEEDS_STORAGE = (
    "jobs live in the function app's storage: set AzureWebJobsStorage (a connection string) or "
    "AzureWebJobsStorage__accountName (identity-based) to the app's storage account"
)


def _jobs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("id", nargs="?", help="job id (show)")
    p.add_argument("--gateway-id", help="only this gateway's jobs (list)")
    p.add_argument("--limit", type=int, default=50, help="list: newest N jobs (1-1000, default 50)")


@register("jobs", "list the function app's jobs, or show one with its outcome", _jobs_arguments)
def _jobs(args: argparse.Namespace) -> int:
    from shared.cli.wiring import app_storage
    from shared.common.ids import parse_gateway_id

    storage = app_storage()
    if storage is None:
        raise InputError(NEEDS_STORAGE)
    if args.action == "list":
        if not 1 <= args.limit <= 1000:
            raise InputError("--limit must be between 1 and 1000")
        gid = parse_gateway_id(args.gateway_id) if args.gateway_id else None
        jobs = storage.list_jobs(gid, limit=args.limit)
        if json_requested(args):
            emit({"jobs": jobs})
        else:
            sys.stdout.write("".join(_line(j) + "\n" for j in jobs) or "no jobs\n")
        return DONE
    if not args.id:
        raise InputError("jobs show needs a job id")
    job = storage.get_job(args.id)
    if job is None:
        raise InputError(f"no job {args.id[:80]!r} in table {storage.names.ledger_table}")
    data = job.to_dict()
    if json_requested(args):
        emit(data)
    else:
        sys.stdout.write(_text(data))
    return DONE


def _line(job: dict[str, Any]) -> str:
    gateway = str(job.get("gateway_id") or "").rsplit("/", 1)[-1]
    outcome = job.get("action") or "-"
    return (
        f"{job['job_id']}  {job['state']:<9} {outcome:<11} {job['kind']:<8} {gateway}"
        f"  by {job.get('requested_by') or '-'}"
        + (f"  change {job['change']}" if job.get("change") else "")
        + (f"  proposal {job['proposal_id']}" if job.get("proposal_id") else "")
    )


def _text(job: dict[str, Any]) -> str:
    raw = job.get("outcome")
    outcome: dict[str, Any] = raw if isinstance(raw, dict) else {}
    rows = [
        ("job", f"{job['job_id']} ({job['kind']}, mode {job.get('mode') or 'policy'})"),
        ("gateway", job["gateway_id"]),
        ("state", job["state"]),
        ("by", job.get("requested_by") or "-"),
        ("created", job.get("created_at")),
        ("finished", job.get("finished_at") or "-"),
        ("outcome", outcome.get("action") or "-"),
        ("reason", outcome.get("reason") or job.get("error") or "-"),
        ("change", outcome.get("change") or "-"),
        ("proposal", outcome.get("proposal") or job.get("proposal_id") or "-"),
        ("hold", outcome.get("hold") or "-"),
    ]
    return "".join(f"{k:<9} {v}\n" for k, v in rows)
