"""Conformance of the ARM emulator to recordings whose recorders keep what is compared.

tests/sandbox/test_conformance.py replays azure-cli recordings; azure-cli's testsdk drops
`retry-after` from every recorded response (`ReplayableTest.FILTER_HEADERS`), so those cannot
speak to it. Here every point names a recording whose recorder keeps it
(tests/data/recorded/SOURCES.md, "Recorders"):

- net_ag_backend_health_v2.json: azure-sdk-for-net's test proxy keeps every response header and
  whole bodies (it sanitizes Authorization only): Retry-After, the health 202 body `null`, the
  Location on the final 200, back-references in GET bodies.
- cli_ag_auth_cert_v1.json / java_ag_kv_sslcert_identity.json: vcrpy and azure-core-test keep
  bodies whole (the Java recorder rewrites the host and drops request bodies; not compared).
- ps_network_provider_api_versions.json: PowerShell's HttpMockServer keeps the provider
  registration body; the error for an unknown version is Azure/azure-cli#12456's.

The emulator runs the recorded durations (a v2 create: 460 s, backend health: 10 s) on a fake
clock the tests move to each recorded poll's time, so Retry-After is compared value for value
without waiting.
"""

from __future__ import annotations

import copy
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trustme

from sandbox.arm import ArmEmulator
from sandbox.arm_backrefs import BACK_REFERENCES
from sandbox.arm_versions import APPLICATION_GATEWAY_VERSIONS

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

RECORDED = Path(__file__).resolve().parents[2] / "data" / "recorded"
TOKEN = "conformance-token"
CREATE_SECONDS = 460.0  # net_ag_backend_health_v2.json: PUT 03:08:56 -> Succeeded 03:16:36
HEALTH_SECONDS = 10.0  # net_ag_backend_health_v2.json: POST 03:17:23 -> 200 03:17:33


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recording(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / name).read_text())
    return data


def interaction(name: str, at: str | int) -> dict[str, Any]:
    for item in recording(name)["interactions"]:
        if item.get("index") == at or str(item.get("at", "")).startswith(str(at)):
            return item
    raise KeyError(f"{name}: {at!r}")


NET = "net_ag_backend_health_v2.json"
NET_PUT = interaction(NET, "Wed, 26 Jul 2023 03:08:56 GMT (gateway PUT)")
NET_GET = interaction(NET, "Wed, 26 Jul 2023 03:16:36 GMT (GET")
NET_POLLS = [i for i in recording(NET)["interactions"] if "(operation poll)" in i["at"]]
NET_HEALTH = [
    interaction(NET, f"Wed, 26 Jul 2023 {at}")
    for at in ("03:17:23 GMT (backendhealth", "03:17:23 GMT (health poll 1", "03:17:33 GMT")
]
AUTH_GET = interaction("cli_ag_auth_cert_v1.json", 16)
JAVA_GET = recording("java_ag_kv_sslcert_identity.json")["interactions"][-2]
PS_V1_GET = interaction("ps_ag_crud_v1_backrefs.json", "Wed, 06 Feb 2019 16:23:32 GMT")
PROVIDER = interaction("ps_network_provider_api_versions.json", 0)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw) if self.raw.strip() else None


