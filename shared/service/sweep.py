"""The sweep, fanned out on the queue: the timer enumerates and enqueues, queue workers check.

1. The timer (`run_sweep`) lists the gateways in ALLOWED_SCOPES, one paged `list_all` per
   subscription (a resource-group scope alone lists that group), claims each gateway's check in
   the ledger and queues one "batch" message per ≤50 gateways of one subscription and region.
   A gateway whose check from an earlier sweep is still queued or running is not claimed again
   (unless it has been stuck for STALE_AFTER: its message was lost).
2. A batch message (`process_check`) reads UnhealthyHostCount for its gateways in ONE metrics
   batch call. Zero unhealthy hosts over the window: checked, done. Unhealthy hosts: a fix job
   is created or joined (its diagnosis reads backend health under the gateway lease). No data
   (or metrics unavailable): one "probe" message per gateway.
3. A probe message reads backend health under the gateway lease, as the old sweep did, and
   creates or joins a fix job when a backend is not healthy.

Ledger layout: `check/<sha256(gateway)>` holds {gateway_id, state (queued|running|done), sweep,
queued_at, updated_at, result (healthy|unhealthy|probe|busy|failed|gone), job_id, reason,
watch_due}.

The expiry watch (docs/operations.md#expiry-watch-and-rotation): once every WATCH_EVERY a healthy
gateway gets a fix job too, whose run lists and notifies expiring certificates, adds a known next
certificate's trust and proposes the end of an overlap. A gateway first seen is first watched at a
moment spread over the next WATCH_EVERY by its id (`watch_due`), so a fleet does not all come due
in one sweep.
Claims are conditional (insert, or ETag-guarded update of a finished or stale check), so two
sweeps never both queue one gateway.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.cloud.arm import ArmError
from shared.cloud.monitor import METRICS_BATCH_LIMIT
from shared.common.errors import BotError
from shared.common.ids import GatewayId, parse_gateway_id
from shared.service.app import AppContext
from shared.service.logs import log_context
from shared.service.storage import gateway_hash, guard

log = logging.getLogger(__name__)

CHECK_PARTITION = "check"
# A check queued or running this long lost its message (or its worker): the next sweep claims it.
STALE_AFTER = timedelta(hours=1)
# How often the expiry watch runs a healthy gateway's fix job (its diagnosis reads certificates).
WATCH_EVERY = timedelta(hours=24)
_TRANSACTION_LIMIT = 100  # Table transactions: 100 operations, one partition
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Target:
    """A gateway in scope and its region ("" when the listing could not say)."""

    gid: GatewayId
    location: str = ""
    watch: bool = False  # the expiry watch is due: a healthy gateway gets a fix job as well

    @property
    def group(self) -> tuple[str, str]:
        return self.gid.subscription.lower(), self.location.replace(" ", "").lower()


@dataclass
class SweepReport:
    sweep: str
    gateways: int = 0
    queued: int = 0
    still_pending: int = 0
    messages: int = 0
    list_errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep,
            "gateways": self.gateways,
            "queued": self.queued,
            "still_pending": self.still_pending,
            "messages": self.messages,
            "list_errors": list(self.list_errors),
        }


# ---- clients, built once per context ------------------------------------------------------------

_clients: dict[int, tuple[AppContext, Any, Any]] = {}
_clients_lock = threading.Lock()


def _arm_and_metrics(ctx: AppContext) -> tuple[Any, Any]:
    """One ArmClient and one MetricsReader (one credential) per context: connections and tokens
    are reused across check messages."""
    with _clients_lock:
        entry = _clients.get(id(ctx))
        if entry is None or entry[0] is not ctx:
            from shared.cloud.arm import ArmClient, make_credential
            from shared.cloud.monitor import MetricsReader

            credential = make_credential(ctx.settings)
            entry = (
                ctx,
                ArmClient(ctx.settings, credential=credential),
                MetricsReader(ctx.settings, credential=credential),
            )
            _clients[id(ctx)] = entry
        return entry[1], entry[2]


# ---- the timer ----------------------------------------------------------------------------------


def run_sweep(ctx: AppContext, *, arm: Any = None, now: datetime | None = None) -> SweepReport:
    """Enumerate the scope, claim each gateway's check, queue the batches. No gateway is read
    beyond the listing and no backend health is asked here."""
    now = now or datetime.now(UTC)
    report = SweepReport(sweep=f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}")
    if arm is None:
        arm, _ = _arm_and_metrics(ctx)
    targets = gateways_in_scope(ctx.settings.scopes, arm, report.list_errors)
    report.gateways = len(targets)
    ledger = CheckLedger(ctx)
    claimed = ledger.claim(targets, report.sweep, now)
    report.queued = len(claimed)
    report.still_pending = len(targets) - len(claimed)
    for message in check_messages(claimed, report.sweep):
        ledger.enqueue(message)
        report.messages += 1
    log.info("sweep %s: %s", report.sweep, json.dumps(report.to_dict()))
    return report


def gateways_in_scope(
    scopes: Iterable[str], arm: Any, errors: list[str] | None = None
) -> list[Target]:
    """Every gateway under the scopes, each once, with its region, listed with paging."""
    by_sub: dict[str, dict[str, Any]] = {}
    for scope in scopes:
        parts = scope.strip("/").split("/")
        if len(parts) < 2:
            continue
        entry = by_sub.setdefault(
            parts[1].lower(), {"sub": parts[1], "all": False, "groups": {}, "gateways": set()}
        )
        if len(parts) == 2 or len(parts) >= 8:
            entry["all"] = True  # a subscription, or a gateway (its region needs the listing)
        else:
            entry["groups"][parts[3].lower()] = parts[3]
        if len(parts) >= 8:
            entry["gateways"].add(parse_gateway_id(scope).key)
    prefixes = _scope_prefixes(scopes)
    found: dict[str, Target] = {}
    for entry in by_sub.values():
        listings = [None] if entry["all"] else list(entry["groups"].values())
        for group in listings:
            try:
                for gateway_id, location in arm.iter_gateways(entry["sub"], group):
                    gid = parse_gateway_id(gateway_id)
                    if _in_scope(gid.key, prefixes):
                        found.setdefault(gid.key, Target(gid, location or ""))
            except BotError as exc:
                where = f"/subscriptions/{entry['sub']}"
                where += f"/resourceGroups/{group}" if group else ""
                log.warning("sweep: cannot list %s: %s", where, exc)
                if errors is not None:
                    errors.append(f"{where}: {exc}")
                # Gateways named one by one are still checked, by backend health (no region).
                for key in entry["gateways"]:
                    found.setdefault(key, Target(parse_gateway_id(key)))
    return list(found.values())


def _scope_prefixes(scopes: Iterable[str]) -> list[str]:
    return [s.strip().rstrip("/").lower() for s in scopes if s.strip()]


def _in_scope(key: str, prefixes: list[str]) -> bool:
    return any(key == p or key.startswith(p + "/") for p in prefixes)


def watch_offset(gid: GatewayId) -> timedelta:
    """Where in WATCH_EVERY a gateway's watch falls, fixed by its id (spreads a fleet)."""
    digest = hashlib.sha256(gid.key.encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % int(WATCH_EVERY.total_seconds()))


