"""Every probe-log wording from Learn, its earlier revisions, issues and recorded bodies is read
as the kind it names (tests/data/probe_logs/wordings.json, sources in tests/data/probe_logs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.core.health import ProbeLogKind, classify_probe_log, parse_backend_health

DATA = Path(__file__).parent / "data" / "probe_logs"
WORDINGS = json.loads((DATA / "wordings.json").read_text(encoding="utf-8"))["wordings"]


@pytest.mark.parametrize("row", WORDINGS, ids=[w["text"][:48] for w in WORDINGS])
def test_every_wording_is_classified(row: dict[str, str]) -> None:
    assert row["source"]
    assert classify_probe_log(row["text"]) is ProbeLogKind(row["kind"])


def test_every_certificate_and_network_kind_has_a_sourced_wording() -> None:
    covered = {ProbeLogKind(w["kind"]) for w in WORDINGS}
    assert covered >= set(ProbeLogKind) - {ProbeLogKind.EMPTY, ProbeLogKind.OTHER}


def test_recorded_unknown_body_is_health_unknown() -> None:
    doc = json.loads((DATA / "net_lab_backend_health_unknown.json").read_text(encoding="utf-8"))
    servers = parse_backend_health(doc)
    assert len(servers) == 2
    assert {classify_probe_log(s.probe_log) for s in servers} == {ProbeLogKind.HEALTH_UNKNOWN}