class Arm:
    def __init__(self, emulator: ArmEmulator, ca_file: Path, clock: FakeClock) -> None:
        self.url = emulator.url
        self.clock = clock
        self.ssl = ssl.create_default_context(cafile=str(ca_file))

    def call(self, method: str, target: str, body: Any = None) -> Reply:
        split = urlsplit(target)
        url = self.url + split.path + (f"?{split.query}" if split.query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {TOKEN}")
        request.add_header("Content-Type", "application/json")
        if data is None and method == "POST":
            request.add_header("Content-Length", "0")
        try:
            with urllib.request.urlopen(request, context=self.ssl, timeout=20) as response:
                return Reply(response.status, _lower(response.headers.items()), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, _lower(error.headers.items()), error.read())


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


def _headers(item: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in item["response"]["headers"].items()}


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[Arm]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ps_v1 = {k: v for k, v in PS_V1_GET["response"]["body"].items() if k != "_trimmed"}
    seeds = [AUTH_GET["response"]["body"], JAVA_GET["response"]["body"], ps_v1]
    clock = FakeClock()
    emulator = ArmEmulator(
        subscription_id="db1ab6f0-4769-4b27-930e-01e2ef9c123c",
        gateways=[copy.deepcopy(s) for s in seeds],
        tls_cert_pem=cert.cert_chain_pems[0].bytes(),
        tls_key_pem=cert.private_key_pem.bytes(),
        verify_token=lambda t: t == TOKEN,
        well_known_roots=[],
        options={
            "subscriptions": [
                "00000000-0000-0000-0000-000000000000",
                "947d47b4-7883-4bb9-9d85-c5e8e2f572ce",
            ],
            "resource_groups": ["csmrg8899"],
            "clock": clock,
            "lro_delay_seconds": CREATE_SECONDS,
            "health_lro_seconds": HEALTH_SECONDS,
            "probe_timeout_cap_seconds": 0.2,
        },
    )
    emulator.start()
    yield Arm(emulator, ca_file, clock)
    emulator.stop()


def _clock_time(item: dict[str, Any]) -> float:
    """Seconds since midnight of the recorded `Date` header."""
    hms = item["response"]["headers"]["Date"].split()[4]
    hours, minutes, seconds = (int(x) for x in hms.split(":"))
    return float(hours * 3600 + minutes * 60 + seconds)


# ---- Retry-After ---------------------------------------------------------------------------------


def test_gateway_put_and_polls_send_retry_after_as_recorded(arm: Arm) -> None:
    """net_ag_backend_health_v2.json (test proxy keeps every header): the create PUT 201 says
    Retry-After 5; the operation's InProgress polls back off 1, 2, 2, 4, 4, 8, 8, 16, 16, then 10;
    the Succeeded poll (460 s after the PUT) says none. Replayed at the recorded poll times, the
    emulator answers each poll with the recorded status and Retry-After. Caveat: no
    header-keeping recording shows an update PUT, which the sandbox answers the same way."""
    assert _headers(NET_PUT)["retry-after"] == "5"
    assert [_headers(p).get("retry-after") for p in NET_POLLS][:10] == [
        "1", "2", "2", "4", "4", "8", "8", "16", "16", "10",
    ]  # fmt: skip
    start = arm.clock.now
    put = arm.call("PUT", NET_PUT["request"]["uri"], NET_PUT["request"]["body"])
    assert put.status == NET_PUT["response"]["status"] == 201, put.body
    assert put.headers["retry-after"] == "5"
    assert "location" not in put.headers and "etag" not in put.headers
    op_url = put.headers["azure-asyncoperation"]
    for recorded in NET_POLLS:
        arm.clock.now = start + _clock_time(recorded) - _clock_time(NET_PUT)
        poll = arm.call("GET", op_url)
        assert poll.body == recorded["response"]["body"], recorded["at"]
        assert poll.headers.get("retry-after") == _headers(recorded).get("retry-after")


# ---- backend health ------------------------------------------------------------------------------


def test_backend_health_null_bodies_location_and_retry_after(arm: Arm) -> None:
    """net_ag_backend_health_v2.json 03:17:23 / 03:17:23 / 03:17:33: POST .../backendhealth ->
    202 with the four-byte body `null`, Location, Retry-After 10, no Azure-AsyncOperation; the
    poll -> 202 `null`, Location, Retry-After 10; then 200 with the body, still a Location, no
    Retry-After. (cli_ag_backend_health_v2.json agrees on body and Location; its recorder drops
    Retry-After.)"""
    post, first, final = NET_HEALTH
    assert post["response"]["raw_body"] == first["response"]["raw_body"] == "null"
    assert _headers(post)["retry-after"] == _headers(first)["retry-after"] == "10"
    assert "retry-after" not in _headers(final) and _headers(final)["location"]
    assert "azure-asyncoperation" not in _headers(post)

    arm.call("PUT", NET_PUT["request"]["uri"], NET_PUT["request"]["body"])
    arm.clock.now += CREATE_SECONDS  # the gateway exists (Succeeded)
    reply = arm.call("POST", post["request"]["uri"])
    assert reply.status == 202 and reply.raw == b"null"
    assert "azure-asyncoperation" not in reply.headers
    assert reply.headers["retry-after"] == "10"
    location = reply.headers["location"]
    assert "/operationResults/" in location and location.endswith("?api-version=2023-04-01")
    early = arm.call("GET", location)
    assert (early.status, early.raw, early.headers["retry-after"]) == (202, b"null", "10")
    assert early.headers["location"] == location
    arm.clock.now += HEALTH_SECONDS
    done = arm.call("GET", location)
    for _ in range(100):  # the probes of the recorded (unreachable) members take real time
        if done.status != 202:
            break
        time.sleep(0.05)
        done = arm.call("GET", location)
    assert done.status == 200 and done.headers["location"] == location
    assert "retry-after" not in done.headers
    assert set(done.body) == set(final["response"]["body"]) == {"backendAddressPools"}
    [pool] = done.body["backendAddressPools"]
    assert pool["backendAddressPool"]["properties"]["requestRoutingRules"]  # $expand=true


# ---- computed back-references --------------------------------------------------------------------


def _backrefs(body: dict[str, Any]) -> dict[tuple[str, str, str], list[str]]:
    """(collection, child name, list) -> the lower-cased ids, for every back-reference list."""
    found = {}
    for collection, name in BACK_REFERENCES:
        for child in (body.get("properties") or {}).get(collection) or []:
            refs = (child.get("properties") or {}).get(name)
            if refs is not None:
                found[(collection, child["name"], name)] = [r["id"].lower() for r in refs]
    return found


def test_get_computes_the_recorded_back_references(arm: Arm) -> None:
    """net_ag_backend_health_v2.json: the create PUT's body has no back-references; the PUT 201
    and the GET after Succeeded list, on pool, settings and listener, the rule using them
    (`requestRoutingRules`), on frontend IP and port the listener (`httpListeners`); the unused
    pool has no key at all."""
    put = arm.call("PUT", NET_PUT["request"]["uri"], NET_PUT["request"]["body"])
    assert put.status == 201
    assert _backrefs(put.body) == _backrefs(NET_PUT["response"]["body"])
    got = arm.call("GET", NET_GET["request"]["uri"])
    expected = _backrefs(NET_GET["response"]["body"])
    assert len(expected) == 5 and _backrefs(got.body) == expected
    pools = {p["name"]: p["properties"] for p in got.body["properties"]["backendAddressPools"]}
    assert "requestRoutingRules" not in pools["azsmnet8388"]


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(AUTH_GET, id="cli_ag_auth_cert_v1.json idx 16 (authenticationCertificates)"),
        pytest.param(JAVA_GET, id="java_ag_kv_sslcert_identity.json final GET (sslCertificates)"),
        pytest.param(PS_V1_GET, id="ps_ag_crud_v1_backrefs.json GET 16:23:32 (probes, v1 WAF)"),
    ],
)
def test_seeded_gateways_show_their_recorded_back_references(arm: Arm, item: Any) -> None:
    """The recorded GET bodies (vcrpy and azure-core-test keep bodies whole), seeded with their
    lists and served again: the same lists, computed, including `backendHttpSettings` on an
    authentication certificate and on probes (PowerShell's HttpMockServer keeps bodies whole) and
    `httpListeners` on an SSL certificate."""
    body = item["response"]["body"]
    got = arm.call("GET", f"{body['id']}?api-version=2020-08-01")
    assert got.status == 200
    assert _backrefs(got.body) == _backrefs(body) != {}


