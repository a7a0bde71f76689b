"""Safety suite (issue #7): hostile input to the operator CLI, in process (`shared.cli.main.main`).

Fuzzed gateway and health files for `diagnose`, fuzzed `export-cert` arguments (loopback only) and
odd `fix --gateway-id` values against a sandbox: the exit code is 0 or 2 with one `error:` line,
never 1 ("unexpected") and never a traceback, and no gateway is written (no PUT reaches the ARM
emulator). Input shapes: tests/data/arm-examples/ (ApplicationGatewayGet.json,
ApplicationGatewayBackendHealthGet.json).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shared.cli.remediate  # noqa: F401 - registers fix, as `python -m shared` does
from shared.cli.main import COMMANDS, Command, main
from shared.common.errors import InputError

pytestmark = [pytest.mark.safety]

FUZZ = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
EXAMPLES = Path(__file__).resolve().parent / "data" / "arm-examples"  # see tests/data/SOURCES.md
GATEWAY = json.loads((EXAMPLES / "ApplicationGatewayGet.json").read_text())["responses"]["200"][
    "body"
]
HEALTH = json.loads((EXAMPLES / "ApplicationGatewayBackendHealthGet.json").read_text())[
    "responses"
]["200"]["body"]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner),
    max_leaves=25,
)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code in (0, 2), (argv, code, err)  # 1 would be an unexpected failure
    assert "Traceback" not in out + err, err
    if code == 2:
        # One error line, the last; before it only progress lines (`[  0.1s] ...`, issue 13).
        *progress, error = err.splitlines()
        assert error.startswith("error: ") and err.endswith("\n"), err
        assert all(line.startswith("[") for line in progress), err
        assert not error.startswith("error: unexpected"), err
    return code, out, err


@pytest.mark.parametrize(
    ("exc", "code", "prefix"),
    [
        (InputError("bad --port"), 2, "error: bad --port\n"),
        (OSError("unreachable"), 2, "error: unreachable\n"),
        (ValueError("internal slip"), 1, "error: unexpected ValueError: internal slip\n"),
        (KeyError("x"), 1, "error: unexpected KeyError: 'x'\n"),
    ],
)
def test_bad_input_and_internal_errors_exit_differently(
    exc: Exception,
    code: int,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What makes the fuzz tests meaningful: input the CLI refuses is an InputError (exit 2); a
    ValueError that escapes is a bug and exits 1, so `run` fails on it instead of passing it off
    as bad input."""

    def handler(_: Any) -> int:
        raise exc

    monkeypatch.setitem(COMMANDS, "boom", Command("raises", lambda p: None, handler))
    assert main(["boom"]) == code
    out, err = capsys.readouterr()
    assert (out, err) == ("", prefix)


def _paths(doc: Any) -> list[tuple[Any, ...]]:
    """Every path to a value in a JSON document (for mutations)."""
    found: list[tuple[Any, ...]] = [()]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += [(key, *p) for p in _paths(value)]
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += [(index, *p) for p in _paths(value)]
    return found


def mutate(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(doc))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return copy


def mutated(doc: Any) -> st.SearchStrategy[Any]:
    return st.builds(mutate, st.just(doc), st.sampled_from(_paths(doc)), JSON)


def as_file(content: bytes | Any) -> bytes:
    return content if isinstance(content, bytes) else json.dumps(content).encode()


# ---- diagnose with fuzzed files ---------------------------------------------------------------


def test_diagnose_survives_fuzzed_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gateway_file, health_file = tmp_path / "gateway.json", tmp_path / "health.json"

    @FUZZ
    @given(
        gateway=st.binary(max_size=512) | JSON | mutated(GATEWAY),
        health=st.just(HEALTH) | mutated(HEALTH) | JSON | st.binary(max_size=256),
        fmt=st.sampled_from(["json", "text"]),
    )
    def check(gateway: Any, health: Any, fmt: str) -> None:
        gateway_file.write_bytes(as_file(gateway))
        health_file.write_bytes(as_file(health))
        argv = ["diagnose", "--gateway", str(gateway_file), "--health", str(health_file)]
        # --no-probe: a fuzzed document may name any address; the CLI must not go looking.
        run([*argv, "--no-probe", "--format", fmt], capsys)

    check()


def test_diagnose_refuses_odd_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "gateway.json"
    good.write_text(json.dumps(GATEWAY))
    health = tmp_path / "health.json"
    health.write_text(json.dumps(HEALTH))
    for argv in (
        ["diagnose", "--gateway", str(good)],  # no --health
        ["diagnose", "--gateway", str(tmp_path / "missing.json"), "--health", str(health)],
        ["diagnose", "--gateway", str(tmp_path), "--health", str(health)],  # a directory
        ["diagnose", "--gateway", "/dev/null", "--health", str(health)],
        ["diagnose", "--gateway", str(good), "--health", str(health), "--timeout", "nan"],
        ["diagnose", "--gateway", str(good), "--health", str(health), "--timeout", "-1"],
        ["diagnose", "--gateway", str(good), "--health", str(health), "--format", "xml"],
        ["diagnose", "--gateway-id", "../../etc/passwd", "--no-probe"],
        ["diagnose", "--gateway", "gate\x00way.json", "--health", str(health)],  # ValueError
        ["diagnose", "--gateway", str(good), "--health", str(health) + "\x00"],
        ["no-such-command"],
        [],
    ):
        code, _, _ = run(argv, capsys)
        assert code == 2, argv


