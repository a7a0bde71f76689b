"""Sandbox faults (sandbox/faults.py, sandbox/arm.py), observed as azure-mgmt-network sees them.

Azure facts: docs/sources.md#limits (429 + Retry-After), docs/sources.md#overlapping-writes
(RetryableErrorDueToAnotherOperation, AnotherOperationInProgress,
CanceledAndSupersededDueToAnotherOperation, no If-Match), docs/sources.md#arm-lro (Failed/Canceled
operations -> HttpResponseError).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.mgmt.network import NetworkManagementClient

from sandbox.arm import ROUTES
from sandbox.faults import (
    ROUTE_NAMES,
    SUPERSEDED,
    ErrorReply,
    FaultBook,
    FaultError,
    merge_patch,
    parse_rules,
)
from sandbox.runtime import SandboxHandle, start_sandbox
from sandbox.scenario import ScenarioError, load_scenario, parse_scenario

pytestmark = pytest.mark.sandbox

SCENARIO = "ilb-ase-v2-root"
RG = "rg-ase"
GW = "agw-ase-v2-root"


class FakeClock:
    """Drives LRO completion: nothing finishes until a test moves time on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sandbox:
    def __init__(self, handle: SandboxHandle, clock: FakeClock) -> None:
        self.handle = handle
        self.clock = clock
        self.gateway_id = handle.gateway_ids[0]
        self.ca = handle.env["REQUESTS_CA_BUNDLE"]

    def client(self, **kwargs: Any) -> NetworkManagementClient:
        kwargs.setdefault("polling_interval", 0)
        return NetworkManagementClient(
            ManagedIdentityCredential(),
            self.handle.env["AZURE_SUBSCRIPTION_ID"],
            base_url=self.handle.env["ARM_ENDPOINT"],
            connection_verify=self.ca,
            **kwargs,
        )

    def ops(self, **kwargs: Any) -> Any:
        return self.client(**kwargs).application_gateways

    def control(self, method: str, route: str, body: Any = None) -> tuple[int, Any]:
        ctx = ssl.create_default_context(cafile=self.ca)
        data = None if body is None else json.dumps(body).encode()
        url = f"{self.handle.env['SANDBOX_CONTROL_URL']}/{route}"
        req = urllib.request.Request(url, method=method, data=data)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def add(self, *rules: dict[str, Any]) -> Any:
        status, body = self.control("POST", "faults", list(rules))
        assert status == 200, body
        return body

    def stored(self) -> dict[str, Any]:
        return self.handle.arm.gateway_document(self.gateway_id)

    def statuses(self) -> list[tuple[str, str, int]]:
        _, served = self.control("GET", "requests")
        return [(r["method"], _route(r["path"]), r["status"]) for r in served]


def _route(path: str) -> str:
    for _, name, pattern in ROUTES:
        if pattern.match(path):
            return name
    return path


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    clock = FakeClock()
    scenario = load_scenario(SCENARIO)
    # LROs end on the first poll unless a fault says otherwise; Retry-After 0 = poll at once.
    scenario.options = {
        **scenario.options,
        "lro_delay_seconds": 0,
        "health_lro_seconds": 0,  # backend health ends on the emulator's clock too
        "retry_after_seconds": 0,
    }
    scenario.options["clock"] = clock
    handle = start_sandbox(scenario, workdir=tmp_path / "sb")
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for key, value in handle.env.items():
        monkeypatch.setenv(key, value)
    yield Sandbox(handle, clock)
    handle.stop()


def _tagged(doc: Any, tag: str) -> dict[str, Any]:
    """A PUT body: the document as read, plus one tag (a change we can look for)."""
    body: dict[str, Any] = json.loads(json.dumps(doc if isinstance(doc, dict) else doc.as_dict()))
    body.setdefault("tags", {})[tag] = "yes"
    return body


def _put_error(ops: Any, body: dict[str, Any]) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as err:
        ops.begin_create_or_update(RG, GW, body).result()
    return err.value


def _code(error: HttpResponseError) -> str | None:
    return error.error.code if error.error is not None else None


# ---- the pure model --------------------------------------------------------------------------


