"""The pure plan over realistic gateway documents: v1 seed shape, v2, Microsoft's example."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.core.diagnosis import (
    Cause,
    Diagnosis,
    Finding,
    Fix,
    FixAction,
    FixCertificate,
    GatewaySummary,
)
from shared.remediation.plan import (
    AUTH_CERTS,
    CERT_NAME_PREFIX,
    TRUSTED_ROOTS,
    PlanError,
    apply_plan,
    certificate_name,
    plan_fix,
    plan_fixes,
    plan_from_dict,
    plan_to_dict,
    replan,
    revert_plan,
)

SUB = "00000000-0000-0000-0000-000000000000"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-ase"
V1_ID = f"{RG}/providers/Microsoft.Network/applicationGateways/agw-v1"
V2_ID = f"{RG}/providers/Microsoft.Network/applicationGateways/agw-v2"
# Microsoft's published example (tests/data/SOURCES.md).
EXAMPLE = (
    Path(__file__).resolve().parent / "data" / "arm-examples" / "ApplicationGatewayCreate.json"
)


def fake_cert(seed: str) -> FixCertificate:
    der = hashlib.sha512(seed.encode()).digest() * 4  # plan never parses the DER
    return FixCertificate(
        sha1=hashlib.sha1(der).hexdigest().upper(),
        sha256=hashlib.sha256(der).hexdigest().upper(),
        cer="-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
        der_b64=base64.b64encode(der).decode(),
        subject=f"CN={seed}",
        not_after="2030-01-01T00:00:00+00:00",
    )


def settings(gid: str, name: str, refs: list[str], collection: str, **extra: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "port": 443,
        "protocol": "Https",
        "cookieBasedAffinity": "Disabled",
        "requestTimeout": 30,
        "pickHostNameFromBackendAddress": False,
        "probe": {"id": f"{gid}/probes/ase-probe"},
        collection: [{"id": f"{gid}/{collection}/{r}"} for r in refs],
        **extra,
    }
    return {"name": name, "id": f"{gid}/backendHttpSettingsCollection/{name}", "properties": props}


def v1_doc() -> dict[str, Any]:
    """The sandbox seed shape: v1 Standard, auth cert app-cert on ase-https and ase-https-2."""
    gid = V1_ID
    return {
        "id": gid,
        "name": "agw-v1",
        "type": "Microsoft.Network/applicationGateways",
        "location": "westeurope",
        "etag": 'W/"11111111-1111-1111-1111-111111111111"',
        "tags": {"env": "test"},
        "properties": {
            "provisioningState": "Succeeded",
            "sku": {"name": "Standard_Medium", "tier": "Standard", "capacity": 2},
            "authenticationCertificates": [
                {
                    "name": "app-cert",
                    "id": f"{gid}/authenticationCertificates/app-cert",
                    "properties": {"provisioningState": "Succeeded"},
                }
            ],
            "backendAddressPools": [
                {
                    "name": "ase-pool",
                    "properties": {"backendAddresses": [{"ipAddress": "10.1.5.11"}]},
                }
            ],
            "probes": [
                {
                    "name": "ase-probe",
                    "properties": {"protocol": "Https", "host": "test.appgwtestase.com"},
                }
            ],
            "backendHttpSettingsCollection": [
                settings(gid, "ase-https", ["app-cert"], AUTH_CERTS),
                settings(gid, "ase-https-2", ["app-cert"], AUTH_CERTS),
                settings(gid, "plain-http", [], AUTH_CERTS),
            ],
            "someFutureField": {"nested": [1, 2, {"x": None}]},
        },
    }


def v2_doc() -> dict[str, Any]:
    gid = V2_ID
    return {
        "id": gid,
        "name": "agw-v2",
        "location": "westeurope",
        "properties": {
            "sku": {"name": "WAF_v2", "tier": "WAF_v2"},
            "trustedRootCertificates": [
                {"name": "corp-root", "properties": {}},
                {"name": "kv-root", "properties": {"keyVaultSecretId": "https://kv/secrets/r"}},
            ],
            "backendHttpSettingsCollection": [
                settings(gid, "be-https", ["corp-root"], TRUSTED_ROOTS, hostName="old.example"),
            ],
        },
    }


def diagnosis_for(gid: str, generation: str, *fixes: tuple[str, Fix]) -> Diagnosis:
    findings = tuple(
        Finding(
            pool="ase-pool",
            settings=s,
            server="10.1.5.11",
            health="unhealthy",
            probe_log="Backend server certificate is not whitelisted with Application Gateway.",
            cause=Cause.CERTIFICATE_NOT_ALLOWLISTED,
            evidence={},
            fix=fix,
        )
        for s, fix in fixes
    )
    return Diagnosis(GatewaySummary(gid, gid.rsplit("/", 1)[-1], None, generation), findings)


def v1_fix(cert: FixCertificate, *names: str) -> Fix:
    return Fix(FixAction.ADD_AUTHENTICATION_CERTIFICATE, cert, names)


def test_certificate_name_encodes_thumbprint() -> None:
    name = certificate_name("ABCD" + "0" * 36)
    assert name == CERT_NAME_PREFIX + "abcd000000000000"
    assert certificate_name("AB:CD:" + ":".join(["00"] * 18)) == name
    with pytest.raises(PlanError):
        certificate_name("not-hex")


def test_v1_one_update_for_all_settings_add_never_remove() -> None:
    doc, cert = v1_doc(), fake_cert("ilb-default")
    fix = v1_fix(cert, "ase-https", "ase-https-2")
    plan = plan_fix(doc, diagnosis_for(V1_ID, "v1", ("ase-https", fix), ("ase-https-2", fix)))
    assert not plan.is_noop
    assert plan.certificate is not None and plan.certificate.collection == AUTH_CERTS
    assert plan.certificate.name == certificate_name(cert.sha1)
    assert [c.settings_name for c in plan.settings_changes] == ["ase-https", "ase-https-2"]
    after = apply_plan(doc, plan)
    names = [c["name"] for c in after["properties"][AUTH_CERTS]]
    assert names == ["app-cert", plan.certificate.name]
    assert after["properties"][AUTH_CERTS][-1] == {
        "name": plan.certificate.name,
        "properties": {"data": cert.der_b64},
    }
    for s in after["properties"]["backendHttpSettingsCollection"][:2]:
        ids = [r["id"] for r in s["properties"][AUTH_CERTS]]
        assert ids == [
            f"{V1_ID}/authenticationCertificates/app-cert",
            f"{V1_ID}/authenticationCertificates/{plan.certificate.name}",
        ]
    assert (
        after["properties"]["backendHttpSettingsCollection"][2]
        == doc["properties"]["backendHttpSettingsCollection"][2]
    )
    assert doc == v1_doc()  # the input is untouched


def test_second_run_is_noop_and_apply_is_idempotent() -> None:
    doc, cert = v1_doc(), fake_cert("ilb-default")
    diag = diagnosis_for(V1_ID, "v1", ("ase-https", v1_fix(cert, "ase-https", "ase-https-2")))
    plan = plan_fix(doc, diag)
    after = apply_plan(doc, plan)
    assert apply_plan(after, plan) == after
    # Azure hides `data` on GET: the name alone must make the second run a noop.
    hidden = copy.deepcopy(after)
    for c in hidden["properties"][AUTH_CERTS]:
        c["properties"].pop("data", None)
    again = plan_fix(hidden, diag)
    assert again.is_noop and again.certificate is None and again.settings_changes == ()
    assert "already" in (again.noop_reason or "")


def test_cert_present_but_one_settings_missing_reference() -> None:
    doc, cert = v1_doc(), fake_cert("ilb-default")
    first = plan_fix(doc, diagnosis_for(V1_ID, "v1", ("ase-https", v1_fix(cert, "ase-https"))))
    after = apply_plan(doc, first)
    second = plan_fix(
        after, diagnosis_for(V1_ID, "v1", ("ase-https", v1_fix(cert, "ase-https", "ase-https-2")))
    )
    assert second.certificate is None
    assert [c.settings_name for c in second.settings_changes] == ["ase-https-2"]
    assert second.settings_changes[0].existing_references == ("app-cert",)


def test_unknown_fields_survive_and_revert_restores_exactly() -> None:
    doc, cert = v1_doc(), fake_cert("ilb-default")
    plan = plan_fix(
        doc, diagnosis_for(V1_ID, "v1", ("ase-https", v1_fix(cert, "ase-https", "ase-https-2")))
    )
    after = apply_plan(doc, plan)
    assert after["properties"]["someFutureField"] == doc["properties"]["someFutureField"]
    assert after["etag"] == doc["etag"] and after["tags"] == doc["tags"]
    assert revert_plan(after, plan) == doc
    assert revert_plan(doc, plan) == doc  # reverting what is not there changes nothing


def test_microsoft_example_unknown_fields_survive() -> None:
    body = json.loads(EXAMPLE.read_text())["responses"]["200"]["body"]
    gid = body["id"]
    # The 200 body is a v1 Standard gateway with an empty authenticationCertificates list and
    # settings without any reference list.
    name = body["properties"]["backendHttpSettingsCollection"][0]["name"]
    cert = fake_cert("ilb")
    plan = plan_fix(body, diagnosis_for(gid, "v1", (name, v1_fix(cert, name))))
    assert plan.certificate is not None and plan.certificate.collection == AUTH_CERTS
    after = apply_plan(body, plan)
    for key in body["properties"]:
        if key not in (AUTH_CERTS, "backendHttpSettingsCollection"):
            assert after["properties"][key] == body["properties"][key], key
    assert (
        after["properties"]["entraJWTValidationConfigs"]
        == body["properties"]["entraJWTValidationConfigs"]
    )
    assert [c["name"] for c in after["properties"][AUTH_CERTS]] == [plan.certificate.name]
    assert TRUSTED_ROOTS not in after["properties"]
    assert revert_plan(after, plan) == body
    assert json_patch_free_of_v2(after)


def json_patch_free_of_v2(doc: dict[str, Any]) -> bool:
    return all(
        TRUSTED_ROOTS not in s["properties"]
        for s in doc["properties"]["backendHttpSettingsCollection"]
    )


def test_v2_gets_trusted_root_never_authentication_certificate() -> None:
    doc, cert = v2_doc(), fake_cert("corp-root-2")
    plan = plan_fix(
        doc,
        diagnosis_for(
            V2_ID,
            "v2",
            ("be-https", Fix(FixAction.ADD_TRUSTED_ROOT_CERTIFICATE, cert, ("be-https",))),
        ),
    )
    after = apply_plan(doc, plan)
    assert AUTH_CERTS not in after["properties"]
    assert AUTH_CERTS not in after["properties"]["backendHttpSettingsCollection"][0]["properties"]
    refs = after["properties"]["backendHttpSettingsCollection"][0]["properties"][TRUSTED_ROOTS]
    assert [r["id"].rsplit("/", 1)[-1] for r in refs] == ["corp-root", plan.certificate_ref_name]
    with pytest.raises(PlanError, match="v2"):
        plan_fix(doc, diagnosis_for(V2_ID, "v2", ("be-https", v1_fix(cert, "be-https"))))
    # A v1 plan (say from an old proposal) is refused by a gateway that is now v2.
    v1_plan = plan_fix(
        v1_doc(), diagnosis_for(V1_ID, "v1", ("ase-https", v1_fix(cert, "ase-https")))
    )
    upgraded = v1_doc()
    upgraded["properties"]["sku"] = {"name": "Standard_v2", "tier": "Standard_v2"}
    with pytest.raises(PlanError, match="v2"):
        apply_plan(upgraded, v1_plan)


def test_v1_refuses_trusted_roots() -> None:
    fix = Fix(FixAction.ADD_TRUSTED_ROOT_CERTIFICATE, fake_cert("r"), ("ase-https",))
    with pytest.raises(PlanError):
        plan_fix(v1_doc(), diagnosis_for(V1_ID, "v1", ("ase-https", fix)))


def test_hundred_certificate_limit() -> None:
    doc = v1_doc()
    doc["properties"][AUTH_CERTS] = [{"name": f"c{i}", "properties": {}} for i in range(100)]
    diag = diagnosis_for(V1_ID, "v1", ("ase-https", v1_fix(fake_cert("x"), "ase-https")))
    with pytest.raises(PlanError, match="100"):
        plan_fix(doc, diag)
    doc["properties"][AUTH_CERTS].pop()
    assert plan_fix(doc, diag).certificate is not None  # 99 + 1 fits


def test_existing_twin_by_data_is_reused() -> None:
    doc, cert = v1_doc(), fake_cert("ilb-default")
    doc["properties"][AUTH_CERTS][0]["properties"]["data"] = cert.der_b64
    plan = plan_fix(doc, diagnosis_for(V1_ID, "v1", ("plain-http", v1_fix(cert, "plain-http"))))
    assert plan.certificate is None and plan.certificate_ref_name == "app-cert"
    assert plan.settings_changes[0].add_reference == "app-cert"


def test_existing_twin_is_found_by_thumbprint_whatever_the_encoding() -> None:
    """GET returns `data` as sent, base64 of PEM text included (tests/data/recorded/
    cli_ag_root_cert_v2.json, second PUT): the same certificate is recognised by thumbprint."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ilb-default")])
    real = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2025, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    der = real.public_bytes(serialization.Encoding.DER)
    pem_b64 = base64.b64encode(real.public_bytes(serialization.Encoding.PEM)).decode()
    cert = replace(
        fake_cert("ilb-default"),
        sha1=hashlib.sha1(der).hexdigest().upper(),
        der_b64=base64.b64encode(der).decode(),
    )
    doc = v1_doc()
    doc["properties"][AUTH_CERTS][0]["properties"]["data"] = pem_b64
    plan = plan_fix(doc, diagnosis_for(V1_ID, "v1", ("plain-http", v1_fix(cert, "plain-http"))))
    assert plan.certificate is None and plan.certificate_ref_name == "app-cert"


