"""Holds in the ledger table: `hold/<hold id>`, the record as JSON plus `gateway_id` to filter on
(shared.remediation.holds says what a hold means). Releasing is ETag-guarded: released once."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from shared.service.storage.base import (
    _CAS_ATTEMPTS,
    StorageBase,
    StorageUnavailable,
    gateway_key,
    guard,
)

HOLD_PARTITION = "hold"


class HoldsMixin(StorageBase):
    """The hold rows of the ledger table, as JSON objects (shared.remediation.holds.Hold)."""

    def put_hold(self, hold_id: str, gateway_id: str, record: dict[str, Any]) -> None:
        entity = {
            "PartitionKey": HOLD_PARTITION,
            "RowKey": hold_id,
            "gateway_id": gateway_key(gateway_id),
            "record": json.dumps(record, sort_keys=True),
        }
        with guard("recording a hold"):
            self._table.create_entity(entity)

    def get_hold(self, hold_id: str) -> dict[str, Any] | None:
        with guard("reading a hold"):
            entity = self._get(HOLD_PARTITION, hold_id)
        return None if entity is None else dict(json.loads(entity["record"]))

    def list_holds(self, gateway_id: str | None = None) -> list[dict[str, Any]]:
        query = "PartitionKey eq @pk"
        params: dict[str, Any] = {"pk": HOLD_PARTITION}
        if gateway_id:
            query += " and gateway_id eq @gw"
            params["gw"] = gateway_key(gateway_id)
        with guard("listing holds"):
            rows = list(self._table.query_entities(query, parameters=params))
        return [dict(json.loads(r["record"])) for r in rows]

    def update_hold(
        self, hold_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any] | None:
        """Apply `change` to the stored record (it may raise to refuse), ETag-guarded; None when
        there is no such hold."""
        with guard("updating a hold"):
            for _ in range(_CAS_ATTEMPTS):
                entity = self._get(HOLD_PARTITION, hold_id)
                if entity is None:
                    return None
                record = change(dict(json.loads(entity["record"])))
                patch = {
                    "PartitionKey": HOLD_PARTITION,
                    "RowKey": hold_id,
                    "record": json.dumps(record, sort_keys=True),
                }
                if not self._merge_if_unchanged(patch, entity):
                    continue
                return record
        raise StorageUnavailable(f"could not update hold {hold_id}: too much contention")