def next_watch(gid: GatewayId, due: datetime | None, now: datetime) -> tuple[bool, datetime]:
    """(is the watch due now, when it is due next). Never seen: due at an offset from now."""
    if not isinstance(due, datetime):
        return False, now + watch_offset(gid)
    if now < due:
        return False, due
    periods = (now - due) // WATCH_EVERY + 1
    return True, due + periods * WATCH_EVERY


def check_messages(targets: Iterable[Target], sweep: str) -> Iterator[dict[str, Any]]:
    """One batch message per ≤50 gateways of one subscription and region; a gateway with no
    known region gets a probe message (the metrics batch needs the region)."""
    groups: dict[tuple[str, str], list[Target]] = {}
    for target in targets:
        if not target.location:
            message = {"sweep": sweep, "kind": "probe", "gateway": target.gid.id}
            yield {**message, "reason": "no-region", **({"watch": True} if target.watch else {})}
            continue
        groups.setdefault(target.group, []).append(target)
    for (_, region), members in sorted(groups.items()):
        for start in range(0, len(members), METRICS_BATCH_LIMIT):
            chunk = members[start : start + METRICS_BATCH_LIMIT]
            watch = [t.gid.id for t in chunk if t.watch]
            yield {
                "sweep": sweep,
                "kind": "batch",
                "region": region,
                "gateways": [t.gid.id for t in chunk],
                **({"watch": watch} if watch else {}),
            }


