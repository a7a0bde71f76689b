"""Issue #4 acceptance: remediation through the sandbox and the real SDKs (azure-identity,
azure-mgmt-network) against the local ARM emulator, with real TLS backends.

Every test starts a sandbox scenario (docs/sandbox.md), builds the CLI's Remediator
(`shared.cli.wiring.local_remediator`) from the environment the sandbox sets, and checks what
reached the emulator: the ARM requests it served (`GET {SANDBOX_CONTROL_URL}/requests`) and the
stored gateway document (`handle.arm.gateway_document`, sslCertificates' PFX included).
Rollback, guards and Key Vault: test_remediate_sandbox_guards.py. The helpers
(tests/remediate_helpers.py) are shared with test_remediate_faults.py, test_cli_fix.py and
others, which import them from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox.runtime import SandboxHandle
from shared.remediation.plan import AUTH_CERTS, certificate_name
from shared.remediation.proposals import ApprovalError
from tests import remediate_helpers
from tests.remediate_helpers import (
    ALICE,
    BOB,
    FAST,
    Factory,
    _sha1,
    add_tag,
    arm_requests,
    b64_der,
    cert_data,
    cert_names,
    comparable,
    control,
    make_remediator,
    put_count,
    ref_names,
    scenario_file,
    sdk_put,
    settings_entry,
    stored,
)

# Other test modules import these from here.
__all__ = [
    "ALICE",
    "AUTH_CERTS",
    "BOB",
    "FAST",
    "Factory",
    "arm_requests",
    "cert_names",
    "comparable",
    "control",
    "make_remediator",
    "put_count",
    "ref_names",
    "settings_entry",
    "stored",
]

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

v1 = remediate_helpers.v1


# ---- apply mode -----------------------------------------------------------------------------


def test_v1_apply_one_write_healthy_then_nothing(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stored(v1)
    bot = make_remediator(v1, tmp_path, monkeypatch)

    outcome = bot.fix(v1.gateway_ids[0], requester=ALICE)

    assert outcome.action == "applied", outcome.reason
    assert (outcome.arm_writes, put_count(v1)) == (1, 1)
    assert outcome.verified is True
    assert outcome.verification and all(c["health"] == "healthy" for c in outcome.verification)
    after = stored(v1)
    # The ILB default certificate's DER is added under a name that encodes its thumbprint
    # (docs/sources.md#backend-trust: v1 allow-lists the leaf; `data` is base64 DER).
    name = certificate_name(_sha1(v1, "ilb-default"))
    assert cert_names(after, AUTH_CERTS) == ["app-cert", name]
    assert cert_data(after, AUTH_CERTS, name) == b64_der(v1, "ilb-default")
    assert cert_data(after, AUTH_CERTS, "app-cert") == cert_data(before, AUTH_CERTS, "app-cert")
    # Add, never remove: the old reference stays next to the new one.
    assert ref_names(settings_entry(after, "ase-https"), AUTH_CERTS) == ["app-cert", name]

    again = bot.fix(v1.gateway_ids[0], requester=ALICE)
    assert again.action == "none" and again.arm_writes == 0
    assert put_count(v1) == 1


def test_only_affected_settings_reference_the_certificate_in_one_write(
    sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # multi: agw-multi-v1 has two settings on the ILB (both affected) and a healthy web-https.
    handle = sandbox_factory("multi")
    index = next(i for i, g in enumerate(handle.gateway_ids) if g.endswith("agw-multi-v1"))
    before = stored(handle, index)
    bot = make_remediator(handle, tmp_path, monkeypatch)

    outcome = bot.fix(handle.gateway_ids[index], requester=ALICE)

    assert outcome.action == "applied", outcome.reason
    assert (outcome.arm_writes, put_count(handle)) == (1, 1)
    after = stored(handle, index)
    name = certificate_name(_sha1(handle, "ilb-default"))
    for settings in ("ase-https", "ase-api-https"):
        old = ref_names(settings_entry(before, settings), AUTH_CERTS)
        assert ref_names(settings_entry(after, settings), AUTH_CERTS) == [*old, name]
    assert comparable(settings_entry(after, "web-https")) == comparable(
        settings_entry(before, "web-https")
    )


def test_unknown_properties_survive_the_fix(
    sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown: dict[str, Any] = {"kept": True, "nested": {"list": [1, "two", None]}}

    def edit(data: dict[str, Any]) -> None:
        data["name"] = "unknown-props"
        gw = data["gateways"][0]
        gw["futureTopLevel"] = unknown
        props = gw["properties"]
        props["futureGatewayFeature"] = unknown
        props["backendHttpSettingsCollection"][0]["properties"]["futureSettingsField"] = unknown
        props["backendHttpSettingsCollection"][0]["futureEntryField"] = "entry"
        props["probes"][0]["properties"]["futureProbeField"] = [unknown]
        props["authenticationCertificates"][0]["properties"]["futureCertField"] = "cert"
        props["backendAddressPools"][0]["properties"]["backendAddresses"][0]["future"] = "addr"

    handle = sandbox_factory(scenario_file(tmp_path, "ilb-ase-v1", edit))
    bot = make_remediator(handle, tmp_path, monkeypatch)

    outcome = bot.fix(handle.gateway_ids[0], requester=ALICE)

    assert outcome.action == "applied", outcome.reason
    assert outcome.arm_writes == 1
    doc = stored(handle)
    props = doc["properties"]
    assert doc["futureTopLevel"] == unknown
    assert props["futureGatewayFeature"] == unknown
    assert settings_entry(doc, "ase-https")["properties"]["futureSettingsField"] == unknown
    assert settings_entry(doc, "ase-https")["futureEntryField"] == "entry"
    assert props["probes"][0]["properties"]["futureProbeField"] == [unknown]
    app_cert = next(c for c in props["authenticationCertificates"] if c["name"] == "app-cert")
    assert app_cert["properties"]["futureCertField"] == "cert"
    assert props["backendAddressPools"][0]["properties"]["backendAddresses"][0]["future"] == "addr"


# ---- proposals and approval -----------------------------------------------------------------


def test_v2_nosni_host_name_is_proposed_then_applied_after_approval(
    sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = sandbox_factory("ilb-ase-v2-nosni")
    bot = make_remediator(handle, tmp_path, monkeypatch)

    outcome = bot.fix(handle.gateway_ids[0], requester=ALICE)

    # Host-name changes are only ever applied through an approved proposal (issue #4).
    assert (outcome.mode, outcome.action, outcome.arm_writes) == ("apply", "proposed", 0)
    assert "host-name" in outcome.reason
    assert put_count(handle) == 0
    assert outcome.proposal is not None
    proposal = bot.proposals.get(outcome.proposal)
    assert proposal.plan["action"] == "set_backend_host_name"
    assert proposal.gateway_etag == stored(handle)["etag"]
    assert set(proposal.renderings) >= {"summary", "json_patch", "az", "az_rollback", "bicep"}
    assert proposal.evidence and proposal.check_after and proposal.warnings

    with pytest.raises(ApprovalError, match="own proposal"):
        bot.approve(outcome.proposal, ALICE)
    with pytest.raises(ApprovalError, match="APPROVERS"):
        bot.approve(outcome.proposal, "mallory")
    assert put_count(handle) == 0

    approved = bot.approve(outcome.proposal, BOB)

    assert approved.action == "applied", approved.reason
    assert (approved.arm_writes, put_count(handle)) == (1, 1)
    assert approved.verified is True
    entry = settings_entry(stored(handle), "ase-https")
    assert entry["properties"]["hostName"] == "test.appgwtestase.com"
    assert bot.proposals.get(outcome.proposal).status == "applied"
    assert bot.fix(handle.gateway_ids[0], requester=ALICE).action == "none"


def test_propose_mode_writes_nothing_until_approval_which_keeps_a_later_change(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = make_remediator(v1, tmp_path, monkeypatch, REMEDIATION_MODE="propose")

    outcome = bot.fix(v1.gateway_ids[0], requester=ALICE)

    assert (outcome.mode, outcome.action, outcome.arm_writes) == ("propose", "proposed", 0)
    assert put_count(v1) == 0
    assert outcome.proposal is not None
    proposal = bot.proposals.get(outcome.proposal)
    assert proposal.certificate_cer and "BEGIN CERTIFICATE" in proposal.certificate_cer
    # Running again does not pile up duplicate proposals.
    assert bot.fix(v1.gateway_ids[0], requester=ALICE).proposal == outcome.proposal
    assert len(bot.proposals.list(status="open")) == 1

    # An unrelated change lands after the proposal was planned (new ETag).
    sdk_put(v1, add_tag("owner", "team-web"))
    assert put_count(v1) == 1

    approved = bot.approve(outcome.proposal, BOB)

    assert approved.action == "applied", approved.reason
    assert approved.arm_writes == 1 and put_count(v1) == 2
    doc = stored(v1)
    assert doc["tags"]["owner"] == "team-web"
    name = certificate_name(_sha1(v1, "ilb-default"))
    assert name in ref_names(settings_entry(doc, "ase-https"), AUTH_CERTS)
    assert approved.verified is True


def test_reject_closes_the_proposal_without_a_write(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = make_remediator(v1, tmp_path, monkeypatch, REMEDIATION_MODE="propose")
    outcome = bot.fix(v1.gateway_ids[0], requester=ALICE)
    assert outcome.proposal is not None

    rejected = bot.reject(outcome.proposal, BOB, "not during the freeze")

    assert rejected.status == "rejected" and rejected.decided_by == BOB
    with pytest.raises(ApprovalError, match="rejected"):
        bot.approve(outcome.proposal, BOB)
    assert put_count(v1) == 0


def test_approval_of_a_change_already_made_is_superseded(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proposer = make_remediator(v1, tmp_path / "p", monkeypatch, REMEDIATION_MODE="propose")
    outcome = proposer.fix(v1.gateway_ids[0], requester=ALICE)
    assert outcome.proposal is not None
    # Meanwhile another bot instance (its own state, apply mode) makes the same change.
    other = make_remediator(v1, tmp_path / "o", monkeypatch, REMEDIATION_MODE="apply")
    assert other.fix(v1.gateway_ids[0], requester="sweep").action == "applied"
    assert put_count(v1) == 1

    approved = proposer.approve(outcome.proposal, BOB)

    # Approval re-reads and re-plans: nothing left to do, so nothing is written.
    assert (approved.action, approved.arm_writes) == ("none", 0)
    assert "no longer needed" in approved.reason
    assert proposer.proposals.get(outcome.proposal).status == "superseded"
    assert put_count(v1) == 1


# ---- policy ---------------------------------------------------------------------------------


def test_a_tag_cannot_raise_a_global_propose(
    sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["name"] = "tag-apply"
        data["gateways"][0]["tags"]["appgw-cert-bot-mode"] = "apply"

    handle = sandbox_factory(scenario_file(tmp_path, "ilb-ase-v1", edit))
    bot = make_remediator(handle, tmp_path, monkeypatch, REMEDIATION_MODE="propose")

    outcome = bot.fix(handle.gateway_ids[0], requester=ALICE)

    assert (outcome.mode, outcome.action, outcome.arm_writes) == ("propose", "proposed", 0)
    assert put_count(handle) == 0


def test_tags_and_requests_lower_the_mode(
    sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.common.settings import Mode

    def edit(data: dict[str, Any]) -> None:
        data["name"] = "tag-propose"
        data["gateways"][0]["tags"]["appgw-cert-bot-mode"] = "propose"

    handle = sandbox_factory(scenario_file(tmp_path, "ilb-ase-v1", edit))
    bot = make_remediator(handle, tmp_path, monkeypatch)  # global apply

    tagged = bot.fix(handle.gateway_ids[0], requester=ALICE)
    requested = bot.fix(handle.gateway_ids[0], requester=ALICE, requested_mode=Mode.DIAGNOSE)

    assert (tagged.mode, tagged.action) == ("propose", "proposed")
    assert (requested.mode, requested.action, requested.proposal) == ("diagnose", "none", None)
    assert put_count(handle) == 0


def test_ownership_tag_gets_a_proposal_with_an_iac_fragment(
    sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["name"] = "agic-owned"
        data["gateways"][0]["tags"]["managed-by-k8s-ingress"] = "1.7.2"

    handle = sandbox_factory(scenario_file(tmp_path, "ilb-ase-v1", edit))
    bot = make_remediator(handle, tmp_path, monkeypatch)

    outcome = bot.fix(handle.gateway_ids[0], requester=ALICE)

    assert (outcome.action, outcome.arm_writes) == ("proposed", 0)
    assert "managed-by-k8s-ingress" in outcome.reason
    assert outcome.proposal is not None
    assert bot.proposals.get(outcome.proposal).renderings["bicep"]
    assert put_count(handle) == 0


def test_kill_switch_blocks_every_write(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = make_remediator(v1, tmp_path, monkeypatch, REMEDIATION_KILL_SWITCH="true")

    outcome = bot.fix(v1.gateway_ids[0], requester=ALICE)

    assert (outcome.mode, outcome.action, outcome.arm_writes) == ("propose", "proposed", 0)
    assert "kill switch" in outcome.reason
    assert outcome.proposal is not None
    refused = bot.approve(outcome.proposal, BOB)
    assert refused.action == "refused" and "kill switch" in refused.reason
    assert bot.proposals.get(outcome.proposal).status == "open"
    assert put_count(v1) == 0


def test_out_of_scope_gateway_is_refused_without_touching_it(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = v1.env["AZURE_SUBSCRIPTION_ID"]
    bot = make_remediator(
        v1, tmp_path, monkeypatch, ALLOWED_SCOPES=f"/subscriptions/{sub}/resourceGroups/rg-other"
    )

    outcome = bot.fix(v1.gateway_ids[0], requester=ALICE)

    assert (outcome.action, outcome.arm_writes) == ("refused", 0)
    assert "outside ALLOWED_SCOPES" in outcome.reason
    assert arm_requests(v1) == []
