"""Conformance of the ARM emulator to recorded real Azure traffic (tests/data/recorded/).

Each test replays, over the emulator's real HTTPS endpoint with a bearer token, the request a
recording made and compares what matters to a client: status codes, which LRO headers are present
or absent, async-operation status bodies over time, provisioningState transitions, ETag format,
certificate data visibility and error shapes. Volatile values (ids, GUIDs, dates, signatures) are
never compared. The recorded gateway bodies are loaded into the emulator as seeds, so the requests
target the same resource ids the recordings used.

Every test names its recording, `file: interaction` (`idx N` = position in the upstream cassette,
otherwise the recorded `date`); tests/data/recorded/SOURCES.md describes each file. Where the
truth is not in a recording, the docstring names the public source instead.

Recorder caveats (SOURCES.md, "Recorders"): the azure-cli recordings drop `retry-after` and the
request-id headers, and the Java recording writes `Retry-After: 0` over every response and keeps
no request bodies, so no test here compares those; headers and bodies their recorders keep
(`location`, `azure-asyncoperation`, `etag`, response bodies) are compared.
tests/sandbox/conformance/ compares Retry-After, the health `null` bodies and the final
`Location`, back-references and api-versions against recordings that keep them.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from sandbox.arm import ArmEmulator

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded"
SUB = "00000000-0000-0000-0000-000000000000"
TOKEN = "conformance-token"
LRO_SECONDS = 1.5  # long enough to see InProgress / Updating, short enough for the suite
WEAK_ETAG = re.compile(r'^W/"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"$')
NRP_OPERATION = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Network/locations/(?P<loc>[^/]+)"
    r"/operations/(?P<op>[^/]+)$",
    re.IGNORECASE,
)
NRP_OPERATION_RESULT = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Network/locations/(?P<loc>[^/]+)"
    r"/operationResults/(?P<op>[^/]+)$",
    re.IGNORECASE,
)


def recording(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / name).read_text())
    return data


def interaction(name: str, key: str | int) -> dict[str, Any]:
    """The interaction whose `index` equals `key` (an int) or whose `at` starts with `key`."""
    for item in recording(name)["interactions"]:
        if isinstance(key, int) and item.get("index") == key:
            return item
        if isinstance(key, str) and str(item.get("at", "")).startswith(key):
            return item
    raise KeyError(f"{name}: no interaction {key!r}")


AUTH = "cli_ag_auth_cert_v1.json"
ROOT = "cli_ag_root_cert_v2.json"
KV = "cli_ag_root_cert_kv_400.json"
JAVA = "java_ag_kv_sslcert_identity.json"
HEALTH = "cli_ag_backend_health_v2.json"

# Recorded gateway bodies used as seeds, and the request each test replays.
ROOT_GET = interaction(ROOT, "date Fri, 06 Nov 2020 05:25:57 GMT")
ROOT_PUT = interaction(ROOT, "date Fri, 06 Nov 2020 05:25:58 GMT")
ROOT_PUT2 = interaction(ROOT, "PUT following")
AUTH_GET = interaction(AUTH, 7)
AUTH_404 = interaction(AUTH, 3)
KV_GET = interaction(KV, 26)
KV_PUT = interaction(KV, 27)
HEALTH_GET = interaction(HEALTH, "date Tue, 28 Oct 2025 00:43:09 GMT (show)")
HEALTH_POST = interaction(HEALTH, "date Tue, 28 Oct 2025 00:43:09 GMT (show-backend-health")
HEALTH_DONE = interaction(HEALTH, "date Tue, 28 Oct 2025 00:43:20 GMT")
SEEDS = {"root": ROOT_GET, "auth": AUTH_GET, "kv": KV_GET, "health": HEALTH_GET}


def path_of(uri: str) -> str:
    return urlsplit(uri).path


def api_version(uri: str) -> str:
    return parse_qs(urlsplit(uri).query)["api-version"][0]


# ---- the emulator, seeded with the recorded gateways ---------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-cased names (clients match case-insensitively)
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw) if self.raw.strip() else None


class Arm:
    """Raw HTTPS calls to the emulator with a bearer token, as the recorded clients made them."""

    def __init__(self, emulator: ArmEmulator, ca_file: Path) -> None:
        self.emulator = emulator
        self.url = emulator.url
        self.ssl = ssl.create_default_context(cafile=str(ca_file))

    def call(self, method: str, target: str, body: Any = None) -> Reply:
        """`target` is a recorded absolute URI or a path; only path and query are kept."""
        split = urlsplit(target)
        url = self.url + split.path + (f"?{split.query}" if split.query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        if method == "POST" and data is None:
            request.add_header("Content-Length", "0")  # as recorded (show-backend-health)
        try:
            with urllib.request.urlopen(request, context=self.ssl, timeout=20) as response:
                return Reply(response.status, _lower(response.headers.items()), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, _lower(error.headers.items()), error.read())

    def get(self, target: str) -> Reply:
        return self.call("GET", target)

    def put(self, target: str, body: Any) -> Reply:
        return self.call("PUT", target, body)

    def poll(self, url: str, *, until: Callable[[Reply], bool], timeout: float = 15) -> list[Reply]:
        """GET `url` every 0.1 s until `until(reply)`; every reply, in order."""
        replies = [self.get(url)]
        deadline = time.monotonic() + timeout
        while not until(replies[-1]):
            assert time.monotonic() < deadline, f"no final reply from {url}: {replies[-1]}"
            time.sleep(0.1)
            replies.append(self.get(url))
        return replies


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[Arm]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    emulator = ArmEmulator(
        subscription_id=SUB,
        gateways=[copy.deepcopy(item["response"]["body"]) for item in SEEDS.values()],
        tls_cert_pem=cert.cert_chain_pems[0].bytes(),
        tls_key_pem=cert.private_key_pem.bytes(),
        verify_token=lambda t: t == TOKEN,
        well_known_roots=[],
        options={
            "lro_delay_seconds": LRO_SECONDS,
            "health_lro_seconds": 0.5,
            "probe_timeout_cap_seconds": 1.0,
            "resource_groups": ["cli_test_ag_create000001"],
        },
    )
    emulator.start()
    yield Arm(emulator, ca_file)
    emulator.stop()


# ---- helpers over recorded bodies ----------------------------------------------------------------


def gateway_uri(item: dict[str, Any]) -> str:
    return str(item["request"]["uri"])


def fresh_body(arm: Arm, item: dict[str, Any]) -> dict[str, Any]:
    """What the recorded clients PUT: the whole gateway as GET returned it."""
    reply = arm.get(gateway_uri(item))
    assert reply.status == 200, reply
    body: dict[str, Any] = reply.body
    return body


def children(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(collection, child) for every named child in the gateway's property lists."""
    for key, value in (body.get("properties") or {}).items():
        for child in value if isinstance(value, list) else []:
            if isinstance(child, dict) and "name" in child:
                yield key, child


