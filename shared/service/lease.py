"""One writer per gateway: a blob lease (function app) or a file lock (CLI), same interface.

Concurrent PUTs on one Application Gateway cancel each other (docs/sources.md#overlapping-writes),
so every write path holds the gateway's lock. The blob lease is renewed in the background while
held, because a gateway update can take many minutes while a lease lasts at most 60 s.
"""

from __future__ import annotations

import logging
import threading
from contextlib import suppress
from types import TracebackType

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobClient, BlobLeaseClient

from shared.common.ids import GatewayId
from shared.service.local_lock import LeaseUnavailable, LocalGatewayLock, lock_name
from shared.service.storage import Storage, gateway_key, guard

log = logging.getLogger(__name__)


class GatewayLease:
    """`with GatewayLease(storage, gw):` holds a blob lease on `<lock container>/<sha256(id)>`.

    Raises LeaseUnavailable when another holder has it. While held, a thread renews it every
    `duration / 3` seconds; when a renewal fails `lost` turns True and the holder must stop
    writing (another worker may have the gateway now).
    """

    def __init__(
        self,
        storage: Storage,
        gateway_id: GatewayId | str,
        *,
        duration: int = 60,
        renew_every: float | None = None,
    ) -> None:
        if not 15 <= duration <= 60:
            raise ValueError("a blob lease lasts 15 to 60 seconds")
        self.storage = storage
        self.gateway = gateway_key(gateway_id)
        self.duration = duration
        self.renew_every = renew_every if renew_every is not None else duration / 3
        self.renewals = 0
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._lease: BlobLeaseClient | None = None
        self._thread: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    @property
    def held(self) -> bool:
        return self._lease is not None and not self.lost

    @property
    def lease_id(self) -> str | None:
        return self._lease.id if self._lease else None

    def _blob(self) -> BlobClient:
        container = self.storage.container(self.storage.names.lock_container)
        return container.get_blob_client(lock_name(self.gateway))

    def acquire(self) -> None:
        blob = self._blob()
        with guard("acquiring the gateway lease"):
            # The blob must exist before it can be leased; never overwrite a leased one.
            with suppress(ResourceExistsError):
                blob.upload_blob(self.gateway.encode(), overwrite=False)
            lease = BlobLeaseClient(blob)
            try:
                lease.acquire(lease_duration=self.duration)
            except HttpResponseError as exc:
                if exc.status_code == 409:
                    raise LeaseUnavailable(
                        f"gateway {self.gateway} is locked by another worker"
                    ) from None
                raise
        self._lease = lease
        self._thread = threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        lease, self._lease = self._lease, None
        if lease is not None and not self.lost:
            try:
                lease.release()
            except AzureError as exc:  # it expires on its own within `duration`
                log.warning("could not release lease on %s: %s", self.gateway, exc)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_every):
            lease = self._lease
            if lease is None:
                return
            try:
                lease.renew()
                self.renewals += 1
            except AzureError as exc:
                log.error("lost the lease on %s: %s", self.gateway, exc)
                self._lost.set()
                return

    def __enter__(self) -> GatewayLease:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


# The file lock and its error are defined beside it (no storage SDK); importable from here too.
__all__ = ["GatewayLease", "LeaseUnavailable", "LocalGatewayLock", "lock_name"]
