"""Issue 13, operators' side of a write: a preview before it (`fix --dry-run`, the prompt,
`proposals show`), progress on stderr while it runs, and where the TLS evidence came from.

Commands run as subprocesses against the sandbox (tests/test_cli_fix.py's `run`), standard input
not a terminal. The sandbox declares its loopback the gateway's network (PROBE_VANTAGE); tests
about an operator machine set PROBE_VANTAGE=operator_machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_cli_fix import last_json, run
from test_remediate_sandbox import ALICE, BOB, Factory, put_count

from sandbox.runtime import SandboxHandle
from shared.core.capture import VantageKind
from shared.probe.tls import detect_vantage
from shared.remediation.proposals import DRAINING_WARNING

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

PHASE = re.compile(r"^\[\s*(\d+\.\d)s\] (.*)$")


@pytest.fixture
def v1(sandbox_factory: Factory) -> SandboxHandle:
    return sandbox_factory("ilb-ase-v1")


def phases(stderr: str) -> list[tuple[float, str]]:
    """The progress lines of stderr as (elapsed, message); every other line is returned too,
    with elapsed -1, so a test sees anything unexpected."""
    out = []
    for line in stderr.splitlines():
        m = PHASE.match(line)
        out.append((float(m.group(1)), m.group(2)) if m else (-1.0, line))
    return out


def in_order(messages: list[str], expected: list[str]) -> bool:
    """Each expected fragment appears in a later message than the one before."""
    i = 0
    for message in messages:
        if i < len(expected) and expected[i] in message:
            i += 1
    return i == len(expected)


def proposals_stored(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "state" / "proposals").glob("*.json"))


# ---- preview --------------------------------------------------------------------------------


def test_dry_run_prints_the_patch_az_and_draining_warning_and_writes_nothing(
    v1: SandboxHandle, tmp_path: Path
) -> None:
    gid = v1.gateway_ids[0]

    result = run(tmp_path, "fix", "--gateway-id", gid, "--dry-run", "--yes")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Dry run: the bot would apply this change." in out
    assert "Gateway agw-ase-v1: add authentication certificate" in out
    patch = json.loads(_block(out, "JSON Patch (RFC 6902)"))
    assert [op["op"] for op in patch] == ["add", "add"]
    assert patch[0]["path"] == "/properties/authenticationCertificates/1"
    assert patch[0]["value"]["properties"]["data"]  # the certificate, whole
    assert (
        "/backendHttpSettingsCollection/0/properties/authenticationCertificates/"
        in (patch[1]["path"])
    )
    assert "az network application-gateway auth-cert create" in out
    assert "To undo it with az:" in out and "auth-cert delete" in out
    assert DRAINING_WARNING in " ".join(out.split())
    final = last_json(result)
    assert (final["action"], final["arm_writes"], final["proposal"]) == ("none", 0, None)
    assert final["reason"].startswith("dry run: would apply")
    assert put_count(v1) == 0
    assert proposals_stored(tmp_path) == []
    assert not (tmp_path / "state" / "changes.jsonl").exists()


def test_dry_run_in_propose_mode_stores_no_proposal(v1: SandboxHandle, tmp_path: Path) -> None:
    result = run(
        tmp_path, "fix", "--gateway-id", v1.gateway_ids[0], "--dry-run", "--mode", "propose"
    )

    assert result.returncode == 0, result.stderr
    assert "Dry run: the bot would propose this change." in result.stdout
    assert '"op": "add"' in result.stdout
    assert last_json(result)["reason"].startswith("dry run: would propose")
    assert proposals_stored(tmp_path) == [] and put_count(v1) == 0


def test_the_confirmation_prompt_shows_the_patch_first(v1: SandboxHandle, tmp_path: Path) -> None:
    result = run(tmp_path, "fix", "--gateway-id", v1.gateway_ids[0])

    out = result.stdout
    assert result.returncode == 3, result.stderr  # not confirmed: waiting on a person
    assert "The bot will apply this change." in out
    assert out.index('"op": "add"') < out.index("not confirmed: no terminal to ask")
    assert "az network application-gateway http-settings update" in out
    assert put_count(v1) == 0


def test_proposals_show_is_readable_text_and_json_on_request(
    v1: SandboxHandle, tmp_path: Path
) -> None:
    gid = v1.gateway_ids[0]
    pid = last_json(
        run(tmp_path, "fix", "--gateway-id", gid, "--mode", "propose", "--as-user", ALICE)
    )["proposal"]

    text = run(tmp_path, "proposals", "show", pid)
    machine = run(tmp_path, "proposals", "show", pid, "--format", "json")

    assert text.returncode == 0 and machine.returncode == 0, text.stderr + machine.stderr
    out = text.stdout
    assert out.startswith(f"Proposal {pid}: open\n")
    for part in (
        f"  {gid}\n",  # the id whole, on its own line
        f"Requested by {ALICE}",
        "Evidence:",
        "[captured from: gateway_network]",
        "JSON Patch (RFC 6902)",
        "auth-cert create",
        "To undo it with az:",
        DRAINING_WARNING,
        "-----BEGIN CERTIFICATE-----",
        f"python -m shared proposals approve {pid}",
    ):
        assert part in out, part
    # The certificate's base64 is printed once, as PEM (the az command keeps it, copyable).
    stored = json.loads(machine.stdout)
    data = stored["plan"]["certificate"]["data"]
    lines_with_data = [line for line in out.splitlines() if data in line]
    assert len(lines_with_data) == 1 and lines_with_data[0].lstrip().startswith("echo ")
    # Not one 20 KB line: every other line is short (az commands and ids are the longest).
    assert max(len(line) for line in out.splitlines() if data not in line) < 300
    # JSON: one object, the stored form, unchanged.
    assert (
        stored["id"] == pid
        and stored["renderings"]["json_patch"][0]["value"]["properties"]["data"] == data
    )


# ---- progress -------------------------------------------------------------------------------


def test_fix_reports_phases_on_stderr_with_elapsed_time(
    sandbox_factory: Factory, tmp_path: Path
) -> None:
    # The gateway's operation takes 0.3 s, so "waiting for the operation" is a real phase.
    handle = sandbox_factory("ilb-ase-v1", lro_delay_seconds=0.3)

    result = run(tmp_path, "fix", "--gateway-id", handle.gateway_ids[0], "--yes")

    assert result.returncode == 0, result.stderr
    seen = phases(result.stderr)
    assert all(t >= 0 for t, _ in seen), result.stderr  # nothing but progress lines
    messages = [m for _, m in seen]
    assert in_order(
        messages,
        [
            "reading the gateway agw-ase-v1",
            "reading backend health",
            "probing 2 backend handshake(s)",
            "sending the PUT (attempt 1 of",
            "PUT accepted; waiting for the operation",
            "operation finished (provisioningState Succeeded)",
            "verifying: reading backend health",
            "verified: 1 of 1 server(s) healthy",
            "done",
        ],
    ), messages
    times = [t for t, _ in seen]
    assert times == sorted(times)
    accepted = next(t for t, m in seen if m.startswith("PUT accepted"))
    finished = next(t for t, m in seen if "operation finished" in m)
    # Elapsed times print to a tenth of a second: compare them as such, not as binary floats.
    assert round(finished - accepted, 1) >= 0.2  # the wait is reported while it happens
    # stdout stays the contract: the preview, the verification and the JSON line, no progress.
    assert not any(PHASE.match(line) for line in result.stdout.splitlines())
    assert last_json(result)["action"] == "applied"


def test_quiet_keeps_stderr_empty_and_stdout_the_same(
    sandbox_factory: Factory, tmp_path: Path
) -> None:
    outputs = []
    for i, extra in enumerate(([], ["--quiet"])):
        handle = sandbox_factory("ilb-ase-v1")
        result = run(
            tmp_path / str(i), "fix", "--gateway-id", handle.gateway_ids[0], "--yes", *extra
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result)
    loud, quiet = outputs
    assert loud.stderr and quiet.stderr == ""
    # Same stdout apart from what differs per sandbox (certificates, ids, times).
    assert _shape(loud.stdout) == _shape(quiet.stdout)


def test_approve_and_diagnose_report_progress(v1: SandboxHandle, tmp_path: Path) -> None:
    gid = v1.gateway_ids[0]
    pid = last_json(
        run(tmp_path, "fix", "--gateway-id", gid, "--mode", "propose", "--as-user", ALICE)
    )["proposal"]

    approved = run(tmp_path, "proposals", "approve", pid, "--as-user", BOB)
    diagnosed = run(tmp_path, "diagnose", "--gateway-id", gid, "--format", "json")

    assert approved.returncode == 0, approved.stderr
    assert in_order(
        [m for _, m in phases(approved.stderr)],
        ["reading the gateway", "PUT accepted", "verified", "done"],
    ), approved.stderr
    assert diagnosed.returncode == 0, diagnosed.stderr
    json.loads(diagnosed.stdout)  # stdout is the JSON report alone
    assert in_order(
        [m for _, m in phases(diagnosed.stderr)],
        ["reading the gateway", "reading backend health", "probing", "done"],
    ), diagnosed.stderr


# ---- vantage --------------------------------------------------------------------------------


def test_vantage_detection() -> None:
    assert detect_vantage("auto", {"WEBSITE_SITE_NAME": "func-bot"}).kind is (
        VantageKind.FUNCTION_APP
    )
    assert detect_vantage("auto", {"WEBSITE_SITE_NAME": "func-bot"}).host == "func-bot"
    # `func start` on a laptop sets FUNCTIONS_WORKER_RUNTIME: still an operator machine.
    assert detect_vantage("auto", {"FUNCTIONS_WORKER_RUNTIME": "python"}).kind is (
        VantageKind.OPERATOR_MACHINE
    )
    assert detect_vantage(None, {}).kind is VantageKind.OPERATOR_MACHINE
    assert detect_vantage(None, {"PROBE_VANTAGE": "gateway_network"}).in_gateway_network
    assert not detect_vantage("operator_machine", {"WEBSITE_SITE_NAME": "x"}).in_gateway_network


def test_fix_from_an_operator_machine_proposes_unless_trusted(
    v1: SandboxHandle, tmp_path: Path
) -> None:
    gid = v1.gateway_ids[0]
    local = {"PROBE_VANTAGE": "operator_machine"}

    proposed = run(tmp_path, "fix", "--gateway-id", gid, "--yes", "--as-user", ALICE, **local)

    assert proposed.returncode == 3, proposed.stderr  # proposed: waiting on a person
    out = last_json(proposed)
    assert (out["action"], out["arm_writes"]) == ("proposed", 0)
    assert "operator machine" in out["reason"] and "--trust-local-probe" in out["reason"]
    assert put_count(v1) == 0

    # The flag applies it, with the warning in the preview and on stderr.
    applied = run(
        tmp_path / "again",
        "fix",
        "--gateway-id",
        gid,
        "--yes",
        "--trust-local-probe",
        **local,
    )
    assert applied.returncode == 0, applied.stderr
    assert last_json(applied)["action"] == "applied" and put_count(v1) == 1
    assert "The TLS captures were made from the operator machine" in " ".join(
        applied.stdout.split()
    )
    assert "warning: applied from TLS evidence captured outside" in applied.stderr


def test_diagnose_says_where_it_probed_from(v1: SandboxHandle, tmp_path: Path) -> None:
    gid = v1.gateway_ids[0]
    local = {"PROBE_VANTAGE": "operator_machine"}

    result = run(tmp_path, "diagnose", "--gateway-id", gid, "--format", "json", **local)
    text = run(tmp_path, "diagnose", "--gateway-id", gid, "--quiet", **local)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["vantage"]["kind"] == "operator_machine"
    assert report["vantage"]["in_gateway_network"] is False
    capture = report["findings"][0]["evidence"]["captures"]["gateway"]
    assert capture["vantage"] == "operator_machine"
    assert "warning: probing 2 pool address(es) from the operator machine" in result.stderr
    assert "Evidence: TLS captures from the operator machine" in text.stdout
    assert "WARNING: The TLS captures were made from" in text.stdout
    # --quiet drops progress, never the warning.
    assert text.stderr.startswith("warning: probing") and text.stderr.count("\n") == 1


def _block(out: str, title: str) -> str:
    """The JSON block printed under the line starting with `title`."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
    block = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        block.append(line)
    return "\n".join(block)


def _shape(stdout: str) -> list[Any]:
    """Lines with sandbox-specific values masked (hex, ids, times)."""
    masked = re.sub(
        r"[0-9A-Fa-f]{16,}|chg-[\w-]+|\d{8}T\d{6}Z[\w-]*|127\.\d+\.\d+\.\d+", "X", stdout
    )
    masked = re.sub(r"[A-Za-z0-9+/=]{60,}", "B64", masked)
    return masked.splitlines()
