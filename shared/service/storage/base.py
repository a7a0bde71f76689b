"""The storage account itself: its clients, names, error mapping and the shared base class the
noun modules (alerts, jobs, ledger, evidence, holds) build on."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import requests
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)
from urllib3.util.retry import Retry

from shared.common.errors import BotError
from shared.common.ids import GatewayId, gateway_key
from shared.common.settings import SETTINGS

_DEFAULTS = {s.name: s.default or "" for s in SETTINGS}
_CAS_ATTEMPTS = 20
# HTTP connections kept per storage service: the host runs many invocations at once, and requests'
# default pool of 10 drops (and later reopens) connections under an alert storm.
_POOL_SIZE = 64
# Fail fast: the HTTP trigger must answer (503) well within the action group's ~10 s.
_BLOB_QUEUE_RETRY: dict[str, Any] = {
    "retry_total": 2,
    "retry_connect": 1,
    "initial_backoff": 0.2,
    "increment_base": 1,
    "random_jitter_range": 0.2,
    "connection_timeout": 5,
    "read_timeout": 30,
}
_TABLE_RETRY: dict[str, Any] = {
    "retry_total": 2,
    "retry_connect": 1,
    "retry_backoff_factor": 0.3,
    "connection_timeout": 5,
    "read_timeout": 30,
}


class StorageUnavailable(BotError):
    """Azure Storage could not be reached or answered with an error; worth retrying later."""


class StorageRejected(StorageUnavailable):
    """Storage refused the request itself (400/413: e.g. a property over 64 KiB): our bug, not an
    outage. A StorageUnavailable for callers that retry; the HTTP layer answers 500, not 503."""


@dataclass(frozen=True)
class StorageNames:
    ledger_table: str = _DEFAULTS["LEDGER_TABLE"]
    jobs_queue: str = _DEFAULTS["JOBS_QUEUE"]
    evidence_container: str = _DEFAULTS["EVIDENCE_CONTAINER"]
    lock_container: str = _DEFAULTS["LOCK_CONTAINER"]

    @property
    def poison_queue(self) -> str:
        return f"{self.jobs_queue}-poison"

    @property
    def checks_queue(self) -> str:
        """The sweep's gateway checks (shared/service/worker.py), named after the job queue."""
        return f"{self.jobs_queue}-checks"

    @property
    def checks_poison_queue(self) -> str:
        return f"{self.checks_queue}-poison"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StorageNames:
        return cls(
            ledger_table=env.get("LEDGER_TABLE") or cls.ledger_table,
            jobs_queue=env.get("JOBS_QUEUE") or cls.jobs_queue,
            evidence_container=env.get("EVIDENCE_CONTAINER") or cls.evidence_container,
            lock_container=env.get("LOCK_CONTAINER") or cls.lock_container,
        )


