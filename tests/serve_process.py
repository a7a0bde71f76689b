"""`python -m sandbox serve --functions` as a child process, for the tests that use the bot the
way an operator does: through the env file, over HTTP, stopped with Ctrl-C (SIGINT)."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from sandbox.runtime import read_env_file

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 90.0  # upper bound on a loaded 2-core machine; it takes a few seconds


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path

    @property
    def url(self) -> str:
        return self.env["FUNCTIONS_URL"]

    def sign_in(self, object_id: str) -> dict[str, str]:
        """Sign a sandbox user in through the runner's `/.auth/login/aad`; returns the session
        token as a program presents it (`X-ZUMO-AUTH`, not a browser's cookie) for `call`."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        try:
            conn.request("GET", f"/.auth/login/aad?login_hint={quote(object_id)}")
            response = conn.getresponse()
            response.read()
            cookie = response.getheader("Set-Cookie") or ""
        finally:
            conn.close()
        assert response.status == 302 and cookie, (response.status, cookie)
        return {"X-ZUMO-AUTH": cookie.split(";", 1)[0].partition("=")[2]}

    def call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        key: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if key:
            sent["x-functions-key"] = self.env["FUNCTIONS_KEY"]
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.url}/api/{path}", data=data, method=method, headers=sent
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
                status = response.status
        except urllib.error.HTTPError as err:
            body, status = err.read(), err.code
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, body.decode("utf-8", "replace")

    def wait_job(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, job = self.call("GET", f"jobs/{job_id}")
            assert status == 200, job
            if job["state"] in {"succeeded", "failed", "proposed"}:
                return dict(job)
            assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
            time.sleep(0.2)

    def stop(self) -> int:
        """Ctrl-C, as an operator stops it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return int(self.process.returncode)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_served(tmp: Path, scenario: str, *extra: str) -> Served:
    """Start `serve --functions` and wait for its env file."""
    env_file = tmp / "sandbox.env"
    log = tmp / "serve.log"
    command = [sys.executable, "-m", "sandbox", "serve", "--scenario", scenario]
    command += ["--env-file", str(env_file), "--workdir", str(tmp / "work"), "--timing", "fast"]
    command += ["--functions", *extra]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # our SIGINT, not the terminal's, stops it
        )
    served = Served(process, {}, log)
    deadline = time.monotonic() + START_TIMEOUT
    while not env_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            served.stop()
            raise AssertionError(f"serve --functions did not start:\n{served.output()}")
        time.sleep(0.1)
    served.env = read_env_file(env_file)
    return served