# ---- the check ledger ---------------------------------------------------------------------------


class CheckLedger:
    """One entity per gateway in the ledger table: is its check queued, running or done."""

    def __init__(self, ctx: AppContext) -> None:
        self.storage = ctx.storage

    @property
    def _table(self) -> Any:
        self.storage.ensure()
        return self.storage.table_service.get_table_client(self.storage.names.ledger_table)

    def states(self) -> dict[str, Any]:
        """Every check entity, by row key (one paged query: 1,000 entities a page)."""
        with guard("reading the gateway checks"):
            rows = self._table.query_entities(
                "PartitionKey eq @pk",
                parameters={"pk": CHECK_PARTITION},
                select=["RowKey", "state", "sweep", "updated_at", "watch_due"],
            )
            return {row["RowKey"]: row for row in rows}

    def get(self, gid: GatewayId) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        with guard("reading a gateway check"):
            try:
                return self._table.get_entity(CHECK_PARTITION, gateway_hash(gid))
            except ResourceNotFoundError:
                return None

    def claim(self, targets: list[Target], sweep: str, now: datetime) -> list[Target]:
        """Claim the checks of `targets` for this sweep; returns those claimed. Skipped: a check
        still queued or running (not stale), or one another sweep claimed meanwhile."""
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        existing = self.states()
        ops: list[tuple[Target, tuple[Any, ...]]] = []
        for target in targets:
            row = gateway_hash(target.gid)
            old = existing.get(row)
            watch, due = next_watch(target.gid, old.get("watch_due") if old else None, now)
            target = replace(target, watch=watch)
            entity = {
                "PartitionKey": CHECK_PARTITION,
                "RowKey": row,
                "gateway_id": target.gid.key,
                "state": "queued",
                "sweep": sweep,
                "queued_at": now,
                "updated_at": now,
                "result": "",
                "job_id": "",
                "reason": "",
                "watch_due": due,
            }
            if old is None:
                ops.append((target, ("create", entity)))
                continue
            updated = old.get("updated_at")
            stale = not isinstance(updated, datetime) or now - updated >= STALE_AFTER
            if old.get("state") not in {"queued", "running"} or stale:
                guard_kwargs = {
                    "mode": UpdateMode.REPLACE,
                    "etag": old.metadata["etag"],
                    "match_condition": MatchConditions.IfNotModified,
                }
                ops.append((target, ("update", entity, guard_kwargs)))
        claimed: list[Target] = []
        for start in range(0, len(ops), _TRANSACTION_LIMIT):
            claimed += self._submit(ops[start : start + _TRANSACTION_LIMIT])
        return claimed

    def _submit(self, ops: list[tuple[Target, tuple[Any, ...]]]) -> list[Target]:
        """One transaction for the chunk; when any claim in it loses a race, claim one by one."""
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )
        from azure.data.tables import TableTransactionError

        table = self._table
        with guard("claiming gateway checks"):
            try:
                table.submit_transaction([op for _, op in ops])
                return [target for target, _ in ops]
            except TableTransactionError:
                pass
            claimed = []
            for target, op in ops:
                try:
                    if op[0] == "create":
                        table.create_entity(op[1])
                    else:
                        table.update_entity(op[1], **op[2])
                except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                    continue
                claimed.append(target)
            return claimed

    def enqueue(self, message: Mapping[str, Any], *, delay_seconds: int = 0) -> None:
        with guard("queueing a gateway check"):
            self.storage.checks_queue_client().send_message(
                json.dumps(message, separators=(",", ":")),
                visibility_timeout=max(0, int(delay_seconds)),
            )

    def mark(self, gids: Iterable[GatewayId], **fields: Any) -> None:
        """Merge fields into checks (no ETag: a check is owned by the sweep that claimed it, and
        a stale re-claim meanwhile only costs one extra check)."""
        from azure.data.tables import UpdateMode

        now = datetime.now(UTC)
        ops = [
            (
                "upsert",
                {
                    "PartitionKey": CHECK_PARTITION,
                    "RowKey": gateway_hash(gid),
                    "gateway_id": gid.key,
                    "updated_at": now,
                    **{k: "" if v is None else v for k, v in fields.items()},
                },
                {"mode": UpdateMode.MERGE},
            )
            for gid in gids
        ]
        table = self._table
        with guard("recording gateway checks"):
            for start in range(0, len(ops), _TRANSACTION_LIMIT):
                table.submit_transaction(ops[start : start + _TRANSACTION_LIMIT])

    def finish(self, gids: Iterable[GatewayId], result: str, **fields: Any) -> None:
        self.mark(gids, state="done", result=result, **fields)