def states(body: dict[str, Any]) -> set[str]:
    """provisioningState at top level and in every child that carries one."""
    found = {body["properties"]["provisioningState"]}
    for _, child in children(body):
        state = (child.get("properties") or {}).get("provisioningState")
        if state is not None:
            found.add(state)
    return found


def named(body: dict[str, Any], collection: str, name: str) -> dict[str, Any]:
    for child in body["properties"].get(collection) or []:
        if child["name"] == name:
            props: dict[str, Any] = child.get("properties") or {}
            return props
    raise AssertionError(f"{collection}/{name} not in body")


def recorded_cert_data(item: dict[str, Any], collection: str) -> str:
    data: str = item["request"]["body"]["properties"][collection][0]["properties"]["data"]
    return data


def with_cert(body: dict[str, Any], collection: str, name: str, data: str) -> dict[str, Any]:
    new = copy.deepcopy(body)
    new["properties"].setdefault(collection, []).append(
        {"name": name, "properties": {"data": data}}
    )
    return new


def async_operation(reply: Reply, put_uri: str) -> str:
    """The Azure-AsyncOperation URL of a PUT reply, checked against the recorded shape."""
    url = reply.headers.get("azure-asyncoperation")
    assert url, f"no Azure-AsyncOperation on PUT {reply.status}: {reply.headers}"
    match = NRP_OPERATION.match(path_of(url))
    assert match, url  # .../providers/Microsoft.Network/locations/{loc}/operations/{id}
    assert match["sub"] == SUB
    assert api_version(url) == api_version(put_uri)  # same api-version as the PUT
    return url


