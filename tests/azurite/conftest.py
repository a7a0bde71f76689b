"""Session Azurite (in memory, free ports, loopback only) and per-test unique storage names."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sandbox.azurite import AzuriteHandle, start_azurite  # noqa: E402
from shared.storage import Storage, StorageNames  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.azurite)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteHandle]:
    handle = start_azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def azurite_connection(azurite: AzuriteHandle) -> str:
    return azurite.connection_string


@pytest.fixture
def unique() -> str:
    """A short name unique to this test, valid for tables, queues and containers."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def storage_names(unique: str) -> StorageNames:
    return StorageNames(
        ledger_table=f"ledger{unique}",
        jobs_queue=f"jobs-{unique}",
        evidence_container=f"evidence-{unique}",
        lock_container=f"locks-{unique}",
    )


@pytest.fixture
def storage(azurite_connection: str, storage_names: StorageNames) -> Storage:
    return Storage.from_connection_string(azurite_connection, storage_names)
