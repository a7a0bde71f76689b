"""Safety suite (issue #7): hostile input to the function app over HTTP (local runner, Azurite,
sandbox). Fuzzed and forged requests get a 4xx JSON error, never a 5xx or a traceback, and nothing
is written; a backend presenting a certificate the trusted source does not vouch for is proposed,
not applied; addresses in request bodies are never connected to.

Alert schema and limits: docs/sources.md#alert-schema (common schema, 256 KB cap, legacy payloads
refused); ARM ids compare case-insensitively (shared/common/ids.py).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.alerts import common_alert
from sandbox.easyauth import principal_headers
from sandbox.funcrunner import REPO_ROOT
from shared.common.ids import parse_gateway_id

from .conftest import BotApp, Factory, Reply

pytestmark = [pytest.mark.safety, pytest.mark.sandbox, pytest.mark.timeout(240)]

FUZZ = settings(max_examples=60, deadline=None, database=None)
OTHER_SUB = "0badc0de-0000-4000-8000-000000000bad"


def assert_refused(reply: Reply, *statuses: int) -> None:
    """A 4xx (one of `statuses` when given) with the JSON error shape, no traceback."""
    assert 400 <= reply.status < 500, (reply.status, reply.body[:300])
    if statuses:
        assert reply.status in statuses, (reply.status, reply.body[:300])
    if reply.status == 401:  # the runner's key check answers before the app, with no body
        return
    assert reply.headers["Content-Type"].startswith("application/json")
    error = reply.json()["error"]
    assert error["code"] and error["message"]
    assert b"Traceback" not in reply.body


def assert_nothing_written(app: BotApp) -> None:
    assert app.puts() == []
    assert app.jobs() == [] and app.queued_messages() == 0


def out_of_scope_id(app: BotApp, subscription: str = OTHER_SUB) -> str:
    gid = parse_gateway_id(app.gateway_id)
    return gid.id.replace(gid.subscription, subscription)


# ---- fuzzing the alert endpoint --------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner),
    max_leaves=30,
)
ESSENTIAL_KEYS = ["alertId", "monitorCondition", "alertTargetIDs", "alertRule", "firedDateTime"]


@pytest.fixture
def guarded_app(bot_app: Factory) -> Iterator[BotApp]:
    """The app in apply mode with its worker on: anything that slipped through would be written."""
    yield bot_app("ilb-ase-v1", REMEDIATION_MODE="apply")


def test_fuzzed_bodies_get_4xx_json_and_write_nothing(guarded_app: BotApp) -> None:
    app = guarded_app

    @FUZZ
    @given(body=st.binary(max_size=2048) | JSON.map(lambda v: json.dumps(v).encode()))
    def check(body: bytes) -> None:
        assert_refused(app.post_alert(None, raw=body), 400)

    check()
    assert_nothing_written(app)


def test_mutated_alerts_naming_foreign_gateways_write_nothing(guarded_app: BotApp) -> None:
    app = guarded_app
    foreign = out_of_scope_id(app)
    name = parse_gateway_id(app.gateway_id).name
    targets = st.sampled_from(
        [
            foreign,
            foreign.upper(),
            foreign.swapcase(),
            app.gateway_id.replace("/resourceGroups/rg-ase/", "/resourceGroups/rg-ase/../rg-x/"),
            app.gateway_id + "/../../../../applicationGateways/other",
            app.gateway_id.replace(name, "agw-ąśé-v1"),
            app.gateway_id.replace(name, "..%2F..%2Fagw"),
            app.gateway_id.replace("/subscriptions/", "/subscriptions/../"),
            "/" + "/".join([".."] * 8),
        ]
    ) | st.text(max_size=200)

    @FUZZ
    @given(key=st.sampled_from(ESSENTIAL_KEYS), value=JSON, target=targets)
    def check(key: str, value: Any, target: str) -> None:
        alert = common_alert(foreign)
        essentials = alert["data"]["essentials"]
        essentials["alertTargetIDs"] = [target]
        essentials[key] = value if key != "alertTargetIDs" else [target, value]
        reply = app.post_alert(alert)
        assert_refused(reply, 400, 403)

    check()
    assert_nothing_written(app)


# ---- forged and odd requests -----------------------------------------------------------------


def test_forged_traversal_oversized_and_mistyped_requests_are_refused(
    guarded_app: BotApp,
) -> None:
    app = guarded_app
    gid = parse_gateway_id(app.gateway_id)
    foreign = out_of_scope_id(app)
    big = common_alert(app.gateway_id)
    big["data"]["essentials"]["description"] = "x" * (300 * 1024)
    mixed = common_alert(app.gateway_id)
    mixed["data"]["essentials"]["alertTargetIDs"] = [foreign, foreign.upper()]

    for payload, status in (
        (common_alert(foreign), 403),  # a forged alert about someone else's gateway
        (common_alert(foreign.upper()), 403),
        (mixed, 403),
    ):
        assert_refused(app.post_alert(payload), status)
    assert_refused(app.post_alert(None, raw=json.dumps(big).encode()), 400)
    valid = json.dumps(common_alert(app.gateway_id)).encode()
    for content_type in ("text/plain", "application/xml", "multipart/form-data; boundary=x"):
        reply = app.post_alert(None, raw=valid, headers={"Content-Type": content_type})
        assert_refused(reply, 400)

    sub, rg = gid.subscription, gid.resource_group
    for path, statuses in (
        (f"gateways/{OTHER_SUB}/{rg}/{gid.name}/fix", (403,)),
        (f"gateways/{OTHER_SUB.upper()}/{rg.upper()}/{gid.name.upper()}/fix", (403,)),
        (f"gateways/{sub}/..%2F..%2F{rg}/{gid.name}/fix", (400,)),
        (f"gateways/{sub}/{rg}/..%2F..%2Fetc%2Fpasswd/fix", (400,)),
        (f"gateways/{sub}/{rg}/agw-%C4%85%C5%9B%C3%A9/fix", (400,)),
        (f"gateways/{sub}/{rg}/%2E%2E/diagnose", (400,)),
        (f"gateways/{sub}/{rg}/{gid.name}/rollback", (404,)),
    ):
        reply = app.call("POST", path, {"mode": "apply"})
        if reply.status == 404:  # no route: the runner's empty 404, nothing reached the app
            assert 404 in statuses and reply.body == b"", (path, reply.body)
            continue
        assert_refused(reply, *statuses)
    bad_mode = app.call("POST", f"gateways/{sub}/{rg}/{gid.name}/fix", {"mode": "yolo"})
    assert_refused(bad_mode, 400)
    for path in ("jobs/..%2F..%2Fledger", "jobs/%00", "proposals/..%2F..%2Fx", "proposals/%2E%2E"):
        assert_refused(app.call("GET", path), 400, 404)
    assert_nothing_written(app)


# ---- an attacker's certificate while a trusted source is configured -------------------------


def _v2_root_with_vault_holding(directory: Path, certificate: str) -> str:
    """ilb-ase-v2-root, but the Key Vault's trusted certificate is `certificate`."""
    scenario = json.loads((REPO_ROOT / "sandbox/scenarios/ilb-ase-v2-root.json").read_text())
    scenario["keyvault"] = {"certificates": {"contoso-root-2025": certificate}}
    path = directory / "v2-root-vault.json"
    path.write_text(json.dumps(scenario))
    return str(path)


