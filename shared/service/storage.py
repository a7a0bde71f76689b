"""The function app's state in Azure Storage (Azurite locally): the ledger table, the job queue and
the evidence blobs.

Ledger table layout (one table, PartitionKey/RowKey by record kind):
  alert/<sha256(alertId|condition)>  one row per (alertId, monitorCondition): create_entity dedups
  job/<job_id>                       a job: kind, mode, state, hint, diagnosis, outcome, error
  active/<sha256(gateway key)>       the job queued or running for a gateway (ETag-guarded marker)
  decision-<sha256(gateway)>/<time>  what happened to a gateway, by whom (seen/changed/verified…)

Action groups retry and send duplicates, so the alert path deduplicates on (alertId,
monitorCondition) and coalesces with an active job (docs/sources.md#action-groups).
Every storage failure surfaces as StorageUnavailable so the HTTP layer can answer 503, the one
answer an action group retries on (docs/sources.md#action-groups); a request storage refuses as
malformed (400/413) as its subclass StorageRejected, a bug the HTTP layer answers 500.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

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
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)
from urllib3.util.retry import Retry

from shared.common.errors import BotError, SettingsError
from shared.common.ids import GatewayId
from shared.common.settings import SETTINGS
from shared.service.alerts import AlertEvent

_DEFAULTS = {s.name: s.default or "" for s in SETTINGS}
# Table string properties hold 64 KiB (32 K UTF-16 chars); larger JSON goes to a blob.
_MAX_INLINE_JSON = 30_000
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_BLOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CAS_ATTEMPTS = 20
# An alert's stored target list keeps what fits in one table property (64 KiB); the rest is
# counted (`targets`), so an alert naming hundreds of gateways is still recorded and acted on.
_MAX_ALERT_TARGETS_JSON = 30_000
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


class JobStateError(BotError):
    """A job cannot move to the requested state (e.g. a finished job back to running)."""


class EvidenceNotFound(BotError):
    """No evidence blob with that reference."""


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PROPOSED = "proposed"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.PROPOSED})
_JSON_FIELDS = ("hint", "diagnosis", "outcome", "extra")
_UPDATABLE = frozenset(
    {
        "state",
        "mode",
        "attempts",
        "error",
        "proposal_id",
        "started_at",
        "finished_at",
        "diagnosis",
        "outcome",
        "extra",
    }
)


@dataclass
class Job:
    job_id: str
    gateway_id: str
    kind: str
    mode: str
    state: JobState
    requested_by: str
    created_at: datetime
    updated_at: datetime
    hint: Any = None
    attempts: int = 0
    error: str | None = None
    proposal_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    diagnosis: Any = None
    outcome: Any = None
    extra: Any = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        return data


@dataclass(frozen=True)
class JobClaim:
    """What claim_job found: the job's id, whether this call created it, and the joined job."""

    job_id: str
    created: bool
    job: Job | None


@dataclass(frozen=True)
class Decision:
    job_id: str
    gateway_id: str
    what: str  # seen, decided, changed, verified, proposed, approved, …
    by: str
    at: datetime
    evidence_ref: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


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


def gateway_key(gateway: GatewayId | str) -> str:
    """Canonical lower-case id: ARM ids compare case-insensitively."""
    return gateway.key if isinstance(gateway, GatewayId) else gateway.strip().rstrip("/").lower()


def gateway_hash(gateway: GatewayId | str) -> str:
    """Table keys and blob names cannot hold '/', so gateways are named by a hash of their id."""
    return hashlib.sha256(gateway_key(gateway).encode()).hexdigest()


def new_job_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"


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


