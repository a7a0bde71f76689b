"""Holds end to end: the function app in apply mode fixes a gateway from an alert, an operator rolls
the change back, and the next alert for that gateway diagnoses but writes nothing (job outcome
`held`) until an approver releases the hold; then one PUT.

ARM writes are counted from the sandbox's control endpoint; the CLI runs as a real subprocess with
the function app's settings (its storage on Azurite) in its environment.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from sandbox.alerts import common_alert
from sandbox.easyauth import principal_headers
from tests.cli_process import run_cli

from .conftest import BotApp, Factory

# Approvers are Entra object ids (the oid claim App Service Authentication passes on).
ALICE = "a11ce000-0000-4000-8000-000000000001"
BOB = "b0b00000-0000-4000-8000-000000000002"
AUTH = {"easy_auth": True, "WEBSITE_AUTH_ENABLED": "True"}


def _as(user: str) -> dict[str, str]:
    return principal_headers(user)


def cli(app: BotApp, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli({**os.environ, **app.env, "STATE_DIR": str(tmp_path / "state"), **env}, *args)


def alert_job(app: BotApp, alert_id: str) -> dict[str, object]:
    reply = app.post_alert(common_alert(app.gateway_id, alert_id=alert_id))
    assert reply.status == 202, reply.body
    return app.wait_job(reply.json()["jobs"][0])


def test_a_rollback_holds_the_change_until_an_approver_releases_it(
    bot_app: Factory, tmp_path: Path
) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="apply", APPROVERS=ALICE, **AUTH)
    first = alert_job(app, "a-1")
    assert first["outcome"]["action"] == "applied", first
    change = first["outcome"]["change"]
    assert len(app.puts()) == 1

    # Roll it back through the API (a job): the rollback sets a hold on what it undid.
    reply = app.call("POST", f"changes/{change}/rollback", {}, headers=_as(ALICE))
    assert reply.status == 202, reply.body
    rolled = app.wait_job(reply.json()["job"])
    assert rolled["outcome"]["action"] == "rolled_back", rolled
    hold_id = rolled["outcome"]["hold"]
    assert hold_id and hold_id.startswith("hold-")
    assert len(app.puts()) == 2
    [hold] = app.call("GET", "holds").json()["holds"]
    assert (hold["id"], hold["status"], hold["change"]) == (hold_id, "active", change)
    assert (hold["settings"], hold["kind"]) == (["ase-https"], "add_authentication_certificate")

    # The next alert diagnoses and reports `held`: no PUT, no proposal.
    held = alert_job(app, "a-2")
    assert (held["state"], held["outcome"]["action"]) == ("succeeded", "held"), held
    assert held["outcome"]["hold"] == hold_id and held["outcome"]["arm_writes"] == 0
    assert held["outcome"]["proposal"] is None and held["diagnosis"]
    assert len(app.puts()) == 2
    assert app.call("GET", "proposals").json()["proposals"] == []

    # The CLI shows the hold on the change and in its list; jobs list shows the held job.
    shown = cli(app, tmp_path, "changes", "show", change, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert [h["id"] for h in json.loads(shown.stdout)["holds"]] == [hold_id]
    api_view = app.call("GET", f"changes/{change}").json()
    assert [(h["id"], h["status"]) for h in api_view["holds"]] == [(hold_id, "active")]
    listed = cli(app, tmp_path, "holds", "list", "--format", "json")
    assert [h["id"] for h in json.loads(listed.stdout)["holds"]] == [hold_id]
    jobs = cli(app, tmp_path, "jobs", "list", "--format", "json")
    assert jobs.returncode == 0, jobs.stderr
    assert held["job_id"] in {j["job_id"] for j in json.loads(jobs.stdout)["jobs"]}
    one = cli(app, tmp_path, "jobs", "show", str(held["job_id"]))
    assert one.returncode == 0 and "held" in one.stdout and hold_id in one.stdout

    # Release: an authenticated approver only; browsers are refused.
    path = f"holds/{hold_id}/release"
    assert app.call("POST", path, {}).status == 401
    assert app.call("POST", path, {}, headers=_as(BOB)).json()["error"]["reason"] == (
        "not_an_approver"
    )
    browser = app.call("POST", path, {}, headers={**_as(ALICE), "Origin": "https://evil.example"})
    assert browser.status == 403
    assert app.call("POST", "holds/hold-nope/release", {}, headers=_as(ALICE)).status == 404
    released = app.call("POST", path, {}, headers=_as(ALICE))
    assert released.status == 200, released.body
    assert (released.json()["status"], released.json()["released_by"]) == ("released", ALICE)
    assert app.call("POST", path, {}, headers=_as(ALICE)).status == 400  # already released
    assert app.call("GET", "holds").json()["holds"] == []
    assert [h["id"] for h in app.call("GET", "holds?status=all").json()["holds"]] == [hold_id]
    assert app.call("GET", "holds?status=opne").status == 400

    # Released: the next alert applies again, one PUT.
    again = alert_job(app, "a-3")
    assert again["outcome"]["action"] == "applied", again
    assert len(app.puts()) == 3


def test_cli_rollback_hold_and_a_hold_by_hand(bot_app: Factory, tmp_path: Path) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="apply", APPROVERS=ALICE)
    first = alert_job(app, "b-1")
    change = first["outcome"]["change"]

    rolled = cli(app, tmp_path, "rollback", "--change", change, "--yes", "--format", "json")
    assert rolled.returncode == 0, rolled.stderr
    out = json.loads(rolled.stdout)  # the one JSON document; the preview went to stderr
    assert out["action"] == "rolled_back" and out["hold"]
    assert '"op": "remove"' in rolled.stderr

    # `fix` from the CLI on the held gateway: held, exit 3, no write.
    fixed = cli(app, tmp_path, "fix", "--gateway-id", app.gateway_id, "--yes", "--format", "json")
    assert fixed.returncode == 3, fixed.stderr
    assert (json.loads(fixed.stdout)["action"], json.loads(fixed.stdout)["hold"]) == (
        "held",
        out["hold"],
    )
    assert len(app.puts()) == 2

    # Release needs an approver and a confirmation.
    release = ("holds", "release", out["hold"])
    not_approver = cli(app, tmp_path, *release, "--yes", "--as-user", BOB)
    assert not_approver.returncode == 2 and "APPROVERS" in not_approver.stderr
    unconfirmed = cli(app, tmp_path, *release, "--as-user", ALICE)
    assert unconfirmed.returncode == 3 and "not confirmed" in unconfirmed.stdout
    done = cli(app, tmp_path, *release, "--yes", "--as-user", ALICE, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "released"

    # A hold by hand on the whole gateway, with an expiry.
    added = cli(
        app,
        tmp_path,
        *("holds", "add", "--gateway-id", app.gateway_id, "--reason", "migration"),
        *("--expires", "2h", "--as-user", BOB, "--format", "json"),
    )
    assert added.returncode == 0, added.stderr
    manual = json.loads(added.stdout)
    assert (manual["status"], manual["settings"], manual["by"]) == ("active", [], BOB)
    assert manual["expires_at"]
    held = alert_job(app, "b-2")
    assert (held["outcome"]["action"], held["outcome"]["hold"]) == ("held", manual["id"])
    assert len(app.puts()) == 2
    bad = cli(
        app,
        tmp_path,
        "holds",
        "add",
        "--gateway-id",
        app.gateway_id,
        "--reason",
        "x",
        "--expires",
        "yesterday",
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    last = cli(app, tmp_path, "holds", "list", "--status", "all")
    assert manual["id"] in last.stdout and out["hold"] in last.stdout
