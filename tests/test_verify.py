"""Verification waits per probe interval: the interval comes from the gateway document."""

from __future__ import annotations

from shared.remediation.verify import DEFAULT_PROBE_INTERVAL, poll_interval


def _doc(*intervals: object) -> dict[str, object]:
    probes = [{"name": f"p{i}", "properties": {"interval": v}} for i, v in enumerate(intervals)]
    return {"properties": {"probes": probes}}


def test_the_shortest_probe_interval_sets_the_pace() -> None:
    assert poll_interval(_doc(30, 5, 12)) == 5.0


def test_no_probes_means_azure_default_probe_interval() -> None:
    assert poll_interval({"properties": {"probes": []}}) == DEFAULT_PROBE_INTERVAL
    assert poll_interval({}) == DEFAULT_PROBE_INTERVAL


def test_odd_values_are_tolerated_and_the_pace_never_drops_below_a_second() -> None:
    assert poll_interval(_doc("not-a-number", 0.2)) == 1.0
    assert poll_interval(_doc(None)) == DEFAULT_PROBE_INTERVAL
    assert poll_interval({"properties": {"probes": "garbage"}}) == DEFAULT_PROBE_INTERVAL