def wait_done(arm: Arm, op_url: str) -> list[Reply]:
    return arm.poll(op_url, until=lambda r: (r.body or {}).get("status") != "InProgress")


# ---- GET -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed",
    [
        pytest.param("root", id="cli_ag_root_cert_v2.json: GET 05:25:57"),
        pytest.param("auth", id="cli_ag_auth_cert_v1.json: idx 7"),
        pytest.param("kv", id="cli_ag_root_cert_kv_400.json: idx 26"),
        pytest.param("health", id="cli_ag_backend_health_v2.json: GET 00:43:09"),
    ],
)
def test_get_has_weak_etag_header_equal_to_body_and_children(arm: Arm, seed: str) -> None:
    """GET 200 carries an `ETag: W/"<guid>"` header equal to the body's `etag`, and every child
    carries the parent's etag (all four recordings' gateway GETs)."""
    recorded = SEEDS[seed]
    reply = arm.get(gateway_uri(recorded))
    assert reply.status == recorded["response"]["status"] == 200
    assert WEAK_ETAG.match(recorded["response"]["headers"]["etag"])  # the recorded shape
    assert WEAK_ETAG.match(reply.headers.get("etag", "")), reply.headers
    body = reply.body
    assert body["etag"] == reply.headers["etag"]
    assert {child["etag"] for _, child in children(body)} == {body["etag"]}
    assert reply.headers["content-type"].startswith("application/json")
    assert states(body) == {"Succeeded"}


def test_get_of_missing_gateway_is_resource_not_found(arm: Arm) -> None:
    """cli_ag_auth_cert_v1.json idx 3: GET of a gateway that does not exist (in an existing
    resource group) -> 404 `{"error": {"code": "ResourceNotFound", "message": "The Resource
    'Microsoft.Network/applicationGateways/<name>' under resource group '<rg>' was not found..."}}`,
    no `details`."""
    recorded = AUTH_404["response"]
    uri = gateway_uri(AUTH_GET).replace("/applicationGateways/ag1", "/applicationGateways/nope")
    reply = arm.get(uri)
    assert reply.status == recorded["status"] == 404
    assert set(reply.body) == set(recorded["body"]) == {"error"}
    assert set(reply.body["error"]) == set(recorded["body"]["error"]) == {"code", "message"}
    assert reply.body["error"]["code"] == "ResourceNotFound"
    rg = path_of(uri).split("/")[4]
    expected = recorded["body"]["error"]["message"].replace("ag1", "nope")
    assert expected.startswith("The Resource 'Microsoft.Network/applicationGateways/nope'")
    assert reply.body["error"]["message"].startswith(expected[:-1]), reply.body  # may add a URL
    assert f"under resource group '{rg}'" in reply.body["error"]["message"]


# ---- PUT: status, headers, body ------------------------------------------------------------------


