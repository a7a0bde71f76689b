"""What the expiry watch already notified, so a certificate entering the window is announced once,
not on every run. The function app keeps it in the ledger table (shared.service.expiry_notices);
the CLI without app storage keeps it here, in `<STATE_DIR>/expiry-notices.json`.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from shared.core.expiry import ExpiringCertificate, notice_key

# (gateway id, items in the window) -> the items not notified before, now remembered as notified.
ExpiryNotices = Callable[[str, Sequence[ExpiringCertificate]], Sequence[ExpiringCertificate]]


class LocalExpiryNotices:
    """Notified keys in one JSON file, guarded by a file lock."""

    def __init__(self, state_dir: str | Path) -> None:
        self._path = Path(state_dir) / "expiry-notices.json"

    def __call__(
        self, gateway_id: str, items: Sequence[ExpiringCertificate]
    ) -> list[ExpiringCertificate]:
        if not items:
            return []
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with (self._path.parent / ".expiry-notices.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                seen = self._read()
                fresh = [i for i in items if notice_key(gateway_id, i) not in seen]
                if fresh:
                    seen.update(notice_key(gateway_id, i) for i in fresh)
                    tmp = self._path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(sorted(seen)), encoding="utf-8")
                    tmp.replace(self._path)
                return fresh
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read(self) -> set[str]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return set()
        return {str(k) for k in data} if isinstance(data, list) else set()


def expiry_event(gateway_id: str, item: ExpiringCertificate) -> dict[str, object]:
    """The notification of one certificate entering the warning window."""
    left = (
        f"{item.days_left} days left"
        if item.days_left >= 0
        else f"expired {-item.days_left} days ago"
    )
    return {
        "event": "expiring",
        "gateway": gateway_id,
        "action": "expiry_watch",
        "thumbprint": item.sha1,
        "reason": f"{item.where.value} {item.subject} ends {item.not_after} ({left})",
        "where": item.where.value,
        "subject": item.subject,
        "not_after": item.not_after,
        "days_left": item.days_left,
    }


__all__ = ["ExpiryNotices", "LocalExpiryNotices", "expiry_event"]
