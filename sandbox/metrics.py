"""Local Azure Monitor metrics batch endpoint (`metrics:getBatch`), over HTTPS.

Real API: `POST https://{region}.metrics.monitor.azure.com/subscriptions/{s}/metrics:getBatch
?metricnamespace=...&metricnames=...&starttime=...&endtime=...&interval=...&aggregation=...
&api-version=2024-02-01` with `{"resourceids": [...]}` (≤ 50 ids of one subscription, one region,
one resource type; https://learn.microsoft.com/azure/azure-monitor/metrics/migrate-to-batch-api).
One local server stands for every region: the bot's METRICS_ENDPOINT is
`https://127.0.0.1:<port>/{region}`, so the region is the first path segment.

The answer is shaped like recorded traffic and Microsoft's example
(tests/data/recorded/monitor_metrics_batch.json, SOURCES.md; MetricBatchExample.json): `values`,
one per resource, each with `starttime`, `endtime`, `interval`, `value` (one metric: `id` =
resource id + `/providers/Microsoft.Insights/metrics/<name>`, `type`, `name`, `unit`,
`timeseries[].data[]` of `{timeStamp, maximum}`, `errorCode`), `namespace`, `resourceregion`,
`resourceid`. A gateway with no data gets points without a value, as the example shows.
The numbers are the ARM emulator's (`ArmEmulator.unhealthy_host_count`): its health model for a
fleet, else its own backend health.

Tokens must be issued for `https://metrics.monitor.azure.com`; with `--rbac`, the caller needs
`Microsoft.Insights/Metrics/Read` on the subscription (sandbox/rbac.py, route `metrics_batch`).
Every request is listed with ARM's in `GET {SANDBOX_CONTROL_URL}/requests`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.arm_http import HttpsEndpoint, Request, Response
from sandbox.arm_validation import ArmError

AUDIENCE = "https://metrics.monitor.azure.com"
BATCH_LIMIT = 50
NAMESPACE = "microsoft.network/applicationgateways"
METRIC = "UnhealthyHostCount"
_PATH = re.compile(r"^/(?P<region>[^/]+)/subscriptions/(?P<sub>[^/]+)/metrics:getBatch/?$", re.I)
_DURATION = re.compile(r"^PT(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?$", re.I)


def _error(status: int, code: str, message: str) -> ArmError:
    return ArmError(status, code, message)


class MetricsEmulator:
    """metrics:getBatch for the gateways of an ArmEmulator."""

    def __init__(
        self,
        arm: Any,
        *,
        tls_cert_pem: bytes,
        tls_key_pem: bytes,
        verify_token: Callable[[str], bool],
        authorizer: Any = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._arm = arm
        self._tls = (tls_cert_pem, tls_key_pem)
        self._verify_token = verify_token
        self._authorizer = authorizer
        self._clock = clock or (lambda: datetime.now(UTC))
        self._endpoint: HttpsEndpoint | None = None
        self.url = ""

    @property
    def endpoint_template(self) -> str:
        """The bot's METRICS_ENDPOINT for this server."""
        return f"{self.url}/{{region}}"

    def start(self) -> None:
        self._endpoint = HttpsEndpoint(self, self._tls, "metrics-emulator")
        self.url = self._endpoint.url

    def stop(self) -> None:
        if self._endpoint is not None:
            self._endpoint.stop()
            self._endpoint = None

    def handle(self, request: Request) -> Response:
        try:
            response = self._batch(request)
        except ArmError as exc:
            response = Response(exc.status, exc.body(), dict(exc.headers))
        self._arm.record_request(request.method, request.path, response.status)
        return response

    def _batch(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not self._verify_token(token.strip()):
            raise _error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        match = _PATH.match(request.path)
        if match is None or request.method != "POST":
            raise _error(404, "NotFound", f"No route for {request.method} {request.path}.")
        region, sub = match["region"].lower(), match["sub"]
        if self._authorizer is not None:
            self._authorizer.authorize(token.strip(), "metrics_batch", {"sub": sub}, None)
        query = {k.lower(): v[0] for k, v in request.query.items() if v}
        if query.get("metricnamespace", "").lower() != NAMESPACE:
            raise _error(400, "BadRequest", "metricnamespace must be the resources' type.")
        names = [n for n in query.get("metricnames", "").split(",") if n]
        if [n.lower() for n in names] != [METRIC.lower()]:
            raise _error(400, "BadRequest", f"Only {METRIC} is emulated, got {names}.")
        ids = _resource_ids(request.body)
        for resource_id in ids:
            if not resource_id.lower().startswith(f"/subscriptions/{sub.lower()}/"):
                raise _error(400, "BadRequest", "All resources must be in the subscription.")
            location = self._arm.gateway_location(resource_id)
            if location is None:
                raise _error(400, "BadRequest", f"Resource {resource_id} was not found.")
            if location.replace(" ", "").lower() != region:
                raise _error(400, "BadRequest", "All resources must be in the endpoint's region.")
        end = self._clock().replace(microsecond=0)
        interval = _duration(query.get("interval") or "PT1M")
        start = end - timedelta(minutes=15)
        if query.get("starttime") and query.get("endtime"):
            start, end = _time(query["starttime"]), _time(query["endtime"])
        values = [
            self._value(rid, region, start, end, interval, self._arm.unhealthy_host_count(rid))
            for rid in ids
        ]
        return Response(200, {"values": values})

    @staticmethod
    def _value(
        resource_id: str,
        region: str,
        start: datetime,
        end: datetime,
        interval: timedelta,
        count: int | None,
    ) -> dict[str, Any]:
        points: list[dict[str, Any]] = []
        at = start.replace(second=0, microsecond=0)
        while at < end and len(points) < 1440:
            point: dict[str, Any] = {"timeStamp": f"{at:%Y-%m-%dT%H:%M:%SZ}"}
            if count is not None:
                point["maximum"] = float(count)
            points.append(point)
            at += interval
        return {
            "starttime": f"{start:%Y-%m-%dT%H:%M:%SZ}",
            "endtime": f"{end:%Y-%m-%dT%H:%M:%SZ}",
            "interval": _iso_duration(interval),
            "value": [
                {
                    "id": f"{resource_id}/providers/Microsoft.Insights/metrics/{METRIC}",
                    "type": "Microsoft.Insights/metrics",
                    "name": {"value": METRIC, "localizedValue": "Unhealthy Host Count"},
                    "displayDescription": "Count of unhealthy backend hosts.",
                    "unit": "Count",
                    "timeseries": [{"metadatavalues": [], "data": points}],
                    "errorCode": "Success",
                }
            ],
            "namespace": "Microsoft.Network/applicationGateways",
            "resourceregion": region,
            "resourceid": resource_id,
        }


def _resource_ids(body: bytes) -> list[str]:
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise _error(400, "BadRequest", "The request body is not JSON.") from None
    ids = data.get("resourceids") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise _error(400, "BadRequest", "resourceids must list at least one resource id.")
    if len(ids) > BATCH_LIMIT:
        raise _error(400, "BadRequest", f"At most {BATCH_LIMIT} resource ids per batch.")
    return ids


def _duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if match is None or not (match["h"] or match["m"]):
        raise _error(400, "BadRequest", f"Unsupported interval {text!r}.")
    return timedelta(hours=int(match["h"] or 0), minutes=int(match["m"] or 0))


def _iso_duration(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    return f"PT{minutes // 60}H" if minutes % 60 == 0 else f"PT{minutes}M"


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _error(400, "BadRequest", f"Invalid time {text!r}.") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