def test_route_names_match_the_emulator() -> None:
    assert {name for _, name, _ in ROUTES} == set(ROUTE_NAMES)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"kind": "nope"}, "'kind' must be one of"),
        ({"kind": "scope_locked", "method": "GET"}, "applies only to PUT"),
        ({"kind": "another_writer", "route": "put"}, "applies only to GET"),
        ({"kind": "throttle", "times": 0}, "'times' must be an integer >= 1"),
        ({"kind": "throttle", "after": -1}, "'after' must be an integer >= 0"),
        ({"kind": "conflict", "outcome": "418"}, "'outcome' must be one of"),
        ({"kind": "transient", "status": 501}, "'status' must be one of"),
        ({"kind": "lro_failed", "commit": "yes"}, "'commit' must be true or false"),
        ({"kind": "throttle", "route": "nowhere"}, "'route' must be one of"),
        ({"kind": "slow_lro", "secnods": 3}, "unknown field(s) for slow_lro: secnods"),
        ({"kind": "another_writer", "patch": [1]}, "'patch' must be a JSON merge patch"),
    ],
)
def test_invalid_rules_are_refused_with_a_reason(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(FaultError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_rules([rule])


def test_after_and_times_count_matching_requests_only() -> None:
    book = FaultBook(
        [{"kind": "transient", "method": "GET", "route": "get", "after": 1, "times": 2}]
    )
    path = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationGateways/g"
    seen = []
    for method, route in [("GET", "get"), ("PUT", "put"), ("GET", "get"), ("GET", "get")]:
        seen.append(book.take(method, route, "g", path))
    assert seen[0] is None and seen[1] is None  # skipped by `after`; PUT does not match
    assert isinstance(seen[2], ErrorReply)
    assert seen[2] == seen[3] == ErrorReply(500, "InternalServerError", seen[2].message, {})
    assert book.snapshot() == []  # spent rules are gone
    assert book.take("GET", "get", "g", path) is None


def test_first_due_rule_wins_and_others_wait() -> None:
    book = FaultBook(
        [
            {"kind": "throttle", "method": "GET", "retry_after": 3},
            {"kind": "transient", "status": 503, "gateway": "G1"},
        ]
    )
    first = book.take("GET", "get", "g1", "/x")
    second = book.take("GET", "get", "g1", "/x")
    assert isinstance(first, ErrorReply) and first.status == 429
    assert first.headers == {"Retry-After": "3"}
    assert isinstance(second, ErrorReply) and second.code == "ServiceUnavailable"
    forever = FaultBook({"kind": "throttle", "times": None})
    assert all(forever.take("POST", "backendhealth", None, "/x") for _ in range(5))
    assert forever.snapshot()[0]["remaining"] is None


def test_merge_patch_merges_named_children_by_name() -> None:
    doc = {
        "tags": {"a": "1", "gone": "x"},
        "properties": {
            "backendAddressPools": [{"name": "p1", "properties": {"backendAddresses": [1]}}],
            "list": [1, 2],
        },
    }
    patch = {
        "tags": {"gone": None, "b": "2"},
        "properties": {
            "backendAddressPools": [
                {"name": "P1", "properties": {"extra": True}},
                {"name": "p2", "properties": {}},
            ],
            "list": [3],
        },
    }
    assert merge_patch(doc, patch) == {
        "tags": {"a": "1", "b": "2"},
        "properties": {
            "backendAddressPools": [
                {"name": "p1", "properties": {"backendAddresses": [1], "extra": True}},
                {"name": "p2", "properties": {}},
            ],
            "list": [3],
        },
    }
    assert doc["tags"] == {"a": "1", "gone": "x"}  # the input is not modified


# ---- control endpoint ------------------------------------------------------------------------


def test_control_endpoint_lists_adds_and_clears(sandbox: Sandbox) -> None:
    body = sandbox.add({"kind": "throttle", "times": 2}, {"kind": "scope_locked"})
    assert [(f["kind"], f["remaining"]) for f in body["faults"]] == [
        ("throttle", 2),
        ("scope_locked", 1),
    ]
    status, error = sandbox.control("POST", "faults", [{"kind": "policy_denied"}, {"kind": "?"}])
    assert status == 400
    assert "'kind' must be one of" in error["error"]["message"]
    assert len(sandbox.control("GET", "faults")[1]["faults"]) == 2  # nothing of the bad batch
    assert sandbox.control("DELETE", "faults") == (200, {"faults": [], "other_writes": []})


def test_faults_never_touch_the_control_or_identity_endpoints(sandbox: Sandbox) -> None:
    sandbox.add({"kind": "transient", "status": 503, "times": None})
    for _ in range(3):
        assert sandbox.control("GET", "requests")[0] == 200
    token = ManagedIdentityCredential().get_token("https://management.azure.com/.default")
    assert token.token
    with pytest.raises(HttpResponseError) as err:
        sandbox.ops(retry_total=0).get(RG, GW)
    assert err.value.status_code == 503


def test_scenario_options_carry_faults(tmp_path: Path) -> None:
    raw = json.loads(Path(load_scenario(SCENARIO).source or "").read_text())
    raw["options"]["faults"] = [{"kind": "scope_locked", "times": None}]
    parse_scenario(raw)
    raw["options"]["faults"] = [{"kind": "scope_locked", "method": "GET"}]
    with pytest.raises(ScenarioError, match=r"options\.faults"):
        parse_scenario(raw)


# ---- each kind, as the SDK sees it -----------------------------------------------------------


def test_throttle_429_with_retry_after(sandbox: Sandbox) -> None:
    sandbox.add({"kind": "throttle", "method": "GET", "route": "get", "retry_after": 0})
    sandbox.control("POST", "reset-requests")
    sandbox.ops().get(RG, GW)  # the SDK's own retry policy honours the 429
    assert sandbox.statuses() == [("GET", "get", 429), ("GET", "get", 200)]

    sandbox.add({"kind": "throttle", "retry_after": 7})
    with pytest.raises(HttpResponseError) as err:
        sandbox.ops(retry_total=0).get(RG, GW)
    assert err.value.status_code == 429
    assert _code(err.value) == "TooManyRequests"
    assert err.value.response is not None
    assert err.value.response.headers["Retry-After"] == "7"

    sandbox.add(
        {"kind": "throttle", "method": "PUT", "code": "RetryableErrorDueToAnotherOperation"}
    )
    error = _put_error(sandbox.ops(retry_total=0), _tagged(sandbox.ops().get(RG, GW), "t"))
    assert (error.status_code, _code(error)) == (429, "RetryableErrorDueToAnotherOperation")


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [
        ("409", 409, "AnotherOperationInProgress"),
        ("429", 429, "RetryableErrorDueToAnotherOperation"),
    ],
)
def test_conflict_refuses_the_put(sandbox: Sandbox, outcome: str, status: int, code: str) -> None:
    ops = sandbox.ops(retry_total=0)
    before = sandbox.stored()
    sandbox.add({"kind": "conflict", "outcome": outcome})
    error = _put_error(ops, _tagged(ops.get(RG, GW), "mine"))
    assert (error.status_code, _code(error)) == (status, code)
    assert sandbox.stored()["etag"] == before["etag"]
    ops.begin_create_or_update(RG, GW, _tagged(ops.get(RG, GW), "mine")).result()  # once only
    assert sandbox.stored()["tags"]["mine"] == "yes"


def test_conflict_superseded_cancels_without_committing(sandbox: Sandbox) -> None:
    from shared.cloud.arm import to_arm_error
    from shared.remediation.retry import Verdict, decide_retry

    ops = sandbox.ops(retry_total=0)
    before = sandbox.stored()
    sandbox.add({"kind": "conflict", "outcome": "superseded"})
    poller = ops.begin_create_or_update(RG, GW, _tagged(ops.get(RG, GW), "mine"))  # accepted
    with pytest.raises(HttpResponseError) as err:
        poller.result()
    # Top-level code Canceled; the superseded code only in error.details.
    assert _code(err.value) == "Canceled"
    assert err.value.error is not None
    assert [d.code for d in err.value.error.details] == [SUPERSEDED]
    assert "was canceled and superseded by operation" in str(err.value)
    after = sandbox.stored()
    assert "mine" not in after["tags"]
    assert after["etag"] != before["etag"]  # the superseding PUT wrote the old content again
    assert after["properties"]["provisioningState"] == "Succeeded"
    bot_error = to_arm_error(err.value)  # what the bot's retry decision gets
    assert (bot_error.code, bot_error.details) == ("Canceled", (SUPERSEDED,))
    assert decide_retry(bot_error, 1).verdict is Verdict.RETRY


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "InternalServerError"), (502, "BadGateway"), (503, "ServiceUnavailable")],
)
def test_transient_5xx(sandbox: Sandbox, status: int, code: str) -> None:
    ops = sandbox.ops(retry_total=0)
    sandbox.add({"kind": "transient", "status": status, "method": "PUT"})
    error = _put_error(ops, _tagged(ops.get(RG, GW), "t"))
    assert (error.status_code, _code(error)) == (status, code)


