"""The expiry watch (shared.core.expiry): which certificates, from where, with which dates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sandbox.pki import KeyCert, issue, make_root, self_signed
from shared.core.capture import TlsCapture
from shared.core.certs import cert_info
from shared.core.diagnosis import Diagnosis, GatewaySummary
from shared.core.expiry import Where, expiring
from shared.core.gateway import parse_gateway
from shared.core.report import to_json, to_text
from shared.remediation.notices import LocalExpiryNotices

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
GID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationGateways/agw"


def _cert(days: float, name: str, issuer: KeyCert | None = None, ca: bool = False) -> KeyCert:
    nb, na = NOW - timedelta(days=300), NOW + timedelta(days=days)
    if issuer is None:
        return self_signed(name, ca=ca, not_before=nb, not_after=na)
    return issue(issuer, name, ca=ca, dns_names=[name], not_before=nb, not_after=na)


def _gateway(roots: list[KeyCert], auth: list[KeyCert], tier: str = "Standard_v2") -> object:
    return parse_gateway(
        {
            "id": GID,
            "name": "agw",
            "properties": {
                "sku": {"name": tier, "tier": tier},
                "trustedRootCertificates": [
                    {"name": f"root-{i}", "properties": {"data": c.der_b64()}}
                    for i, c in enumerate(roots)
                ]
                + [{"name": "kv-ref", "properties": {"keyVaultSecretId": "https://v/secrets/x"}}],
                "authenticationCertificates": [
                    {"name": f"auth-{i}", "properties": {"data": c.der_b64()}}
                    for i, c in enumerate(auth)
                ],
            },
        }
    )


def _capture(*chain: KeyCert) -> TlsCapture:
    return TlsCapture("10.0.0.4", 443, "app", tuple(cert_info(c.der()) for c in chain))


def test_every_place_is_watched_and_only_inside_the_window() -> None:
    root_soon = make_root(
        "Root Soon", not_before=NOW - timedelta(days=900), not_after=NOW + timedelta(days=10)
    )
    root_later = make_root("Root Later", not_before=NOW, not_after=NOW + timedelta(days=400))
    inter = _cert(25, "Issuing CA", root_later, ca=True)
    leaf = _cert(29.9, "app.contoso.internal", inter)
    auth = _cert(5.5, "auth.contoso.internal")
    vault = _cert(-2, "vault.contoso.internal")
    far = _cert(31, "far.contoso.internal")
    gw = _gateway([root_soon, root_later], [auth])
    captures = {("10.0.0.4", 443, "app"): _capture(leaf, inter), ("x", 1, None): _capture(far)}

    found = expiring(gw, captures, now=NOW, key_vault=[vault.der(), b"junk"], warning_days=30)

    by_place = {(e.where, e.sha1): e for e in found}
    assert set(by_place) == {
        (Where.KEY_VAULT, vault.thumbprint()),
        (Where.AUTHENTICATION_CERTIFICATE, auth.thumbprint()),
        (Where.TRUSTED_ROOT, root_soon.thumbprint()),
        (Where.BACKEND_CHAIN, inter.thumbprint()),
        (Where.BACKEND_LEAF, leaf.thumbprint()),
    }
    assert [e.days_left for e in found] == [-2, 5, 10, 25, 29]  # soonest first, rounded down
    item = by_place[(Where.BACKEND_LEAF, leaf.thumbprint())]
    assert item.subject == "O=appgw-cert-bot sandbox,CN=app.contoso.internal"
    assert item.not_after == (NOW + timedelta(days=29.9)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ended = expiring(gw, captures, now=NOW, key_vault=[vault.der()], warning_days=0)
    assert [(e.where, e.days_left) for e in ended] == [(Where.KEY_VAULT, -2)]


def test_json_always_has_the_list_and_text_reports_it() -> None:
    summary = GatewaySummary(GID, "agw", "Standard_v2", "v2")
    empty = to_json(Diagnosis(summary))
    assert empty["expiring"] == []
    assert "Expiring certificates: none" in to_text(Diagnosis(summary))

    leaf = _cert(12, "app.contoso.internal")
    found = expiring(None, {("a", 1, None): _capture(leaf)}, now=NOW)
    out = json.loads(json.dumps(to_json(Diagnosis(summary, expiring=found))))
    assert out["expiring"] == [
        {
            "where": "backend_leaf",
            "subject": "O=appgw-cert-bot sandbox,CN=app.contoso.internal",
            "sha1": leaf.thumbprint(),
            "not_after": found[0].not_after,
            "days_left": 12,
        }
    ]
    text = " ".join(to_text(Diagnosis(summary, expiring=found)).split())
    line = f"backend_leaf: {found[0].subject} SHA-1 {leaf.thumbprint()}"
    assert line in text
    assert "(12 days left)" in text


def test_a_certificate_is_notified_once(tmp_path: Path) -> None:
    leaf = _cert(12, "app.contoso.internal")
    other = _cert(3, "api.contoso.internal")
    notices = LocalExpiryNotices(tmp_path)
    first = expiring(None, {("a", 1, None): _capture(leaf)}, now=NOW)
    both = expiring(
        None, {("a", 1, None): _capture(leaf), ("b", 1, None): _capture(other)}, now=NOW
    )

    assert [i.sha1 for i in notices(GID, first)] == [leaf.thumbprint()]
    assert notices(GID, first) == []
    assert [i.sha1 for i in LocalExpiryNotices(tmp_path)(GID, both)] == [other.thumbprint()]
    assert [i.sha1 for i in notices(GID + "2", first)] == [leaf.thumbprint()]
