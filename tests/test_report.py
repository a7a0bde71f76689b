"""Reports: the JSON contract of issue 3 and a text report that fits 100 columns."""

from __future__ import annotations

import json

import test_tls_probe
from test_diagnosis import HOST, V2_INTERMEDIATE, ilb, run, seed_v1, v2_doc, v2_health
from test_tls_probe import Pki, TlsServer

from shared.core.capture import Vantage, VantageKind
from shared.core.diagnosis import Diagnosis, GatewaySummary
from shared.core.report import to_json, to_text

FINDING_KEYS = {
    "pool",
    "settings",
    "server",
    "health",
    "probe_log",
    "cause",
    "evidence",
    "fix",
    "alternatives",
    "warnings",
}

# Shared loopback TLS fixtures (tests/test_tls_probe.py).
pki = test_tls_probe.pki
servers = test_tls_probe.servers


def test_json_contract_for_the_seed(pki: Pki, servers: list[TlsServer]) -> None:
    doc, health = seed_v1(pki, servers, auth_data=None)
    out = json.loads(json.dumps(to_json(run(doc, health))))

    assert set(out) == {"gateway", "findings", "vantage", "expiring"}
    assert set(out["gateway"]) == {"id", "name", "sku_tier", "generation"}
    assert out["gateway"]["generation"] == "v1" and out["gateway"]["sku_tier"] == "Standard"
    for finding in out["findings"]:
        assert set(finding) >= FINDING_KEYS
        assert {"action", "certificate", "settings", "host_name", "required_root"} <= set(
            finding["fix"]
        )
    seed = next(f for f in out["findings"] if f["settings"] == "ase-https")
    assert seed["cause"] == "default_certificate_without_sni"
    cert = seed["fix"]["certificate"]
    assert cert["sha1"] == pki.ilb_default.sha1
    assert {"sha1", "sha256", "cer"} <= set(cert)
    assert seed["fix"]["settings"] == ["ase-https", "ase-https-2"]
    assert seed["fix"]["host_name"] is None
    healthy = next(f for f in out["findings"] if f["cause"] == "healthy")
    assert healthy["fix"] == {
        "action": "none",
        "certificate": None,
        "settings": [],
        "host_name": None,
        "required_root": None,
    }


def test_json_v2_host_name_fix(pki: Pki, servers: list[TlsServer]) -> None:
    backend = ilb(pki).start()
    servers.append(backend)
    doc = v2_doc(backend.port, roots=[pki.root], listeners={"ase-https": HOST})
    fix = to_json(run(doc, v2_health(V2_INTERMEDIATE)))["findings"][0]["fix"]
    assert fix == {
        "action": "set_backend_host_name",
        "certificate": None,
        "settings": ["ase-https"],
        "host_name": HOST,
        "required_root": None,
    }


def test_text_fits_100_columns_and_names_the_fix(pki: Pki, servers: list[TlsServer]) -> None:
    doc, health = seed_v1(pki, servers, auth_data=None)
    text = to_text(run(doc, health))
    assert all(fits(line) for line in text.splitlines())
    assert "default_certificate_without_sni" in text
    assert pki.ilb_default.sha1 in text
    assert "add_authentication_certificate" in text and "ase-https, ase-https-2" in text
    assert text.count("retired on 2026-04-28") == 1  # once per report, not per finding
    assert "Pool ase-pool / HTTP settings ase-https" in text
    assert " over TLSv1.3 (TLS_" in text  # the negotiated protocol and cipher of each handshake


def fits(line: str) -> bool:
    """100 columns, or one word (a resource id) that is never broken."""
    return len(line) <= 100 or len(line.split()) == 1


def test_text_of_an_empty_diagnosis() -> None:
    long_id = "/x/" + "y" * 300
    d = Diagnosis(GatewaySummary(long_id, "agw", None, "v2"))
    text = to_text(d)
    assert "no servers" in text and all(fits(line) for line in text.splitlines())
    assert f"  {long_id}\n" in text  # whole, on its own line
    assert "Evidence: no TLS captures" in text
    assert to_json(d)["findings"] == [] and to_json(d)["vantage"] is None


def test_resource_ids_are_never_broken_mid_word() -> None:
    gid = (
        "/subscriptions/5a7d0b0c-0001-4000-8000-000000000001/resourceGroups/rg-application-"
        "gateways-production-westeurope/providers/Microsoft.Network/applicationGateways/agw-ase-v1"
    )
    text = to_text(Diagnosis(GatewaySummary(gid, "agw-ase-v1", "Standard", "v1")))
    assert gid in text.split()
    for token in text.split():
        assert token == gid or not gid.startswith(token) or len(token) < 20


def test_vantage_in_json_and_text() -> None:
    outside = Vantage(VantageKind.OPERATOR_MACHINE, "laptop-7")
    d = Diagnosis(GatewaySummary("/x/agw", "agw", None, "v2"), (), outside)
    vantage = to_json(d)["vantage"]
    assert vantage["kind"] == "operator_machine" and vantage["host"] == "laptop-7"
    assert vantage["in_gateway_network"] is False and "--trust-local-probe" in vantage["warning"]
    text = to_text(d)
    assert "Evidence: TLS captures from the operator machine laptop-7" in text
    assert "WARNING: The TLS captures were made from" in text

    inside = Vantage(VantageKind.FUNCTION_APP, "func-appgw-bot")
    d = Diagnosis(GatewaySummary("/x/agw", "agw", None, "v2"), (), inside)
    assert to_json(d)["vantage"]["warning"] is None
    assert "WARNING" not in to_text(d) and "the function app func-appgw-bot" in to_text(d)


def test_every_capture_names_its_vantage(pki: Pki, servers: list[TlsServer]) -> None:
    doc, health = seed_v1(pki, servers, auth_data=None)
    out = to_json(run(doc, health))
    captures = [
        cap
        for f in out["findings"]
        for cap in f["evidence"]["captures"].values()
        if cap is not None
    ]
    assert captures and all(cap["vantage"] == out["vantage"]["kind"] for cap in captures)
