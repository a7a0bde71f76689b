"""Holds in the function app: the table-backed store the worker and the CLI share, the HTTP
handlers (GET /api/holds, POST /api/holds/{id}/release), and the lines notifications and the review
page show (shared.remediation.holds says what a hold means)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared.common.errors import InputError
from shared.common.identity import approver_ids
from shared.common.ids import parse_gateway_id
from shared.remediation.holds import Hold, HoldNotFound, active_hold, released
from shared.service.api import ApiResponse, _check_scope, _json_body, error, guarded
from shared.service.app import AppContext
from shared.service.storage import Storage


class TableHoldStore:
    """shared.remediation.holds.HoldStore over the ledger table."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def add(self, hold: Hold) -> None:
        self._storage.put_hold(hold.id, hold.gateway_id, hold.to_dict())

    def get(self, hold_id: str) -> Hold:
        record = self._storage.get_hold(hold_id) if _valid_id(hold_id) else None
        if record is None:
            raise HoldNotFound(f"no hold {hold_id[:80]!r} in {self.describe()}")
        return Hold.from_dict(record)

    def list(self, gateway_id: str | None = None) -> list[Hold]:
        holds = [Hold.from_dict(r) for r in self._storage.list_holds(gateway_id)]
        return sorted(holds, key=lambda h: h.created_at)

    def release(self, hold_id: str, by: str, now: datetime) -> Hold:
        def change(record: dict[str, Any]) -> dict[str, Any]:
            return released(Hold.from_dict(record), by, now).to_dict()

        record = self._storage.update_hold(hold_id, change) if _valid_id(hold_id) else None
        if record is None:
            raise HoldNotFound(f"no hold {hold_id[:80]!r} in {self.describe()}")
        return Hold.from_dict(record)

    def describe(self) -> str:
        return f"the function app's ledger (table {self._storage.names.ledger_table})"


def _valid_id(hold_id: str) -> bool:
    return bool(hold_id) and len(hold_id) <= 64 and all(c.isalnum() or c in "-_" for c in hold_id)


# ---- for the review page, notifications and `changes show` -----------------------------------


def holds_for(
    store: Any, gateway_id: str, *, now: datetime | None = None, active_only: bool = True
) -> list[dict[str, Any]]:
    """The holds on a gateway as JSON views (`status`: active | released | expired), oldest
    first; by default only the active ones. `store`: any HoldStore (TableHoldStore(storage))."""
    now = now or datetime.now(UTC)
    views = [h.view(now) for h in store.list(gateway_id)]
    return [v for v in views if v["status"] == "active"] if active_only else views


def hold_on(
    store: Any, gateway_id: str, settings: list[str], kind: str, *, now: datetime | None = None
) -> dict[str, Any] | None:
    """The active hold that would stop a change of `kind` on these HTTP settings (None when
    none): what the review page shows next to a proposal it would block."""
    now = now or datetime.now(UTC)
    hold = active_hold(store.list(gateway_id), gateway_id, settings, kind, now)
    return None if hold is None else hold.view(now)


def holds_of_change(
    store: Any, change_id: str, gateway_id: str, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The holds a change's rollback set, for `changes show` and GET /api/changes/{id}: those
    naming the change, or the rollback record, with their status now."""
    now = now or datetime.now(UTC)
    return [h.view(now) for h in store.list(gateway_id) if change_id in {h.change, h.rollback}]


# ---- HTTP ----------------------------------------------------------------------------------


def handle_list_holds(ctx: AppContext, gateway: str | None, status: str | None) -> ApiResponse:
    """GET /api/holds[?gateway=ID][&status=active|released|expired|all]: holds, oldest first
    (default: the active ones)."""

    def run() -> ApiResponse:
        wanted = (status or "active").strip().lower()
        if wanted not in {"active", "released", "expired", "all"}:
            raise InputError("status must be one of active, released, expired, all")
        gid = parse_gateway_id(gateway.strip()) if gateway and gateway.strip() else None
        views = holds_for(TableHoldStore(ctx.storage), gid.id if gid else "", active_only=False)
        if wanted != "all":
            views = [v for v in views if v["status"] == wanted]
        return ApiResponse(200, {"holds": views})

    return guarded(run)


def handle_release_hold(
    ctx: AppContext,
    hold_id: str,
    body: bytes,
    caller: str | None,
    *,
    headers: Mapping[str, str] | None = None,
) -> ApiResponse:
    """POST /api/holds/{id}/release: an authenticated approver (APPROVERS) releases a hold; the
    next alert or sweep may change what it covered again. Browsers are refused (no review page
    posts here), so a cross-site form cannot release a hold."""

    def run() -> ApiResponse:
        if not caller:
            return error(
                401,
                "Unauthenticated",
                "releasing a hold needs a caller signed in through App Service Authentication",
            )
        lowered = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        if "origin" in lowered or lowered.get("sec-fetch-site", "none") not in {"none", ""}:
            return error(403, "CrossSiteRequest", "release holds with the CLI or an API client")
        _json_body(body, required=False)
        if caller.strip().lower() not in approver_ids(ctx.settings["APPROVERS"]):
            return ApiResponse(
                403,
                {
                    "error": {
                        "code": "Forbidden",
                        "reason": "not_an_approver",
                        "message": f"{caller} is not in APPROVERS",
                    }
                },
            )
        store = TableHoldStore(ctx.storage)
        try:
            hold = store.get(hold_id)
        except HoldNotFound:
            return error(404, "NotFound", f"no hold {hold_id[:80]!r}")
        _check_scope(ctx, parse_gateway_id(hold.gateway_id))
        now = datetime.now(UTC)
        done = store.release(hold_id, caller, now)
        ctx.storage.record_decision(
            "", done.gateway_id, "hold-released", caller, details={"hold": done.id}
        )
        return ApiResponse(200, done.view(now))

    return guarded(run)
