"""Helpers for the remediation tests through the sandbox (tests/test_remediate_sandbox*.py,
test_remediate_faults.py, test_cli_fix.py and others): the sandbox's control endpoint, the
stored gateway document, the CLI's Remediator built from the sandbox's environment.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.runtime import SandboxHandle
from shared.cli.wiring import local_remediator
from shared.cloud.arm import ArmClient
from shared.common.ids import parse_gateway_id
from shared.common.settings import load_settings
from shared.remediation.remediate import Remediator

Factory = Callable[[str], SandboxHandle]
ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "sandbox" / "scenarios"
# Approvers are Entra object ids (APPROVERS: <object id>[=<label>]).
ALICE = "a11ce000-0000-4000-8000-000000000001"
BOB = "b0b00000-0000-4000-8000-000000000002"
# Fast, bounded timings for tests: verification and LROs end within seconds in the sandbox.
FAST = {
    "VERIFY_DEADLINE_SECONDS": "20",
    "ARM_POLLING_INTERVAL": "0",
    "LRO_TIMEOUT_SECONDS": "30",
    "APPROVERS": f"{ALICE}=alice,{BOB}=bob",
}


# ---- helpers (also imported by test_remediate_faults.py and test_cli_fix.py) -----------------


def control(handle: SandboxHandle, route: str, body: Any = None, method: str | None = None) -> Any:
    """Call the sandbox control endpoint (loopback, sandbox CA)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        handle.env["SANDBOX_CONTROL_URL"] + route,
        data=data,
        method=method or ("POST" if data is not None else "GET"),
        headers={"Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=handle.env["REQUESTS_CA_BUNDLE"])
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def arm_requests(handle: SandboxHandle) -> list[dict[str, Any]]:
    return list(control(handle, "/requests"))


def put_count(handle: SandboxHandle) -> int:
    """Gateway PUTs the emulator served (accepted or refused)."""
    return sum(1 for r in arm_requests(handle) if r["method"] == "PUT")


def stored(handle: SandboxHandle, index: int = 0) -> dict[str, Any]:
    """The emulator's stored gateway document (with what GET never shows: the listener PFX)."""
    return dict(handle.arm.gateway_document(handle.gateway_ids[index]))


def settings_entry(doc: dict[str, Any], name: str) -> dict[str, Any]:
    entries = doc["properties"]["backendHttpSettingsCollection"]
    return next(e for e in entries if e["name"].lower() == name.lower())


def ref_names(entry: dict[str, Any], collection: str) -> list[str]:
    refs = entry.get("properties", {}).get(collection) or []
    return [r["id"].rsplit("/", 1)[-1] for r in refs]


def cert_names(doc: dict[str, Any], collection: str) -> list[str]:
    return [c["name"] for c in doc["properties"].get(collection) or []]


def cert_data(doc: dict[str, Any], collection: str, name: str) -> str:
    certs = doc["properties"][collection]
    return str(next(c for c in certs if c["name"] == name)["properties"]["data"])


def b64_der(handle: SandboxHandle, cert: str) -> str:
    return base64.b64encode(handle.certs[cert].der()).decode()


def _sha1(handle: SandboxHandle, cert: str) -> str:
    return handle.certs[cert].thumbprint()


_VOLATILE = {"etag", "provisioningState"}


def comparable(value: Any) -> Any:
    """A document without what ARM stamps on every write (etags, provisioning states)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def make_remediator(
    handle: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> Remediator:
    """The CLI's Remediator from the sandbox env plus FAST plus `env` (state in tmp_path)."""
    for key, value in {**FAST, **env}.items():
        monkeypatch.setenv(key, value)
    return local_remediator(load_settings(), state_dir=tmp_path / "state")


def sdk_put(
    handle: SandboxHandle, change: Callable[[dict[str, Any]], None], index: int = 0
) -> None:
    """Someone else changes the gateway through azure-mgmt-network (GET, modify, PUT, wait)."""
    client = ArmClient(load_settings(ARM_POLLING_INTERVAL="0"))
    gid = parse_gateway_id(handle.gateway_ids[index])
    doc = copy.deepcopy(client.get_gateway(gid).doc)
    change(doc)
    client.put_gateway(gid, doc)


def scenario_file(tmp_path: Path, base: str, edit: Callable[[dict[str, Any]], None]) -> str:
    """A custom scenario: a built-in one as JSON, edited, written under tmp_path."""
    data = json.loads((SCENARIOS / f"{base}.json").read_text())
    edit(data)
    path = tmp_path / f"{data['name']}.json"
    path.write_text(json.dumps(data))
    return str(path)


def add_tag(name: str, value: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc.setdefault("tags", {})[name] = value

    return edit


@pytest.fixture
def v1(sandbox_factory: Factory) -> Iterator[SandboxHandle]:
    yield sandbox_factory("ilb-ase-v1")
