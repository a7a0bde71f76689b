"""Changes and jobs as records (issue 13): an alert-driven change made by the function app is
listed and rolled back from the API and from the CLI (which reads the app's ledger when its storage
is configured); a second rollback writes nothing; rollback follows approvers, mode and kill switch;
and a request never joins a job of a higher mode.

ARM writes are counted from the sandbox's control endpoint; the CLI runs as a real subprocess with
the function app's settings (AzureWebJobsStorage on Azurite) in its environment.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

from sandbox.alerts import common_alert
from sandbox.easyauth import principal_headers
from tests.cli_process import last_json, run_cli

from .conftest import BotApp, Factory

# Approvers are Entra object ids (the oid claim App Service Authentication passes on).
ALICE = "a11ce000-0000-4000-8000-000000000001"
BOB = "b0b00000-0000-4000-8000-000000000002"
AUTH = {"easy_auth": True, "WEBSITE_AUTH_ENABLED": "True"}


def _as(user: str) -> dict[str, str]:
    return principal_headers(user)


def cli(app: BotApp, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m shared ARGS` with the function app's settings (its storage included)."""
    return run_cli({**os.environ, **app.env, "STATE_DIR": str(tmp_path / "state"), **env}, *args)


def alert_change(app: BotApp) -> tuple[str, str]:
    """Post an alert, let the worker apply the fix; (job id, change id)."""
    reply = app.post_alert(common_alert(app.gateway_id))
    assert reply.status == 202, reply.body
    job = app.wait_job(reply.json()["jobs"][0])
    assert job["state"] == "succeeded" and job["outcome"]["action"] == "applied", job
    change = job["outcome"]["change"]
    assert change and change.startswith("chg-")
    return job["job_id"], change


def test_alert_change_is_listed_rolled_back_from_the_cli_and_not_again_from_the_api(
    bot_app: Factory, tmp_path: Path
) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="apply", APPROVERS=ALICE, **AUTH)
    job_id, change = alert_change(app)
    gw = quote(app.gateway_id, safe="")
    assert len(app.puts()) == 1

    # The API: changes and jobs, all and per gateway.
    [listed] = app.call("GET", "changes").json()["changes"]
    assert app.call("GET", f"changes?gateway={gw}").json()["changes"] == [listed]
    assert (listed["id"], listed["kind"], listed["status"], listed["job"]) == (
        change,
        "apply",
        "applied",
        job_id,
    )
    assert listed["by"] == "alert:agw-unhealthy-backends" and listed["settings"] == ["ase-https"]
    assert listed["rolled_back"] is None and listed["thumbprint"]
    shown = app.call("GET", f"changes/{change}").json()
    assert shown["plan"]["action"] == listed["action"]
    assert shown["undo"]["summary"].startswith(f"Gateway agw-ase-v1: roll back {change}")
    assert any("auth-cert delete" in c for c in shown["undo"]["az"])
    [job] = app.call("GET", f"jobs?gateway={gw}").json()["jobs"]
    assert (job["job_id"], job["action"], job["change"], job["state"]) == (
        job_id,
        "applied",
        change,
        "succeeded",
    )
    for path in ("changes?gateway=not-a-gateway", "jobs?gateway=%2Fsubscriptions%2Fx"):
        reply = app.call("GET", path)
        assert reply.status == 400 and reply.json()["error"]["code"] == "BadRequest", path
    for path in ("changes/chg-nope", "changes/..%2F..%2Fx", "changes/%00"):
        assert app.call("GET", path).status in (400, 404), path
    assert app.call("POST", "changes/chg-nope/rollback", {}, headers=_as(ALICE)).status == 404

    # The CLI reads the app's ledger.
    text = cli(app, tmp_path, "changes", "list")
    assert text.returncode == 0, text.stderr
    assert change in text.stdout and "applied" in text.stdout and "ledger" in text.stderr
    as_json = json.loads(cli(app, tmp_path, "changes", "list", "--format", "json").stdout)
    assert [c["id"] for c in as_json["changes"]] == [change]
    assert as_json["changes"][0] == listed and "ledger" in as_json["source"]
    mine = cli(app, tmp_path, "changes", "list", "--gateway-id", app.gateway_id, "--format", "json")
    assert [c["id"] for c in json.loads(mine.stdout)["changes"]] == [change]
    bad = cli(app, tmp_path, "changes", "list", "--gateway-id", "nope")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    show = cli(app, tmp_path, "changes", "show", change)
    assert show.returncode == 0 and "rollback would:" in show.stdout

    # ... and rolls the change back: the gateway id comes from the record.
    rolled = cli(app, tmp_path, "rollback", "--change", change, "--yes", "--as-user", ALICE)
    assert rolled.returncode == 0, rolled.stderr
    out = last_json(rolled)
    assert (out["mode"], out["action"], out["arm_writes"]) == ("apply", "rolled_back", 1)
    assert '"op": "remove"' in rolled.stdout  # the preview: the JSON Patch it sends
    assert len(app.puts()) == 2

    # A second rollback, from the API and from the CLI: "already rolled back", nothing written.
    again = app.call("POST", f"changes/{change}/rollback", {}, headers=_as(ALICE))
    assert again.status == 200, again.body
    body = again.json()
    assert (body["status"], body["arm_writes"]) == ("already_rolled_back", 0)
    assert body["rolled_back"]["change"] == out["change"] and body["rolled_back"]["by"] == ALICE
    cli_again = cli(app, tmp_path, "rollback", "--change", change, "--yes")
    assert last_json(cli_again)["reason"].startswith("already rolled back")
    assert last_json(cli_again)["arm_writes"] == 0
    assert len(app.puts()) == 2
    assert len(app.jobs()) == 1  # the refused second rollback queued nothing

    after = {c["id"]: c for c in app.call("GET", "changes").json()["changes"]}
    assert after[change]["status"] == "rolled_back"
    assert after[out["change"]]["kind"] == "rollback"
    assert after[out["change"]]["rolls_back"] == change


