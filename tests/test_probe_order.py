"""The prober's order (shared.core.probe_order): members the gateway reports as timing out or
unknown are probed first, so their timeouts overlap the other handshakes."""

from __future__ import annotations

from shared.core.health import HealthState, ServerHealth
from shared.core.probe_order import slow_first

TIMED_OUT = (
    "Time taken by the backend to respond to application gateway's health probe is more than "
    "the timeout threshold in the probe setting."
)


def _h(address: str, state: HealthState, log: str | None = None) -> ServerHealth:
    return ServerHealth("pool", "settings", address, state, log)


def test_timeouts_and_unknowns_first_otherwise_stable() -> None:
    requests = [
        ("10.0.0.1", 443, None),
        ("10.0.0.2", 443, None),
        ("10.0.0.2", 443, "app"),
        ("10.0.0.3", 443, None),
        ("10.0.0.4", 443, None),
    ]
    health = [
        _h("10.0.0.1", HealthState.UNHEALTHY, "Backend server certificate is not whitelisted"),
        _h("10.0.0.2", HealthState.UNHEALTHY, TIMED_OUT),
        _h("10.0.0.3", HealthState.HEALTHY),
        _h("10.0.0.4", HealthState.UNKNOWN),
    ]
    assert slow_first(requests, health) == [
        ("10.0.0.2", 443, None),
        ("10.0.0.2", 443, "app"),
        ("10.0.0.4", 443, None),
        ("10.0.0.1", 443, None),
        ("10.0.0.3", 443, None),
    ]
    assert slow_first(requests, []) == requests
