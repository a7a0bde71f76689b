"""Parse Azure Monitor alerts (common alert schema only) into what the bot acts on. Pure.

Schema facts: docs/sources.md#alert-schema (the common schema, the App Gateway metric alert split by
BackendSettingsPool; legacy non-common payloads are rejected).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.common.errors import InputError, ResourceIdError
from shared.common.ids import GatewayId, parse_gateway_id

COMMON_SCHEMA_ID = "azureMonitorCommonAlertSchema"
# The common schema caps a payload at 256 KB (docs/sources.md#alert-schema); anything larger is not
# an alert.
MAX_ALERT_BYTES = 256 * 1024
MAX_ID_LENGTH = 1024
HINT_METRIC = "unhealthyhostcount"
HINT_DIMENSION = "backendsettingspool"
_FRACTION = re.compile(r"(\.\d+)")
_CONDITIONS = {"fired": "Fired", "resolved": "Resolved"}


@dataclass(frozen=True)
class BackendHint:
    """Which backend pool / HTTP settings the alert is about; the job still checks the whole
    gateway. `settings` is None when the dimension value had no `~`."""

    pool: str
    settings: str | None

    def to_dict(self) -> dict[str, str | None]:
        return {"pool": self.pool, "settings": self.settings}


@dataclass(frozen=True)
class AlertEvent:
    alert_id: str
    monitor_condition: str  # "Fired" or "Resolved"
    gateway_ids: tuple[GatewayId, ...]
    hint: BackendHint | None
    fired_at: datetime | None
    rule: str | None
    rule_id: str | None
    severity: str | None
    essentials: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def fired(self) -> bool:
        return self.monitor_condition == "Fired"

    @property
    def dedup_key(self) -> tuple[str, str]:
        """(alertId, monitorCondition): retries and parallel action groups repeat both
        (docs/sources.md#action-groups)."""
        return (self.alert_id.lower(), self.monitor_condition)


def parse_alert(body: bytes | str | object) -> AlertEvent:
    """Parse a request body (bytes/str JSON, or an already decoded object); raise InputError with a
    message fit for a 400 answer when it is not a common-schema alert on an Application Gateway."""
    doc = _decode(body)
    schema = doc.get("schemaId")
    if schema != COMMON_SCHEMA_ID:
        raise InputError(
            f"unsupported alert schema {str(schema)[:80]!r}: enable the common alert schema "
            f"(useCommonAlertSchema) on the action group"
        )
    data = doc.get("data")
    essentials = data.get("essentials") if isinstance(data, Mapping) else None
    if not isinstance(essentials, Mapping):
        raise InputError("alert has no data.essentials object")
    context = data.get("alertContext") if isinstance(data, Mapping) else None
    gateways = _gateways(essentials.get("alertTargetIDs"))
    return AlertEvent(
        alert_id=_required_str(essentials, "alertId"),
        monitor_condition=_condition(essentials.get("monitorCondition")),
        gateway_ids=gateways,
        # With several gateways one dimension value cannot name a pool on each: drop the hint.
        hint=_hint(context) if len(gateways) == 1 else None,
        fired_at=_timestamp(essentials.get("firedDateTime")),
        rule=_optional_str(essentials.get("alertRule")),
        rule_id=_optional_str(_get_ci(essentials, "alertRuleId")),
        severity=_optional_str(essentials.get("severity")),
        essentials=essentials,
    )


def _decode(body: bytes | str | object) -> Mapping[str, Any]:
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        if len(raw) > MAX_ALERT_BYTES:
            raise InputError(f"alert payload larger than {MAX_ALERT_BYTES} bytes")
        try:
            body = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError("alert payload is not UTF-8 text") from None
    if isinstance(body, str):
        if len(body.encode("utf-8", errors="replace")) > MAX_ALERT_BYTES:
            raise InputError(f"alert payload larger than {MAX_ALERT_BYTES} bytes")
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise InputError(f"alert payload is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(body, Mapping):
        raise InputError("alert payload must be a JSON object")
    return body


def _gateways(targets: object) -> tuple[GatewayId, ...]:
    if not isinstance(targets, list) or not targets:
        raise InputError("alert has no alertTargetIDs")
    found: dict[str, GatewayId] = {}
    for target in targets:
        try:
            gw = parse_gateway_id(target)
        except ResourceIdError:
            continue  # other resource types are not ours; a gateway among them still counts
        found.setdefault(gw.key, gw)
    if not found:
        raise InputError("no Application Gateway among the alert's alertTargetIDs")
    return tuple(found.values())


def _hint(context: object) -> BackendHint | None:
    """The BackendSettingsPool dimension (`<pool>~<settings>`) of an UnhealthyHostCount metric
    criterion (docs/sources.md#alert-schema: split on the first `~`)."""
    condition = context.get("condition") if isinstance(context, Mapping) else None
    criteria = condition.get("allOf") if isinstance(condition, Mapping) else None
    for criterion in criteria if isinstance(criteria, list) else []:
        if not isinstance(criterion, Mapping):
            continue
        if str(criterion.get("metricName", "")).lower() != HINT_METRIC:
            continue
        dimensions = criterion.get("dimensions")
        for dim in dimensions if isinstance(dimensions, list) else []:
            if not isinstance(dim, Mapping):
                continue
            if str(dim.get("name", "")).lower() != HINT_DIMENSION:
                continue
            value = dim.get("value")
            if isinstance(value, str) and value.strip():
                pool, sep, settings = value.strip().partition("~")
                if pool:
                    return BackendHint(pool, settings if sep and settings else None)
    return None


def _condition(value: object) -> str:
    condition = _CONDITIONS.get(str(value).strip().lower()) if isinstance(value, str) else None
    if condition is None:
        raise InputError(f"monitorCondition must be Fired or Resolved, got {str(value)[:40]!r}")
    return condition


def _required_str(essentials: Mapping[str, Any], name: str) -> str:
    value = essentials.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"alert essentials.{name} is missing")
    if len(value) > MAX_ID_LENGTH:
        raise InputError(f"alert essentials.{name} is too long")
    return value.strip()


def _optional_str(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()[:MAX_ID_LENGTH]
    return None


def _get_ci(mapping: Mapping[str, Any], name: str) -> object:
    """alertRuleID vs alertRuleId: the docs spell it both ways (docs/sources.md#alert-schema)."""
    lowered = name.lower()
    for key, value in mapping.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    # Azure writes 7 fractional digits; fromisoformat takes at most 6.
    text = _FRACTION.sub(lambda m: m.group(1)[:7], value.strip().replace("Z", "+00:00"))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
