"""Measurement: MCP tool call latency (p50, p99) for `get_proposal` and `preview_fix`.

`python -m sandbox serve --scenario ilb-ase-v1 --functions` runs in a child process (the sandbox,
Azurite, the local Functions runner with its MCP endpoint), as an operator starts it. This process
is the agent: one `mcp` SDK client session over Streamable HTTP with FUNCTIONS_MCP_KEY. One
`propose_fix` makes the proposal, then `calls` sequential calls of each tool are timed by the
client (tools/call request to its answer). `get_proposal` reads one blob; `preview_fix` reads the
gateway and backend health through ARM, probes the backends and renders the change. `python -m
bench` runs it on the fast timing profile (ARM answers at once): the figures are the tool path's
own cost, without the backend-health operation's pacing. ARM PUTs are counted: the tools must
write nothing.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, arm_puts, log, percentile

HEADERS = ("tool", "calls", "errors", "p50 ms", "p99 ms", "max ms", "ARM PUTs")
START_TIMEOUT = 120.0


def run(calls: int, *, timing: str = "scenario") -> dict[str, Any]:
    from sandbox.runtime import read_env_file

    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        env_file = Path(tmp) / "sandbox.env"
        command = [sys.executable, "-m", "sandbox", "serve", "--scenario", "ilb-ase-v1"]
        command += ["--env-file", str(env_file), "--workdir", str(Path(tmp) / "work")]
        command += ["--timing", timing, "--functions", "--signed-in-as", ""]
        command += ["--setting", "AzureWebJobs.sweep.Disabled=true"]  # no fix job meanwhile
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not env_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("serve --functions did not start")
                time.sleep(0.1)
            env = read_env_file(env_file)
            log(f"mcp: {calls} calls of get_proposal and preview_fix ({timing} timing)")
            timings = asyncio.run(_session(env, calls))
            puts = arm_puts(env)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    return {
        "timing": timing,
        "arm_puts": puts,
        "tools": {
            name: {
                "calls": len(samples),
                "errors": errors,
                "p50_ms": round(percentile(samples, 50) * 1000, 1),
                "p99_ms": round(percentile(samples, 99) * 1000, 1),
                "max_ms": round(max(samples) * 1000, 1),
            }
            for name, (samples, errors) in timings.items()
        },
    }


async def _session(env: dict[str, str], calls: int) -> dict[str, tuple[list[float], int]]:
    from mcp import ClientSession
    from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

    gateway = env["SANDBOX_GATEWAY_IDS"].split(",")[0]
    url = env["FUNCTIONS_URL"] + "/runtime/webhooks/mcp"
    out: dict[str, tuple[list[float], int]] = {}
    async with (
        create_mcp_http_client(headers={"x-functions-key": env["FUNCTIONS_MCP_KEY"]}) as http,
        streamable_http_client(url, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        proposed: Any = await session.call_tool(
            "propose_fix", {"gateway_id": gateway, "reason": "bench"}
        )
        proposal = (proposed.structured_content or {}).get("proposal")
        if proposed.is_error or not proposal:
            raise RuntimeError(f"propose_fix made no proposal: {proposed.structured_content}")
        cases = {
            "get_proposal": {"proposal_id": proposal},
            "preview_fix": {"gateway_id": gateway},
        }
        for name, arguments in cases.items():
            await session.call_tool(name, arguments)  # warm: imports and clients
            samples: list[float] = []
            errors = 0
            for _ in range(calls):
                started = time.perf_counter()
                result: Any = await session.call_tool(name, arguments)
                samples.append(time.perf_counter() - started)
                errors += bool(result.is_error)
            out[name] = (samples, errors)
    return out


def rows(result: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            name,
            t["calls"],
            t["errors"],
            t["p50_ms"],
            t["p99_ms"],
            t["max_ms"],
            result["arm_puts"],
        ]
        for name, t in result["tools"].items()
    ]
