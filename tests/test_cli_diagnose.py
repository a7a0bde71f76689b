"""The diagnosis CLI: exit codes, one-line errors, the JSON contract, text width, export-cert."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import test_tls_probe
from test_diagnosis import seed_v1
from test_tls_probe import Pki, TlsServer

from shared.cli.main import COMMANDS, main
from shared.core.certs import load_certificates

# Shared loopback TLS fixtures (tests/test_tls_probe.py).
pki = test_tls_probe.pki
servers = test_tls_probe.servers


def write(tmp_path: Path, name: str, content: Any) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def seed_files(tmp_path: Path, pki: Pki, servers: list[TlsServer]) -> tuple[str, str]:
    doc, health = seed_v1(pki, servers, auth_data=None)
    return write(tmp_path, "gw.json", doc), write(tmp_path, "health.json", health)


def test_diagnose_json(
    tmp_path: Path, pki: Pki, servers: list[TlsServer], capsys: pytest.CaptureFixture[str]
) -> None:
    gw, health = seed_files(tmp_path, pki, servers)
    assert (
        main(
            ["diagnose", "--gateway", gw, "--health", health, "--format", "json", "--timeout", "3"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    seed = next(f for f in out["findings"] if f["settings"] == "ase-https")
    assert seed["cause"] == "default_certificate_without_sni"
    assert seed["fix"]["action"] == "add_authentication_certificate"
    assert seed["fix"]["certificate"]["sha1"] == pki.ilb_default.sha1
    assert seed["fix"]["settings"] == ["ase-https", "ase-https-2"]


def test_diagnose_text_fits_100_columns(
    tmp_path: Path, pki: Pki, servers: list[TlsServer], capsys: pytest.CaptureFixture[str]
) -> None:
    gw, health = seed_files(tmp_path, pki, servers)
    assert (
        main(
            [
                "diagnose",
                "--gateway",
                gw,
                "--health",
                health,
                "--timeout",
                "3",
                "--pool",
                "other-pool",
                "--settings",
                "other-https",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    # 100 columns, but a word (a resource id) is never broken: it may stand alone on a longer line.
    assert all(len(line) <= 100 or len(line.split()) == 1 for line in text.splitlines())
    assert text.index("other-https") < text.index("ase-https")
    assert pki.ilb_default.sha1 in text


def test_no_probe_runs_offline(
    tmp_path: Path, pki: Pki, servers: list[TlsServer], capsys: pytest.CaptureFixture[str]
) -> None:
    gw, health = seed_files(tmp_path, pki, servers)
    assert (
        main(["diagnose", "--gateway", gw, "--health", health, "--no-probe", "--format", "json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert all(f["evidence"]["captures"]["gateway"] is None for f in out["findings"])


@pytest.mark.parametrize(
    ("gateway", "health", "fragment"),
    [
        (None, "{}", "not found"),
        ("{not json", "{}", "not JSON"),
        ('{"foo": 1}', '{"backendAddressPools": []}', "Gateway"),
        ("GW", '{"foo": 1}', "backend-health"),
        ("GW", "[1, 2]", "backend-health"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path,
    pki: Pki,
    servers: list[TlsServer],
    capsys: pytest.CaptureFixture[str],
    gateway: str | None,
    health: str,
    fragment: str,
) -> None:
    good_gw, _ = seed_files(tmp_path, pki, servers)
    gw_path = good_gw if gateway == "GW" else str(tmp_path / "missing.json")
    if gateway not in (None, "GW"):
        gw_path = write(tmp_path, "bad.json", gateway)
    rc = main(
        [
            "diagnose",
            "--gateway",
            gw_path,
            "--health",
            write(tmp_path, "h.json", health),
            "--no-probe",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["diagnose", "--gateway", "x"]) == 2
    assert main(["export-cert", "--address", "127.0.0.1", "--port", "abc"]) == 2
    err = capsys.readouterr().err
    assert all(line.startswith("error: ") for line in err.splitlines())


def test_export_cert_leaf_and_chain(
    tmp_path: Path, pki: Pki, servers: list[TlsServer], capsys: pytest.CaptureFixture[str]
) -> None:
    ilb = TlsServer(
        [pki.ilb_default], {"test.appgwtestase.com": [pki.app, pki.intermediate]}
    ).start()
    servers.append(ilb)
    assert main(["export-cert", "--address", ilb.address, "--port", str(ilb.port)]) == 0
    pem = capsys.readouterr().out
    assert pem.startswith("-----BEGIN CERTIFICATE-----\n")
    assert all(len(line) <= 64 for line in pem.splitlines())
    assert load_certificates(pem) == [pki.ilb_default.der]

    out = tmp_path / "chain.cer"
    assert (
        main(
            [
                "export-cert",
                "--address",
                ilb.address,
                "--port",
                str(ilb.port),
                "--sni",
                "test.appgwtestase.com",
                "--chain",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert load_certificates(out.read_text()) == [pki.app.der, pki.intermediate.der]


def test_export_cert_unreachable_exits_2(
    servers: list[TlsServer], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_VANTAGE", "auto")
    monkeypatch.delenv("WEBSITE_SITE_NAME", raising=False)
    closed = TlsServer(behaviour="refuse").start()
    servers.append(closed)
    assert main(["export-cert", "--address", closed.address, "--port", str(closed.port)]) == 2
    *progress, error = capsys.readouterr().err.splitlines()
    assert error.startswith("error: ") and "refused" in error and "operator machine" in error
    assert [line.split("] ", 1)[1].split(" ")[0] for line in progress] == ["connecting"]

    quiet = ["export-cert", "--address", closed.address, "--port", str(closed.port), "--quiet"]
    assert main(quiet) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_module_entry_point_never_prints_a_traceback(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.json", "{")
    proc = subprocess.run(
        [sys.executable, "-m", "shared", "diagnose", "--gateway", bad, "--health", bad],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")


def test_registry_is_extensible() -> None:
    assert {"diagnose", "export-cert"} <= set(COMMANDS)


@pytest.mark.sandbox
@pytest.mark.parametrize(
    ("scenario", "action"),
    [
        ("ilb-ase-v1", "add_authentication_certificate"),
        ("ilb-ase-v2-nosni", "set_backend_host_name"),
    ],
)
def test_diagnose_gateway_id_through_the_arm_emulator(
    sandbox_factory: Any, capsys: pytest.CaptureFixture[str], scenario: str, action: str
) -> None:
    handle = sandbox_factory(scenario)
    gid = handle.gateway_ids[0]
    assert main(["diagnose", "--gateway-id", gid, "--format", "json", "--timeout", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    seed = out["findings"][0]
    assert seed["fix"]["action"] == action, seed["evidence"]["explanation"]