def gateway_hash(gateway: GatewayId | str) -> str:
    """Table keys and blob names cannot hold '/', so gateways are named by a hash of their id."""
    return hashlib.sha256(gateway_key(gateway).encode()).hexdigest()


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Turn any Azure SDK failure into StorageUnavailable naming the operation; a request storage
    refuses as malformed (400, 413) into StorageRejected: retrying it cannot help."""
    try:
        yield
    except AzureError as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        status = exc.status_code if isinstance(exc, HttpResponseError) else None
        if status in (400, 413):
            raise StorageRejected(f"storage refused the request while {what}: {detail}") from exc
        raise StorageUnavailable(f"storage unavailable while {what}: {detail}") from exc


_Client = TypeVar("_Client", BlobServiceClient, QueueServiceClient, TableServiceClient)


def _service(factory: Callable[..., _Client], *args: Any, **options: Any) -> _Client:
    """A storage service client over its own pooled HTTP session (see _POOL_SIZE), unless the
    caller brought a transport. The environment's proxy and CA settings are read once, for the
    client's one host: requests otherwise rescans the environment and ~/.netrc on every call,
    about half the client-side cost of a table operation."""
    if "transport" in options:
        return factory(*args, **options)
    session = requests.Session()
    session.trust_env = False
    # As azure-core's own session: retries are the pipeline's (RetryPolicy), not urllib3's.
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=4,
        pool_maxsize=_POOL_SIZE,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    transport = RequestsTransport(
        session=session,
        use_env_settings=False,
        connection_timeout=options.get("connection_timeout", 5),
        read_timeout=options.get("read_timeout", 30),
    )
    client = factory(*args, transport=transport, **options)
    session.proxies.update(requests.utils.get_environ_proxies(client.url))
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if ca_bundle:
        session.verify = ca_bundle
    return client


class StorageBase:
    """One storage account's clients, created lazily and shared (thread-safe)."""

    def __init__(
        self,
        *,
        blob: BlobServiceClient,
        queue: QueueServiceClient,
        table: TableServiceClient,
        names: StorageNames | None = None,
    ) -> None:
        self.blob_service = blob
        self.queue_service = queue
        self.table_service = table
        self.names = names or StorageNames()
        self._ready = False
        self._ready_lock = threading.Lock()
        # Built once and shared by every invocation (clients are thread-safe): building one costs
        # a pipeline per call.
        self._table_client: TableClient | None = None
        self._jobs_queue: QueueClient | None = None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_connection_string(
        cls, conn: str, names: StorageNames | None = None, **client_kwargs: Any
    ) -> Self:
        bq = {**_BLOB_QUEUE_RETRY, **client_kwargs}
        tb = {**_TABLE_RETRY, **client_kwargs}
        return cls(
            blob=_service(BlobServiceClient.from_connection_string, conn, **bq),
            queue=_service(QueueServiceClient.from_connection_string, conn, **bq),
            table=_service(TableServiceClient.from_connection_string, conn, **tb),
            names=names,
        )

    @classmethod
    def from_endpoints(
        cls,
        *,
        blob_url: str,
        queue_url: str,
        table_url: str,
        credential: Any,
        names: StorageNames | None = None,
    ) -> Self:
        return cls(
            blob=_service(BlobServiceClient, blob_url, credential=credential, **_BLOB_QUEUE_RETRY),
            queue=_service(
                QueueServiceClient, queue_url, credential=credential, **_BLOB_QUEUE_RETRY
            ),
            table=_service(TableServiceClient, table_url, credential=credential, **_TABLE_RETRY),
            names=names,
        )

    def ensure(self) -> None:
        """Create the table, queues and containers once (idempotent)."""
        if self._ready:
            return
        with self._ready_lock, guard("creating the ledger, queues and containers"):
            if self._ready:
                return
            self.table_service.create_table_if_not_exists(self.names.ledger_table)
            for name in (
                self.names.jobs_queue,
                self.names.poison_queue,
                self.names.checks_queue,
                self.names.checks_poison_queue,
            ):
                _create_queue(self.queue_service.get_queue_client(name))
            for name in (self.names.evidence_container, self.names.lock_container):
                _create_container(self.blob_service.get_container_client(name))
            self._ready = True

    @property
    def _table(self) -> TableClient:
        client = self._table_client
        if client is None:
            self.ensure()
            client = self._table_client = self.table_service.get_table_client(
                self.names.ledger_table
            )
        return client

    def container(self, name: str) -> ContainerClient:
        self.ensure()
        return self.blob_service.get_container_client(name)

    def jobs_queue_client(self) -> QueueClient:
        """The job queue, base64 both ways: the Functions queue trigger expects base64
        (docs/sources.md#functions)."""
        client = self._jobs_queue
        if client is None:
            self.ensure()
            client = self._jobs_queue = self.queue_service.get_queue_client(
                self.names.jobs_queue,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
            )
        return client

    def checks_queue_client(self) -> QueueClient:
        """The sweep's check queue, base64 both ways like the job queue."""
        self.ensure()
        return self.queue_service.get_queue_client(
            self.names.checks_queue,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )

    def _get(self, pk: str, rk: str) -> Any:
        try:
            return self._table.get_entity(pk, rk)
        except ResourceNotFoundError:
            return None

    def _merge_if_unchanged(self, patch: Mapping[str, Any], entity: Any) -> bool:
        """Merge `patch` into the row `entity` was read from, only if nobody changed it since
        (its ETag); False when someone did: the caller reads again and retries."""
        try:
            self._table.update_entity(
                dict(patch),
                mode=UpdateMode.MERGE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            return False
        return True


def _create_queue(client: QueueClient) -> None:
    with suppress(ResourceExistsError):
        client.create_queue()


def _create_container(client: ContainerClient) -> None:
    with suppress(ResourceExistsError):
        client.create_container()
