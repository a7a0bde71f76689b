"""`python -m sandbox serve --functions`: the function app as a local service; the env file says
where it is and holds a key that works for /api/alerts. It runs in `propose` mode like a
deployment, and says when it sweeps (`--sweep-every`)."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from sandbox.__main__ import main as sandbox_main
from sandbox.alerts import common_alert
from sandbox.sweep_clock import SweepClock, describe
from tests.serve_process import start_served


@pytest.mark.slow
@pytest.mark.azurite
@pytest.mark.sandbox
def test_serve_functions_runs_the_app_until_ctrl_c(tmp_path: Path) -> None:
    served = start_served(tmp_path, "ilb-ase-v1")
    try:
        env = served.env
        # The scenario says apply (for `make demo`); the service runs as a deployment does.
        assert env["REMEDIATION_MODE"] == "propose"
        assert "mode: REMEDIATION_MODE=propose" in served.output()
        assert "sweep: on the app's schedule '0 */15 * * * *'" in served.output()
        assert env["FUNCTIONS_URL"].startswith("http://127.0.0.1:")
        assert env["FUNCTIONS_KEY"] and "AccountName=devstoreaccount1" in env["AzureWebJobsStorage"]
        assert env["ARM_ENDPOINT"] and env["SANDBOX_GATEWAY_IDS"]  # the sandbox's keys stay
        alert = common_alert(env["SANDBOX_GATEWAY_IDS"].split(",")[0], alert_id=str(uuid.uuid4()))

        assert served.call("POST", "alerts", alert, key=False)[0] == 401  # the key is needed
        status, accepted = served.call("POST", "alerts", alert)
        assert (status, accepted["status"]) == (202, "accepted"), accepted
        job = served.wait_job(accepted["jobs"][0])  # the queue worker runs too
        assert job["state"] == "proposed", job  # propose mode: nothing written
    finally:
        code = served.stop()
    assert code == 0, served.output()
    assert "sandbox stopped" in served.output()
    with pytest.raises(urllib.error.URLError):  # nothing answers any more
        urllib.request.urlopen(f"{served.url}/api/proposals", timeout=5)


class _Runner:
    def __init__(self) -> None:
        self.fired: list[str] = []
        self.event = threading.Event()

    def run_timer(self, name: str) -> None:
        self.fired.append(name)
        if len(self.fired) >= 2:
            self.event.set()


def test_sweep_every_fires_the_sweep_timer_on_its_interval() -> None:
    runner = _Runner()
    clock = SweepClock(runner, 0.02).start()
    try:
        assert runner.event.wait(5)
    finally:
        clock.stop()
    count = len(runner.fired)
    time.sleep(0.1)
    assert set(runner.fired) == {"sweep"} and len(runner.fired) == count  # stopped means stopped
    assert describe(0).startswith("sweep: off")
    assert describe(30) == "sweep: every 30 s (--sweep-every), first in 30 s"
    assert "every 15 minutes" not in describe(None) and "'0 */15 * * * *'" in describe(None)


@pytest.mark.parametrize("value", ["-1", "abc", "nan", "1e9"])
def test_sweep_every_takes_seconds_and_needs_functions(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as bad:
        sandbox_main(
            [
                "serve",
                "--scenario",
                "healthy",
                "--env-file",
                "x",
                "--functions",
                "--sweep-every",
                value,
            ]
        )
    assert bad.value.code == 2 and "--sweep-every" in capsys.readouterr().err
    with pytest.raises(SystemExit) as alone:
        sandbox_main(["serve", "--scenario", "healthy", "--env-file", "x", "--sweep-every", "5"])
    assert alone.value.code == 2
