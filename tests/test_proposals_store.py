"""Proposals: JSON round trip, local store CAS under contention, approver checks."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.common.errors import SettingsError
from shared.common.identity import label_of, parse_approvers
from shared.core.diagnosis import Fix, FixAction, FixCertificate
from shared.remediation.plan import apply_plan, plan_for_fix
from shared.remediation.proposals import (
    DRAINING_WARNING,
    ApprovalError,
    LocalProposalStore,
    Proposal,
    ProposalConflict,
    ProposalNotFound,
    build_proposal,
    check_approver,
    check_rollback_approver,
)

GID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ase"
    "/providers/Microsoft.Network/applicationGateways/agw-v1"
)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def doc() -> dict[str, Any]:
    return {
        "id": GID,
        "etag": 'W/"e1"',
        "properties": {
            "sku": {"tier": "Standard"},
            "authenticationCertificates": [],
            "backendHttpSettingsCollection": [{"name": "ase-https", "properties": {}}],
        },
    }


def proposal(requester: str = "alice@contoso.com", **kw: Any) -> Proposal:
    der = b"\x30\x82" + hashlib.sha512(b"ilb").digest()
    cert = FixCertificate(
        hashlib.sha1(der).hexdigest().upper(),
        hashlib.sha256(der).hexdigest().upper(),
        "-----BEGIN CERTIFICATE-----\nMII...\n-----END CERTIFICATE-----\n",
        base64.b64encode(der).decode(),
        "CN=ilb",
        "2030-01-01T00:00:00Z",
    )
    fix = Fix(FixAction.ADD_AUTHENTICATION_CERTIFICATE, cert, ("ase-https",))
    plan = plan_for_fix(doc(), fix, gateway_id=GID)
    return build_proposal(
        plan,
        doc(),
        requester=requester,
        now=NOW,
        gateway_etag='W/"e1"',
        evidence=[{"settings": "ase-https", "cause": "certificate_not_allowlisted"}],
        certificate_cer=cert.cer,
        reasons=["global mode propose"],
        **kw,
    )


def test_proposal_contents_and_round_trip() -> None:
    p = proposal()
    assert DRAINING_WARNING in p.warnings and "connection-draining" in DRAINING_WARNING
    assert set(p.renderings) == {"summary", "json_patch", "az", "az_rollback", "bicep"}
    assert p.status == "open" and p.gateway_etag == 'W/"e1"'
    assert "show-backend-health" in p.check_after
    again = Proposal.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p
    plan = again.get_plan()
    assert apply_plan(doc(), plan)["properties"]["authenticationCertificates"][0]["name"] == (
        plan.certificate_ref_name
    )
    # Unknown keys from a newer writer are tolerated.
    assert Proposal.from_dict({**p.to_dict(), "futureField": 1}) == p


def test_store_create_get_list(tmp_path: Path) -> None:
    store = LocalProposalStore(tmp_path / "proposals")
    a = proposal(proposal_id="20260301T120000Z-aaaa")
    b = proposal(proposal_id="20260301T120000Z-bbbb")
    store.create(a)
    store.create(b)
    with pytest.raises(ProposalConflict):
        store.create(a)
    assert store.get(a.id) == a
    assert [p.id for p in store.list()] == [a.id, b.id]
    assert store.list(status="approved") == []
    with pytest.raises(ProposalNotFound):
        store.get("20260301T000000Z-none")
    with pytest.raises(KeyError):  # ProposalNotFound is also a KeyError
        store.get("../../etc/passwd")
    assert not list((tmp_path / "proposals").glob(".tmp-*"))


def test_store_compare_and_set(tmp_path: Path) -> None:
    store = LocalProposalStore(tmp_path)
    p = proposal(proposal_id="p1")
    store.create(p)
    approved = dataclasses.replace(p, status="approved", decided_by="bob", decided_at="now")
    store.update(approved, expected_status="open")
    assert store.get("p1").status == "approved"
    rejected = dataclasses.replace(p, status="rejected", decided_by="carol")
    with pytest.raises(ProposalConflict):
        store.update(rejected, expected_status="open")
    assert store.get("p1").decided_by == "bob"
    with pytest.raises(ProposalNotFound):
        store.update(dataclasses.replace(p, id="nope"), expected_status="open")


def test_store_cas_has_one_winner_under_contention(tmp_path: Path) -> None:
    store = LocalProposalStore(tmp_path)
    p = proposal(proposal_id="race")
    store.create(p)
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def approve(who: str) -> None:
        other = LocalProposalStore(tmp_path)  # separate handles, like separate processes
        barrier.wait()
        try:
            other.update(
                dataclasses.replace(p, status="approved", decided_by=who), expected_status="open"
            )
            winners.append(who)
        except ProposalConflict:
            pass

    threads = [threading.Thread(target=approve, args=(f"u{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert store.get("race").decided_by == winners[0]


ALICE = "A11CE000-0000-4000-8000-000000000001"
BOB = "b0b00000-0000-4000-8000-000000000002"


def test_check_approver_compares_object_ids() -> None:
    p = proposal(requester=ALICE)
    approvers = parse_approvers("APPROVERS", f"{ALICE.lower()}=Alice,{BOB}=Bob")
    with pytest.raises(ApprovalError, match="own") as own:
        check_approver(p, f" {ALICE.lower()} ", approvers)
    assert own.value.code == "own_proposal"
    with pytest.raises(ApprovalError, match="APPROVERS") as stranger:
        check_approver(p, "3a110000-0000-4000-8000-000000000003", approvers)
    assert stranger.value.code == "not_an_approver"
    # A name is never an identity, even the label APPROVERS gives an approver.
    with pytest.raises(ApprovalError, match="object ids, not names") as named:
        check_approver(p, "Bob", approvers)
    assert named.value.code == "not_an_approver"
    with pytest.raises(ApprovalError) as nobody:
        check_approver(p, "", approvers)
    assert nobody.value.code == "no_approver_identity"
    check_approver(p, BOB.upper(), approvers)
    closed = dataclasses.replace(p, status="applied")
    with pytest.raises(ApprovalError, match="applied") as decided:
        check_approver(closed, BOB, approvers)
    assert decided.value.code == "not_open"
    # The requester is refused as such even when not an approver: the codes do not overlap.
    with pytest.raises(ApprovalError) as own_outsider:
        check_approver(p, ALICE, [BOB])
    assert own_outsider.value.code == "own_proposal"


def test_rollback_by_the_applier_is_refused_by_object_id() -> None:
    approvers = parse_approvers("APPROVERS", f"{ALICE},{BOB}")
    with pytest.raises(ApprovalError) as own:
        check_rollback_approver(ALICE.lower(), ALICE, approvers, applier_may_roll_back=False)
    assert own.value.code == "own_change"
    check_rollback_approver(ALICE, ALICE, approvers, applier_may_roll_back=True)
    check_rollback_approver(ALICE, BOB, approvers, applier_may_roll_back=False)


def test_approvers_setting_takes_object_ids_with_labels_and_refuses_names() -> None:
    parsed = parse_approvers("APPROVERS", f" {ALICE} = Alice Smith , {BOB}")
    assert [(a.object_id, a.label) for a in parsed] == [(ALICE.lower(), "Alice Smith"), (BOB, "")]
    assert str(parsed[0]) == f"Alice Smith ({ALICE.lower()})"
    assert label_of(ALICE, parsed) == f"Alice Smith ({ALICE.lower()})"
    assert label_of(BOB, parsed) == BOB
    assert parse_approvers("APPROVERS", "") == ()
    for bad in ("alice@contoso.com", f"Alice <{ALICE}>", "not-a-guid=Alice"):
        with pytest.raises(SettingsError, match="not an Entra object id"):
            parse_approvers("APPROVERS", bad)
