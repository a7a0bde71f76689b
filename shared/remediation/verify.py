"""Verification after a change: poll backend health until the affected servers are healthy or a
deadline passes. Azure refreshes backend health per probe interval, not per request
(docs/sources.md#health-states), so polls are spaced by the gateway's probe interval.

While the periodic result may still be stale, an on-demand probe of each affected pool/settings pair
(getBackendHealthOnDemand, docs/sources.md#arm-shape) gives fresh evidence at once. It is recorded
beside the periodic checks but never decides the verdict: the on-demand probe ignores sniName and
the v2 validation switches (docs/sources.md#sni-rules), so only the periodic health says what
traffic will see.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from shared.cloud.arm import ArmClient
from shared.common.errors import BotError
from shared.common.ids import GatewayId, last_segment, same_id
from shared.common.progress import Progress, no_progress
from shared.core.health import HealthState, ServerHealth, parse_backend_health

DEFAULT_PROBE_INTERVAL = 30.0  # Azure's default probe interval, in seconds


def poll_interval(doc: Mapping[str, Any], *, floor: float = 1.0) -> float:
    """The shortest probe interval of the gateway document (Azure's default when none is set),
    never below `floor` (VERIFY_POLL_MIN_SECONDS)."""
    props = doc.get("properties")
    probes = props.get("probes") if isinstance(props, Mapping) else None
    intervals = []
    for probe in probes if isinstance(probes, list) else []:
        pprops = probe.get("properties") if isinstance(probe, Mapping) else None
        try:
            intervals.append(float((pprops or {}).get("interval") or DEFAULT_PROBE_INTERVAL))
        except (TypeError, ValueError):
            continue
    return max(floor, min(intervals or [DEFAULT_PROBE_INTERVAL]))


def _check(h: ServerHealth, source: str = "backend-health") -> dict[str, Any]:
    return {
        "settings": last_segment(h.settings_id),
        "server": h.address,
        "health": h.health.value,
        "probe_log": h.probe_log,
        "source": source,
    }


def _child(doc: Mapping[str, Any], collection: str, child_id: str | None) -> Mapping[str, Any]:
    props = doc.get("properties")
    items = props.get(collection) if isinstance(props, Mapping) else None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and same_id(item.get("id"), child_id):
            props = item.get("properties")
            return props if isinstance(props, Mapping) else {}
    return {}


def on_demand_request(doc: Mapping[str, Any], pool_id: str, settings_id: str) -> dict[str, Any]:
    """An ApplicationGatewayOnDemandProbe for one pair, from the settings' own probe."""
    settings = _child(doc, "backendHttpSettingsCollection", settings_id)
    probe_ref = settings.get("probe")
    probe = _child(doc, "probes", probe_ref.get("id") if isinstance(probe_ref, Mapping) else None)
    body: dict[str, Any] = {
        "protocol": probe.get("protocol") or settings.get("protocol") or "Https",
        "path": probe.get("path") or "/",
        "timeout": probe.get("timeout") or 30,
        "pickHostNameFromBackendHttpSettings": bool(
            probe.get("pickHostNameFromBackendHttpSettings")
        ),
        "backendAddressPool": {"id": pool_id},
        "backendHttpSettings": {"id": settings_id},
    }
    if probe.get("host"):
        body["host"] = probe["host"]
    if probe.get("match"):
        body["match"] = probe["match"]
    return body


def on_demand_checks(
    arm: ArmClient, gid: GatewayId, doc: Mapping[str, Any], pairs: Collection[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Fresh evidence for each (pool id, settings id) pair; empty where the call is refused."""
    checks: list[dict[str, Any]] = []
    for pool_id, settings_id in pairs:
        try:
            result = arm.backend_health_on_demand(gid, on_demand_request(doc, pool_id, settings_id))
            checks += [_check(h, "on-demand") for h in parse_backend_health(result)]
        except BotError:
            continue  # evidence only: the periodic health still decides
    return checks


def wait_until_healthy(
    arm: ArmClient,
    gid: GatewayId,
    settings_names: Collection[str],
    servers: Collection[tuple[str, str]] | None,
    *,
    deadline: float,
    interval: float,
    doc: Mapping[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: Progress = no_progress,
) -> tuple[bool | None, list[dict[str, Any]]]:
    """(True, checks) once every affected server is healthy, (False, last checks) at the deadline,
    (None, []) when verification is off (deadline 0). `servers` are (settings name lower-case,
    address) pairs; None means every server of those settings. With `doc` (the written gateway),
    a first round that is not yet healthy adds on-demand evidence to the checks."""
    if deadline <= 0:
        return None, []
    names = {n.lower() for n in settings_names}
    start = time.monotonic()
    fresh: list[dict[str, Any]] | None = None
    rounds = 0
    while True:
        rounds += 1
        progress(f"verifying: reading backend health (check {rounds})")
        mine = [
            h
            for h in parse_backend_health(arm.backend_health(gid))
            if last_segment(h.settings_id).lower() in names
            and (servers is None or (last_segment(h.settings_id).lower(), h.address) in servers)
        ]
        checks = [_check(h) for h in mine]
        healthy = sum(1 for h in mine if h.health is HealthState.HEALTHY)
        if mine and healthy == len(mine):
            progress(f"verified: {healthy} of {len(mine)} server(s) healthy")
            return True, checks + (fresh or [])
        if fresh is None and doc is not None:
            pairs = sorted({(h.pool_id, h.settings_id) for h in mine})
            progress(f"verifying: on-demand probe of {len(pairs)} pool/settings pair(s)")
            fresh = on_demand_checks(arm, gid, doc, pairs)
        if time.monotonic() - start + interval > deadline:
            progress(f"not verified: {healthy} of {len(mine)} server(s) healthy at the deadline")
            return False, checks + (fresh or [])
        progress(
            f"verifying: {healthy} of {len(mine)} server(s) healthy; "
            f"next check in {interval:.0f} s (the gateway's probe interval)"
        )
        sleep(interval)
