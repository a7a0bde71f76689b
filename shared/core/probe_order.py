"""Which TLS handshakes to start first: a pure scheduling rule for the concurrent prober.

A silent backend costs one probe timeout however early or late its handshake starts, but a
timeout that starts last is paid after every other handshake has finished. The gateway's own
backend health already says which members time out or are not known to answer, so their
handshakes start first and their waits overlap the CPU-bound handshakes of the rest: a large
pool with silent members then costs about max(timeout, the handshakes' work) instead of the sum.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shared.core.capture import ProbeRequest
from shared.core.health import HealthState, ProbeLogKind, ServerHealth, classify_probe_log

# What the gateway says of a member that did not answer in time or could not be reached.
_SLOW = frozenset({ProbeLogKind.TIMEOUT, ProbeLogKind.HEALTH_UNKNOWN})


def _slow(h: ServerHealth) -> bool:
    return h.health is HealthState.UNKNOWN or classify_probe_log(h.probe_log) in _SLOW


def slow_first(
    requests: Iterable[ProbeRequest], health: Sequence[ServerHealth]
) -> list[ProbeRequest]:
    """`requests` with those to members the gateway reports slow or unknown first; stable."""
    slow = {h.address.lower() for h in health if _slow(h)}
    if not slow:
        return list(requests)
    return sorted(requests, key=lambda r: 0 if r[0].lower() in slow else 1)


__all__ = ["slow_first"]
