"""The change log read as history (issue 13): each change with what became of it, the rollback
approver rule, and a damaged local change log named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.common.errors import InputError
from shared.remediation.changelog import ChangeRecord, LocalChangeLog, history, rollback_of
from shared.remediation.proposals import ApprovalError, check_rollback_approver

GW = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationGateways/agw"
PLAN = {"action": "add_authentication_certificate", "certificate": {"name": "appgw-bot-1"}}


def record(cid: str, when: str, kind: str = "apply", **extra: str) -> ChangeRecord:
    return ChangeRecord(
        id=cid,
        gateway_id=GW,
        when=when,
        by="alice",
        kind=kind,
        plan=PLAN,
        settings=("ase-https",) if kind == "apply" else (),
        thumbprint="AB" if kind == "apply" else None,
        etag_before=None,
        etag_after=None,
        extra=dict(extra),
    )


def test_history_marks_rolled_back_changes_and_ignores_failed_rollbacks() -> None:
    a = record("chg-a", "2025-01-01T00:00:00+00:00")
    b = record("chg-b", "2025-01-02T00:00:00+00:00")
    failed = record(
        "chg-f", "2025-01-03T00:00:00+00:00", "rollback", rolls_back="chg-a", result="failed"
    )
    done = record("chg-r", "2025-01-04T00:00:00+00:00", "rollback", rolls_back="chg-b")
    views = {v["id"]: v for v in history([done, failed, b, a])}
    assert [v["id"] for v in history([done, failed, b, a])] == ["chg-r", "chg-f", "chg-b", "chg-a"]
    assert views["chg-a"]["status"] == "applied" and views["chg-a"]["rolled_back"] is None
    assert views["chg-b"]["status"] == "rolled_back"
    assert views["chg-b"]["rolled_back"]["change"] == "chg-r"  # a record without `result`: done
    assert (views["chg-f"]["status"], views["chg-f"]["rolls_back"]) == ("failed", "chg-a")
    assert views["chg-a"]["certificate"] == "appgw-bot-1" and views["chg-a"]["settings"] == [
        "ase-https"
    ]
    assert rollback_of([a, failed], "chg-a") is None


ALICE = "a11ce000-0000-4000-8000-000000000001"  # approvers are Entra object ids
BOB = "b0b00000-0000-4000-8000-000000000002"


@pytest.mark.parametrize(
    ("caller", "allow", "code"),
    [
        ("", False, ApprovalError.NO_IDENTITY),
        ("3a110000-0000-4000-8000-000000000003", False, ApprovalError.NOT_AN_APPROVER),
        ("alice", False, ApprovalError.NOT_AN_APPROVER),  # a name is no identity
        (ALICE.upper(), False, ApprovalError.OWN_CHANGE),
        (ALICE.upper(), True, None),
        (BOB, False, None),
    ],
)
def test_rollback_approver(caller: str, allow: bool, code: str | None) -> None:
    if code is None:
        check_rollback_approver(ALICE, caller, (ALICE, BOB), applier_may_roll_back=allow)
        return
    with pytest.raises(ApprovalError) as raised:
        check_rollback_approver(ALICE, caller, (ALICE, BOB), applier_may_roll_back=allow)
    assert raised.value.code == code


@pytest.mark.parametrize("line", ["{bad", "[]", '{"id": "x"}', '{"id": 1, "plan": 2}'])
def test_a_damaged_change_log_names_the_file_and_line(tmp_path: Path, line: str) -> None:
    good = record("chg-a", "2025-01-01T00:00:00+00:00")
    log = LocalChangeLog(tmp_path)
    log.record(good)
    with (tmp_path / "changes.jsonl").open("a") as out:
        out.write(line + "\n")
    with pytest.raises(InputError, match=rf"{tmp_path}/changes.jsonl line 2 "):
        log.all()