@pytest.mark.parametrize("commit", [True, False])
def test_lro_failed_leaves_the_gateway_failed(sandbox: Sandbox, commit: bool) -> None:
    ops = sandbox.ops(retry_total=0)
    sandbox.add({"kind": "lro_failed", "commit": commit, "code": "InternalServerError"})
    poller = ops.begin_create_or_update(RG, GW, _tagged(ops.get(RG, GW), "mine"))
    with pytest.raises(HttpResponseError) as err:
        poller.result()
    assert _code(err.value) == "InternalServerError"
    seen = ops.get(RG, GW).as_dict()
    assert seen["properties"]["provisioningState"] == "Failed"
    assert ("mine" in seen.get("tags", {})) is commit
    # Stored data survives (hidden on GET), and a fresh PUT repairs the gateway.
    stored = sandbox.stored()["properties"]["trustedRootCertificates"][0]["properties"]
    assert stored["data"]
    ops.begin_create_or_update(RG, GW, _tagged(seen, "repair")).result()
    assert sandbox.stored()["properties"]["provisioningState"] == "Succeeded"


def test_a_put_while_updating_is_accepted_and_cancels_the_running_operation(
    sandbox: Sandbox,
) -> None:
    # tests/data/recorded/cli_ag_auth_cert_v1.json: PUTs while Updating each get 200 and their
    # own Azure-AsyncOperation; the earlier operation ends Canceled, superseded.
    ops = sandbox.ops(retry_total=0, polling_interval=0.05)
    sandbox.add({"kind": "slow_lro", "seconds": 600})
    poller = ops.begin_create_or_update(RG, GW, _tagged(ops.get(RG, GW), "slow"))
    poller.wait(timeout=0.5)  # the fake clock stands still: the operation cannot end
    assert not poller.done()
    seen = ops.get(RG, GW).as_dict()
    assert seen["properties"]["provisioningState"] == "Updating"
    second = ops.begin_create_or_update(RG, GW, _tagged(seen, "second"))  # accepted
    assert second.result().provisioning_state == "Succeeded"
    with pytest.raises(HttpResponseError) as err:
        poller.result()
    assert _code(err.value) == "Canceled"
    assert err.value.error is not None
    [detail] = err.value.error.details
    assert detail.code == SUPERSEDED
    assert "superseded by operation" in detail.message
    assert sandbox.stored()["tags"]["second"] == "yes"
    operations = sandbox.control("GET", "operations")[1]
    assert [(o["by"], o["status"]) for o in operations] == [
        ("client", "Canceled"),
        ("client", "Succeeded"),
    ]
    assert operations[0]["error"]["details"][0]["message"].endswith(operations[1]["id"] + ".")


