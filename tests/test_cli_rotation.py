"""The command line of the expiry watch and the overlap rotation, as real subprocesses against
the sandbox scenario `rotation-v2`: `diagnose` lists what expires, `fix --next-cert FILE` adds the
renewal's trust, bad files exit 2 with one line."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_remediate_sandbox import FAST, Factory, put_count

from sandbox.runtime import SandboxHandle
from tests.cli_process import last_json, run_cli

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]


@pytest.fixture
def rotation(sandbox_factory: Factory) -> Iterator[SandboxHandle]:
    yield sandbox_factory("rotation-v2")


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli({**os.environ, **FAST, "STATE_DIR": str(tmp_path / "state"), **env}, *args)


def test_diagnose_lists_the_expiring_leaf_in_json_and_text(
    rotation: SandboxHandle, tmp_path: Path
) -> None:
    gid = rotation.gateway_ids[0]
    result = run(tmp_path, "diagnose", "--gateway-id", gid, "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    leaf = rotation.certs["app-2025"].thumbprint()
    assert [(e["where"], e["sha1"]) for e in report["expiring"]] == [("backend_leaf", leaf)]

    text = run(tmp_path, "diagnose", "--gateway-id", gid, "--format", "text").stdout
    assert "Expiring certificates (1):" in text and leaf in text


def test_fix_next_cert_previews_the_overlap_and_bad_files_exit_2(
    rotation: SandboxHandle, tmp_path: Path
) -> None:
    gid = rotation.gateway_ids[0]
    chain = tmp_path / "renewal.pem"
    chain.write_bytes(rotation.certs["app-2026"].pem() + rotation.certs["new-root"].pem())
    dry = run(
        tmp_path,
        "fix",
        "--gateway-id",
        gid,
        "--next-cert",
        str(chain),
        "--dry-run",
        TRUSTED_CERT_NAMES="",
    )
    assert dry.returncode == 0, dry.stderr
    assert "overlaps contoso-root-2016" in dry.stdout
    assert last_json(dry)["arm_writes"] == 0 and put_count(rotation) == 0

    junk = tmp_path / "junk.txt"
    junk.write_text("not a certificate")
    for path in (str(junk), str(tmp_path / "missing.pem")):
        bad = run(tmp_path, "fix", "--gateway-id", gid, "--next-cert", path, "--yes")
        assert bad.returncode == 2, bad.stderr
        assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")
        assert "Traceback" not in bad.stderr + bad.stdout
    assert put_count(rotation) == 0
