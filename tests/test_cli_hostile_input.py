"""Hostile input to the CLI: a FIFO or device as an input file and a JSON number too long for
Python are input errors (exit 2, one line); `export-cert --out` never truncates an existing file
or writes through a symbolic link unless told to (`--force`), and then replaces the link itself."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import test_tls_probe
from test_tls_probe import Pki, TlsServer

from shared.cli.main import main
from shared.cli.output_file import write_new_file
from shared.common.errors import InputError
from shared.core.certs import load_certificates

pki = test_tls_probe.pki
servers = test_tls_probe.servers


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _files(tmp_path: Path, gateway: str) -> tuple[Path, Path]:
    gw = tmp_path / "gateway.json"
    gw.write_text(gateway)
    health = tmp_path / "health.json"
    health.write_text('{"backendAddressPools": []}')
    return gw, health


def test_a_fifo_as_input_is_an_input_error_not_a_hang(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, health = _files(tmp_path, "{}")
    fifo = tmp_path / "gateway.fifo"
    os.mkfifo(fifo)
    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(
            main(["diagnose", "--gateway", str(fifo), "--health", str(health), "--no-probe"])
        ),
        daemon=True,
    )
    worker.start()
    worker.join(10)
    assert result == [2], "diagnose waited on a FIFO with no writer"
    error = _one_error_line(capsys)
    assert str(fifo) in error and "not a regular file" in error


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_as_input_is_an_input_error(
    device: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, health = _files(tmp_path, "{}")
    assert main(["diagnose", "--gateway", device, "--health", str(health), "--no-probe"]) == 2
    assert "not a regular file" in _one_error_line(capsys)


def test_a_5000_digit_number_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw, health = _files(tmp_path, '{"name": "agw", "properties": {"x": ' + "9" * 5000 + "}}")
    assert main(["diagnose", "--gateway", str(gw), "--health", str(health), "--no-probe"]) == 2
    error = _one_error_line(capsys)
    assert str(gw) in error and "more than 4300 digits" in error


# ---- export-cert --out ----------------------------------------------------------------------


def test_write_new_file_refuses_existing_paths_and_links(tmp_path: Path) -> None:
    existing = tmp_path / "existing.cer"
    existing.write_text("keep me")
    with pytest.raises(InputError, match="exists"):
        write_new_file(str(existing), "new", force=False)
    assert existing.read_text() == "keep me"

    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "link.cer"
    link.symlink_to(victim)
    with pytest.raises(InputError, match="symbolic link"):
        write_new_file(str(link), "new", force=False)
    assert victim.read_text() == "precious"

    dangling = tmp_path / "dangling.cer"
    dangling.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(InputError, match="symbolic link"):
        write_new_file(str(dangling), "new", force=False)
    assert not (tmp_path / "would-be-created").exists()

    # --force replaces the link itself; what it pointed to is untouched.
    write_new_file(str(link), "new", force=True)
    assert not link.is_symlink() and link.read_text() == "new"
    assert victim.read_text() == "precious"
    write_new_file(str(existing), "replaced", force=True)
    assert existing.read_text() == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["existing.cer", "victim", "link.cer", "dangling.cer"]
    )  # no temporary file left behind

    with pytest.raises(InputError, match="directory"):
        write_new_file(str(tmp_path), "x", force=True)
    fresh = tmp_path / "fresh.cer"
    write_new_file(str(fresh), "made", force=False)
    assert fresh.read_text() == "made"


def test_export_cert_out_refuses_an_existing_file_before_connecting(
    tmp_path: Path, pki: Pki, servers: list[TlsServer], capsys: pytest.CaptureFixture[str]
) -> None:
    backend = TlsServer([pki.ilb_default]).start()
    servers.append(backend)
    out = tmp_path / "ilb.cer"
    argv = ["export-cert", "--address", backend.address, "--port", str(backend.port)]
    argv += ["--out", str(out)]
    assert main(argv) == 0
    assert load_certificates(out.read_text()) == [pki.ilb_default.der]
    capsys.readouterr()

    out.write_text("an operator's file")
    assert main(argv) == 2
    assert "exists" in _one_error_line(capsys) and out.read_text() == "an operator's file"

    link = tmp_path / "link.cer"
    link.symlink_to(tmp_path / "elsewhere")
    assert main([*argv[:-1], str(link)]) == 2
    assert "symbolic link" in _one_error_line(capsys)
    assert not (tmp_path / "elsewhere").exists()

    assert main([*argv, "--force"]) == 0
    assert load_certificates(out.read_text()) == [pki.ilb_default.der]
