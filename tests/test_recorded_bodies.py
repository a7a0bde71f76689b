"""The bot against real Azure bodies (tests/data/recorded/, SOURCES.md there).

Every recorded gateway and backend-health body goes through the parsers, `diagnose` and the
`diagnose` CLI without error; and the Remediator's read-modify-write runs through ArmClient and
azure-mgmt-network against a transport that answers with the recorded responses
(cli_ag_root_cert_v2.json), so the PUT it sends can be compared with what it read.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest
from azure.core.rest._requests_basic import RestRequestsTransportResponse
from azure.mgmt.network import NetworkManagementClient
from requests.structures import CaseInsensitiveDict

from shared.cli.main import main as cli_main
from shared.cloud.arm import ArmClient
from shared.common.ids import parse_gateway_id
from shared.common.settings import load_settings
from shared.core.diagnosis import diagnose, probe_requests, route_hosts
from shared.core.findings import Fix, FixAction, FixCertificate
from shared.core.gateway import Generation, parse_gateway
from shared.core.health import parse_backend_health
from shared.remediation.changelog import LocalChangeLog
from shared.remediation.plan import certificate_name, plan_for_fix
from shared.remediation.proposals import LocalProposalStore
from shared.remediation.remediate import Remediator
from shared.service.lease import LocalGatewayLock

ROOT_DIR = Path(__file__).resolve().parents[1]
RECORDED = Path(__file__).resolve().parent / "data" / "recorded"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / name).read_text())
    return data


def _label(name: str, item: dict[str, Any]) -> str:
    headers = {k.lower(): v for k, v in item["response"]["headers"].items()}
    where = item.get("index", item.get("at", headers.get("date", "?")))
    return f"{name}: {item['request']['method']} {where}"


def _gateway_bodies() -> Iterator[Any]:
    """Every complete gateway body in a recorded GET/PUT response (trimmed ones are skipped)."""
    for path in sorted(RECORDED.glob("*.json")):
        for item in _load(path.name)["interactions"]:
            body = item["response"].get("body")
            if (
                isinstance(body, dict)
                and str(body.get("type", "")).lower() == "microsoft.network/applicationgateways"
                and "_trimmed" not in json.dumps(body)
            ):
                yield pytest.param(body, id=_label(path.name, item))


def _health_bodies() -> Iterator[Any]:
    for path in sorted(RECORDED.glob("*.json")):
        for item in _load(path.name)["interactions"]:
            body = item["response"].get("body")
            if isinstance(body, dict) and "backendAddressPools" in body and "id" not in body:
                yield pytest.param(body, id=_label(path.name, item))


GATEWAYS = list(_gateway_bodies())
HEALTHS = list(_health_bodies())
HEALTH_FILE = _load("cli_ag_backend_health_v2.json")
HEALTH_GATEWAY = HEALTH_FILE["interactions"][0]["response"]["body"]
HEALTH_RESULT = HEALTH_FILE["interactions"][-1]["response"]["body"]
EMPTY_HEALTH: dict[str, Any] = {"backendAddressPools": []}


def test_the_recordings_hold_what_this_suite_needs() -> None:
    assert len(GATEWAYS) >= 10  # AUTH x7, ROOT x3, KV x1, JAVA x2, HEALTH x1
    # cli_ag_backend_health_v2 (an empty pool) and net_ag_backend_health_v2 (two servers).
    assert len(HEALTHS) == 2
    assert HEALTH_RESULT in [h.values[0] for h in HEALTHS]


@pytest.mark.parametrize("doc", GATEWAYS)
def test_parse_gateway_reads_every_recorded_body(doc: dict[str, Any]) -> None:
    gw = parse_gateway(doc)
    assert gw.name == doc["name"]
    assert gw.id.lower() == doc["id"].lower()
    tier = doc["properties"]["sku"]["tier"]
    expected = Generation.V2 if tier.endswith("_v2") else Generation.V1
    assert gw.generation is expected, tier


@pytest.mark.parametrize("doc", HEALTHS)
def test_parse_backend_health_reads_the_recorded_result(doc: dict[str, Any]) -> None:
    # Every recorded server row, with its address, health and probe log; an empty pool has none.
    recorded = [
        (server["address"], server["health"].lower(), server["healthProbeLog"])
        for pool in doc["backendAddressPools"]
        for entry in pool["backendHttpSettingsCollection"]
        for server in entry["servers"]
    ]
    parsed = [(s.address, s.health.value.lower(), s.probe_log) for s in parse_backend_health(doc)]
    assert parsed == recorded


@pytest.mark.parametrize("doc", GATEWAYS)
@pytest.mark.parametrize("captures", [None, {}], ids=["no-captures", "empty-captures"])
def test_diagnose_runs_on_every_recorded_gateway(
    doc: dict[str, Any], captures: dict[Any, Any] | None
) -> None:
    health = HEALTH_RESULT if doc is HEALTH_GATEWAY else EMPTY_HEALTH
    gw = parse_gateway(doc)
    servers = parse_backend_health(health)
    hosts = route_hosts(doc)
    assert list(probe_requests(gw, servers, hosts=hosts)) == []  # no servers: nothing to probe
    result = diagnose(gw, servers, captures, now=NOW, hosts=hosts)
    assert result.gateway.name == doc["name"]
    # No health rows and no captures: configured members are reported, nothing is concluded.
    assert {f.health for f in result.findings} <= {"unknown"}
    if doc is HEALTH_GATEWAY:
        assert result.findings == ()  # the recorded pool is empty


@pytest.mark.parametrize("doc", GATEWAYS)
def test_cli_diagnose_json_on_every_recorded_gateway(
    doc: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway_file, health_file = tmp_path / "gw.json", tmp_path / "health.json"
    gateway_file.write_text(json.dumps(doc))
    health = HEALTH_RESULT if doc is HEALTH_GATEWAY else EMPTY_HEALTH
    health_file.write_text(json.dumps(health))
    args = ["diagnose", "--gateway", str(gateway_file), "--health", str(health_file)]
    code = cli_main([*args, "--format", "json", "--no-probe"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert isinstance(report, dict) and err == ""


def test_cli_diagnose_subprocess_on_the_recorded_health_pair(tmp_path: Path) -> None:
    """`python -m shared diagnose` on the recorded v2 gateway + its recorded backend health, as an
    operator runs it (files saved from `az ... show` / `show-backend-health`)."""
    gateway_file, health_file = tmp_path / "gw.json", tmp_path / "health.json"
    gateway_file.write_text(json.dumps(HEALTH_GATEWAY))
    health_file.write_text(json.dumps(HEALTH_RESULT))
    run = subprocess.run(
        [
            *(sys.executable, "-m", "shared", "diagnose", "--gateway", str(gateway_file)),
            *("--health", str(health_file), "--format", "json", "--no-probe"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT_DIR,
    )
    assert run.returncode == 0, run.stderr
    assert isinstance(json.loads(run.stdout), dict)


# ---- replay: the Remediator's read-modify-write against recorded responses ----------------------


class StaticToken:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("replay-token", 2**31)


def _response(request: Any, status: int, headers: dict[str, str], body: bytes) -> Any:
    """A real azure-core response (the one RequestsTransport returns) around recorded bytes."""
    raw = requests.Response()
    raw.status_code = status
    raw.headers = CaseInsensitiveDict(headers)
    raw.reason = "OK" if status < 400 else "Error"
    raw.url = request.url
    raw._content = body
    raw._content_consumed = True
    return RestRequestsTransportResponse(request=request, internal_response=raw)


class ReplayTransport(HttpTransport):
    """Serves the recorded interactions in order, matched by method + path (case-insensitive).

    The next recorded interaction is served when it matches; otherwise the last one served is
    repeated when it matches (a client that reads the gateway twice before its PUT gets the same
    recorded GET); otherwise the first later match. Keeps every request, bodies included."""

    def __init__(self, interactions: list[dict[str, Any]]) -> None:
        self.interactions = interactions
        self.keys = [self._key(i["request"]["method"], i["request"]["uri"]) for i in interactions]
        self.pos = -1
        self.sent: list[tuple[str, str, Any]] = []

    @staticmethod
    def _key(method: str, url: str) -> tuple[str, str]:
        return method.upper(), urlsplit(url).path.lower()

    def _pick(self, key: tuple[str, str]) -> int:
        if self.pos + 1 < len(self.keys) and self.keys[self.pos + 1] == key:
            return self.pos + 1
        if self.pos >= 0 and self.keys[self.pos] == key:
            return self.pos
        later = [i for i in range(self.pos + 1, len(self.keys)) if self.keys[i] == key]
        assert later, f"nothing recorded for {key} after interaction {self.pos}"
        return later[0]

    def send(self, request: Any, **kwargs: Any) -> Any:
        raw = request.body if isinstance(request, HttpRequest) else request.data
        body = json.loads(raw) if raw else None
        self.sent.append((request.method, request.url, body))
        self.pos = self._pick(self._key(request.method, request.url))
        response = self.interactions[self.pos]["response"]
        headers = {"Content-Type": "application/json; charset=utf-8"}
        headers.update({k: v for k, v in response["headers"].items() if not k.startswith("_")})
        payload = b"" if response.get("body") is None else json.dumps(response["body"]).encode()
        return _response(request, response["status"], headers, payload)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> ReplayTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        pass


ROOT_FILE = _load("cli_ag_root_cert_v2.json")
# GET before, PUT (200 + Azure-AsyncOperation), InProgress, Succeeded, GET after: in that order.
ROOT_REPLAY = [
    item
    for item in ROOT_FILE["interactions"]
    if not str(item.get("at", "")).startswith("PUT following")
]


def _trusted_root_fix(doc: dict[str, Any]) -> Fix:
    """Add the recorded cert1 (real DER) as a trusted root to the gateway's HTTP settings."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    put = next(i for i in ROOT_REPLAY if i["request"]["method"] == "PUT")
    data = put["request"]["body"]["properties"]["trustedRootCertificates"][0]["properties"]["data"]
    der = base64.b64decode(data)
    cert = x509.load_der_x509_certificate(der)
    settings = doc["properties"]["backendHttpSettingsCollection"][0]["name"]
    return Fix(
        FixAction.ADD_TRUSTED_ROOT_CERTIFICATE,
        FixCertificate(
            sha1=hashlib.sha1(der).hexdigest().upper(),
            sha256=hashlib.sha256(der).hexdigest().upper(),
            cer=cert.public_bytes(Encoding.PEM).decode(),
            der_b64=data,
            subject=cert.subject.rfc4514_string(),
            not_after=cert.not_valid_after_utc.isoformat(),
        ),
        settings=(settings,),
    )


