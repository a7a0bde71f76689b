"""The expiry watch's memory in the ledger table: one row per (gateway, place, certificate)
notified, `expiry-notice/<sha256(key)>`. Inserting the row is the claim, so two workers racing on
one gateway notify once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from shared.core.expiry import ExpiringCertificate, notice_key
from shared.service.storage import Storage, guard

PARTITION = "expiry-notice"


class TableExpiryNotices:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def __call__(
        self, gateway_id: str, items: Sequence[ExpiringCertificate]
    ) -> list[ExpiringCertificate]:
        from azure.core.exceptions import ResourceExistsError

        if not items:
            return []
        self.storage.ensure()
        table = self.storage.table_service.get_table_client(self.storage.names.ledger_table)
        fresh = []
        with guard("remembering expiry notices"):
            for item in items:
                key = notice_key(gateway_id, item)
                entity = {
                    "PartitionKey": PARTITION,
                    "RowKey": hashlib.sha256(key.encode()).hexdigest(),
                    "key": key,
                    "not_after": item.not_after,
                    "notified_at": datetime.now(UTC),
                }
                try:
                    table.create_entity(entity)
                except ResourceExistsError:
                    continue
                fresh.append(item)
        return fresh


__all__ = ["PARTITION", "TableExpiryNotices"]