class Storage:
    """Ledger, job queue and evidence over one storage account. Thread-safe."""

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
    ) -> Storage:
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
    ) -> Storage:
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

    # -- alerts -------------------------------------------------------------------------------

    def record_alert(
        self,
        event: AlertEvent,
        job_id: str | None = None,
        *,
        in_scope: Sequence[GatewayId] | None = None,
    ) -> bool:
        """Record an alert; False when this (alertId, monitorCondition) was already recorded.
        One conditional insert decides new or duplicate.

        Suggested flow: record → if new (or recorded without a job) create_or_join_job →
        attach_alert_job → enqueue when created. Resolved alerts are recorded and start nothing.
        The row keeps the target list that fits (in-scope gateways first) and counts the rest:
        `targets` (gateways named) and, given `in_scope`, `out_of_scope`.
        """
        first = list(in_scope or ())
        keys = {g.key for g in first}
        ordered = first + [g for g in event.gateway_ids if g.key not in keys]
        entity = {
            "PartitionKey": "alert",
            "RowKey": _alert_row(event),
            "alert_id": event.alert_id,
            "monitor_condition": event.monitor_condition,
            "gateways": _fitting_ids(ordered, _MAX_ALERT_TARGETS_JSON),
            "targets": len(event.gateway_ids),
            "hint": json.dumps(event.hint.to_dict() if event.hint else None),
            "rule": event.rule or "",
            "severity": event.severity or "",
            "received_at": datetime.now(UTC),
            "job_id": job_id or "",
        }
        if in_scope is not None:
            entity["out_of_scope"] = len(event.gateway_ids) - len(first)
        if event.fired_at:
            entity["fired_at"] = event.fired_at
        with guard("recording an alert"):
            try:
                self._table.create_entity(entity)
            except ResourceExistsError:
                return False
        return True

    def alert_job(self, event: AlertEvent) -> str | None:
        """The job recorded for this alert (None when none yet or the alert is unknown)."""
        with guard("reading an alert"):
            try:
                entity = self._table.get_entity("alert", _alert_row(event))
            except ResourceNotFoundError:
                return None
        return entity.get("job_id") or None

    def attach_alert_job(self, event: AlertEvent, job_id: str) -> None:
        with guard("linking an alert to its job"):
            self._table.upsert_entity(
                {"PartitionKey": "alert", "RowKey": _alert_row(event), "job_id": job_id},
                mode=UpdateMode.MERGE,
            )

    # -- jobs ---------------------------------------------------------------------------------

    def create_or_join_job(
        self,
        gateway_id: GatewayId | str,
        kind: str,
        mode: str,
        hint: Any = None,
        requested_by: str = "",
    ) -> tuple[str, bool]:
        """The id of the job queued or running for this gateway, or of a new one (created=True)."""
        claim = self.claim_job(gateway_id, kind, mode, hint, requested_by)
        return claim.job_id, claim.created

    def claim_job(
        self,
        gateway_id: GatewayId | str,
        kind: str,
        mode: str,
        hint: Any = None,
        requested_by: str = "",
    ) -> JobClaim:
        """create_or_join_job, also handing back the joined job as read (so callers need not
        read it again).

        The per-gateway "active" marker is claimed with create_entity (409 = someone else won) or
        replaced with an ETag guard when it points at a finished job, so concurrent callers agree
        on one job.
        """
        gkey = gateway_key(gateway_id)
        row = gateway_hash(gkey)
        with guard("creating a job"):
            for _ in range(_CAS_ATTEMPTS):
                marker = self._get("active", row)
                if marker is not None:
                    current = self.get_job(marker["job_id"])
                    if current is not None and not current.state.terminal:
                        return JobClaim(current.job_id, False, current)
                job_id = self._insert_job(gkey, kind, str(mode), hint, requested_by)
                if self._claim_marker(row, gkey, job_id, marker):
                    return JobClaim(job_id, True, None)
                self._table.delete_entity("job", job_id)  # lost the race: join the winner
        raise StorageUnavailable("could not create a job: too much contention on the gateway")

    def get_job(self, job_id: str) -> Job | None:
        if not _JOB_ID_RE.match(job_id or ""):
            return None
        with guard("reading a job"):
            entity = self._get("job", job_id)
            return None if entity is None else self._job_from_entity(entity)

    def update_job(self, job_id: str, **fields: Any) -> Job:
        """Merge fields into a job (ETag-guarded). A finished job keeps its final state:
        JobStateError when asked to move it elsewhere (redelivered messages must not regress)."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"unknown job fields: {', '.join(sorted(unknown))}")
        new_state = JobState(fields["state"]) if "state" in fields else None
        with guard("updating a job"):
            for _ in range(_CAS_ATTEMPTS):
                entity = self._get("job", job_id) if _JOB_ID_RE.match(job_id) else None
                if entity is None:
                    raise JobStateError(f"no job {job_id[:80]!r}")
                state = JobState(entity["state"])
                if new_state is not None and state.terminal and new_state != state:
                    raise JobStateError(f"job {job_id} is {state.value}; cannot become {new_state}")
                patch = self._job_patch(job_id, fields)
                try:
                    self._table.update_entity(
                        patch,
                        mode=UpdateMode.MERGE,
                        etag=entity.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                except ResourceModifiedError:
                    continue
                job = self.get_job(job_id)
                assert job is not None
                return job
        raise StorageUnavailable(f"could not update job {job_id}: too much contention")

    def finish_job(self, job_id: str, state: JobState | str, **fields: Any) -> Job:
        """Put a job in its final state and release the gateway's active-job marker."""
        final = JobState(state)
        if not final.terminal:
            raise JobStateError(f"{final.value} is not a final state")
        job = self.update_job(job_id, state=final, finished_at=datetime.now(UTC), **fields)
        self._release_marker(job)
        return job

    # -- decisions ----------------------------------------------------------------------------

    def record_decision(
        self,
        job_id: str,
        gateway: GatewayId | str,
        what: str,
        by: str,
        evidence_ref: str | None = None,
        *,
        details: Mapping[str, Any] | None = None,
        change_id: str = "",
    ) -> Decision:
        """Append a ledger row: what happened to a gateway (seen, decided, changed, verified, …).
        For cooldown/daily-cap guards record changes as what="changed" with the settings name and
        thumbprint in `details`; `change_id` makes a change row findable by its id alone."""
        now = datetime.now(UTC)
        entity = {
            "PartitionKey": f"decision-{gateway_hash(gateway)}",
            "RowKey": f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}",
            "job_id": job_id,
            "gateway_id": gateway_key(gateway),
            "what": what,
            "by": by,
            "at": now,
            "evidence_ref": evidence_ref or "",
            "details": json.dumps(dict(details or {}), default=str),
        }
        if change_id:
            entity["change_id"] = change_id
        with guard("recording a decision"):
            self._table.create_entity(entity)
        return _decision(entity)

    def list_decisions(
        self, gateway: GatewayId | str, *, what: str | None = None, since: datetime | None = None
    ) -> list[Decision]:
        """A gateway's ledger rows, oldest first."""
        query = "PartitionKey eq @pk"
        params: dict[str, Any] = {"pk": f"decision-{gateway_hash(gateway)}"}
        if since is not None:
            query += " and RowKey ge @since"
            params["since"] = f"{since.astimezone(UTC):%Y%m%dT%H%M%S%fZ}"
        if what is not None:
            query += " and what eq @what"
            params["what"] = what
        return self._decisions(query, params, "listing decisions")

    def _decisions(self, query: str, params: dict[str, Any], what: str) -> list[Decision]:
        """The ledger rows a filter selects, oldest first."""
        with guard(what):
            rows = list(self._table.query_entities(query, parameters=params))
        return sorted((_decision(r) for r in rows), key=lambda d: d.at)

    def list_changes(
        self, gateway: GatewayId | str, *, since: datetime | None = None
    ) -> list[Decision]:
        """The gateway changes the bot made (for the cooldown and daily cap)."""
        return self.list_decisions(gateway, what="changed", since=since)

    def change_rows(
        self, gateway: GatewayId | str | None = None, *, change_id: str | None = None
    ) -> list[Decision]:
        """Change and rollback rows ("changed", "rollback"), oldest first: one gateway's, the
        rows of one change id (across gateways), or every gateway's."""
        query = "(what eq 'changed' or what eq 'rollback')"
        params: dict[str, Any] = {}
        if gateway is not None:
            query += " and PartitionKey eq @pk"
            params["pk"] = f"decision-{gateway_hash(gateway)}"
        if change_id is not None:
            query += " and change_id eq @cid"
            params["cid"] = change_id
        return self._decisions(query, params, "listing changes")

    def list_jobs(
        self, gateway: GatewayId | str | None = None, *, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Summaries of the newest `limit` jobs (of one gateway), newest first; the large JSON
        fields (diagnosis, evidence refs) are left out: GET /api/jobs/{id} has them."""
        query = "PartitionKey eq 'job'"
        params: dict[str, Any] = {}
        if gateway is not None:
            query += " and gateway_id eq @gw"
            params["gw"] = gateway_key(gateway)
        with guard("listing jobs"):
            rows = list(self._table.query_entities(query, parameters=params))
        rows.sort(key=lambda r: r["RowKey"], reverse=True)  # job ids start with their UTC time
        return [_job_summary(r) for r in rows[: max(0, limit)]]

    # -- queue --------------------------------------------------------------------------------

    def enqueue_job(self, job_id: str, *, delay_seconds: int = 0) -> None:
        """Queue {"job_id": …}; a delay keeps it invisible (e.g. when the gateway lease is busy)."""
        with guard("queueing a job"):
            self.jobs_queue_client().send_message(
                json.dumps({"job_id": job_id}), visibility_timeout=max(0, int(delay_seconds))
            )

    def requeue_if_stale(
        self, job_id: str, *, stale_after: float = 120.0, job: Job | None = None
    ) -> bool:
        """Queue a joined job again when it has sat `queued` for a while (`job`: as just read,
        saving a read).

        A caller that created the job may have failed between creating it and queueing it; without
        this, the gateway's active marker would point at a job no message will ever run. A second
        message is harmless: the worker skips finished jobs and serialises on the gateway lease.
        """
        job = job if job is not None and job.job_id == job_id else self.get_job(job_id)
        if job is None or job.state is not JobState.QUEUED:
            return False
        if datetime.now(UTC) - job.updated_at < timedelta(seconds=stale_after):
            return False
        self.enqueue_job(job_id)
        self.update_job(job_id, extra=job.extra)  # refreshes updated_at: one requeue per period
        return True

    # -- evidence -----------------------------------------------------------------------------

    def put_evidence(
        self, job_id: str, name: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        """Store a job's evidence (e.g. the exported CER); returns the reference `<job>/<name>`."""
        if not _JOB_ID_RE.match(job_id) or not _BLOB_NAME_RE.match(name) or ".." in name:
            raise ValueError(f"unsafe evidence name {job_id[:70]!r}/{name[:130]!r}")
        ref = f"{job_id}/{name}"
        with guard("storing evidence"):
            self.container(self.names.evidence_container).upload_blob(
                ref, data, overwrite=True, content_settings=ContentSettings(content_type)
            )
        return ref

    def get_evidence(self, ref: str) -> bytes:
        with guard("reading evidence"):
            try:
                blob = self.container(self.names.evidence_container).download_blob(ref)
            except ResourceNotFoundError:
                raise EvidenceNotFound(f"no evidence {ref[:200]!r}") from None
            return blob.readall()

    def evidence_url(self, ref: str) -> str:
        return self.blob_service.get_blob_client(self.names.evidence_container, ref).url

    # -- internals ----------------------------------------------------------------------------

    def _get(self, pk: str, rk: str) -> Any:
        try:
            return self._table.get_entity(pk, rk)
        except ResourceNotFoundError:
            return None

    def _insert_job(self, gkey: str, kind: str, mode: str, hint: Any, requested_by: str) -> str:
        now = datetime.now(UTC)
        job_id = new_job_id(now)
        entity = {
            "PartitionKey": "job",
            "RowKey": job_id,
            "gateway_id": gkey,
            "kind": kind,
            "mode": mode,
            "state": JobState.QUEUED.value,
            "requested_by": requested_by,
            "created_at": now,
            "updated_at": now,
            "attempts": 0,
        }
        entity.update(self._json_props(job_id, {"hint": hint}))
        self._table.create_entity(entity)
        return job_id

    def _claim_marker(self, row: str, gkey: str, job_id: str, old: Any) -> bool:
        entity = {"PartitionKey": "active", "RowKey": row, "job_id": job_id, "gateway_id": gkey}
        try:
            if old is None:
                self._table.create_entity(entity)
            else:
                self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=old.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def _release_marker(self, job: Job) -> None:
        row = gateway_hash(job.gateway_id)
        with guard("releasing the gateway's job marker"):
            marker = self._get("active", row)
            if marker is None or marker.get("job_id") != job.job_id:
                return
            # When the ETag no longer matches a newer job took the marker over: leave it.
            with suppress(ResourceModifiedError, ResourceNotFoundError):
                self._table.delete_entity(
                    "active",
                    row,
                    etag=marker.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )

    def _job_patch(self, job_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        patch: dict[str, Any] = {"PartitionKey": "job", "RowKey": job_id}
        plain = {k: v for k, v in fields.items() if k not in _JSON_FIELDS}
        for key, value in plain.items():
            patch[key] = value.value if isinstance(value, StrEnum) else value
        if "error" in patch and patch["error"] is not None:
            patch["error"] = str(patch["error"])[:8000]
        patch.update(
            self._json_props(job_id, {k: v for k, v in fields.items() if k in _JSON_FIELDS})
        )
        patch["updated_at"] = datetime.now(UTC)
        # Tables cannot store None: an explicit None clears to "".
        return {k: "" if v is None else v for k, v in patch.items()}

    def _json_props(self, job_id: str, values: Mapping[str, Any]) -> dict[str, str]:
        """JSON-encode; values too big for a table property go to a blob, referenced by name."""
        props: dict[str, str] = {}
        for key, value in values.items():
            text = json.dumps(_jsonable(value), default=str, sort_keys=True)
            if len(text) > _MAX_INLINE_JSON:
                ref = self.put_evidence(
                    job_id, f"job-{key}.json", text.encode(), "application/json"
                )
                props[key], props[f"{key}_ref"] = "", ref
            else:
                props[key], props[f"{key}_ref"] = text, ""
        return props

    def _job_from_entity(self, entity: Mapping[str, Any]) -> Job:
        loaded: dict[str, Any] = {}
        for key in _JSON_FIELDS:
            ref = entity.get(f"{key}_ref")
            text = self.get_evidence(ref).decode() if ref else entity.get(key) or "null"
            loaded[key] = json.loads(text)
        return Job(
            job_id=entity["RowKey"],
            gateway_id=entity["gateway_id"],
            kind=entity.get("kind", ""),
            mode=entity.get("mode", ""),
            state=JobState(entity["state"]),
            requested_by=entity.get("requested_by", ""),
            created_at=entity["created_at"],
            updated_at=entity.get("updated_at") or entity["created_at"],
            attempts=int(entity.get("attempts") or 0),
            error=entity.get("error") or None,
            proposal_id=entity.get("proposal_id") or None,
            started_at=entity.get("started_at") or None,
            finished_at=entity.get("finished_at") or None,
            **loaded,
        )


def storage_from_settings(env: Mapping[str, str], *, credential: Any = None) -> Storage:
    """Build Storage the way the Functions host reads `AzureWebJobsStorage`: a connection string
    locally; in Azure identity-based settings `AzureWebJobsStorage__accountName` (or
    `__blobServiceUri`/`__queueServiceUri`/`__tableServiceUri`), `__credential=managedidentity`
    and `__clientId` for a user-assigned identity."""
    names = StorageNames.from_env(env)
    conn = (env.get("AzureWebJobsStorage") or "").strip()
    if conn:
        return Storage.from_connection_string(conn, names)
    prefix = "AzureWebJobsStorage__"
    account = (env.get(prefix + "accountName") or "").strip()
    urls = {
        svc: (env.get(f"{prefix}{svc}ServiceUri") or "").strip()
        for svc in ("blob", "queue", "table")
    }
    if not account and not all(urls.values()):
        raise SettingsError(
            "AzureWebJobsStorage: set a connection string, or AzureWebJobsStorage__accountName "
            "for an identity-based connection"
        )
    for svc in urls:
        urls[svc] = urls[svc] or f"https://{account}.{svc}.core.windows.net"
    cred = credential or _credential(env.get(prefix + "credential"), env.get(prefix + "clientId"))
    return Storage.from_endpoints(
        blob_url=urls["blob"],
        queue_url=urls["queue"],
        table_url=urls["table"],
        credential=cred,
        names=names,
    )


def _credential(kind: str | None, client_id: str | None) -> Any:
    # Imported lazily: only identity-based deployments need azure-identity here.
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if (kind or "").strip().lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id.strip() if client_id else None)
    return DefaultAzureCredential()


def _fitting_ids(gateways: Sequence[GatewayId], limit: int) -> str:
    """A JSON list of as many ids as fit in `limit` characters, in order."""
    kept: list[str] = []
    size = 2
    for gid in gateways:
        size += len(json.dumps(gid.id)) + 2
        if size > limit:
            break
        kept.append(gid.id)
    return json.dumps(kept)


def _alert_row(event: AlertEvent) -> str:
    alert_id, condition = event.dedup_key
    return hashlib.sha256(f"{alert_id}\n{condition}".encode()).hexdigest()


def _decision(entity: Mapping[str, Any]) -> Decision:
    return Decision(
        job_id=entity.get("job_id", ""),
        gateway_id=entity.get("gateway_id", ""),
        what=entity.get("what", ""),
        by=entity.get("by", ""),
        at=entity["at"],
        evidence_ref=entity.get("evidence_ref") or None,
        details=json.loads(entity.get("details") or "{}"),
    )


def _job_summary(entity: Mapping[str, Any]) -> dict[str, Any]:
    try:
        outcome = json.loads(entity.get("outcome") or "null")
    except ValueError:
        outcome = None
    outcome = outcome if isinstance(outcome, dict) else {}
    return {
        "job_id": entity["RowKey"],
        "gateway_id": entity.get("gateway_id", ""),
        "kind": entity.get("kind", ""),
        "mode": entity.get("mode", ""),
        "state": entity.get("state", ""),
        "requested_by": entity.get("requested_by", ""),
        "created_at": _iso(entity.get("created_at")),
        "finished_at": _iso(entity.get("finished_at")),
        "action": outcome.get("action"),
        "change": outcome.get("change"),
        "proposal_id": entity.get("proposal_id") or None,
        "error": entity.get("error") or None,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (value or None)


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def _create_queue(client: QueueClient) -> None:
    with suppress(ResourceExistsError):
        client.create_queue()


def _create_container(client: ContainerClient) -> None:
    with suppress(ResourceExistsError):
        client.create_container()
