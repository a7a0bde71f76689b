"""The decision ledger: what happened to a gateway, by whom (seen, changed, verified, rollback…),
one partition per gateway, oldest first."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.common.ids import GatewayId
from shared.service.storage.base import StorageBase, gateway_hash, gateway_key, guard


@dataclass(frozen=True)
class Decision:
    job_id: str
    gateway_id: str
    what: str  # seen, decided, changed, verified, proposed, approved, …
    by: str
    at: datetime
    evidence_ref: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class LedgerMixin(StorageBase):
    """The decision rows of the ledger table."""

    def record_decision(
        self,
        job_id: str,
        gateway: GatewayId | str,
        what: str,
        by: str,
        evidence_ref: str | None = None,
        *,
        details: Mapping[str, Any] | None = None,
        change_id: str = "",
    ) -> Decision:
        """Append a ledger row: what happened to a gateway (seen, decided, changed, verified, …).
        For cooldown/daily-cap guards record changes as what="changed" with the settings name and
        thumbprint in `details`; `change_id` makes a change row findable by its id alone."""
        now = datetime.now(UTC)
        entity = {
            "PartitionKey": f"decision-{gateway_hash(gateway)}",
            "RowKey": f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}",
            "job_id": job_id,
            "gateway_id": gateway_key(gateway),
            "what": what,
            "by": by,
            "at": now,
            "evidence_ref": evidence_ref or "",
            "details": json.dumps(dict(details or {}), default=str),
        }
        if change_id:
            entity["change_id"] = change_id
        with guard("recording a decision"):
            self._table.create_entity(entity)
        return _decision(entity)

    def list_decisions(
        self, gateway: GatewayId | str, *, what: str | None = None, since: datetime | None = None
    ) -> list[Decision]:
        """A gateway's ledger rows, oldest first."""
        query = "PartitionKey eq @pk"
        params: dict[str, Any] = {"pk": f"decision-{gateway_hash(gateway)}"}
        if since is not None:
            query += " and RowKey ge @since"
            params["since"] = f"{since.astimezone(UTC):%Y%m%dT%H%M%S%fZ}"
        if what is not None:
            query += " and what eq @what"
            params["what"] = what
        return self._decisions(query, params, "listing decisions")

    def _decisions(self, query: str, params: dict[str, Any], what: str) -> list[Decision]:
        """The ledger rows a filter selects, oldest first."""
        with guard(what):
            rows = list(self._table.query_entities(query, parameters=params))
        return sorted((_decision(r) for r in rows), key=lambda d: d.at)

    def list_changes(
        self, gateway: GatewayId | str, *, since: datetime | None = None
    ) -> list[Decision]:
        """The gateway changes the bot made (for the cooldown and daily cap)."""
        return self.list_decisions(gateway, what="changed", since=since)

    def change_rows(
        self, gateway: GatewayId | str | None = None, *, change_id: str | None = None
    ) -> list[Decision]:
        """Change and rollback rows ("changed", "rollback"), oldest first: one gateway's, the
        rows of one change id (across gateways), or every gateway's."""
        query = "(what eq 'changed' or what eq 'rollback')"
        params: dict[str, Any] = {}
        if gateway is not None:
            query += " and PartitionKey eq @pk"
            params["pk"] = f"decision-{gateway_hash(gateway)}"
        if change_id is not None:
            query += " and change_id eq @cid"
            params["cid"] = change_id
        return self._decisions(query, params, "listing changes")


def _decision(entity: Mapping[str, Any]) -> Decision:
    return Decision(
        job_id=entity.get("job_id", ""),
        gateway_id=entity.get("gateway_id", ""),
        what=entity.get("what", ""),
        by=entity.get("by", ""),
        at=entity["at"],
        evidence_ref=entity.get("evidence_ref") or None,
        details=json.loads(entity.get("details") or "{}"),
    )