def test_api_rollback_needs_another_approver_unless_policy_allows_then_cli_sees_it_done(
    bot_app: Factory, tmp_path: Path
) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="apply", APPROVERS=f"{ALICE},{BOB}", **AUTH)
    fixed = app.call("POST", app.gateway_path("fix"), {"mode": "apply"}, headers=_as(BOB))
    assert fixed.status == 202
    job = app.wait_job(fixed.json()["job"])
    change = job["outcome"]["change"]
    assert app.call("GET", f"changes/{change}").json()["by"] == BOB
    path = f"changes/{change}/rollback"

    nobody = app.call("POST", path, {})
    assert nobody.status == 401 and nobody.json()["error"]["code"] == "Unauthenticated"
    stranger = _as("3a110000-0000-4000-8000-000000000003")  # signed in, not in APPROVERS
    mallory = app.call("POST", path, {}, headers=stranger).json()["error"]
    assert (mallory["code"], mallory["reason"]) == ("Forbidden", "not_an_approver")
    own = app.call("POST", path, {}, headers=_as(BOB))
    assert own.status == 403 and own.json()["error"]["reason"] == "own_change"
    assert len(app.puts()) == 1 and len(app.jobs()) == 1

    # ROLLBACK_BY_APPLIER=true: the one who applied it may roll it back.
    app.runner.stop()
    app = bot_app(
        sandbox=app.sandbox,
        REMEDIATION_MODE="apply",
        APPROVERS=f"{ALICE},{BOB}",
        ROLLBACK_BY_APPLIER="true",
        **AUTH,
    )
    accepted = app.call("POST", path, {}, headers=_as(BOB))
    assert accepted.status == 202, accepted.body
    assert accepted.json()["change"] == change and accepted.json()["undo"]["az"]
    done = app.wait_job(accepted.json()["job"])
    assert (done["kind"], done["state"], done["requested_by"]) == ("rollback", "succeeded", BOB)
    outcome = done["outcome"]
    assert (outcome["mode"], outcome["action"], outcome["arm_writes"]) == (
        "apply",
        "rolled_back",
        1,
    )
    assert outcome["preview"]["change"] == change and outcome["preview"]["patch"]
    assert len(app.puts()) == 2

    second = app.call("POST", path, {}, headers=_as(ALICE))
    assert second.status == 200 and second.json()["status"] == "already_rolled_back"
    cli_again = cli(app, tmp_path, "rollback", "--change", change, "--yes")
    assert cli_again.returncode == 0, cli_again.stderr
    assert (last_json(cli_again)["action"], last_json(cli_again)["arm_writes"]) == ("none", 0)
    assert len(app.puts()) == 2
    view = app.call("GET", f"changes/{change}").json()
    assert view["status"] == "rolled_back" and view["rolled_back"]["by"] == BOB