def test_update_put_is_200_with_async_operation_only(arm: Arm) -> None:
    """cli_ag_root_cert_v2.json PUT 05:25:58 (also cli_ag_auth_cert_v1.json idx 9/11/13/15): an
    update PUT -> 200 with Azure-AsyncOperation (.../locations/{loc}/operations/{id}, same
    api-version); no Location, no ETag header. (Retry-After: azure-cli's recorder drops it, so
    these recordings cannot say; tests/sandbox/conformance/test_recorded_headers.py compares it
    with a recording that keeps it.)"""
    recorded = ROOT_PUT["response"]
    before = fresh_body(arm, ROOT_GET)
    data = recorded_cert_data(ROOT_PUT, "trustedRootCertificates")
    reply = arm.put(
        gateway_uri(ROOT_PUT), with_cert(before, "trustedRootCertificates", "cert1", data)
    )
    assert reply.status == recorded["status"] == 200, reply.body
    async_operation(reply, gateway_uri(ROOT_PUT))
    for header in ("location", "etag"):
        assert header not in recorded["headers"]
        assert header not in reply.headers, f"{header}: {reply.headers.get(header)}"


def test_create_put_is_201_with_async_operation(arm: Arm) -> None:
    """java_ag_kv_sslcert_identity.json PUT 201 (06:13:42) and cli_ag_root_cert_kv_400.json
    idx 7: creating a resource through NRP -> 201 Created with Azure-AsyncOperation, no Location,
    body Updating."""
    java_put = recording(JAVA)["interactions"][0]
    assert java_put["request"]["method"] == "PUT" and java_put["response"]["status"] == 201
    source = json.dumps(fresh_body(arm, ROOT_GET))
    body = json.loads(
        source.replace(
            "/resourceGroups/cli_test_ag_root_cert000001/",
            "/resourceGroups/cli_test_ag_create000001/",
        )
        .replace("/applicationGateways/ag1", "/applicationGateways/agnew")
        .replace(
            "/resourcegroups/cli_test_ag_root_cert000001/",
            "/resourcegroups/cli_test_ag_create000001/",
        )
    )
    for key in ("etag", "id", "name", "type"):
        body.pop(key, None)
    body["properties"].pop("resourceGuid", None)
    uri = (
        f"/subscriptions/{SUB}/resourceGroups/cli_test_ag_create000001/providers/"
        "Microsoft.Network/applicationGateways/agnew?api-version=2020-08-01"
    )
    reply = arm.put(uri, body)
    assert reply.status == 201, reply.body
    async_operation(reply, uri)
    assert "location" not in java_put["response"]["headers"] and "location" not in reply.headers
    assert "etag" not in reply.headers
    assert states(reply.body) == {"Updating"}


def test_put_body_is_updating_everywhere_and_get_follows_the_operation(arm: Arm) -> None:
    """provisioningState: the PUT response says Updating at top level and in every child
    (cli_ag_root_cert_v2.json PUT 05:25:58; cli_ag_auth_cert_v1.json idx 9); a GET while the
    operation runs says Updating (cli_ag_auth_cert_v1.json idx 16); after the operation
    Succeeded, GET says Succeeded everywhere (cli_ag_root_cert_v2.json GET 05:26:20)."""
    assert states(ROOT_PUT["response"]["body"]) == {"Updating"}
    assert states(AUTH_GET["response"]["body"]) == {"Updating"}
    after_recorded = interaction(ROOT, "date Fri, 06 Nov 2020 05:26:20 GMT (after")
    assert states(after_recorded["response"]["body"]) == {"Succeeded"}

    before = fresh_body(arm, ROOT_GET)
    data = recorded_cert_data(ROOT_PUT, "trustedRootCertificates")
    reply = arm.put(
        gateway_uri(ROOT_PUT), with_cert(before, "trustedRootCertificates", "cert1", data)
    )
    assert reply.status == 200
    assert states(reply.body) == {"Updating"}
    during = arm.get(gateway_uri(ROOT_GET))
    assert states(during.body) == {"Updating"}
    wait_done(arm, async_operation(reply, gateway_uri(ROOT_PUT)))
    after = arm.get(gateway_uri(ROOT_GET))
    assert states(after.body) == {"Succeeded"}
    assert after.headers["etag"] == after.body["etag"]


