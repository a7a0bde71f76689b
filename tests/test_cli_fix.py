"""The remediation command line against the sandbox: `python -m shared fix | proposals | rollback`.

Each command runs as a real subprocess with the sandbox's environment (as an operator would
after sourcing the sandbox env file); standard input is not a terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_remediate_sandbox import (
    ALICE,
    AUTH_CERTS,
    BOB,
    FAST,
    Factory,
    comparable,
    put_count,
    ref_names,
    settings_entry,
    stored,
)

from sandbox.runtime import SandboxHandle
from tests.cli_process import last_json, run_cli

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

CONTRACT = [
    *("gateway", "mode", "action", "arm_writes", "verified", "proposal", "reason", "change"),
    "hold",
]


@pytest.fixture
def v1(sandbox_factory: Factory) -> Iterator[SandboxHandle]:
    yield sandbox_factory("ilb-ase-v1")


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m shared ARGS` with the test's environment (the sandbox's keys) plus `env`."""
    return run_cli({**os.environ, **FAST, "STATE_DIR": str(tmp_path / "state"), **env}, *args)


def test_fix_yes_prints_the_plan_applies_and_ends_with_the_json_line(
    v1: SandboxHandle, tmp_path: Path
) -> None:
    gid = v1.gateway_ids[0]

    result = run(tmp_path, "fix", "--gateway-id", gid, "--yes", "--as-user", ALICE)

    assert result.returncode == 0, result.stderr
    out = last_json(result)
    assert list(out) == CONTRACT
    assert out["gateway"] == gid
    assert (out["mode"], out["action"], out["arm_writes"], out["verified"]) == (
        "apply",
        "applied",
        1,
        True,
    )
    assert out["proposal"] is None
    assert "Gateway agw-ase-v1: add authentication certificate" in result.stdout
    assert "HTTP settings ase-https: also trust" in result.stdout
    assert "healthy" in result.stdout
    assert put_count(v1) == 1

    again = run(tmp_path, "fix", "--gateway-id", gid, "--yes")
    assert again.returncode == 0, again.stderr
    assert (last_json(again)["action"], last_json(again)["arm_writes"]) == ("none", 0)
    assert put_count(v1) == 1


def test_fix_diagnose_mode_writes_nothing(v1: SandboxHandle, tmp_path: Path) -> None:
    result = run(tmp_path, "fix", "--gateway-id", v1.gateway_ids[0], "--mode", "diagnose", "--yes")

    assert result.returncode == 0, result.stderr
    out = last_json(result)
    assert (out["mode"], out["action"], out["arm_writes"], out["proposal"]) == (
        "diagnose",
        "none",
        0,
        None,
    )
    assert put_count(v1) == 0


def test_fix_without_yes_and_without_a_terminal_is_not_applied(
    v1: SandboxHandle, tmp_path: Path
) -> None:
    result = run(tmp_path, "fix", "--gateway-id", v1.gateway_ids[0])

    assert result.returncode == 3, result.stderr  # waiting on a person
    assert "not confirmed" in result.stdout
    out = last_json(result)
    assert (out["action"], out["arm_writes"]) == ("none", 0)
    assert "not confirmed" in out["reason"]
    assert put_count(v1) == 0


