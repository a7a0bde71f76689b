"""Verification after a change: poll backend health until the affected servers are healthy or a
deadline passes. Azure refreshes backend health per probe interval, not per request
(appgw-backend-tls.md §1.4), so polls are spaced by the gateway's probe interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from shared.arm import ArmClient
from shared.health import HealthState, ServerHealth, parse_backend_health
from shared.ids import GatewayId, last_segment

DEFAULT_PROBE_INTERVAL = 30.0  # Azure's default probe interval, in seconds


def poll_interval(doc: Mapping[str, Any]) -> float:
    """The shortest probe interval of the gateway document (Azure's default when none is set)."""
    props = doc.get("properties")
    probes = props.get("probes") if isinstance(props, Mapping) else None
    intervals = []
    for probe in probes if isinstance(probes, list) else []:
        pprops = probe.get("properties") if isinstance(probe, Mapping) else None
        try:
            intervals.append(float((pprops or {}).get("interval") or DEFAULT_PROBE_INTERVAL))
        except (TypeError, ValueError):
            continue
    return max(1.0, min(intervals or [DEFAULT_PROBE_INTERVAL]))


def _check(h: ServerHealth) -> dict[str, Any]:
    return {
        "settings": last_segment(h.settings_id),
        "server": h.address,
        "health": h.health.value,
        "probe_log": h.probe_log,
    }


def wait_until_healthy(
    arm: ArmClient,
    gid: GatewayId,
    settings_names: Collection[str],
    servers: Collection[tuple[str, str]] | None,
    *,
    deadline: float,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool | None, list[dict[str, Any]]]:
    """(True, checks) once every affected server is healthy, (False, last checks) at the deadline,
    (None, []) when verification is off (deadline 0). `servers` are (settings name lower-case,
    address) pairs; None means every server of those settings."""
    if deadline <= 0:
        return None, []
    names = {n.lower() for n in settings_names}
    start = time.monotonic()
    while True:
        mine = [
            h
            for h in parse_backend_health(arm.backend_health(gid))
            if last_segment(h.settings_id).lower() in names
            and (servers is None or (last_segment(h.settings_id).lower(), h.address) in servers)
        ]
        checks = [_check(h) for h in mine]
        if mine and all(h.health is HealthState.HEALTHY for h in mine):
            return True, checks
        if time.monotonic() - start + interval > deadline:
            return False, checks
        sleep(interval)
