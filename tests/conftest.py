"""Shared fixtures. `sandbox_factory` starts sandboxes (docs/sandbox.md) for a test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Helper modules the test modules share: their asserts report like a test's own.
pytest.register_assert_rewrite(
    "tests.diagnosis_helpers",
    "tests.remediate_helpers",
    "tests.sandbox.arm_sdk_helpers",
    "tests.sandbox.conformance_helpers",
)

if TYPE_CHECKING:
    from sandbox.runtime import SandboxHandle

# Would steer azure-identity away from the sandbox's managed-identity endpoint.
_FOREIGN_IDENTITY_VARS = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "SSL_CERT_FILE",
)


@pytest.fixture
def sandbox_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., SandboxHandle]]:
    """start(name_or_path, timing="fast", **options) -> SandboxHandle; sets the env keys for the
    test, stops all after. Tests run the fast timing profile (docs/sandbox.md, "Timing
    profiles"); a test about one delay passes it as an emulator option, e.g.
    `probe_interval_seconds=30`, or `timing="scenario"` for the scenario's own pacing;
    `fleet="60x3@0.1"` adds a generated fleet (sandbox/fleet.py).
    ARM authorizes every request with the roles infra/ grants the bot (`rbac="infra"`,
    sandbox/rbac.py); `rbac=None` lets any token do anything."""
    from sandbox.runtime import start_sandbox

    handles: list[SandboxHandle] = []

    def start(
        scenario: str,
        *,
        timing: str = "fast",
        rbac: str | None = "infra",
        fleet: str | None = None,
        **options: Any,
    ) -> SandboxHandle:
        handle = start_sandbox(
            scenario,
            workdir=tmp_path / f"sandbox-{len(handles)}",
            timing=timing,
            options=options,
            rbac=rbac,
            fleet=fleet,
        )
        handles.append(handle)
        for name in _FOREIGN_IDENTITY_VARS:
            monkeypatch.delenv(name, raising=False)
        for key, value in handle.env.items():
            monkeypatch.setenv(key, value)
        return handle

    yield start
    for handle in reversed(handles):
        handle.stop()