def test_another_writer_in_flight_keeps_the_gateway_updating(sandbox: Sandbox) -> None:
    ops = sandbox.ops()
    sandbox.add({"kind": "another_writer", "seconds": 30})
    ops.get(RG, GW)  # served; then their update starts and runs 30 s
    assert ops.get(RG, GW).provisioning_state == "Updating"
    [operation] = sandbox.control("GET", "operations")[1]
    assert (operation["by"], operation["status"]) == ("another_writer", "InProgress")
    sandbox.clock.now += 31
    assert ops.get(RG, GW).provisioning_state == "Succeeded"
    [operation] = sandbox.control("GET", "operations")[1]
    assert operation["status"] == "Succeeded"


def test_scope_locked_and_policy_denied(sandbox: Sandbox) -> None:
    ops = sandbox.ops(retry_total=0)
    sandbox.add({"kind": "scope_locked"}, {"kind": "policy_denied", "assignment": "no-agw"})
    body = _tagged(ops.get(RG, GW), "t")
    locked = _put_error(ops, body)
    assert (locked.status_code, _code(locked)) == (409, "ScopeLocked")
    assert "cannot perform write operation because following scope(s) are locked" in str(locked)
    denied = _put_error(ops, body)
    assert (denied.status_code, _code(denied)) == (403, "RequestDisallowedByPolicy")
    assert "no-agw" in str(denied)


