"""The gateway's TLS parameters per SKU. Expectations are written by hand from
docs/sources.md#sni-rules, not derived from the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from shared.core.gateway import BackendAddress, Gateway, parse_gateway
from shared.core.tls_target import alternate_sni, gateway_target

GW = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/applicationGateways/gw"
DATA = Path(__file__).parent / "data"


def build(
    tier: str,
    member: dict[str, str] | str,
    *,
    settings: dict[str, Any] | None = None,
    probe: dict[str, Any] | None = None,
) -> Gateway:
    """An ARM-form gateway with one pool member, one HTTP settings and an optional custom probe."""
    settings_props: dict[str, Any] = {"port": 443, "protocol": "Https", **(settings or {})}
    props: dict[str, Any] = {
        "sku": {"name": tier, "tier": tier},
        "backendAddressPools": [{"name": "pool", "properties": {"backendAddresses": [member]}}],
        "backendHttpSettingsCollection": [{"name": "https", "properties": settings_props}],
    }
    if probe is not None:
        props["probes"] = [{"name": "probe", "properties": {"protocol": "Https", **probe}}]
        settings_props["probe"] = {"id": f"{GW}/probes/probe"}
    return parse_gateway({"id": GW, "name": "gw", "properties": props})


class Case(NamedTuple):
    name: str
    tier: str
    member: dict[str, str] | str
    settings: dict[str, Any] | None
    probe: dict[str, Any] | None
    sni: str | None
    host_header: str
    port: int


IP = {"ipAddress": "10.1.5.11"}
FQDN = {"fqdn": "pool.contoso.com"}

CASES = [
    # ---- v1 (SNI is the backend pool FQDN; an IP member gets no SNI) ----
    Case(
        "v1 ILB ASE seed: IP member, probe and settings host only set the Host header",
        "Standard",
        IP,
        {"hostName": "test.appgwtestase.com"},
        {"host": "test.appgwtestase.com"},
        None,
        "test.appgwtestase.com",
        443,
    ),
    Case(
        "v1 FQDN member, default probe",
        "Standard",
        FQDN,
        None,
        None,
        "pool.contoso.com",
        "127.0.0.1",
        443,
    ),
    Case(
        "v1 probe host never becomes SNI (probe overview: v1 host header only)",
        "WAF",
        FQDN,
        None,
        {"host": "other.contoso.com"},
        "pool.contoso.com",
        "other.contoso.com",
        443,
    ),
    Case(
        "v1 settings hostName does not become SNI",
        "Standard",
        IP,
        {"hostName": "app.contoso.com"},
        None,
        None,
        "app.contoso.com",
        443,
    ),
    Case(
        "v1 pick host from backend address with an IP member",
        "Standard",
        IP,
        {"pickHostNameFromBackendAddress": True},
        {"pickHostNameFromBackendHttpSettings": True},
        None,
        "10.1.5.11",
        443,
    ),
    Case(
        "v1 uses the settings' port, not the probe's",
        "Standard",
        FQDN,
        {"port": 8443},
        {"host": "x.contoso.com", "port": 9443},
        "pool.contoso.com",
        "x.contoso.com",
        8443,
    ),
    Case(
        "v1 Https without port defaults to 443",
        "Standard",
        IP,
        {"port": None},
        None,
        None,
        "127.0.0.1",
        443,
    ),
    Case(
        "v1 sniName is a v2 control and is ignored",
        "Standard",
        IP,
        {"sniName": "s.contoso.com"},
        None,
        None,
        "127.0.0.1",
        443,
    ),
    Case(
        "v1 FQDN given as a plain string",
        "Standard",
        "app.contoso.com",
        None,
        None,
        "app.contoso.com",
        "127.0.0.1",
        443,
    ),
    Case(
        "v1 fqdn field holding an IP literal",
        "Standard",
        {"fqdn": "10.0.0.5"},
        None,
        None,
        None,
        "127.0.0.1",
        443,
    ),
    # ---- v2 (custom probe host > settings hostName > pool FQDN) ----
    Case(
        "v2 probe host wins over settings hostName and pool FQDN",
        "Standard_v2",
        FQDN,
        {"hostName": "app.contoso.com"},
        {"host": "probe.contoso.com"},
        "probe.contoso.com",
        "probe.contoso.com",
        443,
    ),
    Case(
        "v2 settings hostName with an IP member and the default probe",
        "WAF_v2",
        IP,
        {"hostName": "app.contoso.com"},
        None,
        "app.contoso.com",
        "app.contoso.com",
        443,
    ),
    Case(
        "v2 pool FQDN with no host names set",
        "Standard_v2",
        FQDN,
        None,
        None,
        "pool.contoso.com",
        "127.0.0.1",
        443,
    ),
    Case(
        "v2 ilb-ase-v2-nosni: IP member, no probe, no host name",
        "Standard_v2",
        IP,
        None,
        None,
        None,
        "127.0.0.1",
        443,
    ),
    Case(
        "v2 probe picks from settings which pick from the backend FQDN",
        "Standard_v2",
        FQDN,
        {"pickHostNameFromBackendAddress": True},
        {"pickHostNameFromBackendHttpSettings": True},
        "pool.contoso.com",
        "pool.contoso.com",
        443,
    ),
    Case(
        "v2 pick from backend address with an IP member sends no SNI (IPs unsupported)",
        "Standard_v2",
        IP,
        {"pickHostNameFromBackendAddress": True},
        {"pickHostNameFromBackendHttpSettings": True},
        None,
        "10.1.5.11",
        443,
    ),
    Case(
        "v2 probe picks the settings' hostName",
        "Standard_v2",
        IP,
        {"hostName": "app.contoso.com"},
        {"pickHostNameFromBackendHttpSettings": True},
        "app.contoso.com",
        "app.contoso.com",
        443,
    ),
    Case(
        "v2 probe host that is an IP literal: no SNI (RFC 6066)",
        "Standard_v2",
        FQDN,
        {"hostName": "app.contoso.com"},
        {"host": "10.0.0.9"},
        None,
        "10.0.0.9",
        443,
    ),
    Case(
        "v2 custom probe port wins",
        "Standard_v2",
        FQDN,
        {"port": 443},
        {"host": "probe.contoso.com", "port": 8443},
        "probe.contoso.com",
        "probe.contoso.com",
        8443,
    ),
    Case(
        "v2 probe without a port uses the settings' port",
        "Basic",
        FQDN,
        {"port": 4443},
        {"host": "probe.contoso.com"},
        "probe.contoso.com",
        "probe.contoso.com",
        4443,
    ),
    Case(
        "v2 custom probe host outranks sniName (documented probe precedence)",
        "Standard_v2",
        IP,
        {"sniName": "sni.contoso.com", "hostName": "app.contoso.com"},
        {"host": "probe.contoso.com"},
        "probe.contoso.com",
        "probe.contoso.com",
        443,
    ),
    Case(
        "v2 sniName outranks the settings hostName (our reading of sniName)",
        "Standard_v2",
        IP,
        {"sniName": "sni.contoso.com", "hostName": "app.contoso.com"},
        None,
        "sni.contoso.com",
        "app.contoso.com",
        443,
    ),
    Case(
        "v2 trailing dot is not part of the SNI",
        "Standard_v2",
        {"fqdn": "pool.contoso.com."},
        None,
        None,
        "pool.contoso.com",
        "127.0.0.1",
        443,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_gateway_target(case: Case) -> None:
    gw = build(case.tier, case.member, settings=case.settings, probe=case.probe)
    target = gateway_target(gw, gw.settings[0], gw.pools[0].addresses[0])
    assert target.sni == case.sni
    assert target.host_header == case.host_header
    assert target.port == case.port
    assert target.address == gw.pools[0].addresses[0].value
    assert target.reason.endswith(".") and len(target.reason) > 20


def test_v1_never_validates_name_or_chain() -> None:
    gw = build("Standard", FQDN, settings={"validateSNI": True, "validateCertChainAndExpiry": True})
    target = gateway_target(gw, gw.settings[0], gw.pools[0].addresses[0])
    assert (target.validate_sni, target.validate_chain) == (False, False)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({}, (True, True)),  # not set: Azure's default is true
        ({"validateSNI": False}, (False, True)),
        ({"validateCertChainAndExpiry": False}, (True, False)),
        ({"validateSNI": True, "validateCertChainAndExpiry": True}, (True, True)),
    ],
)
def test_v2_validation_flags(flags: dict[str, Any], expected: tuple[bool, bool]) -> None:
    gw = build("WAF_v2", FQDN, settings=flags)
    target = gateway_target(gw, gw.settings[0], gw.pools[0].addresses[0])
    assert (target.validate_sni, target.validate_chain) == expected


def test_reasons_name_the_rule() -> None:
    gw = build("Standard", IP, probe={"host": "test.appgwtestase.com"})
    v1 = gateway_target(gw, gw.settings[0], gw.pools[0].addresses[0])
    assert "v1" in v1.reason and "no SNI" in v1.reason
    gw = build("Standard_v2", FQDN, probe={"host": "probe.contoso.com"})
    v2 = gateway_target(gw, gw.settings[0], gw.pools[0].addresses[0])
    assert "v2" in v2.reason and "custom probe" in v2.reason


@pytest.mark.parametrize(
    ("tier", "member", "settings", "probe", "expected"),
    [
        # Seed: the gateway sends no SNI; the host it would send is the probe's host.
        (
            "Standard",
            IP,
            {"hostName": "app.contoso.com"},
            {"host": "test.appgwtestase.com"},
            "test.appgwtestase.com",
        ),
        ("Standard", IP, {"hostName": "app.contoso.com"}, None, "app.contoso.com"),
        ("Standard", IP, None, None, None),  # nothing to try
        ("Standard", FQDN, None, None, None),  # gateway sends SNI: compare with no SNI
        ("Standard_v2", IP, None, None, None),
        (
            "Standard_v2",
            FQDN,
            {"hostName": "app.contoso.com"},
            {"host": "10.0.0.9"},
            "app.contoso.com",
        ),  # probe host is an IP: the first non-IP candidate
        ("Standard_v2", FQDN, None, {"host": "probe.contoso.com"}, None),
    ],
)
def test_alternate_sni(
    tier: str,
    member: dict[str, str],
    settings: dict[str, Any] | None,
    probe: dict[str, Any] | None,
    expected: str | None,
) -> None:
    gw = build(tier, member, settings=settings, probe=probe)
    assert alternate_sni(gw, gw.settings[0], gw.pools[0].addresses[0]) == expected


def test_targets_over_the_cli_fixture() -> None:
    gw = parse_gateway(json.loads((DATA / "cli_gateway_v1.json").read_text()))
    ip = BackendAddress(ip_address="10.1.5.11")
    fqdn = BackendAddress(fqdn="api.internal.contoso.com")

    def target(settings: str, member: BackendAddress) -> tuple[str | None, str | None, int]:
        s = gw.settings_by_name(settings)
        assert s is not None
        t = gateway_target(gw, s, member)
        return t.sni, t.host_header, t.port

    assert target("ase-https", ip) == (None, "test.appgwtestase.com", 443)
    assert target("ase-https-8443", ip) == (None, "127.0.0.1", 8443)
    assert target("api-https", fqdn) == (
        "api.internal.contoso.com",
        "api.internal.contoso.com",
        443,
    )
    ase = gw.settings_by_name("ase-https")
    assert ase is not None
    assert alternate_sni(gw, ase, ip) == "test.appgwtestase.com"