def test_async_operation_status_bodies_over_time(arm: Arm) -> None:
    """cli_ag_root_cert_v2.json polls 05:26:09 and 05:26:20: the operation URL answers 200
    `{"status": "InProgress"}` and then 200 `{"status": "Succeeded"}`, nothing else in the body,
    (Retry-After: see test_recorded_headers.py; azure-cli's recorder drops it.)"""
    polls = [
        interaction(ROOT, "date Fri, 06 Nov 2020 05:26:09 GMT"),
        interaction(ROOT, "date Fri, 06 Nov 2020 05:26:20 GMT"),
    ]
    assert [p["response"]["body"] for p in polls] == [
        {"status": "InProgress"},
        {"status": "Succeeded"},
    ]
    assert all(p["response"]["status"] == 200 for p in polls)

    before = fresh_body(arm, ROOT_GET)
    data = recorded_cert_data(ROOT_PUT, "trustedRootCertificates")
    reply = arm.put(
        gateway_uri(ROOT_PUT), with_cert(before, "trustedRootCertificates", "cert1", data)
    )
    replies = wait_done(arm, async_operation(reply, gateway_uri(ROOT_PUT)))
    bodies = [r.body for r in replies]
    assert all(r.status == 200 for r in replies)
    assert bodies[0] == {"status": "InProgress"}, bodies  # polled at once: still running
    assert bodies[-1] == {"status": "Succeeded"}, bodies
    assert set(map(json.dumps, bodies[:-1])) == {json.dumps({"status": "InProgress"})}


def test_etag_changes_on_every_put(arm: Arm) -> None:
    """cli_ag_auth_cert_v1.json idx 7 -> 9 -> 11 -> 13 -> 15 -> 16: every PUT response carries a new
    weak etag, different from the GET before it and from each other."""
    recorded = [interaction(AUTH, i)["response"]["body"]["etag"] for i in (7, 9, 11, 13, 15, 16)]
    assert len(set(recorded)) == len(recorded)

    seen = [fresh_body(arm, AUTH_GET)["etag"]]
    data = recorded_cert_data(interaction(AUTH, 9), "authenticationCertificates")
    for name in ("cert1", "cert2"):
        body = with_cert(fresh_body(arm, AUTH_GET), "authenticationCertificates", name, data)
        reply = arm.put(gateway_uri(AUTH_GET), body)
        assert reply.status == 200, reply.body
        assert WEAK_ETAG.match(reply.body["etag"])
        seen.append(reply.body["etag"])
        wait_done(arm, async_operation(reply, gateway_uri(AUTH_GET)))
        seen.append(arm.get(gateway_uri(AUTH_GET)).headers["etag"])
    put_etags = seen[1::2]
    assert len(set(put_etags)) == len(put_etags)
    assert seen[0] not in put_etags


# ---- certificate data visibility -----------------------------------------------------------------


def test_authentication_certificate_data_returned_as_sent(arm: Arm) -> None:
    """cli_ag_auth_cert_v1.json idx 9 (PUT response) and idx 16 (GET): on v1 the
    authenticationCertificates' `data` comes back exactly as sent, on PUT and on GET."""
    data = recorded_cert_data(interaction(AUTH, 9), "authenticationCertificates")
    assert (
        named(interaction(AUTH, 9)["response"]["body"], "authenticationCertificates", "cert1")[
            "data"
        ]
        == data
    )
    assert (
        named(interaction(AUTH, 16)["response"]["body"], "authenticationCertificates", "cert1")[
            "data"
        ]
        == data
    )

    body = with_cert(fresh_body(arm, AUTH_GET), "authenticationCertificates", "cert1", data)
    reply = arm.put(gateway_uri(AUTH_GET), body)
    assert reply.status == 200, reply.body
    assert named(reply.body, "authenticationCertificates", "cert1").get("data") == data
    got = arm.get(gateway_uri(AUTH_GET)).body
    assert named(got, "authenticationCertificates", "cert1").get("data") == data


