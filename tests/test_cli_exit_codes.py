"""Exit codes, `--format json` and settings errors of the command line, as an operator's script
sees them: 0 done, 1 failed, 2 bad input, 3 waiting on a person; with `--format json` standard
output is exactly one JSON document.

Commands run as real subprocesses against the sandbox (or with no environment at all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path

import pytest
from test_remediate_sandbox import ALICE, BOB, FAST, Factory, control, put_count

from sandbox.runtime import SandboxHandle
from tests.cli_process import ROOT, run_cli

GATEWAY = (
    "/subscriptions/5a7d0b0c-0001-4000-8000-000000000001/resourceGroups/rg-ase"
    "/providers/Microsoft.Network/applicationGateways/agw-ase-v1"
)


@pytest.fixture
def v1(sandbox_factory: Factory) -> Iterator[SandboxHandle]:
    yield sandbox_factory("ilb-ase-v1")


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli({**os.environ, **FAST, "STATE_DIR": str(tmp_path / "state"), **env}, *args)


def one_json(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """Standard output is exactly one JSON document."""
    data = json.loads(result.stdout)
    assert isinstance(data, dict), result.stdout
    return data


@pytest.mark.sandbox
@pytest.mark.timeout(120)
def test_fix_whose_update_fails_exits_1_and_a_proposal_exits_3(
    v1: SandboxHandle, tmp_path: Path
) -> None:
    gid = v1.gateway_ids[0]
    proposed = run(tmp_path, "fix", "--gateway-id", gid, "--mode", "propose", "--format", "json")
    assert proposed.returncode == 3, proposed.stderr
    assert one_json(proposed)["action"] == "proposed"
    assert "HTTP settings ase-https: also trust" in proposed.stderr  # the preview: stderr

    # A hold set by hand stops the approval too (the proposal stays open); released, it is gone.
    pid = str(one_json(proposed)["proposal"])
    added = run(tmp_path, "holds", "add", "--gateway-id", gid, "--reason", "freeze", "--quiet")
    assert added.returncode == 0 and "added hold-" in added.stdout, added.stderr
    hold = added.stdout.split()[1].rstrip(":")
    held = run(tmp_path, "proposals", "approve", pid, "--as-user", BOB, "--format", "json")
    assert held.returncode == 3, held.stderr
    assert (one_json(held)["action"], one_json(held)["hold"]) == ("held", hold)
    assert put_count(v1) == 0
    released = run(tmp_path, "holds", "release", hold, "--yes", "--as-user", ALICE)
    assert released.returncode == 0, released.stderr
    rejected = run(tmp_path, "proposals", "reject", pid, "--as-user", BOB, "--format", "json")
    assert rejected.returncode == 0 and one_json(rejected)["status"] == "rejected"

    gateways = run(tmp_path, "gateways", "list", "--format", "json")
    assert gateways.returncode == 0, gateways.stderr
    [listed] = one_json(gateways)["gateways"]  # type: ignore[misc]
    assert listed["id"].lower() == gid.lower() and listed["health"]["servers"] >= 1

    control(v1, "/faults", {"kind": "lro_failed", "code": "InternalServerError"})
    failed = run(tmp_path, "fix", "--gateway-id", gid, "--yes", "--format", "json")
    assert failed.returncode == 1, failed.stderr
    out = one_json(failed)
    assert out["action"] == "failed" and "left the gateway Failed" in str(out["reason"])
    assert put_count(v1) == 2  # the update, then the automatic rollback

    # Listing commands print one document too.
    for args in (("proposals", "list"), ("changes", "list"), ("holds", "list")):
        listed = run(tmp_path, *args, "--format", "json")
        assert listed.returncode == 0, (args, listed.stderr)
        assert isinstance(one_json(listed), dict)


def test_enumerated_options_are_validated() -> None:
    result = run_cli({"PATH": os.environ.get("PATH", "")}, "proposals", "list", "--status", "opne")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--status" in result.stderr
    bad_json = run_cli(
        {"PATH": os.environ.get("PATH", "")}, "holds", "list", "--status", "x", "--format", "json"
    )
    assert bad_json.returncode == 2  # the parser failed before --format was read: stderr only


def test_missing_settings_are_one_line_naming_what_to_set(tmp_path: Path) -> None:
    bare = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "STATE_DIR": str(tmp_path)}
    diagnose = run_cli(bare, "diagnose", "--gateway-id", GATEWAY, "--no-probe", "--quiet")
    assert diagnose.returncode == 2
    assert diagnose.stderr.count("\n") == 1, diagnose.stderr
    assert "az login" in diagnose.stderr and "AZURE_CLIENT_ID" in diagnose.stderr
    assert "EnvironmentCredential" not in diagnose.stderr
    debug = run_cli(bare, "diagnose", "--gateway-id", GATEWAY, "--no-probe", "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr

    fix = run_cli(bare, "fix", "--gateway-id", GATEWAY, "--yes", "--format", "json")
    assert fix.returncode == 2
    assert "ALLOWED_SCOPES, which is empty" in fix.stderr
    assert one_json(fix)["action"] == "refused"

    jobs = run_cli(bare, "jobs", "list", "--format", "json")
    assert jobs.returncode == 2 and "AzureWebJobsStorage" in jobs.stderr
    assert one_json(jobs)["exit_code"] == 2


def test_a_default_state_directory_is_named(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "shared", "changes", "list"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"local state directory {tmp_path / '.state'}" in result.stderr
    assert "STATE_DIR is not set" in result.stderr


def test_the_console_script_and_version_work_from_any_directory(tmp_path: Path) -> None:
    """pyproject's `appgw-cert-bot` entry resolves to the CLI's main, and the command answers
    --version outside the checkout (the installed command runs the same function)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = project["project"]["scripts"]["appgw-cert-bot"]
    module, _, name = target.partition(":")
    assert callable(getattr(import_module(module), name))
    found = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "shared.*" in found

    import shared

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; from {module} import {name}; sys.exit({name}())",
            "--version",
        ],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"appgw-cert-bot {shared.__version__}"


def test_a_refusal_by_azure_fails_and_one_by_the_bots_own_policy_is_usage() -> None:
    from shared.cli.exit_codes import FAILED, USAGE, outcome_code
    from shared.remediation.outcome import RemediationOutcome

    # Not the words: the same reason text with and without the flag exits differently.
    words = "Microsoft.Network/applicationGateways/write is missing; nothing was written"
    by_azure = RemediationOutcome(GATEWAY, "apply", "refused", reason=words, azure_refused=True)
    by_policy = RemediationOutcome(GATEWAY, "apply", "refused", reason=words)
    assert (outcome_code(by_azure), outcome_code(by_policy)) == (FAILED, USAGE)
    assert "azure_refused" not in by_azure.to_json()  # the JSON contract is unchanged