# ---- export-cert, loopback only --------------------------------------------------------------


class TlsServer:
    """A loopback TLS server (trustme certificate) answering handshakes; counts connections."""

    def __init__(self) -> None:
        ca = trustme.CA()
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(self.context)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(2)
            try:
                with self.context.wrap_socket(conn, server_side=True):
                    pass
            except OSError:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def tls_server() -> Iterator[TlsServer]:
    server = TlsServer()
    yield server
    server.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_export_cert_survives_fuzzed_arguments(
    tls_server: TlsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = _closed_port()
    ports = (
        st.sampled_from([str(tls_server.port), str(closed)])
        | st.integers(-(2**70), 2**70).map(str)
        | st.text(max_size=12)
    )
    timeouts = st.sampled_from(["2", "0.5", "0", "-1", "nan", "inf", "-inf", "1e309", "x"])
    snis = st.none() | st.text(max_size=80)
    outs = st.sampled_from(
        [None, str(tmp_path / "out.pem"), str(tmp_path), "/dev/full", str(tmp_path / "o\x00.pem")]
    )

    @FUZZ
    @given(port=ports, timeout=timeouts, sni=snis, out=outs, chain=st.booleans())
    def check(port: str, timeout: str, sni: str | None, out: str | None, chain: bool) -> None:
        argv = ["export-cert", "--address", "127.0.0.1", "--port", port, "--timeout", timeout]
        argv += ["--sni", sni] if sni is not None else []
        argv += ["--out", out] if out else []
        argv += ["--chain"] if chain else []
        code, stdout, _ = run(argv, capsys)
        if code == 0 and not out:
            assert stdout.startswith("-----BEGIN CERTIFICATE-----")

    check()


# ---- fix with odd gateway ids, against a sandbox -----------------------------------------------


def _puts(handle: Any) -> int:
    env = handle.env
    context = ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])
    with urllib.request.urlopen(
        f"{env['SANDBOX_CONTROL_URL']}/requests", timeout=30, context=context
    ) as reply:
        return sum(1 for r in json.loads(reply.read()) if r["method"] == "PUT")


@pytest.mark.sandbox
@pytest.mark.timeout(180)
def test_fix_with_odd_gateway_ids_writes_nothing(
    sandbox_factory: Callable[[str], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    handle = sandbox_factory("ilb-ase-v1")  # REMEDIATION_MODE=apply, scope rg-ase
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VERIFY_DEADLINE_SECONDS", "0")
    ours = handle.gateway_ids[0]
    name = ours.rsplit("/", 1)[-1]
    foreign = ours.replace("/resourceGroups/rg-ase/", "/resourceGroups/rg-other/")
    odd = st.sampled_from(
        [
            foreign,
            foreign.upper(),
            foreign.swapcase(),
            ours.replace(
                "5a7d0b0c-0001-4000-8000-000000000001", "0badc0de-0000-4000-8000-000000000bad"
            ),
            ours + "/../../../rg-other/providers/Microsoft.Network/applicationGateways/x",
            ours.replace("/resourceGroups/rg-ase/", "/resourceGroups/rg-ase/../rg-other/"),
            ours.replace(name, "agw-ąśé"),
            ours.replace(name, ".."),
            ours.replace(name, "agw\x00v1"),
            ours + "\n" + foreign,
            name,
            "",
            "/" * 600,
        ]
    ) | st.text(max_size=120).filter(lambda s: not s.startswith("-"))

    @FUZZ
    @given(gateway_id=odd, mode=st.sampled_from([None, "apply", "diagnose", "propose"]))
    def check(gateway_id: str, mode: str | None) -> None:
        argv = ["fix", "--gateway-id", gateway_id, "--yes", "--as-user", "fuzz"]
        run([*argv, "--mode", mode] if mode else argv, capsys)

    check()
    assert _puts(handle) == 0


# ---- input files: nesting, size, encodings (issue 13) -----------------------------------------


def _diagnose_files(gateway: Path, health: Path) -> list[str]:
    return ["diagnose", "--gateway", str(gateway), "--health", str(health), "--no-probe"]


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], *words: str) -> str:
    code, out, err = run(argv, capsys)
    assert code == 2 and out == "", (argv, err)
    for word in words:
        assert word in err, (word, err)
    return err


