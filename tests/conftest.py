"""Shared fixtures. `sandbox_factory` starts sandboxes (docs/sandbox.md) for a test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

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
) -> Iterator[Callable[[str], SandboxHandle]]:
    """start(name_or_path) -> SandboxHandle; sets the env keys for the test, stops all after."""
    from sandbox.runtime import start_sandbox

    handles: list[SandboxHandle] = []

    def start(scenario: str) -> SandboxHandle:
        handle = start_sandbox(scenario, workdir=tmp_path / f"sandbox-{len(handles)}")
        handles.append(handle)
        for name in _FOREIGN_IDENTITY_VARS:
            monkeypatch.delenv(name, raising=False)
        for key, value in handle.env.items():
            monkeypatch.setenv(key, value)
        return handle

    yield start
    for handle in reversed(handles):
        handle.stop()