@pytest.mark.parametrize("source", ["subject-pattern", "key-vault"])
def test_a_certificate_the_trusted_source_does_not_vouch_for_is_proposed_not_applied(
    bot_app: Factory, tmp_path: Path, source: str
) -> None:
    if source == "subject-pattern":
        # The ILB presents its own default certificate (*.appgwtestase.com), not ours.
        app = bot_app(
            "ilb-ase-v1", REMEDIATION_MODE="apply", TRUSTED_SUBJECT_PATTERN=r"^app\.contoso\.com$"
        )
    else:
        # The backend's chain ends in new-root; the vault vouches only for old-root.
        app = bot_app(_v2_root_with_vault_holding(tmp_path, "old-root"), REMEDIATION_MODE="apply")
    reply = app.post_alert(common_alert(app.gateway_id, dimension="ase-pool~ase-https"))
    assert reply.status == 202, reply.body
    job = app.wait_job(reply.json()["jobs"][0])

    assert job["state"] == "proposed", job
    assert job["proposal_id"] and job["outcome"]["action"] == "proposed"
    assert app.puts() == []
    assert "changed" not in [d.what for d in app.storage.list_decisions(app.gateway_id)]


# ---- addresses in request bodies are never probed -------------------------------------------


class Tripwire:
    """A loopback TLS server that counts every TCP connection it accepts."""

    def __init__(self) -> None:
        ca = trustme.CA()
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "tripwire.test").configure_cert(self.context)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address, self.port = self.sock.getsockname()[:2]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def tripwire() -> Iterator[Tripwire]:
    wire = Tripwire()
    yield wire
    wire.close()