# ---- the queue worker ---------------------------------------------------------------------------


def parse_check(body: str) -> dict[str, Any]:
    """A check message, validated: {"sweep", "kind": "batch", "region", "gateways": [...]} or
    {"sweep", "kind": "probe", "gateway", "reason"}."""
    try:
        data = json.loads(body)
    except ValueError:
        raise BotError(f"not a check message: {body[:100]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sweep"), str):
        raise BotError(f"not a check message: {body[:100]!r}")
    if data.get("kind") == "batch":
        gateways = data.get("gateways")
        if (
            not isinstance(gateways, list)
            or not 0 < len(gateways) <= METRICS_BATCH_LIMIT
            or not all(isinstance(g, str) for g in gateways)
            or not isinstance(data.get("region"), str)
        ):
            raise BotError("a batch check names 1 to 50 gateways and a region")
        data["gateways"] = [parse_gateway_id(g) for g in gateways]
        watch = data.get("watch", [])
        if not isinstance(watch, list) or not {str(w).lower() for w in watch} <= {
            g.lower() for g in gateways
        }:
            raise BotError("a batch check's watch list names some of its gateways")
        data["watch"] = {parse_gateway_id(str(w)).key for w in watch}
    elif data.get("kind") == "probe":
        if not isinstance(data.get("gateway"), str):
            raise BotError("a probe check names one gateway")
        data["gateway"] = parse_gateway_id(data["gateway"])
        if not isinstance(data.get("watch", False), bool):
            raise BotError("a probe check's watch is true or false")
    else:
        raise BotError(f"unknown check kind {data.get('kind')!r}")
    return data


def process_check(ctx: AppContext, body: str, dequeue_count: int = 1) -> dict[str, Any]:
    """Run one check message; returns what happened per result (for logs and tests)."""
    message = parse_check(body)
    if message["kind"] == "batch":
        return _check_batch(ctx, message)
    return {_probe(ctx, message): [message["gateway"].id]}


def _transient(exc: ArmError) -> bool:
    return exc.status in _TRANSIENT_STATUS or (exc.status is None and exc.code is None)


