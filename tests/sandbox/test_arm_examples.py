"""Microsoft's ARM examples (tests/data/arm-examples/) load into the emulator as seeds and
come back through azure-mgmt-network without loss (SOURCES.md lists their oddities)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from azure.core.credentials import AccessToken
from azure.mgmt.network import NetworkManagementClient

from sandbox.arm import ArmEmulator

pytestmark = pytest.mark.sandbox

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "arm-examples"  # tests/data/SOURCES.md
SUB = "00000000-0000-0000-0000-000000000000"
TOKEN = "examples-token"
# Only an sslCertificate's PFX and password are never served (java_ag_kv_sslcert_identity.json in
# tests/data/recorded); authentication certificates and trusted roots keep `data`
# (cli_ag_auth_cert_v1.json, cli_ag_root_cert_v2.json).
HIDDEN = {"sslCertificates"}
HIDDEN_KEYS = {"data", "password"}


def example_body(file: str, status: str) -> dict:
    return json.loads((EXAMPLES / file).read_text())["responses"][status]["body"]


class StaticToken:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(TOKEN, 2**31)


@pytest.fixture(
    params=[("ApplicationGatewayGet.json", "200"), ("ApplicationGatewayCreate.json", "200")]
)
def seeded(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict, NetworkManagementClient]]:
    source = example_body(*request.param)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    arm = ArmEmulator(
        subscription_id=SUB,
        gateways=[json.loads(json.dumps(source))],
        tls_cert_pem=cert.cert_chain_pems[0].bytes(),
        tls_key_pem=cert.private_key_pem.bytes(),
        verify_token=lambda t: t == TOKEN,
        well_known_roots=[],
        # Operations and backend health end on their first poll (docs/sandbox.md, timing).
        options={
            "lro_delay_seconds": 0,
            "health_lro_seconds": 0,
            "retry_after_seconds": 0,
            "probe_timeout_cap_seconds": 1.0,
        },
    )
    arm.start()
    client = NetworkManagementClient(
        StaticToken(), SUB, base_url=arm.url, connection_verify=str(ca_file), polling_interval=0
    )
    yield source, client
    arm.stop()


def assert_contains(source: Any, served: Any, path: str = "") -> None:
    """Every value of `source` is in `served` unchanged; the emulator may only add read-only
    output (etag, resourceGuid, child type/etag) and must drop only an sslCertificate's PFX."""
    if isinstance(source, dict):
        assert isinstance(served, dict), path
        for key, value in source.items():
            if key in HIDDEN_KEYS and any(h in path for h in HIDDEN):
                continue
            assert key in served, f"{path}/{key} lost"
            assert_contains(value, served[key], f"{path}/{key}")
    elif isinstance(source, list):
        assert isinstance(served, list) and len(served) == len(source), path
        for index, (a, b) in enumerate(zip(source, served, strict=True)):
            assert_contains(a, b, f"{path}[{index}]")
    else:
        assert source == served, f"{path}: {source!r} != {served!r}"


def test_example_deserializes_without_loss(seeded: tuple[dict, NetworkManagementClient]) -> None:
    source, client = seeded
    rg = source["id"].split("/")[4]
    model = client.application_gateways.get(rg, source["name"])
    assert_contains(source, model.as_dict())
    assert model.etag is not None and model.etag.startswith('W/"')
    # Typed access still works on the odd shapes, e.g. plain-string backendAddresses.
    pools = {p.name: p for p in model.backend_address_pools or []}
    assert set(pools) == {p["name"] for p in source["properties"]["backendAddressPools"]}


def test_example_lists_and_round_trips(seeded: tuple[dict, NetworkManagementClient]) -> None:
    source, client = seeded
    rg = source["id"].split("/")[4]
    ops = client.application_gateways
    assert [g.name for g in ops.list(rg)] == [source["name"]]
    result = ops.begin_create_or_update(rg, source["name"], ops.get(rg, source["name"])).result()
    assert result.provisioning_state == "Succeeded"
    served = result.as_dict()
    assert_contains(
        source["properties"]["backendAddressPools"], served["properties"]["backendAddressPools"]
    )


def test_example_members_outside_loopback_are_never_probed(
    seeded: tuple[dict, NetworkManagementClient],
) -> None:
    source, client = seeded
    rg = source["id"].split("/")[4]
    health = client.application_gateways.begin_backend_health(rg, source["name"]).result()
    servers = [
        s
        for pool in health.as_dict()["backendAddressPools"]
        for settings in pool["backendHttpSettingsCollection"]
        for s in settings["servers"]
    ]
    # 10.0.x.x: reported Unknown (docs/sources.md#probe-log-texts), never contacted
    for server in servers:
        assert server["health"] == "Unknown", server
        assert "could not be retrieved" in server["healthProbeLog"]
