"""shared.service.storage against real Azurite: ledger, job coalescing, queue, evidence, outages."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sandbox.azurite import start_azurite
from shared.common.errors import BotError, SettingsError
from shared.remediation.proposals import Proposal, ProposalConflict, ProposalNotFound
from shared.service.alerts import parse_alert
from shared.service.proposals_blob import BlobProposalStore
from shared.service.storage import (
    EvidenceNotFound,
    JobState,
    JobStateError,
    Storage,
    StorageNames,
    StorageUnavailable,
    storage_from_settings,
)

SUB = "11111111-2222-3333-4444-555555555555"
GW = (
    f"/subscriptions/{SUB}/resourceGroups/rg-prod"
    "/providers/Microsoft.Network/applicationGateways/agw1"
)


def alert(condition: str = "Fired", alert_id: str = "a1") -> dict[str, object]:
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": f"/subscriptions/{SUB}/providers/Microsoft.AlertsManagement/alerts/"
                f"{alert_id}",
                "monitorCondition": condition,
                "alertTargetIDs": [GW.lower()],
            }
        },
    }


def test_record_alert_deduplicates_on_id_and_condition(storage: Storage) -> None:
    fired = parse_alert(alert())
    assert storage.record_alert(fired) is True
    assert storage.record_alert(fired) is False
    # Same alert id in other case: the same alert instance.
    upper = parse_alert(alert(alert_id="A1"))
    assert storage.record_alert(upper) is False
    assert storage.record_alert(parse_alert(alert("Resolved"))) is True
    assert storage.alert_job(fired) is None
    storage.attach_alert_job(fired, "job-1")
    assert storage.alert_job(fired) == "job-1"
    assert storage.alert_job(parse_alert(alert(alert_id="other"))) is None


def test_job_lifecycle_and_coalescing(storage: Storage) -> None:
    job_id, created = storage.create_or_join_job(GW, "alert", "apply", {"pool": "p"}, "alert:x")
    assert created
    # Same gateway, any case: joins while queued.
    assert storage.create_or_join_job(GW.upper(), "fix", "propose", None, "me") == (job_id, False)
    job = storage.get_job(job_id)
    assert job is not None
    assert (job.state, job.kind, job.mode, job.hint) == (
        JobState.QUEUED,
        "alert",
        "apply",
        {"pool": "p"},
    )
    assert job.gateway_id == GW.lower() and job.requested_by == "alert:x"

    started = datetime.now(UTC)
    job = storage.update_job(job_id, state=JobState.RUNNING, attempts=1, started_at=started)
    assert job.state is JobState.RUNNING and job.attempts == 1
    assert storage.create_or_join_job(GW, "alert", "apply") == (
        job_id,
        False,
    )  # joins while running

    diagnosis = {"findings": [{"cause": "default_certificate_without_sni"}]}
    job = storage.finish_job(job_id, JobState.SUCCEEDED, diagnosis=diagnosis, outcome={"ok": True})
    assert job.state is JobState.SUCCEEDED and job.finished_at is not None
    assert storage.get_job(job_id).diagnosis == diagnosis  # type: ignore[union-attr]

    # A finished job never regresses (redelivery), and the gateway gets a new job.
    with pytest.raises(JobStateError):
        storage.update_job(job_id, state=JobState.RUNNING)
    storage.update_job(job_id, state=JobState.SUCCEEDED)  # same state: idempotent
    new_id, created = storage.create_or_join_job(GW, "alert", "apply")
    assert created and new_id != job_id


def test_concurrent_creates_give_one_job(storage: Storage) -> None:
    storage.ensure()
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        try:
            barrier.wait()
            results.append(storage.create_or_join_job(GW, "alert", "apply", None, "t"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    # Losers removed their orphan job rows: exactly one job entity exists.
    rows = list(storage._table.query_entities("PartitionKey eq 'job'"))
    assert len(rows) == 1


def test_update_job_validation(storage: Storage) -> None:
    job_id, _ = storage.create_or_join_job(GW, "diagnose", "diagnose")
    with pytest.raises(ValueError, match="unknown job fields"):
        storage.update_job(job_id, colour="red")
    with pytest.raises(JobStateError):
        storage.update_job("no-such-job", state=JobState.RUNNING)
    with pytest.raises(JobStateError):
        storage.finish_job(job_id, JobState.RUNNING)
    assert storage.get_job("../etc") is None and storage.get_job("nope") is None


def test_large_json_goes_to_a_blob(storage: Storage) -> None:
    job_id, _ = storage.create_or_join_job(GW, "diagnose", "diagnose")
    big = {"evidence": ["x" * 1000 for _ in range(100)]}
    storage.finish_job(job_id, "failed", outcome=big, error="boom")
    job = storage.get_job(job_id)
    assert job is not None and job.outcome == big and job.error == "boom"
    assert job.state is JobState.FAILED


def test_decisions_and_changes(storage: Storage) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    storage.record_decision("j1", GW, "seen", "alert")
    storage.record_decision(
        "j1",
        GW.lower(),
        "changed",
        "bot",
        "j1/cert.cer",
        details={"settings": "s1", "thumbprint": "AB"},
    )
    storage.record_decision("j2", GW, "verified", "bot")
    storage.record_decision("j3", GW.replace("agw1", "agw2"), "changed", "bot")
    decisions = storage.list_decisions(GW)
    assert [d.what for d in decisions] == ["seen", "changed", "verified"]
    changes = storage.list_changes(GW)
    assert len(changes) == 1
    assert changes[0].details == {"settings": "s1", "thumbprint": "AB"}
    assert changes[0].evidence_ref == "j1/cert.cer" and changes[0].at >= before
    assert storage.list_changes(GW, since=datetime.now(UTC) + timedelta(minutes=1)) == []


def test_enqueue_is_base64_json(storage: Storage) -> None:
    storage.enqueue_job("job-1")
    storage.enqueue_job("job-2", delay_seconds=60)
    raw = storage.queue_service.get_queue_client(storage.names.jobs_queue)
    messages = list(raw.receive_messages(max_messages=10))
    assert len(messages) == 1  # the delayed one is invisible
    assert json.loads(base64.b64decode(messages[0].content)) == {"job_id": "job-1"}


def test_evidence_roundtrip(storage: Storage) -> None:
    ref = storage.put_evidence(
        "job-1", "backend.cer", b"-----BEGIN CERTIFICATE-----", "application/pkix-cert"
    )
    assert ref == "job-1/backend.cer"
    assert storage.get_evidence(ref) == b"-----BEGIN CERTIFICATE-----"
    assert storage.evidence_url(ref).endswith(
        f"/{storage.names.evidence_container}/job-1/backend.cer"
    )
    with pytest.raises(EvidenceNotFound):
        storage.get_evidence("job-1/missing")
    with pytest.raises(ValueError):
        storage.put_evidence("job-1", "../x", b"", "text/plain")


class _NoToken:
    """A TokenCredential stand-in: building clients must not ask for a token."""

    def get_token(self, *scopes: str, **kwargs: object) -> object:
        raise AssertionError("no token expected")


def test_storage_from_settings(azurite_connection: str, storage_names: StorageNames) -> None:
    env = {"AzureWebJobsStorage": azurite_connection, "JOBS_QUEUE": storage_names.jobs_queue}
    built = storage_from_settings(env)
    assert built.names.jobs_queue == storage_names.jobs_queue
    assert built.names.ledger_table == "ledger"
    with pytest.raises(SettingsError, match="AzureWebJobsStorage"):
        storage_from_settings({})
    identity = storage_from_settings(
        {"AzureWebJobsStorage__accountName": "acct"}, credential=_NoToken()
    )
    assert identity.blob_service.url.startswith("https://acct.blob.core.windows.net")
    assert identity.table_service.url.startswith("https://acct.table.core.windows.net")


def test_storage_unavailable_when_azurite_stops(tmp_path: Path) -> None:
    handle = start_azurite(tmp_path)
    storage = Storage.from_connection_string(handle.connection_string)
    storage.ensure()
    event = parse_alert(alert())
    assert storage.record_alert(event)
    handle.stop()
    for call in (
        lambda: storage.record_alert(event),
        lambda: storage.create_or_join_job(GW, "alert", "apply"),
        lambda: storage.enqueue_job("job-1"),
        lambda: storage.put_evidence("job-1", "x", b"x", "text/plain"),
        lambda: storage.list_changes(GW),
    ):
        with pytest.raises(StorageUnavailable) as info:
            call()
        assert isinstance(info.value, BotError)


# -- proposals over blobs -------------------------------------------------------------------------


def _proposal(proposal_id: str, created_at: str = "2026-01-01T00:00:00+00:00") -> Proposal:
    return Proposal(
        id=proposal_id,
        created_at=created_at,
        requester="alice",
        gateway_id=GW,
        gateway_etag='W/"1"',
        plan={"gateway_id": GW},
        renderings={"summary": "add a certificate"},
        evidence=[{"cause": "default_certificate_without_sni"}],
        certificate_cer=None,
        check_after="backend health turns healthy",
    )


def test_blob_proposal_store_roundtrip_and_cas(storage: Storage) -> None:
    store = BlobProposalStore(storage)
    first, second = _proposal("p-1"), _proposal("p-2", "2026-01-02T00:00:00+00:00")
    store.create(second)
    store.create(first)
    with pytest.raises(ProposalConflict):
        store.create(first)
    assert store.get("p-1") == first
    assert [p.id for p in store.list()] == ["p-1", "p-2"]

    approved = dataclasses.replace(first, status="approved", decided_by="bob")
    store.update(approved, expected_status="open")
    assert store.get("p-1").status == "approved"
    assert [p.id for p in store.list(status="open")] == ["p-2"]
    # Compare-and-set: a second decision based on the old status loses.
    with pytest.raises(ProposalConflict):
        store.update(dataclasses.replace(first, status="rejected"), expected_status="open")
    with pytest.raises(ProposalNotFound):
        store.get("missing")
    with pytest.raises(ProposalNotFound):
        store.get("../p-1")
    with pytest.raises(ValueError):
        store.update(dataclasses.replace(first, status="bogus"), expected_status="approved")


def test_blob_proposal_store_concurrent_approvals_one_wins(storage: Storage) -> None:
    store = BlobProposalStore(storage)
    store.create(_proposal("p-race"))
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def decide(n: int) -> None:
        barrier.wait()
        try:
            store.update(
                dataclasses.replace(_proposal("p-race"), status="approved", decided_by=f"u{n}"),
                expected_status="open",
            )
            outcomes.append("won")
        except ProposalConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1 and outcomes.count("conflict") == 5


def test_a_queued_job_whose_message_was_lost_is_queued_again(storage: Storage) -> None:
    # The creator died between create_or_join_job and enqueue_job: no message exists.
    job_id, created = storage.create_or_join_job(GW, "fix", "", requested_by="alert")
    assert created
    queue = storage.jobs_queue_client()
    assert queue.peek_messages(max_messages=5) == []
    # A fresh job is left alone: its creator may still be queueing it.
    assert storage.requeue_if_stale(job_id, stale_after=60) is False
    assert storage.requeue_if_stale(job_id, stale_after=0) is True
    messages = queue.peek_messages(max_messages=5)
    assert [json.loads(m.content)["job_id"] for m in messages] == [job_id]
    # Running or finished jobs are never queued again.
    storage.update_job(job_id, state=JobState.RUNNING)
    assert storage.requeue_if_stale(job_id, stale_after=0) is False
