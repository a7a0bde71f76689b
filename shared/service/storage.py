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
answer an action group retries on (docs/sources.md#action-groups).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

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
    """Turn any Azure SDK failure into StorageUnavailable naming the operation."""
    try:
        yield
    except AzureError as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise StorageUnavailable(f"storage unavailable while {what}: {detail}") from exc


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

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_connection_string(
        cls, conn: str, names: StorageNames | None = None, **client_kwargs: Any
    ) -> Storage:
        bq = {**_BLOB_QUEUE_RETRY, **client_kwargs}
        tb = {**_TABLE_RETRY, **client_kwargs}
        return cls(
            blob=BlobServiceClient.from_connection_string(conn, **bq),
            queue=QueueServiceClient.from_connection_string(conn, **bq),
            table=TableServiceClient.from_connection_string(conn, **tb),
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
            blob=BlobServiceClient(blob_url, credential=credential, **_BLOB_QUEUE_RETRY),
            queue=QueueServiceClient(queue_url, credential=credential, **_BLOB_QUEUE_RETRY),
            table=TableServiceClient(table_url, credential=credential, **_TABLE_RETRY),
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
            for name in (self.names.jobs_queue, self.names.poison_queue):
                _create_queue(self.queue_service.get_queue_client(name))
            for name in (self.names.evidence_container, self.names.lock_container):
                _create_container(self.blob_service.get_container_client(name))
            self._ready = True

    @property
    def _table(self) -> TableClient:
        self.ensure()
        return self.table_service.get_table_client(self.names.ledger_table)

    def container(self, name: str) -> ContainerClient:
        self.ensure()
        return self.blob_service.get_container_client(name)

    def jobs_queue_client(self) -> QueueClient:
        """The job queue, base64 both ways: the Functions queue trigger expects base64
        (docs/sources.md#functions)."""
        self.ensure()
        return self.queue_service.get_queue_client(
            self.names.jobs_queue,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )

    # -- alerts -------------------------------------------------------------------------------

    def record_alert(self, event: AlertEvent, job_id: str | None = None) -> bool:
        """Record an alert; False when this (alertId, monitorCondition) was already recorded.

        Suggested flow: record → if new (or recorded without a job) create_or_join_job →
        attach_alert_job → enqueue when created. Resolved alerts are recorded and start nothing.
        """
        entity = {
            "PartitionKey": "alert",
            "RowKey": _alert_row(event),
            "alert_id": event.alert_id,
            "monitor_condition": event.monitor_condition,
            "gateways": json.dumps([g.id for g in event.gateway_ids]),
            "hint": json.dumps(event.hint.to_dict() if event.hint else None),
            "rule": event.rule or "",
            "severity": event.severity or "",
            "received_at": datetime.now(UTC),
            "job_id": job_id or "",
        }
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
        """The id of the job queued or running for this gateway, or of a new one (created=True).

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
                        return current.job_id, False
                job_id = self._insert_job(gkey, kind, str(mode), hint, requested_by)
                if self._claim_marker(row, gkey, job_id, marker):
                    return job_id, True
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
    ) -> Decision:
        """Append a ledger row: what happened to a gateway (seen, decided, changed, verified, …).
        For cooldown/daily-cap guards record changes as what="changed" with the settings name and
        thumbprint in `details`."""
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
        with guard("listing decisions"):
            rows = list(self._table.query_entities(query, parameters=params))
        return sorted((_decision(r) for r in rows), key=lambda d: d.at)

    def list_changes(
        self, gateway: GatewayId | str, *, since: datetime | None = None
    ) -> list[Decision]:
        """The gateway changes the bot made (for the cooldown and daily cap)."""
        return self.list_decisions(gateway, what="changed", since=since)

    # -- queue --------------------------------------------------------------------------------

    def enqueue_job(self, job_id: str, *, delay_seconds: int = 0) -> None:
        """Queue {"job_id": …}; a delay keeps it invisible (e.g. when the gateway lease is busy)."""
        with guard("queueing a job"):
            self.jobs_queue_client().send_message(
                json.dumps({"job_id": job_id}), visibility_timeout=max(0, int(delay_seconds))
            )

    def requeue_if_stale(self, job_id: str, *, stale_after: float = 120.0) -> bool:
        """Queue a joined job again when it has sat `queued` for a while.

        A caller that created the job may have failed between creating it and queueing it; without
        this, the gateway's active marker would point at a job no message will ever run. A second
        message is harmless: the worker skips finished jobs and serialises on the gateway lease.
        """
        job = self.get_job(job_id)
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
