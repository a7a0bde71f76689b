"""The command line's exit codes: one table for `--help`, docs/operations.md and scripts.

fix, rollback and `proposals approve|reject` map their outcome (RemediationOutcome.action) to a
code here; every other command exits 0 when it ran, 2 on bad input.
"""

from __future__ import annotations

from typing import Any

DONE = 0
FAILED = 1
USAGE = 2
WAITING = 3

TABLE = (
    (DONE, "done: applied and verified, rolled back, or nothing to do"),
    (FAILED, "failed: the write or its verification failed, or Azure refused it"),
    (USAGE, "usage or input error (also: out of ALLOWED_SCOPES, mode or kill switch refuses)"),
    (WAITING, "waiting on a person: proposed, held, or not confirmed"),
)


def table_text() -> str:
    return "exit codes:\n" + "".join(f"  {code}  {text}\n" for code, text in TABLE)


def outcome_code(outcome: Any, *, declined: bool = False) -> int:
    """The exit code of a remediation outcome; `declined`: the operator was asked and said no
    (or could not be asked: no terminal)."""
    action = outcome.action
    if action in {"applied", "rolled_back"}:
        return FAILED if outcome.verified is False else DONE
    if action in {"proposed", "held"}:
        return WAITING
    if action == "failed":
        return FAILED
    if action == "refused":
        # Azure refused it (or the permissions pre-flight says it would): failed; the bot's own
        # scope, mode or kill switch refused it: a usage matter.
        return FAILED if getattr(outcome, "azure_refused", False) else USAGE
    return WAITING if declined else DONE
