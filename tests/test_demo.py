"""`make demo` runs the bot end to end; its last line is the JSON contract of issue 5."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# A whole sandbox + Azurite + function app process each. `--timing fast` is the tests' profile
# (docs/sandbox.md, "Timing profiles"): the same run as `make demo` without its realistic pacing.
@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["ilb-ase-v1", "ilb-ase-v2-nosni"])
def test_demo_heals_the_gateway_and_ends_with_json(scenario: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "demo", "--scenario", scenario, "--timing", "fast"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(last) == {"scenario", "before", "after", "arm_writes", "seconds", "job"}
    assert last["scenario"] == scenario
    assert (last["before"], last["after"]) == ("unhealthy", "healthy")
    assert last["arm_writes"] == 1
    assert "Traceback" not in done.stderr
    if scenario == "ilb-ase-v1":
        cers = list((tmp_path / "out").glob("*.cer"))
        assert len(cers) == 1
        assert cers[0].read_text().startswith("-----BEGIN CERTIFICATE-----\n")
    else:
        assert "approve as approver@contoso.com -> 202" in done.stdout


@pytest.mark.slow
def test_multi_demo_shows_every_gateway(tmp_path: Path) -> None:
    """`make demo SCENARIO=multi`: each of the scenario's gateways is shown, alerted and healed."""
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "demo", "--scenario", "multi", "--timing", "fast"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = json.loads(done.stdout.strip().splitlines()[-1])
    names = [g["gateway"] for g in last["gateways"]]
    assert names == ["agw-multi-v1", "agw-multi-v2"]
    assert (last["before"], last["after"]) == ("unhealthy", "healthy")
    assert all(g["after"] == "healthy" for g in last["gateways"])
    for name in names:
        assert f"== gateway {name} ==" in done.stdout
    assert last["arm_writes"] == 2
