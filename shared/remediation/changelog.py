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
            lines = self._path.read_text(encoding="utf-8").splitlines()
        return [ChangeRecord.from_dict(json.loads(line)) for line in lines if line.strip()]

    def for_gateway(self, gateway_id: str) -> list[ChangeRecord]:
        return [c for c in self._all() if same_id(c.gateway_id, gateway_id)]