def test_proposals_list_show_approve_reject_with_four_eyes(
    v1: SandboxHandle, tmp_path: Path
) -> None:
    gid = v1.gateway_ids[0]
    proposed = run(tmp_path, "fix", "--gateway-id", gid, "--mode", "propose", "--as-user", ALICE)
    assert proposed.returncode == 3, proposed.stderr  # waiting on a person
    out = last_json(proposed)
    assert (out["mode"], out["action"], out["arm_writes"]) == ("propose", "proposed", 0)
    pid = out["proposal"]
    assert pid

    listed = run(tmp_path, "proposals", "list")
    assert listed.returncode == 0, listed.stderr
    assert pid in listed.stdout and "open" in listed.stdout and ALICE in listed.stdout

    shown = run(tmp_path, "proposals", "show", pid, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    proposal = last_json(shown)
    assert proposal["id"] == pid and proposal["status"] == "open"
    assert proposal["certificate_cer"].startswith("-----BEGIN CERTIFICATE-----")
    assert proposal["gateway_etag"] == stored(v1)["etag"]

    mine = run(tmp_path, "proposals", "approve", pid, "--as-user", ALICE)
    assert mine.returncode == 2
    assert mine.stderr.count("\n") == 1 and "own proposal" in mine.stderr
    assert mine.stderr.rstrip().endswith("(own_proposal)"), mine.stderr
    stranger = run(tmp_path, "proposals", "approve", pid, "--as-user", "mallory")
    assert stranger.returncode == 2 and stranger.stderr.count("\n") == 1
    assert stranger.stderr.rstrip().endswith("(not_an_approver)"), stranger.stderr
    assert put_count(v1) == 0

    approved = run(tmp_path, "proposals", "approve", pid, "--as-user", BOB)
    assert approved.returncode == 0, approved.stderr
    result = last_json(approved)
    assert (result["action"], result["arm_writes"], result["proposal"]) == ("applied", 1, pid)
    assert put_count(v1) == 1
    applied = run(tmp_path, "proposals", "list", "--status", "applied")
    assert pid in applied.stdout

    # A decided proposal cannot be decided again.
    rejected = run(tmp_path, "proposals", "reject", pid, "--as-user", BOB, "--reason", "late")
    assert rejected.returncode == 2 and rejected.stderr.rstrip().endswith("(not_open)")


def test_proposals_reject(v1: SandboxHandle, tmp_path: Path) -> None:
    gid = v1.gateway_ids[0]
    pid = last_json(
        run(tmp_path, "fix", "--gateway-id", gid, "--as-user", ALICE, REMEDIATION_MODE="propose")
    )["proposal"]

    rejected = run(tmp_path, "proposals", "reject", pid, "--as-user", BOB, "--reason", "freeze")

    assert rejected.returncode == 0, rejected.stderr
    assert last_json(rejected) == {"proposal": pid, "status": "rejected"}
    assert put_count(v1) == 0


def test_rollback_command_restores_the_document(v1: SandboxHandle, tmp_path: Path) -> None:
    gid = v1.gateway_ids[0]
    before = stored(v1)
    fixed = run(tmp_path, "fix", "--gateway-id", gid, "--yes", VERIFY_DEADLINE_SECONDS="0")
    assert fixed.returncode == 0, fixed.stderr
    change = _change_id(tmp_path, gid)
    name = next(
        n for n in ref_names(settings_entry(stored(v1), "ase-https"), AUTH_CERTS) if n != "app-cert"
    )

    assert f"change: {change} (undo: python -m shared rollback --change {change})" in fixed.stdout
    assert last_json(fixed)["change"] == change
    # Without --yes and without a terminal: the preview, then no.
    asked = run(tmp_path, "rollback", "--gateway-id", gid, "--change", change)
    assert asked.returncode == 3, asked.stderr
    assert f"roll back {change}" in asked.stdout and '"op": "remove"' in asked.stdout
    assert "not confirmed: no terminal to ask (use --yes)" in asked.stdout
    assert "az network application-gateway auth-cert delete" in asked.stdout
    assert (last_json(asked)["action"], last_json(asked)["arm_writes"]) == ("none", 0)
    dry = run(tmp_path, "rollback", "--change", change, "--dry-run", "--yes")
    assert (last_json(dry)["action"], last_json(dry)["reason"]) == (
        "none",
        "dry run: nothing written",
    )
    assert put_count(v1) == 1
    for mode, action in (("diagnose", "none"), ("propose", "refused")):
        lowered = run(tmp_path, "rollback", "--change", change, "--yes", REMEDIATION_MODE=mode)
        assert (last_json(lowered)["mode"], last_json(lowered)["action"]) == (mode, action)
        assert lowered.returncode == (2 if action == "refused" else 0), lowered.stderr
    killed = run(tmp_path, "rollback", "--change", change, "--yes", REMEDIATION_KILL_SWITCH="true")
    assert killed.returncode == 2 and "kill switch" in killed.stderr
    assert put_count(v1) == 1

    # The gateway comes from the change record.
    result = run(tmp_path, "rollback", "--change", change, "--yes")

    assert result.returncode == 0, result.stderr
    out = last_json(result)
    assert list(out) == CONTRACT
    assert (out["mode"], out["action"], out["arm_writes"]) == ("apply", "rolled_back", 1)
    after = stored(v1)
    assert name not in [c["name"] for c in after["properties"][AUTH_CERTS]]
    assert comparable(after) == comparable(before)

    again = run(tmp_path, "rollback", "--gateway-id", gid, "--change", change, "--yes")
    assert (last_json(again)["action"], last_json(again)["arm_writes"]) == ("none", 0)
    assert last_json(again)["reason"].startswith(f"already rolled back: {out['change']}")
    assert put_count(v1) == 2

    listed = run(tmp_path, "changes", "list", "--format", "json")
    views = json.loads(listed.stdout)["changes"]
    assert [(v["id"], v["kind"], v["status"]) for v in views] == [
        (out["change"], "rollback", "rolled_back"),
        (change, "apply", "rolled_back"),
    ]
    shown = run(tmp_path, "changes", "show", change)
    assert shown.returncode == 0 and f"rolled back {out['change']}" in shown.stdout

    unknown = run(tmp_path, "rollback", "--gateway-id", gid, "--change", "no-such-change")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    of_rollback = run(tmp_path, "rollback", "--change", out["change"], "--yes")
    assert of_rollback.returncode == 2 and "is the rollback of" in of_rollback.stderr


def test_corrupt_change_log_and_proposal_files_name_the_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "proposals").mkdir(parents=True)
    (state / "changes.jsonl").write_text('{"id": "chg-1"}\n[1, 2\n')
    (state / "proposals" / "20250101T000000Z-abcd.json").write_text("{not json")
    for args in (
        ("changes", "list"),
        ("changes", "show", "chg-1"),
        ("rollback", "--change", "chg-1", "--yes"),
        ("proposals", "list"),
        ("proposals", "show", "20250101T000000Z-abcd"),
    ):
        result = run(tmp_path, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, args
        assert str(state) in result.stderr, (args, result.stderr)


def _change_id(tmp_path: Path, gid: str) -> str:
    from shared.remediation.changelog import LocalChangeLog

    records = LocalChangeLog(tmp_path / "state").for_gateway(gid)
    assert [r.kind for r in records] == ["apply"]
    return records[0].id


@pytest.mark.parametrize(
    ("gateway_id", "message"),
    [
        ("not-a-resource-id", "not an Application Gateway resource id"),
        (
            "/subscriptions/5a7d0b0c-0001-4000-8000-000000000001/resourceGroups/rg-other"
            "/providers/Microsoft.Network/applicationGateways/agw-other",
            "outside ALLOWED_SCOPES",
        ),
    ],
    ids=["bad-id", "out-of-scope"],
)
def test_bad_input_exits_2_with_one_line(
    v1: SandboxHandle, tmp_path: Path, gateway_id: str, message: str
) -> None:
    result = run(tmp_path, "fix", "--gateway-id", gateway_id, "--yes")

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert put_count(v1) == 0


def test_unknown_mode_is_refused_by_the_parser(v1: SandboxHandle, tmp_path: Path) -> None:
    result = run(tmp_path, "fix", "--gateway-id", v1.gateway_ids[0], "--mode", "force")

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--mode" in result.stderr


def test_a_gateway_locked_by_another_process_is_not_written(
    v1: SandboxHandle, tmp_path: Path
) -> None:
    from shared.service.lease import LocalGatewayLock

    lock = LocalGatewayLock(tmp_path / "state", v1.gateway_ids[0])
    lock.acquire()
    try:
        result = run(tmp_path, "fix", "--gateway-id", v1.gateway_ids[0], "--yes")
    finally:
        lock.release()

    assert result.returncode == 2
    # Progress lines first (the gateway was read), the error last and alone on its line.
    *phases, error = result.stderr.splitlines()
    assert error.startswith("error: ") and "locked by another process" in error
    assert phases and all(line.startswith("[") for line in phases), result.stderr
    assert put_count(v1) == 0
