"""The ARM emulator seeded with the recorded gateways, and helpers over recorded bodies, for the
conformance tests (tests/sandbox/test_conformance.py, test_conformance_certificates.py;
tests/data/recorded/SOURCES.md describes each recording).
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme

from sandbox.arm import ArmEmulator

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
