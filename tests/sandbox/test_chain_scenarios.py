"""The chain scenarios end to end: the emulated gateway reports the health, the bot diagnoses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.cli.wiring import local_remediator
from shared.common.ids import parse_gateway_id
from shared.common.settings import load_settings
from shared.core.diagnosis import Cause, FixAction


@pytest.mark.sandbox
def test_expired_intermediate_is_named_and_nothing_is_written(
    sandbox_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = sandbox_factory("ase-v2-expired-intermediate")
    monkeypatch.setenv("PROBE_VANTAGE", "gateway_network")
    bot = local_remediator(load_settings(), state_dir=tmp_path / "state")
    assessment = bot.assess(parse_gateway_id(handle.gateway_ids[0]))
    (finding,) = assessment.diagnosis.findings
    assert finding.probe_log and "Valid from" in finding.probe_log  # the emulator's expired text
    assert finding.cause is Cause.CERTIFICATE_EXPIRED
    assert finding.fix.action is FixAction.NONE
    assert "Contoso Issuing CA 2023" in finding.evidence["explanation"]
    path = finding.evidence["gateway_chain"]["path"]
    assert [(p["role"], p["validity"]) for p in path] == [
        ("leaf", "valid"),
        ("intermediate", "expired"),
        ("root", "valid"),
    ]
