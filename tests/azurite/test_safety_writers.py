"""Safety suite (issue #7): other writers, through the function app path (alert → queue → worker →
Remediator → ARM emulator). Every overlapping-write outcome the sandbox can produce (docs/sandbox.md
"Faults": conflict 409 / 429 / superseded, another writer between our read and our write, and
both at once): their change survives, ours lands or the job reports why it did not; nothing lost.

Facts: docs/sources.md#limits (429 and Retry-After) and docs/sources.md#overlapping-writes
(overlapping writes cancel each other; no If-Match on the gateway PUT, so the bot re-reads and
compares before writing).
"""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.alerts import common_alert
from shared.remediation.plan import certificate_name

from .conftest import BotApp, Factory

pytestmark = [pytest.mark.safety, pytest.mark.sandbox, pytest.mark.timeout(180)]

AUTH_CERTS = "authenticationCertificates"
# The other writer's change (sandbox/faults.py default patch): a tag and an empty, unrouted pool.
THEIR_TAG = ("changed-by", "pipeline")
THEIR_POOL = "other-writer-pool"
ANOTHER_WRITER_MID = {"kind": "another_writer", "after": 1}  # GET 2 = the write loop's read


def stored(app: BotApp) -> dict[str, Any]:
    return dict(app.sandbox.arm.gateway_document(app.gateway_id))


def our_certificate(app: BotApp) -> str:
    return certificate_name(app.sandbox.certs["ilb-default"].thumbprint())


def ours_landed(app: BotApp) -> bool:
    props = stored(app)["properties"]
    [settings] = [s for s in props["backendHttpSettingsCollection"] if s["name"] == "ase-https"]
    refs = [r["id"].rsplit("/", 1)[-1] for r in settings["properties"].get(AUTH_CERTS, [])]
    return our_certificate(app) in refs


def theirs_survived(app: BotApp) -> bool:
    doc = stored(app)
    pools = [p["name"] for p in doc["properties"]["backendAddressPools"]]
    return doc.get("tags", {}).get(THEIR_TAG[0]) == THEIR_TAG[1] and THEIR_POOL in pools


def run_alert(app: BotApp, faults: list[dict[str, Any]]) -> dict[str, Any]:
    app.add_faults(faults)
    reply = app.post_alert(common_alert(app.gateway_id))
    assert reply.status == 202, reply.body
    [job_id] = reply.json()["jobs"]
    return app.wait_job(job_id)


@pytest.mark.parametrize(
    ("faults", "puts", "theirs"),
    [
        pytest.param([{"kind": "conflict", "outcome": "409"}], 2, False, id="conflict-409"),
        pytest.param(
            [{"kind": "conflict", "outcome": "429", "retry_after": 1}], 2, False, id="conflict-429"
        ),
        pytest.param([{"kind": "conflict", "outcome": "superseded"}], 2, False, id="superseded"),
        pytest.param([{"kind": "another_writer"}], 1, True, id="another-writer-during-diagnosis"),
        pytest.param([ANOTHER_WRITER_MID], 1, True, id="another-writer-between-read-and-write"),
        # Their update still runs (Updating) when we would write: Azure would accept our PUT and
        # cancel theirs (tests/data/recorded/cli_ag_auth_cert_v1.json), so the bot waits.
        pytest.param(
            [{**ANOTHER_WRITER_MID, "seconds": 1}], 1, True, id="another-writer-in-flight"
        ),
        pytest.param(
            [ANOTHER_WRITER_MID, {"kind": "conflict", "outcome": "409"}],
            2,
            True,
            id="another-writer-then-conflict",
        ),
    ],
)
def test_overlapping_writes_ours_lands_and_theirs_survives(
    bot_app: Factory, faults: list[dict[str, Any]], puts: int, theirs: bool
) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="apply")
    job = run_alert(app, faults)

    assert job["state"] == "succeeded", job
    assert job["outcome"]["action"] == "applied", job["outcome"]
    assert len(app.puts()) == puts == job["outcome"]["arm_writes"]
    assert ours_landed(app)
    assert stored(app)["properties"]["provisioningState"] == "Succeeded"
    if theirs:
        assert theirs_survived(app)
        [write] = app.control("GET", "faults").json()["other_writes"]
        assert write["error"] is None
    # The sandbox's default overlap is Azure's: a PUT while Updating cancels the running
    # operation. Another writer's operation is never canceled by ours.
    others = [o for o in app.control("GET", "operations").json() if o["by"] == "another_writer"]
    assert all(o["status"] == "Succeeded" for o in others), others
    assert app.lease_state() == "available"


def test_a_conflict_that_never_clears_is_reported_and_nothing_is_lost(bot_app: Factory) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="apply", WRITE_ATTEMPTS="3")
    # Attempt 1 re-plans on their change without writing; attempts 2 and 3 are refused.
    job = run_alert(
        app, [ANOTHER_WRITER_MID, {"kind": "conflict", "outcome": "409", "times": None}]
    )

    assert job["state"] == "failed", job
    assert "AnotherOperationInProgress" in job["error"], job
    assert len(app.puts()) == 2 == job["outcome"]["arm_writes"]
    assert not ours_landed(app)
    assert theirs_survived(app)
    whats = [d.what for d in app.storage.list_decisions(app.gateway_id)]
    assert "failed" in whats and "changed" not in whats
    assert app.lease_state() == "available"


def test_a_writer_that_never_stops_makes_the_job_fail_without_writing(bot_app: Factory) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="apply", WRITE_ATTEMPTS="3")
    job = run_alert(app, [{"kind": "another_writer", "times": None}])

    assert job["state"] == "failed", job
    assert "changed between read and write" in job["error"], job
    assert app.puts() == []  # never a PUT of a body planned on a stale read
    assert not ours_landed(app)
    assert theirs_survived(app)