def test_trusted_root_data_returned_as_sent_even_pem_text(arm: Arm) -> None:
    """cli_ag_root_cert_v2.json PUT 05:25:58 / GET 05:26:20: trusted root `data` (base64 DER) is
    returned on PUT and GET; the second PUT (cert2 = base64 of PEM text) is echoed verbatim."""
    der_b64 = recorded_cert_data(ROOT_PUT, "trustedRootCertificates")
    after = interaction(ROOT, "date Fri, 06 Nov 2020 05:26:20 GMT (after")["response"]["body"]
    assert named(after, "trustedRootCertificates", "cert1")["data"] == der_b64
    pem_b64 = next(
        c["properties"]["data"]
        for c in ROOT_PUT2["request"]["body"]["properties"]["trustedRootCertificates"]
        if c["properties"]["data"].startswith("LS0tLS1CRUdJTi")
    )
    assert pem_b64 in json.dumps(ROOT_PUT2["response"]["body"])

    body = with_cert(fresh_body(arm, ROOT_GET), "trustedRootCertificates", "cert1", der_b64)
    body = with_cert(body, "trustedRootCertificates", "cert2", pem_b64)
    reply = arm.put(gateway_uri(ROOT_PUT), body)
    assert reply.status == 200, reply.body
    assert named(reply.body, "trustedRootCertificates", "cert1").get("data") == der_b64
    assert named(reply.body, "trustedRootCertificates", "cert2").get("data") == pem_b64
    got = arm.get(gateway_uri(ROOT_GET)).body
    assert named(got, "trustedRootCertificates", "cert1").get("data") == der_b64
    assert named(got, "trustedRootCertificates", "cert2").get("data") == pem_b64


def _pfx_b64(password: bytes) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conformance.example")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    blob = pkcs12.serialize_key_and_certificates(
        b"conformance", key, cert, None, serialization.BestAvailableEncryption(password)
    )
    return base64.b64encode(blob).decode()


def test_inline_ssl_certificate_never_returns_data_or_password(arm: Arm) -> None:
    """sslCertificates never show the PFX `data` or `password` (java_ag_kv_sslcert_identity.json
    PUT 201 and final GET show neither); an inline one shows the read-only `publicCertData`
    (Microsoft REST reference, ApplicationGatewaySslCertificate: "Base-64 encoded Public cert data
    corresponding to pfx specified in data. Only applicable in GET request.",
    https://learn.microsoft.com/rest/api/application-gateway/application-gateways/get)."""
    body = fresh_body(arm, ROOT_GET)
    body["properties"]["sslCertificates"] = [
        {"name": "inline", "properties": {"data": _pfx_b64(b"pw-123"), "password": "pw-123"}}
    ]
    reply = arm.put(gateway_uri(ROOT_PUT), body)
    assert reply.status == 200, reply.body
    wait_done(arm, async_operation(reply, gateway_uri(ROOT_PUT)))
    got = arm.get(gateway_uri(ROOT_GET)).body
    for served in (reply.body, got):
        props = named(served, "sslCertificates", "inline")
        assert "data" not in props and "password" not in props, props
    assert base64.b64decode(named(got, "sslCertificates", "inline").get("publicCertData") or "")