def test_host_name_plan_apply_revert() -> None:
    doc = v2_doc()
    entry = doc["properties"]["backendHttpSettingsCollection"][0]["properties"]
    entry["pickHostNameFromBackendAddress"] = True
    fix = Fix(FixAction.SET_BACKEND_HOST_NAME, None, ("be-https",), "app.internal.example")
    plan = plan_fix(doc, diagnosis_for(V2_ID, "v2", ("be-https", fix)))
    change = plan.settings_changes[0]
    assert (change.set_host_name, change.previous_host_name) == (
        "app.internal.example",
        "old.example",
    )
    after = apply_plan(doc, plan)
    props = after["properties"]["backendHttpSettingsCollection"][0]["properties"]
    assert props["hostName"] == "app.internal.example"
    assert props["pickHostNameFromBackendAddress"] is False
    assert plan_fix(after, diagnosis_for(V2_ID, "v2", ("be-https", fix))).is_noop
    assert revert_plan(after, plan) == doc


def test_apply_refuses_when_settings_gone() -> None:
    doc, cert = v1_doc(), fake_cert("ilb-default")
    plan = plan_fix(doc, diagnosis_for(V1_ID, "v1", ("ase-https-2", v1_fix(cert, "ase-https-2"))))
    gone = copy.deepcopy(doc)
    gone["properties"]["backendHttpSettingsCollection"].pop(1)
    with pytest.raises(PlanError, match="ase-https-2"):
        apply_plan(gone, plan)
    with pytest.raises(PlanError):
        replan(gone, plan)