def test_times_and_after_through_the_sdk(sandbox: Sandbox) -> None:
    ops = sandbox.ops(retry_total=0)
    sandbox.add({"kind": "transient", "method": "GET", "route": "get", "after": 1, "times": 2})
    sandbox.control("POST", "reset-requests")
    results = []
    for _ in range(4):
        try:
            ops.get(RG, GW)
            results.append(200)
        except HttpResponseError as exc:
            results.append(exc.status_code)
        faults = sandbox.control("GET", "faults")[1]["faults"]
        results.append(faults[0]["remaining"] if faults else None)
    assert results == [200, 2, 500, 1, 500, None, 200, None]


# ---- another writer --------------------------------------------------------------------------


def test_another_writer_commits_after_the_get(sandbox: Sandbox) -> None:
    ops = sandbox.ops()
    sandbox.add({"kind": "another_writer"})
    first = ops.get(RG, GW).as_dict()  # served as it was; then the other writer commits
    assert "changed-by" not in first.get("tags", {})
    second = ops.get(RG, GW).as_dict()
    assert second["etag"] != first["etag"]
    assert second["tags"]["changed-by"] == "pipeline"
    pools = [p["name"] for p in second["properties"]["backendAddressPools"]]
    assert pools == ["ase-pool", "other-writer-pool"]
    stored = sandbox.stored()
    assert stored["tags"] == {"env": "sandbox", "workload": "ase", "changed-by": "pipeline"}
    assert stored["properties"]["trustedRootCertificates"][0]["properties"]["data"]
    writes = sandbox.control("GET", "faults")[1]["other_writes"]
    assert writes == [{"gateway": sandbox.gateway_id, "etag": second["etag"], "error": None}]
    assert ops.get(RG, GW).as_dict()["etag"] == second["etag"]  # times=1: only once

    # A stale body PUT afterwards overwrites them (no If-Match, docs/sources.md#overlapping-writes):
    # that is the hazard.
    ops.begin_create_or_update(RG, GW, _tagged(first, "stale")).result()
    assert "changed-by" not in sandbox.stored()["tags"]


def test_another_writer_between_check_and_put_with_a_custom_patch(sandbox: Sandbox) -> None:
    ops = sandbox.ops()
    patch = {"properties": {"probes": [{"name": "ase-probe", "properties": {"interval": 7}}]}}
    sandbox.add({"kind": "another_writer", "after": 1, "patch": patch, "gateway": GW.upper()})
    read = ops.get(RG, GW).as_dict()
    check = ops.get(RG, GW).as_dict()  # the re-read just before a write: still equal
    assert check["etag"] == read["etag"]
    fresh = ops.get(RG, GW).as_dict()  # the other writer committed after `check`
    assert fresh["etag"] != check["etag"]
    probe = fresh["properties"]["probes"][0]["properties"]
    assert probe["interval"] == 7 and probe["path"] == "/"  # merged, not replaced


def test_invalid_other_writer_patch_is_dropped_and_reported(sandbox: Sandbox) -> None:
    ops = sandbox.ops()
    before = sandbox.stored()["etag"]
    bad = {
        "properties": {
            "backendHttpSettingsCollection": [
                {
                    "name": "ase-https",
                    "properties": {"probe": {"id": f"{sandbox.gateway_id}/probes/none"}},
                }
            ]
        }
    }
    sandbox.add({"kind": "another_writer", "patch": bad})
    ops.get(RG, GW)
    assert sandbox.stored()["etag"] == before
    writes = sandbox.control("GET", "faults")[1]["other_writes"]
    assert writes[0]["etag"] is None and "InvalidResourceReference" in writes[0]["error"]


def test_write_path_kinds_ignore_reads(sandbox: Sandbox) -> None:
    ops = sandbox.ops(retry_total=0)
    sandbox.add({"kind": "policy_denied"})
    for _ in range(2):
        ops.get(RG, GW)
    health: Callable[[], Any] = ops.begin_backend_health(RG, GW).result
    pools = [
        p["backendAddressPool"]["id"].lower() for p in health().as_dict()["backendAddressPools"]
    ]
    assert pools == [p["id"].lower() for p in sandbox.stored()["properties"]["backendAddressPools"]]
    assert [f["kind"] for f in sandbox.control("GET", "faults")[1]["faults"]] == ["policy_denied"]
