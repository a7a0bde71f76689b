"""The sandbox's metrics:getBatch (sandbox/metrics.py) through the real MetricsClient: shaped like
the recorded answer, numbers from the fleet's health model, the service's batch limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.cloud.arm import ArmError
from shared.cloud.monitor import MetricsReader
from shared.common.settings import load_settings

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded" / "monitor_metrics_batch.json"
pytestmark = pytest.mark.sandbox


def _keys(value: Any) -> Any:
    """The key structure of a JSON value (first list item only)."""
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keys(value[0])] if value else []
    return None


def test_metrics_come_from_the_fleet_model_in_the_recorded_shape(sandbox_factory: Any) -> None:
    handle = sandbox_factory("healthy", fleet="40x2@0.1,nodata=0.1")
    fleet = handle.fleet
    reader = MetricsReader(load_settings())
    sub = fleet.subscriptions[0]
    ids = [g["id"] for g in fleet.gateways if sub in g["id"] and g["location"] == "westeurope"]
    peaks = reader.unhealthy_hosts("westeurope", ids)
    for gid in ids:
        if gid in fleet.no_data_ids:
            assert peaks[gid] is None
        else:
            assert peaks[gid] == (1 if gid in fleet.unhealthy_ids else 0)
    # The raw answer has every key the recorded one has.
    request = handle.arm._requests[-1]
    assert request["path"].endswith("/metrics:getBatch") and request["status"] == 200
    body = handle.metrics._value(ids[0], "westeurope", *_window(), 0)
    recorded = json.loads(RECORDED.read_text())["interactions"][0]["response"]["body"]
    theirs, ours = _keys(recorded["values"][0]), _keys(body)
    assert set(theirs) <= set(ours)
    assert set(theirs["value"][0]) <= set(ours["value"][0])


def _window() -> tuple[Any, Any, Any]:
    from datetime import UTC, datetime, timedelta

    end = datetime(2026, 1, 1, tzinfo=UTC)
    return end - timedelta(minutes=15), end, timedelta(minutes=1)


def test_the_batch_limits_are_the_services(sandbox_factory: Any) -> None:
    handle = sandbox_factory("healthy", fleet="120x1@0")
    fleet = handle.fleet
    reader = MetricsReader(load_settings())
    west = [g["id"] for g in fleet.gateways if g["location"] == "westeurope"]
    north = [g["id"] for g in fleet.gateways if g["location"] == "northeurope"]
    with pytest.raises(ValueError):
        reader.unhealthy_hosts("westeurope", west[:51])
    with pytest.raises(ArmError) as wrong_region:
        reader.unhealthy_hosts("westeurope", west[:2] + north[:1])
    assert wrong_region.value.status == 400
    assert set(reader.unhealthy_hosts("westeurope", west[:50]).values()) == {0}