def test_back_references_in_a_put_body_are_ignored(arm: Arm) -> None:
    """ARM ignores read-only properties on PUT: a body replaying stale lists (a rule that no
    longer exists, as after a rollback) is accepted and the GET shows the computed lists."""
    body = copy.deepcopy(NET_GET["response"]["body"])
    arm.call("PUT", NET_PUT["request"]["uri"], NET_PUT["request"]["body"])
    gone = body["id"] + "/requestRoutingRules/removedRule"
    for collection, name in BACK_REFERENCES:
        for child in body["properties"].get(collection) or []:
            child.setdefault("properties", {})[name] = [{"id": gone}]
    reply = arm.call("PUT", NET_PUT["request"]["uri"], body)
    assert reply.status == 200, reply.body
    assert gone.lower() not in json.dumps(reply.body).lower()
    assert _backrefs(reply.body) == _backrefs(NET_GET["response"]["body"])


# ---- api-version ---------------------------------------------------------------------------------


def test_unknown_api_version_is_no_registered_provider_found(arm: Arm) -> None:
    """Azure/azure-cli#12456: an api-version the provider does not register for
    applicationGateways -> 400 NoRegisteredProviderFound, "No registered resource provider found
    for location '{loc}' and API version '{v}' for type 'applicationGateways'. The supported
    api-versions are '...'. The supported locations are '...'." Every version the recorded
    provider registration lists (ps_network_provider_api_versions.json) is accepted."""
    registered = PROVIDER["response"]["body"]["resourceTypes"][0]["apiVersions"]
    assert set(registered) <= set(APPLICATION_GATEWAY_VERSIONS)
    gateway = AUTH_GET["response"]["body"]["id"]
    for version in (registered[0], registered[-1], APPLICATION_GATEWAY_VERSIONS[-1]):
        assert arm.call("GET", f"{gateway}?api-version={version}").status == 200, version
    reply = arm.call("GET", f"{gateway}?api-version=2015-11-01-preview")
    assert reply.status == 400
    error = reply.body["error"]
    assert error["code"] == "NoRegisteredProviderFound"
    assert error["message"].startswith(
        "No registered resource provider found for location 'westus' and API version "
        "'2015-11-01-preview' for type 'applicationGateways'. The supported api-versions are "
        "'2014-12-01-preview, 2015-05-01-preview, 2015-06-15, 2016-03-30,"
    )
    assert "'. The supported locations are '" in error["message"]