def test_api_rollback_follows_the_mode_and_the_kill_switch(bot_app: Factory) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="apply", APPROVERS=ALICE, **AUTH)
    _, change = alert_change(app)
    path = f"changes/{change}/rollback"
    cases = (
        ({"REMEDIATION_MODE": "diagnose"}, "diagnose", "none", "succeeded"),
        ({"REMEDIATION_MODE": "propose"}, "propose", "refused", "failed"),
        ({"REMEDIATION_KILL_SWITCH": "true"}, "propose", "refused", "failed"),
    )
    for settings, mode, action, state in cases:
        app.runner.stop()
        app = bot_app(sandbox=app.sandbox, APPROVERS=ALICE, **{**AUTH, **settings})
        reply = app.call("POST", path, {}, headers=_as(ALICE))
        assert reply.status == 202, reply.body
        job = app.wait_job(reply.json()["job"])
        assert (job["outcome"]["mode"], job["outcome"]["action"], job["state"]) == (
            mode,
            action,
            state,
        ), job
        assert job["outcome"]["arm_writes"] == 0 and job["outcome"]["preview"]["patch"]
        assert app.call("GET", f"changes/{change}").json()["status"] == "applied"
    assert "kill switch" in job["outcome"]["reason"]
    assert len(app.puts()) == 1  # the alert's fix only


def test_a_lower_mode_request_never_joins_a_higher_mode_job(bot_app: Factory) -> None:
    app = bot_app("ilb-ase-v1", worker=False, REMEDIATION_MODE="apply")
    first = app.call("POST", app.gateway_path("fix"), {"mode": "apply"})
    assert first.status == 202 and first.json() == {
        "job": first.json()["job"],
        "joined": False,
        "mode": "apply",
    }
    job_id = first.json()["job"]
    for action, payload in (
        ("diagnose", {}),
        ("fix", {"mode": "propose"}),
        ("fix", {"mode": "diagnose"}),
    ):
        reply = app.call("POST", app.gateway_path(action), payload)
        assert reply.status == 409, (action, payload, reply.body)
        err = reply.json()["error"]
        assert (err["code"], err["job"], err["job_mode"], err["job_state"]) == (
            "Busy",
            job_id,
            "apply",
            "queued",
        )
        assert job_id in err["message"] and "mode apply" in err["message"]
    same = app.call("POST", app.gateway_path("fix"), {})
    assert (same.status, same.json()["joined"], same.json()["mode"]) == (202, True, "apply")
    # Nothing extra was recorded or queued.
    assert [j["RowKey"] for j in app.jobs()] == [job_id]
    assert app.queued_messages() == 1
    assert app.storage.list_decisions(app.gateway_id) == []

    # Under REMEDIATION_MODE=propose the same job can only propose: a propose request joins it,
    # a diagnosis still does not.
    app.runner.stop()
    app = bot_app(sandbox=app.sandbox, worker=False, REMEDIATION_MODE="propose")
    joined = app.call("POST", app.gateway_path("fix"), {"mode": "propose"})
    assert (joined.status, joined.json()["job"], joined.json()["mode"]) == (202, job_id, "propose")
    refused = app.call("POST", app.gateway_path("diagnose"), {})
    assert refused.status == 409 and refused.json()["error"]["job_mode"] == "propose"
    assert len(app.jobs()) == 1 and app.puts() == []
