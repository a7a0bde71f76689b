"""Built-in scenarios load and resolve; sandboxes start, serve and stop; the CLI behaves."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

import sandbox.arm  # noqa: F401 - the ARM emulator the sandbox tests start (no skip: in-repo)
from sandbox.pki import PFX_PASSWORD, KeyAllocator
from sandbox.runtime import (
    CORE_KEYS,
    FAST_BOT_SETTINGS,
    KEY_VAULT_KEY,
    read_env_file,
    write_env_file,
)
from sandbox.scenario import (
    ScenarioError,
    build_certificates,
    builtin_names,
    load_scenario,
    parse_scenario,
    render_gateways,
)

ROOT = Path(__file__).resolve().parents[2]
BUILTINS = [
    "ase-v2-expired-intermediate",
    "healthy",
    "ilb-ase-v1",
    "ilb-ase-v2-nosni",
    "ilb-ase-v2-root",
    "multi",
    "rotation-v2",
]
V1_TIERS = {"Standard", "WAF"}


def rendered(name: str, port_map: dict[int, int] | None = None) -> tuple[Any, list[dict], dict]:
    s = load_scenario(name)
    endpoints = {b.name: (f"127.9.9.{i + 1}", b.port) for i, b in enumerate(s.backends)}
    certs = build_certificates(s, endpoints, KeyAllocator())
    return s, render_gateways(s, certs, endpoints, port_map), certs


def refs(node: Any) -> list[str]:
    """Every {"id": ...} reference inside a gateway's properties."""
    found: list[str] = []
    if isinstance(node, dict):
        if set(node) == {"id"} and isinstance(node["id"], str):
            found.append(node["id"])
        for value in node.values():
            found += refs(value)
    elif isinstance(node, list):
        for value in node:
            found += refs(value)
    return found


def children(doc: dict) -> set[str]:
    return {
        c["id"].lower()
        for value in doc["properties"].values()
        if isinstance(value, list)
        for c in value
        if isinstance(c, dict) and "id" in c
    }


def test_builtins_are_exactly_the_documented_ones() -> None:
    assert builtin_names() == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_resolves_completely_and_consistently(name: str) -> None:
    s, gateways, certs = rendered(name)
    assert "{{" not in json.dumps(gateways)
    assert s.options["probe_interval_seconds"] == 2 and s.options["lro_delay_seconds"] == 2
    for doc in gateways:
        gid = doc["id"]
        assert gid.startswith(f"/subscriptions/{s.subscription}/resourceGroups/")
        assert gid.endswith(f"/providers/Microsoft.Network/applicationGateways/{doc['name']}")
        own = [r for r in refs(doc["properties"]) if "/applicationGateways/" in r]
        assert own and all(r.lower() in children(doc) for r in own), "dangling reference"
        props = doc["properties"]
        v1 = props["sku"]["tier"] in V1_TIERS
        for settings in props["backendHttpSettingsCollection"]:
            assert isinstance(settings["properties"]["port"], int)
        for rule in props["requestRoutingRules"]:
            assert ("priority" in rule["properties"]) is not v1  # v2 rules need a priority
        assert ("authenticationCertificates" in props) is v1
        for cert in props.get("authenticationCertificates", []) + props.get(
            "trustedRootCertificates", []
        ):
            der = base64.b64decode(cert["properties"]["data"])
            assert der in {kc.der() for kc in certs.values()}
        for ssl_cert in props["sslCertificates"]:
            blob = base64.b64decode(ssl_cert["properties"]["data"])
            password = ssl_cert["properties"]["password"]
            assert password == PFX_PASSWORD
            key, leaf, _ = pkcs12.load_key_and_certificates(blob, password.encode())
            assert key is not None and leaf is not None


def test_seed_shape() -> None:
    s, [doc], certs = rendered("ilb-ase-v1")
    props = doc["properties"]
    assert props["sku"] == {"name": "Standard_Medium", "tier": "Standard", "capacity": 2}
    [pool] = props["backendAddressPools"]
    assert pool["name"] == "ase-pool"
    assert pool["properties"]["backendAddresses"] == [{"ipAddress": "127.9.9.1"}]
    [probe] = props["probes"]
    assert probe["properties"]["host"] == "test.appgwtestase.com"
    [settings] = props["backendHttpSettingsCollection"]
    assert settings["properties"]["probe"]["id"] == probe["id"]
    [auth] = props["authenticationCertificates"]
    assert base64.b64decode(auth["properties"]["data"]) == certs["app-cert"].der()
    [listener] = props["httpListeners"]
    assert listener["properties"]["hostName"] == "test.appgwtestase.com"
    assert listener["properties"]["protocol"] == "Https"
    [ilb] = s.backends
    assert ilb.default_chain == ("ilb-default",)
    assert ilb.sni["test.appgwtestase.com"][0] == "app-cert"


