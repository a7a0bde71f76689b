"""Alerts in the ledger table: one row per (alertId, monitorCondition), linked to its job."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.common.ids import GatewayId
from shared.service.alerts import AlertEvent
from shared.service.storage.base import StorageBase, guard

# An alert's stored target list keeps what fits in one table property (64 KiB); the rest is
# counted (`targets`), so an alert naming hundreds of gateways is still recorded and acted on.
_MAX_ALERT_TARGETS_JSON = 30_000


class AlertsMixin(StorageBase):
    """The alert rows of the ledger table."""

    def record_alert(
        self,
        event: AlertEvent,
        job_id: str | None = None,
        *,
        in_scope: Sequence[GatewayId] | None = None,
    ) -> bool:
        """Record an alert; False when this (alertId, monitorCondition) was already recorded.
        One conditional insert decides new or duplicate.

        Suggested flow: record → if new (or recorded without a job) create_or_join_job →
        attach_alert_job → enqueue when created. Resolved alerts are recorded and start nothing.
        The row keeps the target list that fits (in-scope gateways first) and counts the rest:
        `targets` (gateways named) and, given `in_scope`, `out_of_scope`.
        """
        first = list(in_scope or ())
        keys = {g.key for g in first}
        ordered = first + [g for g in event.gateway_ids if g.key not in keys]
        entity = {
            "PartitionKey": "alert",
            "RowKey": _alert_row(event),
            "alert_id": event.alert_id,
            "monitor_condition": event.monitor_condition,
            "gateways": _fitting_ids(ordered, _MAX_ALERT_TARGETS_JSON),
            "targets": len(event.gateway_ids),
            "hint": json.dumps(event.hint.to_dict() if event.hint else None),
            "rule": event.rule or "",
            "severity": event.severity or "",
            "received_at": datetime.now(UTC),
            "job_id": job_id or "",
        }
        if in_scope is not None:
            entity["out_of_scope"] = len(event.gateway_ids) - len(first)
        if event.fired_at:
            entity["fired_at"] = event.fired_at
        with guard("recording an alert"):
            try:
                self._table.create_entity(entity)
            except ResourceExistsError:
                return False
        return True

    def alert_job(self, event: AlertEvent) -> str | None:
        """The job recorded for this alert (None when none yet or the alert is unknown)."""
        with guard("reading an alert"):
            try:
                entity = self._table.get_entity("alert", _alert_row(event))
            except ResourceNotFoundError:
                return None
        return entity.get("job_id") or None

    def attach_alert_job(self, event: AlertEvent, job_id: str) -> None:
        with guard("linking an alert to its job"):
            self._table.upsert_entity(
                {"PartitionKey": "alert", "RowKey": _alert_row(event), "job_id": job_id},
                mode=UpdateMode.MERGE,
            )


def _fitting_ids(gateways: Sequence[GatewayId], limit: int) -> str:
    """A JSON list of as many ids as fit in `limit` characters, in order."""
    kept: list[str] = []
    size = 2
    for gid in gateways:
        size += len(json.dumps(gid.id)) + 2
        if size > limit:
            break
        kept.append(gid.id)
    return json.dumps(kept)


def _alert_row(event: AlertEvent) -> str:
    alert_id, condition = event.dedup_key
    return hashlib.sha256(f"{alert_id}\n{condition}".encode()).hexdigest()
