"""The function app's ChangeLog: change records kept as "changed" decisions in the ledger table.

Rollbacks are "rollback" rows whose record names the change (`extra.rolls_back`). Every row also
carries `change_id`, so a change is found by its id without knowing its gateway.
"""

from __future__ import annotations

from shared.remediation.changelog import ChangeRecord
from shared.service.storage import Decision, Storage

_KINDS = {"changed", "rollback"}


class TableChangeLog:
    """shared.remediation.changelog.ChangeLog over the ledger table (shared.service.storage)."""

    def __init__(self, storage: Storage, *, job_id: str = "") -> None:
        self.storage = storage
        self.job_id = job_id

    def record(self, change: ChangeRecord) -> None:
        what = "changed" if change.kind == "apply" else change.kind
        self.storage.record_decision(
            self.job_id or change.id,
            change.gateway_id,
            what,
            change.by,
            details=change.to_dict(),
            change_id=change.id,
        )

    def for_gateway(self, gateway_id: str) -> list[ChangeRecord]:
        return _records(self.storage.change_rows(gateway_id))

    def get(self, change_id: str) -> ChangeRecord | None:
        found = _records(self.storage.change_rows(change_id=change_id))
        return found[0] if found else None

    def all(self) -> list[ChangeRecord]:
        return _records(self.storage.change_rows())

    def describe(self) -> str:
        return f"the function app's ledger (table {self.storage.names.ledger_table})"


def _records(rows: list[Decision]) -> list[ChangeRecord]:
    """Change records from ledger rows, with the job that made each (`extra.job`)."""
    records = []
    for row in rows:
        if row.what not in _KINDS or not row.details.get("id"):
            continue
        record = ChangeRecord.from_dict(dict(row.details))
        if row.job_id and row.job_id != record.id and "job" not in record.extra:
            record.extra["job"] = row.job_id
        records.append(record)
    return records