def test_moved_port_rewrites_settings_but_not_frontend() -> None:
    _, [doc], _ = rendered("ilb-ase-v1", port_map={443: 40443})
    props = doc["properties"]
    assert props["backendHttpSettingsCollection"][0]["properties"]["port"] == 40443
    assert props["frontendPorts"][0]["properties"]["port"] == 443


def test_port_placeholder_becomes_a_number() -> None:
    _, [doc], _ = rendered("ilb-ase-v2-nosni")
    assert doc["properties"]["backendHttpSettingsCollection"][0]["properties"]["port"] == 443


def _minimal(**overrides: Any) -> dict:
    raw: dict[str, Any] = {
        "name": "t",
        "authorities": [{"name": "root"}],
        "certificates": [{"name": "leaf", "issuer": "root", "dns_names": ["a.example"]}],
        "backends": [{"name": "b", "default_chain": ["leaf"]}],
        "gateways": [{"name": "gw", "properties": {"x": "{{backend.b.address}}"}}],
    }
    raw.update(overrides)
    return raw


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"gateways": [{"name": "gw", "properties": {"x": "{{cert.nope.der_b64}}"}}]},
            "cert.nope.der_b64",
        ),
        ({"backends": [{"name": "b", "default_chain": ["missing"]}]}, "missing"),
        ({"backends": [{"name": "b", "behaviour": "sometimes"}]}, "behaviour"),
        ({"backends": [{"name": "b"}]}, "default_chain"),
        (
            {"certificates": [{"name": "leaf", "issuer": "later"}, {"name": "later", "ca": True}]},
            "later",
        ),
        ({"certificates": [{"name": "a"}, {"name": "b", "issuer": "a"}]}, "not a CA"),
        ({"gateways": [{"properties": {}}]}, "name"),
    ],
)
def test_bad_scenarios_name_the_problem(overrides: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_minimal(**overrides))


def test_minimal_scenario_defaults() -> None:
    s = parse_scenario(_minimal())
    assert s.gateway_ids() == [
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-sandbox"
        "/providers/Microsoft.Network/applicationGateways/gw"
    ]


def test_unknown_scenario_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="unknown scenario"):
        load_scenario("no-such-scenario")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ScenarioError, match="JSON"):
        load_scenario(bad)


def test_env_file_is_sourceable_by_sh(tmp_path: Path) -> None:
    env = {"PLAIN": "value", "QUOTED": "it's a 'test' $HOME `x`", "EMPTY": ""}
    path = tmp_path / "sandbox.env"
    write_env_file(env, path)
    assert all(line.count("=") >= 1 for line in path.read_text().splitlines())
    script = f'. {path}; printf \'%s\\n\' "$PLAIN" "$QUOTED" "$EMPTY"'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:3] == [env["PLAIN"], env["QUOTED"], ""]
    assert read_env_file(path) == env


# -- with the ARM emulator -----------------------------------------------------------------------


def peer_der(address: str, port: int, sni: str | None) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((address, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


@pytest.mark.sandbox
@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_starts_and_stops_cleanly(name: str, sandbox_factory: Any) -> None:
    handle = sandbox_factory(name)
    s = handle.scenario
    vault_keys = {KEY_VAULT_KEY, "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE"} if s.keyvault else set()
    expected = set(CORE_KEYS) | set(s.bot_settings) | vault_keys
    # sandbox_factory starts the fast timing profile, which adds the bot's timing settings.
    assert set(handle.env) == expected | set(FAST_BOT_SETTINGS)
    assert "SSL_CERT_FILE" not in handle.env
    assert handle.env["ARM_ENDPOINT"].startswith("https://127.0.0.1:")
    assert Path(handle.env["REQUESTS_CA_BUNDLE"]).read_bytes().startswith(b"-----BEGIN CERT")
    assert handle.gateway_ids == s.gateway_ids()
    assert os.environ["AZURE_SUBSCRIPTION_ID"] == s.subscription
    for server in handle.backends.values():
        assert server.address.startswith("127.") and server.address != "127.0.0.1"
    arm_port = int(handle.env["ARM_ENDPOINT"].rsplit(":", 1)[1])
    handle.stop()
    handle.stop()  # idempotent
    for server in handle.backends.values():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.address, server.port), timeout=5)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", arm_port), timeout=5)


