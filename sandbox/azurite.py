"""Start and stop Azurite, Microsoft's Azure Storage emulator, for tests and the sandbox.

Azurite comes from npm (package.json, `make install`). It listens on loopback only, with
telemetry off (it is on by default) and on free ports picked by the OS; the real ports are parsed
from its "successfully listening at" lines (docs/sources.md#azurite).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"

# The emulator's well-known development account (documented, not a secret).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
SERVICES = ("blob", "queue", "table")
_LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at http://127\.0\.0\.1:(\d+)"
)
_START_TIMEOUT = 30.0


class AzuriteError(RuntimeError):
    """Azurite is missing or did not start."""


def connection_string(ports: dict[str, int], host: str = "127.0.0.1") -> str:
    """A connection string with explicit endpoints: `UseDevelopmentStorage=true` only knows the
    default ports."""
    endpoints = ";".join(
        f"{svc.capitalize()}Endpoint=http://{host}:{ports[svc]}/{ACCOUNT_NAME}" for svc in SERVICES
    )
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"{endpoints};"
    )


@dataclass
class AzuriteHandle:
    """A running Azurite process. Stop it with `stop()`; `restart()` keeps the same ports."""

    workdir: Path
    location: Path | None
    ports: dict[str, int]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    @property
    def connection_string(self) -> str:
        return connection_string(self.ports)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, *, crash: bool = False) -> None:
        """Stop by pid: SIGTERM (or SIGKILL when `crash`, to imitate a crash), then wait."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self, *, crash: bool = False) -> None:
        """Stop and start again on the same ports. Data survives only with on-disk persistence;
        after a crash (SIGKILL) only what Azurite had saved (it autosaves every few seconds)."""
        self.stop(crash=crash)
        self.process, self.ports = _launch(self.workdir, self.location, self.ports, self.log_path)

    def __enter__(self) -> AzuriteHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_azurite(
    workdir: str | os.PathLike[str], *, in_memory: bool = True, location: str | None = None
) -> AzuriteHandle:
    """Start Azurite on 127.0.0.1 with OS-chosen ports.

    `in_memory` (the default) keeps nothing on disk; pass `in_memory=False` (optionally with a
    `location`, default `<workdir>/azurite-data`) to persist, e.g. to survive a restart. The two are
    mutually exclusive in Azurite 3.35 (docs/sources.md#azurite).
    """
    if in_memory and location is not None:
        raise ValueError("in_memory and location are mutually exclusive; pass in_memory=False")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = None if in_memory else Path(location) if location else work / "azurite-data"
    if data is not None:
        data.mkdir(parents=True, exist_ok=True)
    log_path = work / "azurite.log"
    process, ports = _launch(work, data, dict.fromkeys(SERVICES, 0), log_path)
    return AzuriteHandle(work, data, ports, process, log_path)


def _command(location: Path | None, ports: dict[str, int]) -> list[str]:
    if not AZURITE_BIN.exists():
        raise AzuriteError(f"Azurite is not installed ({AZURITE_BIN} is missing): run make install")
    if shutil.which("node") is None:
        raise AzuriteError("node is not on PATH; Azurite needs Node.js (run make install)")
    cmd = [str(AZURITE_BIN), "--silent", "--skipApiVersionCheck", "--disableTelemetry"]
    for svc in SERVICES:
        cmd += [f"--{svc}Host", "127.0.0.1", f"--{svc}Port", str(ports[svc])]
    cmd += ["--location", str(location)] if location else ["--inMemoryPersistence"]
    return cmd


def _launch(
    workdir: Path, location: Path | None, ports: dict[str, int], log_path: Path
) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    cmd = _command(location, ports)
    with log_path.open("wb") as log:
        # Own session: a Ctrl-C in the test terminal must not race our own shutdown.
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        return proc, _wait_for_ports(proc, log_path)
    except BaseException:
        proc.kill()
        proc.wait(timeout=10)
        raise


def _wait_for_ports(proc: subprocess.Popen[bytes], log_path: Path) -> dict[str, int]:
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        text = log_path.read_text(errors="replace")
        found = {svc.lower(): int(port) for svc, port in _LISTENING.findall(text)}
        if len(found) == len(SERVICES):
            return found
        if proc.poll() is not None:
            raise AzuriteError(f"Azurite exited with {proc.returncode}: {text.strip()[-2000:]}")
        if time.monotonic() > deadline:
            raise AzuriteError(
                f"Azurite did not start within {_START_TIMEOUT:.0f} s: {text[-2000:]}"
            )
        time.sleep(0.05)
