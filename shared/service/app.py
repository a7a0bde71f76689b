"""The function app's runtime context: settings, storage and the remediator, built once per
environment and reused across invocations (the Functions worker keeps the process warm).

Nothing heavy is imported at module level: the alert endpoint only needs settings and storage.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.common.settings import SETTINGS, Settings, load_settings

if TYPE_CHECKING:
    from shared.common.ids import GatewayId
    from shared.remediation.changelog import ChangeRecord
    from shared.remediation.remediate import Remediator
    from shared.service.storage import Storage

_ENV_KEYS = (
    *(s.name for s in SETTINGS),
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "REQUESTS_CA_BUNDLE",
)


@dataclass
class AppContext:
    settings: Settings
    env: Mapping[str, str]
    _storage: Storage | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def storage(self) -> Storage:
        with self._lock:
            if self._storage is None:
                from shared.service.storage import storage_from_settings

                self._storage = storage_from_settings(self.env)
            return self._storage

    def remediator(
        self,
        lease: Any = None,
        *,
        job_id: str = "",
        before_write: Callable[[GatewayId, ChangeRecord], None] | None = None,
    ) -> Remediator:
        """A Remediator over Azure Storage; `lease` is the gateway lease the worker holds,
        `job_id` the job its ledger rows (the "changed" records) belong to, `before_write` the
        write-ahead hook called before every gateway PUT."""
        from shared.cloud.arm import ArmClient, make_credential
        from shared.cloud.keyvault import trusted_source
        from shared.remediation.remediate import Remediator
        from shared.service.expiry_notices import TableExpiryNotices
        from shared.service.holds import TableHoldStore
        from shared.service.notify import notifier
        from shared.service.proposals_blob import BlobProposalStore
        from shared.service.table_changelog import TableChangeLog

        credential = make_credential(self.settings)
        storage = self.storage
        return Remediator(
            self.settings,
            arm=ArmClient(self.settings, credential=credential),
            proposals=BlobProposalStore(storage),
            changes=TableChangeLog(storage, job_id=job_id),
            lock_for=lambda gid: _held(lease, gid),
            trusted_certificates=trusted_source(self.settings, credential),
            notify=notifier(self.settings),
            before_write=before_write,
            holds=TableHoldStore(storage),
            expiry_notices=TableExpiryNotices(storage),
        )


@contextmanager
def _held(lease: Any, gid: GatewayId) -> Iterator[Any]:
    """The worker already holds the gateway's lease; the write loop checks `lost` on it."""
    if lease is None:
        raise RuntimeError(f"no lease held for {gid}")
    yield lease


_contexts: dict[str, AppContext] = {}
_contexts_lock = threading.Lock()


def get_context(environ: Mapping[str, str] | None = None) -> AppContext:
    """The context for the current environment (rebuilt when a relevant setting changes)."""
    env = dict(os.environ if environ is None else environ)
    digest = hashlib.sha256(
        "\n".join(f"{k}={env.get(k, '')}" for k in _ENV_KEYS).encode()
    ).hexdigest()
    with _contexts_lock:
        ctx = _contexts.get(digest)
        if ctx is None:
            ctx = AppContext(settings=load_settings(env), env=env)
            _contexts[digest] = ctx
        return ctx