def test_input_files_nested_huge_or_oddly_encoded_exit_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    health = tmp_path / "health.json"
    health.write_text(json.dumps(HEALTH))
    nested = tmp_path / "nested.json"
    nested.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    _refused(_diagnose_files(nested, health), capsys, str(nested), "nested too deeply")
    # An endless device is not a regular file; a big regular one stops at MAX_INPUT_BYTES.
    _refused(_diagnose_files(Path("/dev/zero"), health), capsys, "/dev/zero", "not a regular file")
    big = tmp_path / "big.json"
    with big.open("wb") as handle:
        handle.truncate(16 * 1024 * 1024 + 1)  # sparse: no 16 MiB written to disk
    _refused(_diagnose_files(big, health), capsys, str(big), "larger than 16 MiB")
    no_bom = tmp_path / "utf16-no-bom.json"
    no_bom.write_bytes(json.dumps(GATEWAY).encode("utf-16-le"))
    _refused(_diagnose_files(no_bom, health), capsys, str(no_bom), "byte order mark")
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"name": "agw-ü"}'.encode("latin-1"))
    _refused(_diagnose_files(latin1, health), capsys, str(latin1), "not UTF-8")
    odd_bom = tmp_path / "odd.json"
    odd_bom.write_bytes(b"\xff\xfe" + b"\x00\xd8")  # UTF-16 BOM, then a lone surrogate
    _refused(_diagnose_files(odd_bom, health), capsys, str(odd_bom), "not utf-16")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_bom_files_read_like_utf8(
    encoding: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Windows PowerShell's `>` writes UTF-16 with a byte order mark."""
    plain = [tmp_path / "gateway.json", tmp_path / "health.json"]
    plain[0].write_text(json.dumps(GATEWAY), encoding="utf-8")
    plain[1].write_text(json.dumps(HEALTH), encoding="utf-8")
    encoded = [tmp_path / f"gateway.{encoding}.json", tmp_path / f"health.{encoding}.json"]
    bom = {"utf-16-be": b"\xfe\xff"}.get(encoding, b"")
    encoded[0].write_bytes(bom + json.dumps(GATEWAY).encode(encoding))
    encoded[1].write_bytes(bom + json.dumps(HEALTH).encode(encoding))
    expected = run([*_diagnose_files(*plain), "--format", "json"], capsys)
    assert run([*_diagnose_files(*encoded), "--format", "json"], capsys) == expected
    assert expected[0] == 0


def test_a_corrupt_proposal_file_is_named_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.remediation.proposals import LocalProposalStore

    store = LocalProposalStore(tmp_path / "proposals")
    corrupt = store.directory / "20260101T000000Z-deadbeef.json"
    for content in (b"{not json", b"[" * 100_000, b"[1, 2]", b'{"id": 1}', b"\xff\xfe\x00"):
        corrupt.write_bytes(content)
        with pytest.raises(InputError) as info:
            store.list()
        message = str(info.value)
        assert str(corrupt) in message and "\n" not in message


def test_a_bare_gateway_name_needs_resource_group_and_subscription(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--gateway-id NAME --resource-group RG` (or RG/NAME) in AZURE_SUBSCRIPTION_ID; without
    what it needs, one line says what is missing."""
    from shared.common.ids import resolve_gateway

    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    _refused(
        ["diagnose", "--gateway-id", "agw-1", "--resource-group", "rg-1", "--no-probe"],
        capsys,
        "AZURE_SUBSCRIPTION_ID",
    )
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "5a7d0b0c-0001-4000-8000-000000000001")
    _refused(["diagnose", "--gateway-id", "agw-1", "--no-probe"], capsys, "--resource-group")
    _refused(
        ["diagnose", "--gateway-id", "rg-1/agw-1", "--resource-group", "rg-2", "--no-probe"],
        capsys,
        "rg-1",
    )
    _refused(["fix", "--gateway-id", "rg-1/..", "--yes"], capsys, "unsafe")
    sub = "5a7d0b0c-0001-4000-8000-000000000001"
    full = (
        f"/subscriptions/{sub}/resourceGroups/rg-1"
        "/providers/Microsoft.Network/applicationGateways/agw-1"
    )
    assert resolve_gateway("agw-1", resource_group="rg-1", subscription=sub).id == full
    assert resolve_gateway("rg-1/agw-1", subscription=sub).id == full
    assert resolve_gateway(full).id == full


@pytest.mark.sandbox
@pytest.mark.timeout(120)
def test_a_bare_gateway_name_reads_the_gateway_in_azure_subscription_id(
    sandbox_factory: Callable[[str], Any], capsys: pytest.CaptureFixture[str]
) -> None:
    handle = sandbox_factory("ilb-ase-v1")
    subscription = handle.gateway_ids[0].split("/")[2]
    assert os.environ.get("AZURE_SUBSCRIPTION_ID") == subscription
    by_id = run(["diagnose", "--gateway-id", handle.gateway_ids[0], "--no-probe"], capsys)
    for argv in (
        ["--gateway-id", "agw-ase-v1", "--resource-group", "rg-ase"],
        ["--gateway-id", "rg-ase/agw-ase-v1"],
    ):
        assert run(["diagnose", *argv, "--no-probe", "--quiet"], capsys)[:2] == by_id[:2]
    assert _puts(handle) == 0
