"""`python -m sandbox serve --functions` (issue 13, deliverable 7): the function app as a local
service; the env file says where it is and holds a key that works for /api/alerts."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from sandbox.alerts import common_alert
from tests.serve_process import start_served

pytestmark = [pytest.mark.slow, pytest.mark.azurite, pytest.mark.sandbox]


def test_serve_functions_runs_the_app_until_ctrl_c(tmp_path: Path) -> None:
    served = start_served(tmp_path, "ilb-ase-v1")
    try:
        env = served.env
        assert env["FUNCTIONS_URL"].startswith("http://127.0.0.1:")
        assert env["FUNCTIONS_KEY"] and "AccountName=devstoreaccount1" in env["AzureWebJobsStorage"]
        assert env["ARM_ENDPOINT"] and env["SANDBOX_GATEWAY_IDS"]  # the sandbox's keys stay
        alert = common_alert(env["SANDBOX_GATEWAY_IDS"].split(",")[0], alert_id=str(uuid.uuid4()))

        assert served.call("POST", "alerts", alert, key=False)[0] == 401  # the key is needed
        status, accepted = served.call("POST", "alerts", alert)
        assert (status, accepted["status"]) == (202, "accepted"), accepted
        job = served.wait_job(accepted["jobs"][0])  # the queue worker runs too
        assert job["state"] in {"succeeded", "proposed"}, job
    finally:
        code = served.stop()
    assert code == 0, served.output()
    assert "sandbox stopped" in served.output()
    with pytest.raises(urllib.error.URLError):  # nothing answers any more
        urllib.request.urlopen(f"{served.url}/api/proposals", timeout=5)