def test_key_vault_ssl_certificate_shows_only_the_secret_id(arm: Arm) -> None:
    """java_ag_kv_sslcert_identity.json PUT 201 (06:13:42) and GET (06:28:28): a Key
    Vault-referenced sslCertificate on a gateway with a user-assigned identity shows
    `keyVaultSecretId` (plus provisioningState and listener back-references) and no `data`,
    `password` or `publicCertData`."""
    java = recording(JAVA)["interactions"]
    final_get = java[-2]["response"]["body"]
    recorded_props = final_get["properties"]["sslCertificates"][0]["properties"]
    assert set(recorded_props) <= {"provisioningState", "keyVaultSecretId", "httpListeners"}
    body = fresh_body(arm, ROOT_GET)
    body["identity"] = copy.deepcopy(java[0]["response"]["body"]["identity"])
    secret = recorded_props["keyVaultSecretId"]
    body["properties"]["sslCertificates"] = [
        {"name": "kvcert", "properties": {"keyVaultSecretId": secret}}
    ]
    reply = arm.put(gateway_uri(ROOT_PUT), body)
    assert reply.status == 200, reply.body
    wait_done(arm, async_operation(reply, gateway_uri(ROOT_PUT)))
    got = arm.get(gateway_uri(ROOT_GET)).body
    for served in (reply.body, got):
        props = named(served, "sslCertificates", "kvcert")
        assert props.get("keyVaultSecretId") == secret
        assert not {"data", "password", "publicCertData"} & set(props), props


def test_key_vault_trusted_root_without_user_assigned_identity_is_400(arm: Arm) -> None:
    """cli_ag_root_cert_kv_400.json idx 26/27: a PUT adding a trusted root with `keyVaultSecretId`
    to a gateway without `identity` -> synchronous 400, no Azure-AsyncOperation, body exactly
    `{"error": {"code": "ApplicationGatewayKeyVaultSecretRequiresUserAssignedIdentity",
    "message": "Application Gateway '<id>' requires a 'UserAssigned' Identity ...",
    "details": []}}`; the gateway is unchanged."""
    recorded = KV_PUT["response"]
    before = fresh_body(arm, KV_GET)
    assert "identity" not in before
    body = copy.deepcopy(before)
    body["properties"]["trustedRootCertificates"] = copy.deepcopy(
        KV_PUT["request"]["body"]["properties"]["trustedRootCertificates"]
    )
    reply = arm.put(gateway_uri(KV_PUT), body)
    assert reply.status == recorded["status"] == 400
    assert "azure-asyncoperation" not in reply.headers and "location" not in reply.headers
    gateway_id = path_of(gateway_uri(KV_GET))
    assert reply.body == json.loads(
        json.dumps(recorded["body"]).replace(recorded_gateway_id(recorded), gateway_id)
    )
    assert reply.body["error"]["details"] == []
    assert arm.get(gateway_uri(KV_GET)).headers["etag"] == before["etag"]


def recorded_gateway_id(response: dict[str, Any]) -> str:
    match = re.search(r"Application Gateway '([^']+)'", response["body"]["error"]["message"])
    assert match
    return match.group(1)


# ---- overlapping writes --------------------------------------------------------------------------