def test_addresses_in_request_bodies_are_never_probed(bot_app: Factory, tripwire: Tripwire) -> None:
    app = bot_app("ilb-ase-v1", REMEDIATION_MODE="propose")
    where = f"{tripwire.address}:{tripwire.port}"
    planted = {
        "address": tripwire.address,
        "port": tripwire.port,
        "backend": where,
        "backendAddress": f"https://{where}/",
        "host": where,
        "sni": "tripwire.test",
    }
    alert = common_alert(app.gateway_id, dimension=f"{where}~{where}")
    alert["data"]["customProperties"] = dict(planted)
    alert["data"]["essentials"].update(planted)
    alert["data"]["alertContext"]["condition"]["allOf"][0].update(planted)
    reply = app.post_alert(alert)
    assert reply.status == 202, reply.body
    jobs = [reply.json()["jobs"][0]]
    app.wait_job(jobs[0])
    for action in ("diagnose", "fix"):
        reply = app.call("POST", app.gateway_path(action), {**planted, "mode": "propose"})
        assert reply.status == 202, reply.body
        jobs.append(reply.json()["job"])
        app.wait_job(jobs[-1])

    assert tripwire.connections == 0
    assert app.puts() == []
    # The jobs did probe: the gateway's own backend, from the gateway's own document.
    job = app.storage.get_job(jobs[1])
    assert job is not None and job.diagnosis
    assert where not in json.dumps(job.diagnosis)


# ---- errors classified (issue 13): input is 4xx, storage down is 503, nothing written ---------

ALICE = "a11ce000-0000-4000-8000-000000000001"  # an Entra object id, as APPROVERS holds them
# 100 000 levels: deeper than any recursive parser follows, still under the 256 KB body cap.
NESTED = b'{"mode": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def _principal(value: Any) -> str:
    import base64

    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.b64encode(raw).decode()


@pytest.fixture
def signed_in_app(bot_app: Factory) -> Iterator[BotApp]:
    """App Service Authentication on (the runner passes principal headers), apply mode."""
    yield bot_app(
        "ilb-ase-v1",
        easy_auth=True,
        REMEDIATION_MODE="apply",
        APPROVERS=ALICE,
        WEBSITE_AUTH_ENABLED="True",
    )


def test_deeply_nested_bodies_get_400_json_and_write_nothing(signed_in_app: BotApp) -> None:
    app = signed_in_app
    me = principal_headers(ALICE)
    for path in (app.gateway_path("fix"), app.gateway_path("diagnose"), "proposals/p-1/approve"):
        reply = app.call("POST", path, raw=NESTED, headers=me)
        assert_refused(reply, 400)
        assert "nested too deeply" in reply.json()["error"]["message"], path
    assert_refused(app.post_alert(None, raw=NESTED), 400)
    assert_nothing_written(app)
    assert app.alert_rows() == []


