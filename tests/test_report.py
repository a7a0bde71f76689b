"""Reports: the JSON contract of issue 3 and a text report that fits 100 columns."""

from __future__ import annotations

import json

import test_tls_probe
from test_diagnosis import HOST, V2_INTERMEDIATE, ilb, run, seed_v1, v2_doc, v2_health
from test_tls_probe import Pki, TlsServer

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

    assert set(out) == {"gateway", "findings"}
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
    assert all(len(line) <= 100 for line in text.splitlines())
    assert "default_certificate_without_sni" in text
    assert pki.ilb_default.sha1 in text
    assert "add_authentication_certificate" in text and "ase-https, ase-https-2" in text
    assert text.count("retired on 2026-04-28") == 1  # once per report, not per finding
    assert "Pool ase-pool / HTTP settings ase-https" in text


def test_text_of_an_empty_diagnosis() -> None:
    d = Diagnosis(GatewaySummary("/x/" + "y" * 300, "agw", None, "v2"))
    text = to_text(d)
    assert "no servers" in text and all(len(line) <= 100 for line in text.splitlines())
    assert to_json(d)["findings"] == []