def test_second_put_while_updating_is_accepted_and_supersedes_the_first(arm: Arm) -> None:
    """cli_ag_auth_cert_v1.json idx 9, 11, 13, 15: PUTs 1-4 s apart while the gateway is Updating
    are each accepted with 200 and their own Azure-AsyncOperation (no 409). The earlier operation
    then ends Canceled: NRP's status body is `{"status": "Canceled", "error": {"code": "Canceled",
    "message": "Operation was canceled.", "details": [{"code":
    "CanceledAndSupersededDueToAnotherOperation", ...}]}}` (https://github.com/Azure/azure-cli/
    issues/21156; the same nesting in https://github.com/Azure/application-gateway-kubernetes-
    ingress/issues/187). Not in a recording: the CLI ran with --no-wait and never polled."""
    urls = {
        interaction(AUTH, i)["response"]["headers"]["azure-asyncoperation"] for i in (9, 11, 13, 15)
    }
    assert len(urls) == 4
    data = recorded_cert_data(interaction(AUTH, 9), "authenticationCertificates")
    base = fresh_body(arm, AUTH_GET)
    first = arm.put(
        gateway_uri(AUTH_GET), with_cert(base, "authenticationCertificates", "cert1", data)
    )
    assert first.status == 200, first.body
    second_body = with_cert(
        with_cert(base, "authenticationCertificates", "cert1", data),
        "authenticationCertificates",
        "cert2",
        data,
    )
    second = arm.put(gateway_uri(AUTH_GET), second_body)
    assert second.status == 200, second.body
    first_op = async_operation(first, gateway_uri(AUTH_GET))
    second_op = async_operation(second, gateway_uri(AUTH_GET))
    assert path_of(first_op) != path_of(second_op)

    first_end = wait_done(arm, first_op)[-1].body
    assert first_end["status"] == "Canceled", first_end
    assert first_end["error"]["code"] == "Canceled"
    assert [d["code"] for d in first_end["error"]["details"]] == [
        "CanceledAndSupersededDueToAnotherOperation"
    ]
    assert wait_done(arm, second_op)[-1].body == {"status": "Succeeded"}
    got = arm.get(gateway_uri(AUTH_GET)).body
    assert {c["name"] for c in got["properties"]["authenticationCertificates"]} == {
        "cert1",
        "cert2",
    }
    assert states(got) == {"Succeeded"}


# ---- backend health ------------------------------------------------------------------------------


def test_backend_health_is_a_location_lro(arm: Arm) -> None:
    """cli_ag_backend_health_v2.json POST 00:43:09 and polls 00:43:09 / 00:43:20: POST
    .../backendhealth -> 202 with body `null`, a Location to .../locations/{loc}/operationResults/
    {id} with the POST's api-version, no Azure-AsyncOperation; the Location answers 202 (body
    `null`) while running, then 200 with the BackendHealth body. (azure-cli's recorder drops
    Retry-After; test_recorded_headers.py compares it.)"""
    post = HEALTH_POST["response"]
    assert post["status"] == 202 and post["raw_body"] == "null"
    assert "azure-asyncoperation" not in post["headers"]
    uri = gateway_uri(HEALTH_POST)
    reply = arm.call("POST", uri)
    assert reply.status == 202, reply
    assert reply.raw == post["raw_body"].encode() == b"null"  # the four bytes, as recorded
    location = reply.headers.get("location", "")
    match = NRP_OPERATION_RESULT.match(path_of(location))
    assert match, location
    assert match["loc"] == "westus" and match["sub"] == SUB
    assert api_version(location) == api_version(uri) == "2023-11-01"
    assert "azure-asyncoperation" not in reply.headers

    polls = arm.poll(location, until=lambda r: r.status != 202)
    first_recorded = interaction(HEALTH, "date Tue, 28 Oct 2025 00:43:09 GMT (poll 1")["response"]
    assert first_recorded["status"] == 202 and first_recorded["body"] is None
    for early in polls[:-1]:
        assert early.status == 202 and early.raw == b"null"
        assert early.headers.get("location")
    assert polls[-1].status == HEALTH_DONE["response"]["status"] == 200


def test_backend_health_body_matches_the_recorded_shape(arm: Arm) -> None:
    """cli_ag_backend_health_v2.json poll 00:43:20: for the recorded gateway (one rule, empty pool)
    the result is exactly `{"backendAddressPools": [{"backendAddressPool": {"id"},
    "backendHttpSettingsCollection": [{"backendHttpSettings": {"id"}, "servers": []}]}]}`
    (ids compared case-insensitively)."""
    reply = arm.call("POST", gateway_uri(HEALTH_POST))
    final = arm.poll(reply.headers["location"], until=lambda r: r.status != 202)[-1]
    assert final.status == 200
    assert _lower_ids(final.body) == _lower_ids(HEALTH_DONE["response"]["body"])


def _lower_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (v.lower() if k == "id" else _lower_ids(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_lower_ids(v) for v in node]
    return node