def test_malformed_client_principal_gets_401_json_and_writes_nothing(
    signed_in_app: BotApp,
) -> None:
    app = signed_in_app
    for principal in (
        "!!! not base64 !!!",
        _principal(b"not json"),
        _principal(b"\xff\xfe\x00garbage"),
        _principal([1, 2]),
        _principal({"claims": 5}),
        _principal({"claims": [1, "x"]}),
        _principal(b"[" * 3000 + b"]" * 3000),
        _principal(b'{"claims": [' * 1200 + b"]}" * 1200),
        "A" * 20_000,
    ):
        for path in (app.gateway_path("fix"), "proposals/p-1/approve"):
            reply = app.call("POST", path, {}, headers={"x-ms-client-principal": principal})
            assert_refused(reply, 401)
            assert reply.json()["error"]["code"] == "Unauthenticated", principal[:40]
    aad = {"x-ms-client-principal-idp": "aad"}
    for claims in (
        [{"typ": "preferred_username", "val": "alice@contoso.com"}],  # a name, no object id
        [{"typ": "oid", "val": "alice@contoso.com"}],  # an oid that is not an object id
    ):
        principal = {"x-ms-client-principal": _principal({"claims": claims}), **aad}
        reply = app.call("POST", "proposals/p-1/approve", {}, headers=principal)
        assert_refused(reply, 401)
    # A name header alone names nobody, whatever it holds: 401, as for no caller.
    for name in ("alice\x01@contoso.com", "a" * 300, "alice@contoso.com", ALICE):
        reply = app.call(
            "POST", "proposals/p-1/approve", {}, headers={"x-ms-client-principal-name": name}
        )
        assert_refused(reply, 401)
    # A readable principal names the caller by its oid claim (the claim App Service writes).
    for typ in ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid"):
        good = _principal({"claims": [{"typ": typ, "val": ALICE}]})
        headers = {"x-ms-client-principal": good, **aad}
        reply = app.call("POST", "proposals/p-1/approve", {}, headers=headers)
        assert reply.status == 404, reply.body  # authenticated; the proposal does not exist
    assert_nothing_written(app)


def _foreign_ids(count: int) -> list[str]:
    """Gateways in another subscription, with long (valid) names: 240 of them make a target list
    of about 60 000 characters, over a table property's 64 KiB once stored as UTF-16."""
    return [
        f"/subscriptions/{OTHER_SUB}/resourceGroups/rg-{'x' * 80}-{n:03d}"
        f"/providers/Microsoft.Network/applicationGateways/agw-{'y' * 80}-{n:03d}"
        for n in range(count)
    ]


def test_an_alert_naming_240_targets_is_stored_trimmed_and_its_gateway_gets_a_job(
    bot_app: Factory,
) -> None:
    app = bot_app("ilb-ase-v1", worker=False, REMEDIATION_MODE="apply")
    alert = common_alert(app.gateway_id)
    alert["data"]["essentials"]["alertTargetIDs"] = [*_foreign_ids(239), app.gateway_id]
    assert len(json.dumps(alert)) < 256 * 1024

    reply = app.post_alert(alert)

    assert reply.status == 202, reply.body
    [job_id] = reply.json()["jobs"]
    [job] = app.jobs()
    assert job["RowKey"] == job_id and job["gateway_id"] == app.gateway_id.lower()
    [row] = app.alert_rows()
    assert (row["targets"], row["out_of_scope"]) == (240, 239)
    stored = json.loads(row["gateways"])
    assert stored[0] == app.gateway_id and 1 < len(stored) < 240  # in scope first, what fits
    # Out-of-scope targets are counted on the alert's row, not written one ledger row each.
    assert sorted(r["PartitionKey"] for r in all_rows(app)) == sorted(
        ["alert", "job", "active", f"decision-{_hash(app.gateway_id)}"]
    )
    assert app.puts() == []
    again = app.post_alert(alert)
    assert again.status == 202 and again.json() == {"status": "duplicate", "jobs": [job_id]}


