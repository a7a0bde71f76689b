"""The function app's ChangeLog: change records kept as "changed" decisions in the ledger table."""

from __future__ import annotations

from shared.remediation.changelog import ChangeRecord
from shared.service.storage import Storage


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
        )

    def for_gateway(self, gateway_id: str) -> list[ChangeRecord]:
        rows = self.storage.list_decisions(gateway_id)
        return [
            ChangeRecord.from_dict(d.details)
            for d in rows
            if d.what in {"changed", "rollback"} and d.details.get("id")
        ]
