"""parse_alert: the common alert schema (docs/sources.md#alert-schema)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.common.errors import InputError
from shared.service.alerts import MAX_ALERT_BYTES, BackendHint, parse_alert

SUB = "11111111-2222-3333-4444-555555555555"
GATEWAY = (
    f"/subscriptions/{SUB}/resourcegroups/rg-prod-network"
    "/providers/microsoft.network/applicationgateways/agw-prod"
)

# The App Gateway metric alert of docs/sources.md#alert-schema.
EXAMPLE: dict[str, Any] = {
    "schemaId": "azureMonitorCommonAlertSchema",
    "data": {
        "essentials": {
            "alertId": f"/subscriptions/{SUB}/providers/Microsoft.AlertsManagement/alerts/"
            "6f1d2c3b-4a5e-4f60-8b7c-9d0e1f2a3b4c",
            "alertRule": "agw-prod-unhealthy-backends",
            "alertRuleID": f"/subscriptions/{SUB}/resourceGroups/rg-monitoring/providers/"
            "microsoft.insights/metricAlerts/agw-prod-unhealthy-backends",
            "severity": "Sev1",
            "signalType": "Metric",
            "monitorCondition": "Fired",
            "monitoringService": "Platform",
            "alertTargetIDs": [GATEWAY],
            "configurationItems": ["agw-prod"],
            "originAlertId": f"{SUB}_rg-monitoring_microsoft.insights_metricAlerts_"
            "agw-prod-unhealthy-backends_-1428731210",
            "firedDateTime": "2025-06-03T08:15:27.4512345Z",
            "description": "At least one backend behind agw-prod is failing health probes",
            "essentialsVersion": "1.0",
            "alertContextVersion": "1.0",
        },
        "alertContext": {
            "properties": {"runbook": "appgw-backend-recycle"},
            "conditionType": "SingleResourceMultipleMetricCriteria",
            "condition": {
                "windowSize": "PT5M",
                "allOf": [
                    {
                        "metricName": "UnhealthyHostCount",
                        "metricNamespace": "Microsoft.Network/applicationGateways",
                        "operator": "GreaterThan",
                        "threshold": "0",
                        "timeAggregation": "Average",
                        "dimensions": [
                            {"name": "BackendSettingsPool", "value": "pool-web~settings-web-443"}
                        ],
                        "metricValue": 1.0,
                        "webTestName": None,
                    }
                ],
                "windowStartTime": "2025-06-03T08:09:00.000Z",
                "windowEndTime": "2025-06-03T08:14:00.000Z",
            },
        },
        "customProperties": {"runbook": "appgw-backend-recycle"},
    },
}

# docs/sources.md#alert-schema: the non-common metric alert payload.
LEGACY: dict[str, Any] = {
    "schemaId": "AzureMonitorMetricAlert",
    "data": {
        "version": "2.0",
        "properties": {"customKey1": "value1"},
        "status": "Activated",
        "context": {
            "timestamp": "2021-11-15T09:35:12.9703687Z",
            "id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/microsoft.insights/"
            "metricAlerts/rule",
            "name": "rule",
            "conditionType": "SingleResourceMultipleMetricCriteria",
            "severity": "3",
            "condition": {"windowSize": "PT5M", "allOf": []},
            "resourceId": GATEWAY,
        },
    },
}


def example(**essentials: Any) -> dict[str, Any]:
    doc = copy.deepcopy(EXAMPLE)
    doc["data"]["essentials"].update(essentials)
    return doc


def test_reference_example_from_bytes() -> None:
    event = parse_alert(json.dumps(EXAMPLE).encode())
    assert event.alert_id == EXAMPLE["data"]["essentials"]["alertId"]
    assert event.monitor_condition == "Fired" and event.fired
    assert [g.key for g in event.gateway_ids] == [GATEWAY]
    assert event.gateway_ids[0].name == "agw-prod"
    assert event.hint == BackendHint("pool-web", "settings-web-443")
    assert event.fired_at == datetime(2025, 6, 3, 8, 15, 27, 451234, tzinfo=UTC)
    assert event.rule == "agw-prod-unhealthy-backends"
    assert event.rule_id is not None and event.rule_id.endswith("agw-prod-unhealthy-backends")
    assert event.severity == "Sev1"
    assert event.essentials["signalType"] == "Metric"


def test_str_and_decoded_object_are_accepted() -> None:
    assert parse_alert(json.dumps(EXAMPLE)) == parse_alert(EXAMPLE)


def test_resolved_keeps_alert_id_and_differs_in_dedup_key() -> None:
    fired = parse_alert(EXAMPLE)
    resolved = parse_alert(
        example(monitorCondition="Resolved", resolvedDateTime="2025-06-03T08:30:00Z")
    )
    assert resolved.monitor_condition == "Resolved" and not resolved.fired
    assert resolved.alert_id == fired.alert_id
    assert resolved.dedup_key != fired.dedup_key


def test_alert_rule_id_spelling_variant() -> None:
    doc = example()
    rule_id = doc["data"]["essentials"].pop("alertRuleID")
    doc["data"]["essentials"]["alertRuleId"] = rule_id
    assert parse_alert(doc).rule_id == rule_id
    del doc["data"]["essentials"]["alertRuleId"]
    assert parse_alert(doc).rule_id is None


def test_mixed_case_ids_and_condition() -> None:
    mixed = GATEWAY.replace("resourcegroups", "ResourceGroups").replace(
        "microsoft.network/applicationgateways", "Microsoft.Network/ApplicationGateways"
    )
    event = parse_alert(example(alertTargetIDs=[mixed, GATEWAY.upper()], monitorCondition="fired"))
    assert event.monitor_condition == "Fired"
    # Same gateway twice (case differs): one target.
    assert len(event.gateway_ids) == 1 and event.gateway_ids[0].key == GATEWAY


def test_legacy_metric_schema_rejected() -> None:
    with pytest.raises(InputError, match="common alert schema"):
        parse_alert(json.dumps(LEGACY))


@pytest.mark.parametrize(
    "doc",
    [
        {"SubscriptionId": SUB, "AlertRuleName": "x"},  # log alert V1, no schemaId
        {"schemaId": "Microsoft.Insights/activityLogs", "data": {}},
        {"schemaId": "azureMonitorCommonAlertSchema"},
        {"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": []}},
    ],
)
def test_foreign_or_broken_envelopes_rejected(doc: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        parse_alert(doc)


def test_non_gateway_targets_ignored_and_none_rejected() -> None:
    vm = f"/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm1"
    event = parse_alert(example(alertTargetIDs=[vm, GATEWAY, 42]))
    assert [g.key for g in event.gateway_ids] == [GATEWAY]
    with pytest.raises(InputError, match="no Application Gateway"):
        parse_alert(example(alertTargetIDs=[vm]))
    with pytest.raises(InputError, match="alertTargetIDs"):
        parse_alert(example(alertTargetIDs=[]))
    # A child resource of a gateway is not the gateway.
    with pytest.raises(InputError):
        parse_alert(example(alertTargetIDs=[GATEWAY + "/backendAddressPools/p1"]))


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe\x00", b"[1, 2]", b"null", "[]"])
def test_malformed_payloads(body: bytes | str) -> None:
    with pytest.raises(InputError):
        parse_alert(body)


def test_deeply_nested_json_is_an_input_error() -> None:
    with pytest.raises(InputError):
        parse_alert(b"[" * 100_000 + b"]" * 100_000)


def test_oversized_payload_rejected() -> None:
    doc = example(description="x" * MAX_ALERT_BYTES)
    with pytest.raises(InputError, match="larger than"):
        parse_alert(json.dumps(doc).encode())
    with pytest.raises(InputError, match="larger than"):
        parse_alert(json.dumps(doc))


@pytest.mark.parametrize("condition", [None, "Activated", "", 1])
def test_bad_monitor_condition(condition: object) -> None:
    with pytest.raises(InputError, match="monitorCondition"):
        parse_alert(example(monitorCondition=condition))


def test_missing_alert_id() -> None:
    with pytest.raises(InputError, match="alertId"):
        parse_alert(example(alertId=""))


def test_hint_variants() -> None:
    doc = example()
    criterion = doc["data"]["alertContext"]["condition"]["allOf"][0]
    criterion["dimensions"] = [{"name": "backendsettingspool", "value": "bp-ns-svc-443-ab~a~b"}]
    assert parse_alert(doc).hint == BackendHint("bp-ns-svc-443-ab", "a~b")  # first `~` only
    criterion["dimensions"] = [{"name": "BackendSettingsPool", "value": "pool-only"}]
    assert parse_alert(doc).hint == BackendHint("pool-only", None)
    criterion["metricName"] = "HealthyHostCount"  # not the unhealthy metric: no hint
    assert parse_alert(doc).hint is None
    doc["data"]["alertContext"] = {"properties": {}}  # e.g. an activity-log alert
    assert parse_alert(doc).hint is None


def test_hint_dropped_with_several_gateways() -> None:
    other = GATEWAY.replace("agw-prod", "agw-other")
    event = parse_alert(example(alertTargetIDs=[GATEWAY, other]))
    assert len(event.gateway_ids) == 2 and event.hint is None