@pytest.mark.sandbox
def test_seed_backend_and_health_through_the_sdk(sandbox_factory: Any) -> None:
    from azure.identity import ManagedIdentityCredential
    from azure.mgmt.network import NetworkManagementClient

    handle = sandbox_factory("ilb-ase-v1")
    ilb = handle.backends["ilb"]
    assert peer_der(ilb.address, ilb.port, None) == handle.certs["ilb-default"].der()
    assert peer_der(ilb.address, ilb.port, "test.appgwtestase.com") == (
        handle.certs["app-cert"].der()
    )
    client = NetworkManagementClient(
        ManagedIdentityCredential(),
        handle.env["AZURE_SUBSCRIPTION_ID"],
        base_url=handle.env["ARM_ENDPOINT"],
        connection_verify=handle.env["REQUESTS_CA_BUNDLE"],
        polling_interval=0.2,
        retry_total=0,
    )
    gw = client.application_gateways.get("rg-ase", "agw-ase-v1")
    pool = gw.backend_address_pools[0].backend_addresses[0]
    assert pool.ip_address == ilb.address
    settings = gw.backend_http_settings_collection[0]
    assert settings.port == ilb.port
    deadline = time.monotonic() + 30
    while True:
        health = client.application_gateways.begin_backend_health("rg-ase", "agw-ase-v1").result()
        [server] = health.backend_address_pools[0].backend_http_settings_collection[0].servers
        if server.health != "Unknown" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert server.health == "Unhealthy"
    assert "not whitelisted" in server.health_probe_log


def test_cli_lists_scenarios_and_rejects_bad_ones(tmp_path: Path) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "sandbox", "scenarios"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert [line.split()[0] for line in listed.stdout.splitlines()] == BUILTINS
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--scenario",
            "nope",
            "--env-file",
            str(tmp_path / "x.env"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.env").exists()


@pytest.mark.sandbox
def test_cli_serve_writes_env_and_stops_on_sigterm(tmp_path: Path) -> None:
    env_file = tmp_path / "state" / "sandbox.env"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--scenario",
            "healthy",
            "--env-file",
            str(env_file),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()  # printed once the env file is written
        assert ready.strip() == "sandbox ready: healthy (1 gateways)"
        env = read_env_file(env_file)
        assert set(CORE_KEYS) <= set(env)
        assert Path(env["REQUESTS_CA_BUNDLE"]).is_file()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "sandbox stopped" in out
        assert not Path(env["REQUESTS_CA_BUNDLE"]).exists()  # the temp workdir is removed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


CUSTOM = {
    "name": "custom",
    "subscription": "5a7d0b0c-00ff-4000-8000-0000000000ff",
    "authorities": [
        {"name": "public-root", "common_name": "Public Root", "well_known": True},
        {"name": "public-int", "issuer": "public-root", "ca": True},
    ],
    "certificates": [
        {
            "name": "site",
            "issuer": "public-int",
            "dns_names": ["site.example"],
            "ip_addresses": ["{{backend.site.address}}"],
        },
        {"name": "old", "issuer": "public-int", "valid_from_days": -400, "valid_to_days": -30},
    ],
    "backends": [
        {"name": "site", "default_chain": ["site", "public-int"]},
        {"name": "expired", "default_chain": ["old", "public-int"]},
        {"name": "down", "behaviour": "refuse"},
        {"name": "mute", "behaviour": "silent"},
        {"name": "plain", "behaviour": "plain_http", "http_status": 404},
    ],
    "gateways": [
        {
            "name": "agw-custom",
            "location": "westeurope",
            "properties": {
                "sku": {"name": "Standard_v2", "tier": "Standard_v2", "capacity": 1},
                "backendAddressPools": [
                    {
                        "name": "p",
                        "properties": {
                            "backendAddresses": [
                                {"ipAddress": "{{backend.site.address}}"},
                                {"ipAddress": "{{backend.expired.address}}"},
                                {"ipAddress": "{{backend.down.address}}"},
                                {"ipAddress": "{{backend.mute.address}}"},
                                {"ipAddress": "{{backend.plain.address}}"},
                            ]
                        },
                    }
                ],
                "backendHttpSettingsCollection": [
                    {
                        "name": "s",
                        "properties": {
                            "port": 443,
                            "protocol": "Https",
                            "hostName": "site.example",
                        },
                    }
                ],
            },
        },
    ],
    "options": {"probe_interval_seconds": 1, "lro_delay_seconds": 0.5},
    "bot_settings": {"ALLOWED_SCOPES": "/subscriptions/{{subscription}}"},
}


@pytest.mark.sandbox
def test_scenario_file_with_every_behaviour_starts(tmp_path: Path, sandbox_factory: Any) -> None:
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(CUSTOM))
    # Without RBAC: with rbac="infra" ALLOWED_SCOPES becomes the gateway ids, as infra/ sets it.
    handle = sandbox_factory(str(path), rbac=None)
    assert handle.env["ALLOWED_SCOPES"] == "/subscriptions/5a7d0b0c-00ff-4000-8000-0000000000ff"
    [doc] = handle.gateways
    assert doc["id"].startswith("/subscriptions/5a7d0b0c-00ff-4000-8000-0000000000ff/")
    site, down = handle.backends["site"], handle.backends["down"]
    # Every backend has its own address and they all got the same (declared or fallback) port.
    assert len({b.address for b in handle.backends.values()}) == 5
    assert len({b.port for b in handle.backends.values()}) == 1
    assert doc["properties"]["backendHttpSettingsCollection"][0]["properties"]["port"] == site.port
    assert peer_der(site.address, site.port, "site.example") == handle.certs["site"].der()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((down.address, down.port), timeout=5)
