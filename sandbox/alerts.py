"""Azure Monitor as the sandbox plays it: common-schema alerts on a gateway, as an action group
posts them to the bot (docs/sources.md#alert-schema). Used by the demo, the benchmark and
the tests.
"""

from __future__ import annotations

from typing import Any

from shared.common.ids import parse_gateway_id


def common_alert(
    gateway_id: str,
    *,
    alert_id: str = "6f1d2c3b-4a5e-4f60-8b7c-9d0e1f2a3b4c",
    condition: str = "Fired",
    dimension: str = "ase-pool~ase-https",
) -> dict[str, Any]:
    """A metric alert on UnhealthyHostCount split by BackendSettingsPool
    (docs/sources.md#alert-schema); the target id lower-cased as Azure Monitor sends it
    (docs/sources.md#alert-schema)."""
    gid = parse_gateway_id(gateway_id)
    essentials: dict[str, Any] = {
        "alertId": f"/subscriptions/{gid.subscription}/providers/"
        f"Microsoft.AlertsManagement/alerts/{alert_id}",
        "alertRule": "agw-unhealthy-backends",
        "alertRuleID": f"/subscriptions/{gid.subscription}/resourceGroups/rg-monitoring/"
        "providers/microsoft.insights/metricAlerts/agw-unhealthy-backends",
        "severity": "Sev1",
        "signalType": "Metric",
        "monitorCondition": condition,
        "monitoringService": "Platform",
        "alertTargetIDs": [gateway_id.lower()],
        "configurationItems": [gid.name],
        "firedDateTime": "2025-06-03T08:15:27.4512345Z",
        "description": "At least one backend is failing health probes",
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    if condition == "Resolved":
        essentials["resolvedDateTime"] = "2025-06-03T08:45:27.1234567Z"
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": essentials,
            "alertContext": {
                "properties": None,
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
                            "dimensions": [{"name": "BackendSettingsPool", "value": dimension}],
                            "metricValue": 1.0,
                            "webTestName": None,
                        }
                    ],
                },
            },
            "customProperties": None,
        },
    }
