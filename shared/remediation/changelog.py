"""The record of changes the bot made: guards (cooldown, daily cap) and rollback read it.

`ChangeLog` is the interface; `LocalChangeLog` keeps JSON lines under the CLI's state directory.
The function app records the same entries in its ledger table (shared.service.storage).
"""

from __future__ import annotations

import fcntl
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from shared.common.errors import InputError
from shared.common.ids import same_id
from shared.remediation.policy import Change


@dataclass(frozen=True)
class ChangeRecord:
    id: str
    gateway_id: str
    when: str  # ISO 8601 UTC
    by: str
    kind: str  # "apply" | "rollback"
    plan: dict[str, Any]  # shared.remediation.plan.plan_to_dict
    settings: tuple[str, ...]
    thumbprint: str | None
    etag_before: str | None
    etag_after: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["settings"] = list(self.settings)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChangeRecord:
        return cls(**{**data, "settings": tuple(data.get("settings", ()))})

    def as_changes(self) -> list[Change]:
        """One guard entry per settings touched."""
        when = datetime.fromisoformat(self.when)
        return [Change(when, self.gateway_id, s, self.thumbprint or "") for s in self.settings]


def new_change_id(now: datetime) -> str:
    return f"chg-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def find_change(log: ChangeLog, gateway_id: str, change_id: str) -> ChangeRecord:
    """The change `change_id` made to this gateway; InputError when there is none."""
    for change in log.for_gateway(gateway_id):
        if change.id == change_id:
            return change
    raise InputError(f"no change {change_id!r} recorded for this gateway")


class ChangeLog(Protocol):
    def record(self, change: ChangeRecord) -> None: ...

    def for_gateway(self, gateway_id: str) -> list[ChangeRecord]: ...

    def get(self, change_id: str) -> ChangeRecord | None: ...

    def all(self) -> list[ChangeRecord]: ...

    def describe(self) -> str: ...


class LocalChangeLog:
    """Append-only JSON lines in `<state_dir>/changes.jsonl`, guarded by a file lock."""

    def __init__(self, state_dir: str | Path) -> None:
        self._path = Path(state_dir) / "changes.jsonl"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with (self._path.parent / ".changes.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def record(self, change: ChangeRecord) -> None:
        with self._locked(), self._path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(change.to_dict(), sort_keys=True) + "\n")

    def _all(self) -> list[ChangeRecord]:
        if not self._path.exists():
            return []
        with self._locked():
            try:
                lines = self._path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"change log {self._path} cannot be read: {exc}") from None
        records = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                records.append(_parse_line(self._path, number, line))
        return records

    def for_gateway(self, gateway_id: str) -> list[ChangeRecord]:
        return [c for c in self._all() if same_id(c.gateway_id, gateway_id)]

    def get(self, change_id: str) -> ChangeRecord | None:
        return next((c for c in self._all() if c.id == change_id), None)

    def all(self) -> list[ChangeRecord]:
        return self._all()

    def describe(self) -> str:
        return f"the change log {self._path}"


def _parse_line(path: Path, number: int, line: str) -> ChangeRecord:
    """One JSON line of the change log; a damaged one is bad input naming the file and line."""
    try:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        record = ChangeRecord.from_dict(data)
        if not isinstance(record.plan, dict) or not isinstance(record.extra, dict):
            raise ValueError("plan and extra must be objects")
    except (ValueError, TypeError, RecursionError) as exc:
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise InputError(
            f"change log {path} line {number} is not a change record ({reason}); "
            "move the file aside or repair that line"
        ) from None
    return record


# ---- reading the log: each change with what became of it -------------------------------------

_RESULTS_UNDONE = frozenset({"rolled_back", "nothing_left"})


def rollback_of(records: list[ChangeRecord], change_id: str) -> ChangeRecord | None:
    """The rollback that undid change `change_id`, if any (a failed attempt does not count).
    Rollback records written before `result` was kept count as done."""
    for record in reversed(records):
        if (
            record.kind == "rollback"
            and record.extra.get("rolls_back") == change_id
            and record.extra.get("result", "rolled_back") in _RESULTS_UNDONE
        ):
            return record
    return None


def change_detail(record: ChangeRecord, records: list[ChangeRecord]) -> dict[str, Any]:
    """`change_view` plus the plan and, for an applied change, how to undo it (summary and `az`
    commands): `changes show` and GET /api/changes/{id}."""
    from shared.remediation.plan import plan_from_dict
    from shared.remediation.render import az_rollback_commands, rollback_summary

    view = change_view(record, records)
    view["plan"] = record.plan
    if record.kind == "apply":
        plan = plan_from_dict(record.plan)
        view["undo"] = {
            "summary": rollback_summary(plan, record.id),
            "az": az_rollback_commands(plan, record.gateway_id),
        }
    return view


def change_view(record: ChangeRecord, records: list[ChangeRecord]) -> dict[str, Any]:
    """The JSON form of a change for `changes list|show` and /api/changes (docs/operations.md)."""
    plan = record.plan or {}
    cert = plan.get("certificate") or {}
    view: dict[str, Any] = {
        "id": record.id,
        "gateway": record.gateway_id,
        "kind": record.kind,
        "when": record.when,
        "by": record.by,
        "job": record.extra.get("job"),
        "action": plan.get("action"),
        "settings": list(record.settings)
        or [c.get("settings_name") for c in plan.get("settings_changes", [])],
        "thumbprint": record.thumbprint,
        "certificate": cert.get("name") or plan.get("certificate_ref_name"),
        "etag_before": record.etag_before,
        "etag_after": record.etag_after,
    }
    if record.kind == "rollback":
        view["status"] = record.extra.get("result", "rolled_back")
        view["rolls_back"] = record.extra.get("rolls_back")
        return view
    undone = rollback_of(records, record.id)
    view["status"] = "rolled_back" if undone else "applied"
    view["rolled_back"] = (
        None
        if undone is None
        else {
            "change": undone.id,
            "by": undone.by,
            "when": undone.when,
            "result": undone.extra.get("result", "rolled_back"),
        }
    )
    return view


def history(records: list[ChangeRecord]) -> list[dict[str, Any]]:
    """Every change and rollback as views, newest first."""
    ordered = sorted(records, key=lambda r: (r.when, r.id))
    return [change_view(r, ordered) for r in reversed(ordered)]