def _without(doc: dict[str, Any], cert_name: str, settings: str) -> dict[str, Any]:
    """`doc` minus the trusted root `cert_name` and the settings' reference to it."""
    new = copy.deepcopy(doc)
    props = new["properties"]
    props["trustedRootCertificates"] = [
        c for c in props.get("trustedRootCertificates") or [] if c.get("name") != cert_name
    ]
    for entry in props.get("backendHttpSettingsCollection") or []:
        if entry.get("name") != settings:
            continue
        refs = entry["properties"].get("trustedRootCertificates") or []
        kept = [r for r in refs if not str(r.get("id", "")).endswith(f"/{cert_name}")]
        if kept:
            entry["properties"]["trustedRootCertificates"] = kept
        else:
            entry["properties"].pop("trustedRootCertificates", None)
    return new


def test_remediator_write_against_recorded_responses_keeps_every_other_field(
    tmp_path: Path,
) -> None:
    """cli_ag_root_cert_v2.json: the bot reads the recorded gateway (GET 05:25:57), plans one
    trusted root, PUTs through ArmClient (answered by the recorded PUT 05:25:58: 200 +
    Azure-AsyncOperation), follows the recorded polls (InProgress, Succeeded) and the final GET
    (05:26:20). The PUT body
    must be exactly the document it read (less the top-level etag), plus the one certificate and
    its reference: nothing else added, dropped or changed."""
    settings = load_settings(
        environ={
            "ARM_ENDPOINT": "https://management.azure.com",
            "ARM_POLLING_INTERVAL": "0",
            "STATE_DIR": str(tmp_path / "state"),
        }
    )
    before = ROOT_REPLAY[0]["response"]["body"]
    gid = parse_gateway_id(before["id"])
    transport = ReplayTransport(ROOT_REPLAY)
    arm = ArmClient(settings, credential=StaticToken())
    client = NetworkManagementClient(
        StaticToken(),
        gid.subscription,
        base_url="https://management.azure.com",
        transport=transport,
        polling_interval=0,
    )
    arm._clients[gid.subscription.lower()] = client  # the replay transport instead of the network
    state = tmp_path / "state"
    bot = Remediator(
        settings,
        arm=arm,
        proposals=LocalProposalStore(state / "proposals"),
        changes=LocalChangeLog(state),
        lock_for=lambda g: LocalGatewayLock(state, g),
    )
    fix = _trusted_root_fix(before)
    written, plan = bot.safe_write(gid, lambda doc: plan_for_fix(doc, fix, gateway_id=before["id"]))

    assert written.writes == 1
    assert written.after is not None
    assert written.after.provisioning_state == "Succeeded"  # the recorded final GET
    # Reads (the writer's read and re-read), one PUT, the recorded polls, the final GET.
    trace = "".join(
        "P" if m == "PUT" else ("o" if "/operations/" in u else "g") for m, u, _ in transport.sent
    )
    assert re.fullmatch(r"g{2,}Poog", trace), (trace, transport.sent)
    put_body = next(body for m, _, body in transport.sent if m == "PUT")

    name = certificate_name(fix.certificate.sha1) if fix.certificate else ""
    assert plan.certificate_ref_name == name
    added = [c for c in put_body["properties"]["trustedRootCertificates"] if c["name"] == name]
    assert added == [{"name": name, "properties": {"data": fix.certificate.der_b64}}]  # type: ignore[union-attr]
    target = fix.settings[0]
    refs = next(
        s["properties"].get("trustedRootCertificates")
        for s in put_body["properties"]["backendHttpSettingsCollection"]
        if s["name"] == target
    )
    assert [r["id"].rsplit("/", 1)[-1] for r in refs] == [name]

    # Everything else is the document read before, as read (a raw dict goes out as JSON as is;
    # ArmClient.put_gateway drops only the top-level etag).
    expected = {k: v for k, v in before.items() if k != "etag"}
    assert _without(put_body, name, target) == _without(expected, name, target)
    for key in ("location", "tags"):
        assert put_body.get(key) == before.get(key)
    for key in (
        "sku",
        "gatewayIPConfigurations",
        "frontendIPConfigurations",
        "frontendPorts",
        "backendAddressPools",
        "httpListeners",
        "requestRoutingRules",
        "sslCertificates",
    ):
        assert key in put_body["properties"], key
        assert len(put_body["properties"][key]) == len(before["properties"][key]), key
