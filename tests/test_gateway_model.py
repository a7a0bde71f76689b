"""Gateway model: Microsoft's examples, the `az ... show` form, mixed-case ids, odd documents."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from shared.common.errors import InputError
from shared.core.gateway import (
    BackendAddress,
    Generation,
    generation_of,
    parse_gateway,
    unwrap_example,
)

EXAMPLES = Path(__file__).resolve().parent / "data" / "arm-examples"  # see tests/data/SOURCES.md
DATA = Path(__file__).parent / "data"
SUB = "/subscriptions/00000000-0000-0000-0000-000000000000"
GW = f"{SUB}/resourceGroups/rg1/providers/Microsoft.Network/applicationGateways/appgw"
CLI_GW = (
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ase"
    "/providers/Microsoft.Network/applicationGateways/agw-ase-v1"
)


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _example(name: str) -> dict[str, Any]:
    return dict(unwrap_example(_load(EXAMPLES / name)))


@pytest.mark.parametrize(
    ("tier", "expected"),
    [
        ("Standard", Generation.V1),
        ("WAF", Generation.V1),
        ("standard", Generation.V1),
        ("waf", Generation.V1),
        ("Standard_v2", Generation.V2),
        ("WAF_v2", Generation.V2),
        ("STANDARD_V2", Generation.V2),
        ("Basic", Generation.V2),
        (" basic ", Generation.V2),
    ],
)
def test_generation_of_known_tiers(tier: str, expected: Generation) -> None:
    assert generation_of(tier) is expected


@pytest.mark.parametrize("tier", [None, "", "Premium", "Standard_v3", "v2"])
def test_generation_of_unknown_tier_is_an_input_error(tier: str | None) -> None:
    with pytest.raises(InputError, match="sku tier"):
        generation_of(tier)


def test_get_example_parses_with_string_backend_addresses() -> None:
    gw = parse_gateway(_example("ApplicationGatewayGet.json"))
    assert gw.id == GW
    assert gw.name == "appgw"
    assert (gw.sku_name, gw.sku_tier, gw.generation) == (
        "Standard_Medium",
        "Standard",
        Generation.V1,
    )
    assert [p.name for p in gw.pools] == ["appgwpool", "appgwpool1"]
    assert gw.pools[0].addresses == ()
    # SOURCES.md: appgwpool1 lists plain strings, not {"ipAddress": ...} objects.
    assert gw.pools[1].addresses == (
        BackendAddress(ip_address="10.0.0.1"),
        BackendAddress(ip_address="10.0.0.2"),
    )
    (settings,) = gw.settings
    assert (settings.name, settings.port, settings.protocol) == ("appgwbhs", 80, "Http")
    assert settings.probe_id is None
    assert settings.validate_sni is None and settings.validate_cert_chain_and_expiry is None
    assert gw.probes == () and gw.authentication_certificates == ()
    assert gw.trusted_root_certificates == ()  # null in the example
    assert gw.tags == ()
    # The basic rule and the path map (default and path rule) all name the same pair.
    assert gw.routes == (
        (f"{GW}/backendAddressPools/appgwpool", f"{GW}/backendHttpSettingsCollection/appgwbhs"),
    )


def test_create_example_response_bodies_parse() -> None:
    doc = _load(EXAMPLES / "ApplicationGatewayCreate.json")
    for status in ("200", "201"):
        gw = parse_gateway(unwrap_example(doc, status))
        assert gw.generation is Generation.V1
        assert [p.name for p in gw.pools] == ["appgwpool", "appgwpool1"]
        assert gw.pools[0].addresses[0] == BackendAddress(ip_address="10.0.1.1")
        assert gw.routes == (
            (f"{GW}/backendAddressPools/appgwpool", f"{GW}/backendHttpSettingsCollection/appgwbhs"),
        )


def test_create_request_body_gets_synthesised_child_ids() -> None:
    doc = _load(EXAMPLES / "ApplicationGatewayCreate.json")
    body = copy.deepcopy(doc["parameters"]["parameters"])
    body["id"] = GW  # the PUT body names no id; the URL does
    gw = parse_gateway(body)
    # The first pool has no id in the request; the second has one (SOURCES.md).
    assert gw.pools[0].id == f"{GW}/backendAddressPools/appgwpool"
    assert gw.pools[1].id == f"{GW}/backendAddressPools/appgwpool1"
    assert gw.settings[0].id == f"{GW}/backendHttpSettingsCollection/appgwbhs"
    roots = {c.name: c for c in gw.trusted_root_certificates}
    assert roots["rootcert"].data == "****"
    assert roots["rootcert"].id == f"{GW}/trustedRootCertificates/rootcert"
    assert roots["rootcert1"].key_vault_secret_id == "https://kv/secret"
    assert gw.certificate_by_id(f"{GW}/trustedrootcertificates/ROOTCERT1") is roots["rootcert1"]


def test_api_example_wrapper_is_not_a_gateway() -> None:
    with pytest.raises(InputError, match="example"):
        parse_gateway(_load(EXAMPLES / "ApplicationGatewayGet.json"))


def test_cli_form() -> None:
    gw = parse_gateway(_load(DATA / "cli_gateway_v1.json"))
    assert (gw.id, gw.name, gw.generation) == (CLI_GW, "agw-ase-v1", Generation.V1)
    assert gw.tags == (("appgw-cert-bot-mode", "propose"), ("owner", "platform-team"))
    pool = gw.pool_by_name("ase-pool")
    assert pool is not None and pool.addresses == (BackendAddress(ip_address="10.1.5.11"),)
    api_pool = gw.pool_by_name("API-POOL")
    assert api_pool is not None
    assert api_pool.addresses == (BackendAddress(fqdn="api.internal.contoso.com"),)
    settings = gw.settings_by_name("ase-https")
    assert settings is not None
    assert (settings.port, settings.protocol, settings.host_name) == (
        443,
        "Https",
        "test.appgwtestase.com",
    )
    assert settings.probe_id == f"{CLI_GW}/probes/ase-probe"
    assert settings.authentication_certificate_ids == (
        f"{CLI_GW}/authenticationCertificates/app-cer",
    )
    probe = gw.probe_for(settings)
    assert probe is not None
    assert (probe.host, probe.path, probe.port, probe.interval, probe.unhealthy_threshold) == (
        "test.appgwtestase.com",
        "/",
        None,
        30,
        3,
    )
    assert probe.status_codes == ("200-399",)
    (cert,) = gw.certificates_for(settings)
    assert (cert.name, cert.data) == ("app-cer", None)  # Azure hides data on GET
    api = gw.settings_by_name("api-https")
    assert api is not None and api.pick_host_name_from_backend_address
    api_probe = gw.probe_for(api)
    assert api_probe is not None and api_probe.pick_host_name_from_backend_http_settings
    no_probe = gw.settings_by_name("ase-https-8443")
    assert no_probe is not None and no_probe.probe_id is None and gw.probe_for(no_probe) is None


def test_cli_routes_come_from_path_maps_deduplicated_in_document_order() -> None:
    gw = parse_gateway(_load(DATA / "cli_gateway_v1.json"))
    assert gw.routes == (
        (
            f"{CLI_GW}/backendAddressPools/ase-pool",
            f"{CLI_GW}/backendHttpSettingsCollection/ase-https",
        ),
        (
            f"{CLI_GW}/backendAddressPools/ase-pool",
            f"{CLI_GW}/backendHttpSettingsCollection/ase-https-8443",
        ),
        (
            f"{CLI_GW}/backendAddressPools/api-pool",
            f"{CLI_GW}/backendHttpSettingsCollection/api-https",
        ),
    )


def test_mixed_case_references_resolve_and_routes_use_resource_spelling() -> None:
    gw = parse_gateway(_load(DATA / "mixed_case_ids_gateway.json"))
    assert gw.id == CLI_GW.lower()
    settings = gw.settings_by_name("ase-https")
    assert settings is not None and "RESOURCEGROUPS" in (settings.probe_id or "")
    probe = gw.probe_for(settings)
    assert probe is not None and probe.name == "ase-probe"
    assert len(gw.certificates_for(settings)) == 1
    reference = parse_gateway(_load(DATA / "cli_gateway_v1.json"))
    assert gw.routes == reference.routes


def test_lookups_by_lower_cased_alert_ids() -> None:
    gw = parse_gateway(_load(DATA / "cli_gateway_v1.json"))
    pool_id = f"{CLI_GW}/backendAddressPools/ase-pool".lower()
    pool = gw.pool_by_id(pool_id)
    assert pool is not None and pool.name == "ase-pool"
    assert gw.pool_by_id(pool_id + "/") is pool
    found = gw.settings_by_id(f"{CLI_GW}/BACKENDHTTPSETTINGSCOLLECTION/ASE-HTTPS")
    assert found is not None and found.name == "ase-https"
    probe = gw.probe_by_id(f"{CLI_GW}/probes/api-probe".upper())
    assert probe is not None and probe.name == "api-probe"
    cert = gw.certificate_by_id(f"{CLI_GW}/authenticationcertificates/app-cer")
    assert cert is not None and cert.name == "app-cer"
    assert gw.pool_by_id(f"{CLI_GW}/backendAddressPools/missing") is None
    assert gw.pool_by_id(None) is None
    assert gw.settings_by_name("nope") is None


def _minimal(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "gw1",
        "properties": {"sku": {"name": "Standard_v2", "tier": "Standard_v2"}},
    }
    doc.update(extra)
    return doc


def test_name_without_id_stands_in_for_the_id() -> None:
    doc = _minimal()
    doc["properties"]["backendAddressPools"] = [{"name": "p", "properties": {}}]
    gw = parse_gateway(doc)
    assert (gw.id, gw.name, gw.generation) == ("gw1", "gw1", Generation.V2)
    assert gw.pools[0].id == "gw1/backendAddressPools/p"


def test_name_defaults_to_the_id_segment() -> None:
    doc = _minimal(id=GW)
    del doc["name"]
    assert parse_gateway(doc).name == "appgw"


def test_generation_falls_back_to_the_v1_sku_name() -> None:
    doc = {"name": "g", "sku": {"name": "WAF_Medium"}}
    assert parse_gateway(doc).generation is Generation.V1


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "neither id nor name"),
        ({"name": "g"}, "no sku"),
        ({"name": "g", "sku": {"tier": "Premium"}}, "sku tier"),
        ({"name": "g", "sku": {}, "backendAddressPools": []}, "sku.tier"),
        (_minimal(type="Microsoft.Compute/virtualMachines"), "resource type"),
        (_minimal(id="/subscriptions/s/resourceGroups/r/providers/Microsoft.Web/sites/x"), "id"),
        (_minimal(id=42), "id"),
        ([], "JSON object"),
        ("gateway", "JSON object"),
    ],
)
def test_not_a_gateway(doc: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_gateway(doc)


def test_odd_children_are_tolerated() -> None:
    doc = _minimal(id=GW)
    doc["properties"].update(
        {
            "backendAddressPools": [
                "not-an-object",
                {"properties": {}},  # neither name nor id: skipped
                {
                    "name": "p",
                    "properties": {
                        "backendAddresses": [
                            {"fqdn": "a.example.com"},
                            {},
                            " ",
                            7,
                            "b.example.com",
                            "fd00::1",
                        ]
                    },
                },
                {"name": "p", "properties": {"backendAddresses": "10.0.0.1"}},  # duplicate name
            ],
            "backendHttpSettingsCollection": [
                {
                    "name": "s",
                    "properties": {
                        "port": "443",
                        "protocol": "Https",
                        "pickHostNameFromBackendAddress": "true",
                        "validateSNI": False,
                        "validateCertChainAndExpiry": "false",
                        "sniName": "  ",
                        "probe": f"{GW}/probes/x",
                        "trustedRootCertificates": [{"id": f"{GW}/trustedRootCertificates/r"}, {}],
                    },
                }
            ],
            "requestRoutingRules": [
                {"name": "redirect", "properties": {"redirectConfiguration": {"id": "x"}}},
                {"properties": {"backendAddressPool": {"id": f"{GW}/backendAddressPools/P"}}},
            ],
        }
    )
    gw = parse_gateway(doc)
    assert [p.name for p in gw.pools] == ["p", "p"]
    assert gw.pool_by_name("p") is gw.pools[0]
    assert gw.pools[0].addresses == (
        BackendAddress(fqdn="a.example.com"),
        BackendAddress(fqdn="b.example.com"),
        BackendAddress(ip_address="fd00::1"),
    )
    assert gw.pools[1].addresses == ()
    (s,) = gw.settings
    assert s.port == 443 and s.pick_host_name_from_backend_address
    assert s.validate_sni is False and s.validate_cert_chain_and_expiry is False
    assert s.sni_name is None
    assert s.probe_id == f"{GW}/probes/x"
    assert s.trusted_root_certificate_ids == (f"{GW}/trustedRootCertificates/r",)
    assert gw.routes == ()