def test_replan_after_unrelated_change_keeps_it() -> None:
    doc, cert = v1_doc(), fake_cert("ilb-default")
    plan = plan_fix(doc, diagnosis_for(V1_ID, "v1", ("ase-https", v1_fix(cert, "ase-https"))))
    other = copy.deepcopy(doc)
    other["properties"]["backendAddressPools"].append({"name": "new-pool", "properties": {}})
    fresh = replan(other, plan)
    after = apply_plan(other, fresh)
    assert after["properties"]["backendAddressPools"][-1]["name"] == "new-pool"


def test_priority_and_grouping() -> None:
    a, b = fake_cert("a"), fake_cert("b")
    diag = diagnosis_for(
        V1_ID,
        "v1",
        ("ase-https", v1_fix(b, "ase-https")),
        ("ase-https", v1_fix(a, "ase-https")),
        ("ase-https-2", v1_fix(a, "ase-https-2")),
    )
    plans = plan_fixes(v1_doc(), diag)
    assert [p.thumbprint for p in plans] == [a.sha1, b.sha1]  # a repairs two servers
    assert plans[0].settings_names == ("ase-https", "ase-https-2")  # identical fixes merged
    assert plan_fix(v1_doc(), diag) == plans[0]


def test_no_actionable_fix_is_noop() -> None:
    fix = Fix(FixAction.NONE)
    plan = plan_fix(v1_doc(), diagnosis_for(V1_ID, "v1", ("ase-https", fix)))
    assert plan.is_noop and plan.action is FixAction.NONE
    assert apply_plan(v1_doc(), plan) == v1_doc()


def test_plan_json_round_trip() -> None:
    doc, cert = v1_doc(), fake_cert("ilb-default")
    plan = plan_fix(doc, diagnosis_for(V1_ID, "v1", ("ase-https", v1_fix(cert, "ase-https"))))
    data = json.loads(json.dumps(plan_to_dict(plan)))
    assert plan_from_dict(data) == plan
