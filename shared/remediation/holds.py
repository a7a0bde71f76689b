"""Holds: an operator's "leave this alone". A rollback records one on what it undid (the gateway,
its HTTP settings and the kind of change); an operator can also hold a whole gateway by hand.

While a hold is active, a fix still diagnoses and reports, but never applies nor proposes a change
the hold covers: its outcome is `held`. A hold ends when released (by an approver) or at its
optional expiry.

`HoldStore` is the interface; `LocalHoldStore` keeps one JSON file under the CLI's state
directory, the function app keeps holds in its ledger table (shared.service.holds).
"""

from __future__ import annotations

import fcntl
import json
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from shared.common.errors import InputError
from shared.common.ids import same_id


class HoldNotFound(InputError):
    """No hold with that id."""


@dataclass(frozen=True)
class Hold:
    id: str
    gateway_id: str
    reason: str
    by: str
    created_at: str  # ISO 8601 UTC
    # Empty: every HTTP settings of the gateway; otherwise the settings names held.
    settings: tuple[str, ...] = ()
    # The change kind held (a plan action, e.g. "add_authentication_certificate"); "" for any.
    kind: str = ""
    expires_at: str | None = None
    change: str | None = None  # the change the rollback undid
    rollback: str | None = None  # the rollback record that set the hold
    released_by: str | None = None
    released_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["settings"] = list(self.settings)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hold:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        return cls(**{**values, "settings": tuple(values.get("settings") or ())})

    def status(self, now: datetime) -> str:
        """active | released | expired."""
        if self.released_at:
            return "released"
        if self.expires_at and datetime.fromisoformat(self.expires_at) <= now:
            return "expired"
        return "active"

    def covers(self, gateway_id: str, settings: Sequence[str], kind: str) -> bool:
        """This hold applies to a change of `kind` on these HTTP settings of this gateway."""
        if not same_id(self.gateway_id, gateway_id):
            return False
        if self.kind and kind and self.kind != kind:
            return False
        if not self.settings:
            return True
        held = {s.lower() for s in self.settings}
        return any(s.lower() in held for s in settings)

    def describe(self) -> str:
        """One line: what is held and how to end it."""
        scope = f"HTTP settings {', '.join(self.settings)}" if self.settings else "the gateway"
        what = f"{self.kind} on {scope}" if self.kind else scope
        why = f" ({self.reason})" if self.reason else ""
        until = f" until {self.expires_at}" if self.expires_at else ""
        return (
            f"held by {self.id}: {what}, set by {self.by}{why}{until}; "
            f"release it with `holds release {self.id}`"
        )

    def view(self, now: datetime) -> dict[str, Any]:
        """The JSON form shown by the CLI and the API: the record and its status now."""
        return {**self.to_dict(), "status": self.status(now)}


def new_hold_id(now: datetime) -> str:
    return f"hold-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def parse_expiry(text: str, now: datetime) -> str:
    """`--expires`: an ISO 8601 time, or a duration from now (30m, 12h, 7d); InputError else."""
    value = text.strip()
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if value[-1:].lower() in units and value[:-1].isdigit() and len(value) <= 6:
        amount = int(value[:-1])
        if amount <= 0:
            raise InputError(f"--expires must be in the future, got {text!r}")
        return (now + timedelta(**{units[value[-1].lower()]: amount})).isoformat()
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"--expires takes an ISO 8601 time or a duration like 12h or 7d, got {text[:40]!r}"
        ) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= now:
        raise InputError(f"--expires must be in the future, got {text[:40]!r}")
    return when.astimezone(UTC).isoformat()


def active_hold(
    holds: Sequence[Hold], gateway_id: str, settings: Sequence[str], kind: str, now: datetime
) -> Hold | None:
    """The oldest active hold covering this change, or None."""
    covering = [
        h for h in holds if h.status(now) == "active" and h.covers(gateway_id, settings, kind)
    ]
    return min(covering, key=lambda h: h.created_at, default=None)


def hold_for_rollback(
    *,
    gateway_id: str,
    settings: Sequence[str],
    kind: str,
    change: str,
    rollback: str,
    by: str,
    now: datetime,
) -> Hold:
    """The hold a rollback records: the bot must not make the change it undid again."""
    return Hold(
        id=new_hold_id(now),
        gateway_id=gateway_id,
        reason=f"rolled back {change}",
        by=by,
        created_at=now.isoformat(),
        settings=tuple(settings),
        kind=kind,
        change=change,
        rollback=rollback,
    )


def released(hold: Hold, by: str, now: datetime) -> Hold:
    """The hold, released by `by` now; InputError when it is no longer active."""
    state = hold.status(now)
    if state != "active":
        raise InputError(f"hold {hold.id} is already {state}")
    return replace(hold, released_by=by, released_at=now.isoformat())


class HoldStore(Protocol):
    def add(self, hold: Hold) -> None: ...

    def get(self, hold_id: str) -> Hold:
        """The hold; HoldNotFound when unknown."""
        ...

    def list(self, gateway_id: str | None = None) -> list[Hold]:
        """Every hold (of one gateway), oldest first, released and expired included."""
        ...

    def release(self, hold_id: str, by: str, now: datetime) -> Hold:
        """Mark the hold released (at most once: InputError when no longer active)."""
        ...

    def describe(self) -> str: ...


class LocalHoldStore:
    """Holds in `<state_dir>/holds.json` (one JSON object per hold id), under a file lock."""

    def __init__(self, state_dir: str | Path) -> None:
        self._path = Path(state_dir) / "holds.json"

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Hold]]:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with (self._path.parent / ".holds.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield self._read()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Hold]:
        if not self._path.exists():
            return {}
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return {k: Hold.from_dict(v) for k, v in data.items()}
        except (OSError, ValueError, TypeError, AttributeError, RecursionError) as exc:
            reason = " ".join(str(exc).split())[:120] or type(exc).__name__
            raise InputError(
                f"hold file {self._path} cannot be read ({reason}); move it aside or repair it"
            ) from None

    def _write(self, holds: dict[str, Hold]) -> None:
        tmp = self._path.with_suffix(".json.tmp")
        tmp.write_text(
            json.dumps({k: h.to_dict() for k, h in holds.items()}, indent=1, sort_keys=True),
            encoding="utf-8",
        )
        tmp.replace(self._path)

    def add(self, hold: Hold) -> None:
        with self._locked() as holds:
            holds[hold.id] = hold
            self._write(holds)

    def get(self, hold_id: str) -> Hold:
        with self._locked() as holds:
            if hold_id not in holds:
                raise HoldNotFound(f"no hold {hold_id[:80]!r} in {self.describe()}")
            return holds[hold_id]

    def list(self, gateway_id: str | None = None) -> list[Hold]:
        with self._locked() as holds:
            found = [
                h for h in holds.values() if not gateway_id or same_id(h.gateway_id, gateway_id)
            ]
        return sorted(found, key=lambda h: h.created_at)

    def release(self, hold_id: str, by: str, now: datetime) -> Hold:
        with self._locked() as holds:
            if hold_id not in holds:
                raise HoldNotFound(f"no hold {hold_id[:80]!r} in {self.describe()}")
            done = holds[hold_id] = released(holds[hold_id], by, now)
            self._write(holds)
            return done

    def describe(self) -> str:
        return f"the hold file {self._path}"
