"""Holds as data: what a hold covers, when it is active, expiry parsing and the local store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.common.errors import InputError
from shared.remediation.holds import (
    Hold,
    HoldNotFound,
    LocalHoldStore,
    active_hold,
    hold_for_rollback,
    parse_expiry,
)

GW = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationGateways/agw"
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
ADD = "add_authentication_certificate"


def hold(**fields: object) -> Hold:
    base: dict[str, object] = {
        "id": "hold-1",
        "gateway_id": GW,
        "reason": "r",
        "by": "alice",
        "created_at": NOW.isoformat(),
    }
    return Hold(**{**base, **fields})  # type: ignore[arg-type]


def test_a_rollback_hold_covers_its_settings_and_kind_only() -> None:
    h = hold_for_rollback(
        gateway_id=GW,
        settings=["ase-https"],
        kind=ADD,
        change="chg-1",
        rollback="chg-2",
        by="alice",
        now=NOW,
    )
    assert h.covers(GW.upper(), ["ASE-HTTPS"], ADD)  # ids and names compare case-insensitively
    assert not h.covers(GW, ["other"], ADD)
    assert not h.covers(GW, ["ase-https"], "set_backend_host_name")
    assert not h.covers(GW + "2", ["ase-https"], ADD)
    assert "holds release" in h.describe() and "rolled back chg-1" in h.describe()


def test_a_gateway_hold_covers_everything_until_released_or_expired() -> None:
    whole = hold(expires_at=(NOW + timedelta(hours=1)).isoformat())
    assert whole.covers(GW, ["any"], "set_backend_host_name")
    assert active_hold([whole], GW, ["x"], ADD, NOW) == whole
    assert whole.status(NOW + timedelta(hours=2)) == "expired"
    assert active_hold([whole], GW, ["x"], ADD, NOW + timedelta(hours=2)) is None
    done = hold(released_at=NOW.isoformat(), released_by="bob")
    assert done.status(NOW) == "released" and active_hold([done], GW, ["x"], ADD, NOW) is None


def test_expiry_takes_a_duration_or_a_time_in_the_future() -> None:
    assert parse_expiry("12h", NOW) == (NOW + timedelta(hours=12)).isoformat()
    assert parse_expiry("7d", NOW) == (NOW + timedelta(days=7)).isoformat()
    assert parse_expiry("2026-02-01T00:00:00", NOW).startswith("2026-02-01T00:00:00")
    for bad in ("0h", "yesterday", "2020-01-01", "9" * 5000 + "d"):
        with pytest.raises(InputError):
            parse_expiry(bad, NOW)


def test_local_store_adds_lists_and_releases_once(tmp_path: Path) -> None:
    store = LocalHoldStore(tmp_path)
    store.add(hold())
    store.add(hold(id="hold-2", gateway_id=GW + "2"))
    assert [h.id for h in store.list()] == ["hold-1", "hold-2"]
    assert [h.id for h in store.list(GW.upper())] == ["hold-1"]
    released = store.release("hold-1", "bob", NOW)
    assert (released.released_by, released.status(NOW)) == ("bob", "released")
    with pytest.raises(InputError, match="already released"):
        store.release("hold-1", "bob", NOW)
    with pytest.raises(HoldNotFound):
        store.get("hold-9")
    (tmp_path / "holds.json").write_text("[1")
    with pytest.raises(InputError, match=str(tmp_path / "holds.json")):
        store.list()
