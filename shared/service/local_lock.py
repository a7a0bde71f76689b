"""The CLI's gateway lock: an exclusive file lock per gateway under the state directory.

Kept apart from the blob lease (shared.service.lease) so that the command line, which keeps its
state in local files, imports no storage SDK to take it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from shared.common.errors import BotError
from shared.common.ids import GatewayId, gateway_key


class LeaseUnavailable(BotError):
    """Another worker holds this gateway's lock; try again later."""


def lock_name(gateway: GatewayId | str) -> str:
    """Blob / file name for a gateway's lock: sha256 of the lower-case id."""
    return hashlib.sha256(gateway_key(gateway).encode()).hexdigest()


class LocalGatewayLock:
    """The CLI's equivalent: an exclusive, non-blocking flock on `<state_dir>/locks/<sha256>.lock`.
    The OS drops it when the process dies, so `lost` never turns True."""

    def __init__(self, state_dir: str | os.PathLike[str], gateway_id: GatewayId | str) -> None:
        self.gateway = gateway_key(gateway_id)
        self.path = Path(state_dir) / "locks" / f"{lock_name(self.gateway)}.lock"
        self._handle: IO[Any] | None = None

    @property
    def lost(self) -> bool:
        return False

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise LeaseUnavailable(f"gateway {self.gateway} is locked by another process") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {self.gateway}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def __enter__(self) -> LocalGatewayLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