def test_200_out_of_scope_targets_write_one_row(guarded_app: BotApp) -> None:
    app = guarded_app
    alert = common_alert(out_of_scope_id(app))
    alert["data"]["essentials"]["alertTargetIDs"] = _foreign_ids(200)
    for _ in range(3):  # the action group's retries are refused the same way
        assert_refused(app.post_alert(alert), 403)
    [row] = all_rows(app)
    assert row["PartitionKey"] == "alert"
    assert (row["targets"], row["out_of_scope"]) == (200, 200)
    assert_nothing_written(app)


def test_a_request_storage_refuses_is_500_not_503() -> None:
    """A 400 from storage (a property over 64 KiB, say) is our bug: retrying cannot help, so the
    action group must not be told to (503); an outage still is."""
    from shared.service.api import guarded
    from shared.service.storage import StorageRejected, StorageUnavailable

    def refused() -> Any:
        raise StorageRejected("storage refused the request while recording an alert: 400")

    def down() -> Any:
        raise StorageUnavailable("storage unavailable while recording an alert: timeout")

    assert guarded(refused).status == 500
    assert guarded(refused).body["error"]["code"] == "InternalError"
    assert guarded(down).status == 503 and guarded(down).headers["Retry-After"]


def all_rows(app: BotApp) -> list[dict[str, Any]]:
    app.storage.ensure()
    table = app.storage.table_service.get_table_client(app.storage.names.ledger_table)
    return list(table.list_entities())


def _hash(gateway: str) -> str:
    from shared.service.storage import gateway_hash

    return gateway_hash(gateway)


def test_one_alert_queues_at_most_max_targets_per_alert_jobs(bot_app: Factory) -> None:
    scope = "/subscriptions/5a7d0b0c-0001-4000-8000-000000000001/resourceGroups/rg-ase"
    app = bot_app(
        "ilb-ase-v1",
        worker=False,
        REMEDIATION_MODE="apply",
        ALLOWED_SCOPES=scope,
        MAX_TARGETS_PER_ALERT="5",
    )
    assert app.gateway_id.startswith(scope + "/")
    in_scope = [app.gateway_id] + [
        app.gateway_id.rsplit("/", 1)[0] + f"/agw-extra-{n:04d}" for n in range(1499)
    ]
    alert = common_alert(app.gateway_id)
    alert["data"]["essentials"]["alertTargetIDs"] = in_scope

    reply = app.post_alert(alert)

    assert reply.status == 202, reply.body
    body = reply.json()
    assert len(body["jobs"]) == 5
    assert len(app.jobs()) == 5
    assert (body["not_queued"], body["max_targets_per_alert"]) == (1495, 5)
    [row] = app.alert_rows()
    assert row["targets"] == 1500  # every target is still counted on the alert's row
    assert app.puts() == []


def test_invalid_settings_answer_a_json_500_that_names_the_setting(bot_app: Factory) -> None:
    # A name where APPROVERS wants object ids: the app cannot load its settings. Every HTTP
    # route answers JSON naming the setting (not the host's empty 500), and nothing is queued.
    app = bot_app("ilb-ase-v1", APPROVERS="alice@contoso.com")
    reply = app.post_alert(common_alert(app.gateway_id, alert_id="bad-settings"))
    assert reply.status == 500, reply.body
    error = reply.json()["error"]
    assert error["code"] == "ConfigurationError" and "APPROVERS" in error["message"], error
    listed = app.call("GET", "proposals")
    assert listed.status == 500 and listed.json()["error"]["code"] == "ConfigurationError"
    assert app.puts() == []
