"""The sweep's pure parts: fleet specs, batching of check messages, check-message validation,
metrics endpoints and the batch answer's resource ids (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.fleet import FleetError, FleetSpec, build_fleet
from shared.cloud.monitor import metrics_audience, metrics_endpoint, resource_of
from shared.common.errors import BotError
from shared.common.ids import parse_gateway_id
from shared.service.sweep import Target, check_messages, parse_check

GATEWAYS = "Microsoft.Network/applicationGateways"
RECORDED = Path(__file__).resolve().parent / "data" / "recorded" / "monitor_metrics_batch.json"


def _target(i: int, sub: str = "s1", region: str = "westeurope") -> Target:
    gid = f"/subscriptions/{sub}/resourceGroups/rg/providers/{GATEWAYS}/g{i}"
    return Target(parse_gateway_id(gid), region)


def test_batches_hold_at_most_50_gateways_of_one_subscription_and_region() -> None:
    targets = [_target(i) for i in range(120)] + [_target(i, region="East US") for i in range(3)]
    targets += [_target(i, sub="s2") for i in range(2)] + [_target(999, region="")]
    messages = list(check_messages(targets, "sw"))
    batches = [m for m in messages if m["kind"] == "batch"]
    assert sorted(len(m["gateways"]) for m in batches) == [2, 3, 20, 50, 50]
    assert {m["region"] for m in batches} == {"westeurope", "eastus"}
    for m in batches:
        assert len({g.split("/")[2] for g in m["gateways"]}) == 1
    [probe] = [m for m in messages if m["kind"] == "probe"]
    assert probe["reason"] == "no-region" and probe["gateway"].endswith("/g999")
    assert sum(len(m["gateways"]) for m in batches) + 1 == len(targets)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps({"kind": "batch", "region": "x", "gateways": []}),
        json.dumps({"sweep": "s", "kind": "batch", "region": "x", "gateways": []}),
        json.dumps({"sweep": "s", "kind": "batch", "region": "x", "gateways": ["/x"] * 51}),
        json.dumps({"sweep": "s", "kind": "probe"}),
        json.dumps({"sweep": "s", "kind": "other"}),
        json.dumps({"sweep": "s", "kind": "probe", "gateway": "/subscriptions/x"}),
    ],
)
def test_a_bad_check_message_is_refused_with_a_clear_error(body: str) -> None:
    with pytest.raises(BotError):
        parse_check(body)


def test_a_check_message_round_trips() -> None:
    [message] = check_messages([_target(1)], "sw")
    parsed = parse_check(json.dumps(message))
    assert parsed["gateways"] == [_target(1).gid] and parsed["sweep"] == "sw"


def test_metrics_endpoint_and_audience_follow_the_cloud() -> None:
    template = "https://{region}.metrics.monitor.azure.com"
    assert (
        metrics_endpoint(template, "West Europe") == "https://westeurope.metrics.monitor.azure.com"
    )
    assert metrics_audience("https://eastus.metrics.monitor.azure.com") == (
        "https://metrics.monitor.azure.com"
    )
    assert metrics_audience("https://chinanorth.metrics.monitor.azure.cn") == (
        "https://metrics.monitor.azure.cn"
    )
    assert metrics_audience("https://127.0.0.1:4443/westeurope") == (
        "https://metrics.monitor.azure.com"
    )


def test_the_metric_id_names_its_resource() -> None:
    gid = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationGateways/g"
    assert resource_of(f"{gid}/providers/Microsoft.Insights/metrics/UnhealthyHostCount") == (
        gid.lower()
    )
    # The recording's ids are sanitized ("Sanitized"): no resource, so no data for anyone.
    body = json.loads(RECORDED.read_text())["interactions"][0]["response"]["body"]
    assert resource_of(body["values"][0]["value"][0]["id"]) == ""


def test_fleet_spec_and_generator() -> None:
    spec = FleetSpec.parse("100x4@0.05,nodata=0.02,regions=eastus+westus,page=10,seed=3")
    assert (spec.gateways, spec.subscriptions, spec.unhealthy, spec.no_data) == (100, 4, 0.05, 0.02)
    fleet = build_fleet(spec)
    assert len(fleet.gateways) == 100 and len(fleet.subscriptions) == 4
    assert len(fleet.unhealthy_ids) == 5 and len(fleet.no_data_ids) == 2
    assert not set(fleet.unhealthy_ids) & set(fleet.no_data_ids)
    assert {g["location"] for g in fleet.gateways} == {"eastus", "westus"}
    assert build_fleet(spec).unhealthy_ids == fleet.unhealthy_ids  # deterministic
    for bad in ("2000", "10x20@0.1", "10x2@1.5", "10x2@0.1,nodata=0.95", "10x2@0.1,color=red"):
        with pytest.raises(FleetError):
            FleetSpec.parse(bad)


def test_the_expiry_watch_is_spread_then_due_once_a_day() -> None:
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from shared.service.sweep import WATCH_EVERY, next_watch

    now = datetime(2026, 12, 1, tzinfo=UTC)
    gid = _target(1).gid
    due_now, first = next_watch(gid, None, now)
    assert not due_now and now <= first < now + WATCH_EVERY
    assert next_watch(gid, None, now)[1] == first  # fixed by the id
    assert next_watch(gid, first, first - timedelta(seconds=1)) == (False, first)
    assert next_watch(gid, first, first + timedelta(hours=50)) == (True, first + 3 * WATCH_EVERY)

    targets = [
        replace(_target(1), watch=True),
        _target(2),
        replace(_target(3, region=""), watch=True),
    ]
    batch, probe = sorted(check_messages(targets, "sw"), key=lambda m: m["kind"])
    assert batch["watch"] == [targets[0].gid.id] and probe["watch"] is True
    assert parse_check(json.dumps(batch))["watch"] == {targets[0].gid.key}
    assert "watch" not in next(check_messages([_target(4)], "sw"))
    with pytest.raises(BotError, match="watch"):
        parse_check(json.dumps({**batch, "watch": ["/subscriptions/other"]}))
    with pytest.raises(BotError, match="watch"):
        parse_check(json.dumps({**probe, "watch": "yes"}))
