"""Jobs: one row per job, an ETag-guarded "active" marker per gateway so concurrent callers agree
on one job, and the job queue."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from shared.common.errors import BotError
from shared.common.ids import GatewayId
from shared.service.storage.base import (
    _CAS_ATTEMPTS,
    StorageUnavailable,
    gateway_hash,
    gateway_key,
    guard,
)
from shared.service.storage.evidence import _JOB_ID_RE, EvidenceMixin

# Table string properties hold 64 KiB (32 K UTF-16 chars); larger JSON goes to a blob.
_MAX_INLINE_JSON = 30_000


class JobStateError(BotError):
    """A job cannot move to the requested state (e.g. a finished job back to running)."""


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


def new_job_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"


class JobsMixin(EvidenceMixin):
    """Jobs, their per-gateway active marker and the job queue."""

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
                if not self._merge_if_unchanged(patch, entity):
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