def _check_batch(ctx: AppContext, message: dict[str, Any]) -> dict[str, Any]:
    gids: list[GatewayId] = message["gateways"]
    _, metrics = _arm_and_metrics(ctx)
    ledger = CheckLedger(ctx)
    try:
        peaks = metrics.unhealthy_hosts(message["region"], [g.id for g in gids])
    except ArmError as exc:
        if _transient(exc):
            raise  # redelivered; after maxDequeueCount the checks' poison handler records it
        # Not authorized, bad request…: check these gateways the old way rather than not at all.
        log.warning("sweep: metrics unavailable for %d gateways: %s", len(gids), exc)
        peaks = {}
    healthy = [g for g in gids if peaks.get(g.id) == 0]
    unhealthy = [g for g in gids if (peaks.get(g.id) or 0) > 0]
    unknown = [g for g in gids if peaks.get(g.id) is None]
    done: dict[str, Any] = {"healthy": [g.id for g in healthy], "unhealthy": [], "probe": []}
    watched = [g for g in healthy if g.key in message["watch"]]
    if len(watched) < len(healthy):
        ledger.finish(
            [g for g in healthy if g.key not in message["watch"]],
            "healthy",
            reason="UnhealthyHostCount 0",
        )
    for gid in watched:
        with log_context(gateway=gid.name):
            job_id = _queue_fix(ctx, gid)
            ledger.finish([gid], "healthy", job_id=job_id, reason="UnhealthyHostCount 0; watch")
    for gid in unhealthy:
        with log_context(gateway=gid.name):
            job_id = _queue_fix(ctx, gid)
            reason = f"UnhealthyHostCount {peaks[gid.id]:g}"
            ledger.finish([gid], "unhealthy", job_id=job_id, reason=reason)
            done["unhealthy"].append(gid.id)
    for gid in unknown:
        probe = {"sweep": message["sweep"], "kind": "probe", "gateway": gid.id}
        watch = {"watch": True} if gid.key in message["watch"] else {}
        ledger.enqueue({**probe, "reason": "no-data", **watch})
        done["probe"].append(gid.id)
    return done


def _probe(ctx: AppContext, message: dict[str, Any]) -> str:
    """Backend health of one gateway, under its lease."""
    from shared.core.health import HealthState, parse_backend_health
    from shared.service.lease import GatewayLease, LeaseUnavailable

    gid: GatewayId = message["gateway"]
    ledger = CheckLedger(ctx)
    current = ledger.get(gid)
    if current is not None and current.get("sweep") != message["sweep"]:
        return "superseded"  # a later sweep claimed this gateway; its own message checks it
    if current is not None and current.get("state") == "done":
        return "already-done"  # a redelivered probe: checked once per sweep
    arm, _ = _arm_and_metrics(ctx)
    with log_context(gateway=gid.name):
        ledger.mark([gid], state="running")
        lease = GatewayLease(ctx.storage, gid)
        try:
            lease.acquire()
        except LeaseUnavailable:
            # A job holds the gateway; it reads backend health itself.
            ledger.finish([gid], "busy", reason="gateway lease held by a job")
            return "busy"
        try:
            try:
                health = parse_backend_health(arm.backend_health(gid))
            except ArmError as exc:
                if _transient(exc):
                    ledger.mark([gid], state="queued")
                    raise
                ledger.finish([gid], "failed", reason=str(exc)[:1000])
                return "failed"
            except BotError as exc:
                ledger.finish([gid], "failed", reason=str(exc)[:1000])
                return "failed"
        finally:
            lease.release()
        if all(h.health is HealthState.HEALTHY for h in health):
            reason = f"backend health ({message.get('reason')})"
            if message.get("watch"):
                job_id = _queue_fix(ctx, gid)  # the expiry watch (module docstring)
                ledger.finish([gid], "healthy", job_id=job_id, reason=f"{reason}; watch")
            else:
                ledger.finish([gid], "healthy", reason=reason)
            return "healthy"
        job_id = _queue_fix(ctx, gid)
        ledger.finish([gid], "unhealthy", job_id=job_id, reason="backend health")
        return "unhealthy"


def _queue_fix(ctx: AppContext, gid: GatewayId) -> str:
    """Create (and queue) or join the gateway's fix job, as the old sweep did."""
    storage = ctx.storage
    job_id, created = storage.create_or_join_job(gid, "fix", "", requested_by="sweep")
    if created:
        storage.enqueue_job(job_id)
    else:
        storage.requeue_if_stale(job_id)
    return job_id


def process_check_poison(ctx: AppContext, body: str, dequeue_count: int = 0) -> str:
    """A check message that failed maxDequeueCount times: its checks end `failed`, so the next
    sweep queues them again instead of waiting STALE_AFTER."""
    try:
        message = parse_check(body)
    except BotError as exc:
        log.error("poison check message that names no gateway: %s", exc)
        return "unreadable"
    gids = message["gateways"] if message["kind"] == "batch" else [message["gateway"]]
    CheckLedger(ctx).finish(gids, "failed", reason=f"gave up after {dequeue_count} attempts")
    return "failed"
