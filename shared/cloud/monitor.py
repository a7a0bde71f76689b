"""Azure Monitor metrics for the sweep's pre-filter: `UnhealthyHostCount` of many gateways per call.

The batch API (`POST https://{region}.metrics.monitor.azure.com/subscriptions/{s}/metrics:getBatch`,
azure-monitor-querymetrics `MetricsClient.query_resources`) takes up to 50 resource ids of one
subscription, one region and one resource type per call
(https://learn.microsoft.com/azure/azure-monitor/metrics/migrate-to-batch-api). It is authorized at
the subscription: a grant on each gateway is not enough (docs/operations.md, "Sweep"), so infra/
grants `Microsoft.Insights/Metrics/Read` on each subscription holding a target gateway.

A gateway's answer is its largest `UnhealthyHostCount` over the window (any unhealthy host at any
point in it), or None when the service sent no data point for it (new gateway, stopped gateway,
metrics pipeline delay): the sweep then asks backend health, as it would without this filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.cloud.arm import ArmError, make_credential, to_arm_error

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.common.settings import Settings

METRICS_BATCH_LIMIT = 50  # resource ids per metrics:getBatch call (service limit)
NAMESPACE = "Microsoft.Network/applicationGateways"
METRIC = "UnhealthyHostCount"
# The RBAC action the batch call needs, at subscription scope (infra/modules/rbac.bicep).
METRICS_ACTION = "Microsoft.Insights/Metrics/Read"
# Window and grain: the metric is emitted per minute; 15 minutes is one default sweep period.
WINDOW = timedelta(minutes=15)
GRAIN = timedelta(minutes=1)
_AUDIENCES = {
    "metrics.monitor.azure.cn": "https://metrics.monitor.azure.cn",
    "metrics.monitor.azure.us": "https://metrics.monitor.azure.us",
}
PUBLIC_AUDIENCE = "https://metrics.monitor.azure.com"


def metrics_endpoint(template: str, region: str) -> str:
    """The regional endpoint: METRICS_ENDPOINT with `{region}` replaced (lower case, no
    spaces, as ARM reports `location`)."""
    return template.replace("{region}", region.replace(" ", "").lower()).rstrip("/")


def metrics_audience(endpoint: str) -> str:
    """The token audience for a metrics endpoint: the sovereign clouds' own, else public."""
    host = (urlsplit(endpoint).hostname or "").lower()
    for suffix, audience in _AUDIENCES.items():
        if host == suffix or host.endswith("." + suffix):
            return audience
    return PUBLIC_AUDIENCE


def resource_of(metric_id: str) -> str:
    """'<resource id>/providers/Microsoft.Insights/metrics/<name>' -> '<resource id>' (lower
    case); the batch answer names each value's resource this way (MetricBatchExample.json)."""
    head, sep, _ = metric_id.lower().rpartition("/providers/microsoft.insights/metrics/")
    return head if sep else ""


def peak_counts(results: Iterable[Any]) -> dict[str, float]:
    """Resource id (lower case) -> the largest `maximum` of its UnhealthyHostCount points.
    Resources with no data point at all are absent. `results` are MetricsQueryResult objects."""
    peaks: dict[str, float] = {}
    for result in results:
        for metric in getattr(result, "metrics", None) or []:
            resource = resource_of(str(getattr(metric, "id", "") or ""))
            if not resource or str(getattr(metric, "name", "")).lower() != METRIC.lower():
                continue
            values = [
                point.maximum
                for series in getattr(metric, "timeseries", None) or []
                for point in getattr(series, "data", None) or []
                if getattr(point, "maximum", None) is not None
            ]
            if values:
                peaks[resource] = max(peaks.get(resource, 0.0), *map(float, values))
    return peaks


class MetricsReader:
    """UnhealthyHostCount for batches of gateways, one MetricsClient per region (reused)."""

    def __init__(self, settings: Settings, *, credential: TokenCredential | None = None) -> None:
        self._settings = settings
        self._credential = credential
        self._clients: dict[str, Any] = {}

    def _client(self, region: str) -> Any:
        client = self._clients.get(region)
        if client is None:
            from azure.monitor.querymetrics import MetricsClient

            if self._credential is None:
                self._credential = make_credential(self._settings)
            endpoint = metrics_endpoint(str(self._settings["METRICS_ENDPOINT"]), region)
            client = MetricsClient(
                endpoint, self._credential, audience=metrics_audience(endpoint), retry_total=2
            )
            self._clients[region] = client
        return client

    def unhealthy_hosts(
        self, region: str, gateway_ids: Sequence[str]
    ) -> Mapping[str, float | None]:
        """Gateway id (as given) -> peak UnhealthyHostCount over WINDOW, None for no data.

        All ids must share one subscription and `region`; at most METRICS_BATCH_LIMIT."""
        if not gateway_ids:
            return {}
        if len(gateway_ids) > METRICS_BATCH_LIMIT:
            raise ValueError(f"at most {METRICS_BATCH_LIMIT} resources per metrics batch")
        try:
            results = self._client(region).query_resources(
                resource_ids=list(gateway_ids),
                metric_namespace=NAMESPACE,
                metric_names=[METRIC],
                timespan=WINDOW,
                granularity=GRAIN,
                aggregations=["Maximum"],
            )
        except Exception as exc:
            raise _metrics_error(exc) from exc
        peaks = peak_counts(results)
        return {gid: peaks.get(gid.lower()) for gid in gateway_ids}


def _metrics_error(exc: Exception) -> ArmError:
    error = to_arm_error(exc)
    return ArmError(f"metrics batch: {error}", code=error.code, status=error.status)
