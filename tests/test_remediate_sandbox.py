"""Issue #4 acceptance: remediation through the sandbox and the real SDKs (azure-identity,
azure-mgmt-network) against the local ARM emulator, with real TLS backends.

Every test starts a sandbox scenario (docs/sandbox.md), builds the CLI's Remediator
(`shared.cli.wiring.local_remediator`) from the environment the sandbox sets, and checks what
reached the emulator: the ARM requests it served (`GET {SANDBOX_CONTROL_URL}/requests`) and the
stored gateway document (`handle.arm.gateway_document`, sslCertificates' PFX included).
The helpers here are shared with test_remediate_faults.py and test_cli_fix.py.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from sandbox.runtime import SandboxHandle
from shared.cli.wiring import local_remediator
from shared.cloud.arm import ArmClient
from shared.common.ids import parse_gateway_id
from shared.common.settings import load_settings
from shared.remediation.plan import AUTH_CERTS, TRUSTED_ROOTS, certificate_name
from shared.remediation.proposals import ApprovalError
from shared.remediation.remediate import Remediator

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

Factory = Callable[[str], SandboxHandle]
ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "sandbox" / "scenarios"
# Approvers are Entra object ids (APPROVERS: <object id>[=<label>]).
ALICE = "a11ce000-0000-4000-8000-000000000001"
BOB = "b0b00000-0000-4000-8000-000000000002"
# Fast, bounded timings for tests: verification and LROs end within seconds in the sandbox.
FAST = {
    "VERIFY_DEADLINE_SECONDS": "20",
    "ARM_POLLING_INTERVAL": "0",
    "LRO_TIMEOUT_SECONDS": "30",
    "APPROVERS": f"{ALICE}=alice,{BOB}=bob",
}


# ---- helpers (also imported by test_remediate_faults.py and test_cli_fix.py) -----------------


def control(handle: SandboxHandle, route: str, body: Any = None, method: str | None = None) -> Any:
    """Call the sandbox control endpoint (loopback, sandbox CA)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        handle.env["SANDBOX_CONTROL_URL"] + route,
        data=data,
        method=method or ("POST" if data is not None else "GET"),
        headers={"Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=handle.env["REQUESTS_CA_BUNDLE"])
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def arm_requests(handle: SandboxHandle) -> list[dict[str, Any]]:
    return list(control(handle, "/requests"))


def put_count(handle: SandboxHandle) -> int:
    """Gateway PUTs the emulator served (accepted or refused)."""
    return sum(1 for r in arm_requests(handle) if r["method"] == "PUT")


def stored(handle: SandboxHandle, index: int = 0) -> dict[str, Any]:
    """The emulator's stored gateway document (with what GET never shows: the listener PFX)."""
    return dict(handle.arm.gateway_document(handle.gateway_ids[index]))


def settings_entry(doc: dict[str, Any], name: str) -> dict[str, Any]:
    entries = doc["properties"]["backendHttpSettingsCollection"]
    return next(e for e in entries if e["name"].lower() == name.lower())


def ref_names(entry: dict[str, Any], collection: str) -> list[str]:
    refs = entry.get("properties", {}).get(collection) or []
    return [r["id"].rsplit("/", 1)[-1] for r in refs]


def cert_names(doc: dict[str, Any], collection: str) -> list[str]:
    return [c["name"] for c in doc["properties"].get(collection) or []]


def cert_data(doc: dict[str, Any], collection: str, name: str) -> str:
    certs = doc["properties"][collection]
    return str(next(c for c in certs if c["name"] == name)["properties"]["data"])


def b64_der(handle: SandboxHandle, cert: str) -> str:
    return base64.b64encode(handle.certs[cert].der()).decode()


def _sha1(handle: SandboxHandle, cert: str) -> str:
    return handle.certs[cert].thumbprint()


_VOLATILE = {"etag", "provisioningState"}


def comparable(value: Any) -> Any:
    """A document without what ARM stamps on every write (etags, provisioning states)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def make_remediator(
    handle: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str
) -> Remediator:
    """The CLI's Remediator from the sandbox env plus FAST plus `env` (state in tmp_path)."""
    for key, value in {**FAST, **env}.items():
        monkeypatch.setenv(key, value)
    return local_remediator(load_settings(), state_dir=tmp_path / "state")


def sdk_put(
    handle: SandboxHandle, change: Callable[[dict[str, Any]], None], index: int = 0
) -> None:
    """Someone else changes the gateway through azure-mgmt-network (GET, modify, PUT, wait)."""
    client = ArmClient(load_settings(ARM_POLLING_INTERVAL="0"))
    gid = parse_gateway_id(handle.gateway_ids[index])
    doc = copy.deepcopy(client.get_gateway(gid).doc)
    change(doc)
    client.put_gateway(gid, doc)


def scenario_file(tmp_path: Path, base: str, edit: Callable[[dict[str, Any]], None]) -> str:
    """A custom scenario: a built-in one as JSON, edited, written under tmp_path."""
    data = json.loads((SCENARIOS / f"{base}.json").read_text())
    edit(data)
    path = tmp_path / f"{data['name']}.json"
    path.write_text(json.dumps(data))
    return str(path)


def add_tag(name: str, value: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc.setdefault("tags", {})[name] = value

    return edit


@pytest.fixture
def v1(sandbox_factory: Factory) -> Iterator[SandboxHandle]:
    yield sandbox_factory("ilb-ase-v1")


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


# ---- rollback and guards --------------------------------------------------------------------


def test_rollback_removes_exactly_what_was_added_and_cooldown_then_holds(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stored(v1)
    bot = make_remediator(v1, tmp_path, monkeypatch, VERIFY_DEADLINE_SECONDS="0")
    applied = bot.fix(v1.gateway_ids[0], requester=ALICE)
    assert applied.action == "applied" and applied.change is not None

    # Someone else changes the gateway after our fix: the rollback must keep their change.
    sdk_put(v1, add_tag("owner", "team-web"))
    rolled = bot.rollback(v1.gateway_ids[0], applied.change, by=BOB)

    assert (rolled.action, rolled.arm_writes) == ("rolled_back", 1)
    after = stored(v1)
    assert after["tags"].pop("owner") == "team-web"
    before["tags"] = dict(before["tags"])
    assert comparable(after) == comparable(before)

    # The rollback holds what it undid: the same fix again is held, neither written nor proposed.
    assert rolled.hold is not None
    held = bot.fix(v1.gateway_ids[0], requester=ALICE)
    assert (held.action, held.arm_writes, held.proposal, held.hold) == (
        "held",
        0,
        None,
        rolled.hold,
    )
    assert bot.proposals.list() == []

    # Released, the same fix within COOLDOWN_MINUTES becomes a proposal (guard), not a write.
    assert bot.holds is not None
    bot.holds.release(rolled.hold, "carol", datetime.now(UTC))
    again = bot.fix(v1.gateway_ids[0], requester=ALICE)
    assert (again.action, again.arm_writes) == ("proposed", 0)
    assert "cooldown" in again.reason
    assert put_count(v1) == 3  # fix, their tag, rollback


def test_daily_cap_turns_apply_into_propose(
    v1: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = make_remediator(v1, tmp_path, monkeypatch, DAILY_CERT_CAP="0")

    outcome = bot.fix(v1.gateway_ids[0], requester=ALICE)

    assert (outcome.action, outcome.arm_writes) == ("proposed", 0)
    assert "daily cap" in outcome.reason
    assert put_count(v1) == 0


# ---- Key Vault trusted source (ilb-ase-v2-root) -----------------------------------------------


def test_v2_root_adds_one_trusted_root_and_no_authentication_certificate(
    sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = sandbox_factory("ilb-ase-v2-root")
    assert handle.env.get("KEY_VAULT_URL"), "the sandbox Key Vault is not running"
    before = stored(handle)
    bot = make_remediator(handle, tmp_path, monkeypatch)

    outcome = bot.fix(handle.gateway_ids[0], requester=ALICE)

    assert outcome.action == "applied", outcome.reason
    assert (outcome.arm_writes, put_count(handle)) == (1, 1)
    assert outcome.verified is True
    after = stored(handle)
    name = certificate_name(_sha1(handle, "new-root"))
    assert cert_names(after, TRUSTED_ROOTS) == [*cert_names(before, TRUSTED_ROOTS), name]
    assert cert_data(after, TRUSTED_ROOTS, name) == b64_der(handle, "new-root")
    assert ref_names(settings_entry(after, "ase-https"), TRUSTED_ROOTS) == [
        *ref_names(settings_entry(before, "ase-https"), TRUSTED_ROOTS),
        name,
    ]
    # v2 rejects authentication certificates (docs/sources.md#backend-trust): none was ever sent.
    assert AUTH_CERTS not in after["properties"] or not after["properties"][AUTH_CERTS]
    assert all(
        AUTH_CERTS not in e.get("properties", {})
        for e in after["properties"]["backendHttpSettingsCollection"]
    )
    assert all(r["status"] < 400 for r in arm_requests(handle))


def _with_old_root_in_vault(data: dict[str, Any]) -> None:
    data["name"] = "v2-root-mismatch"
    data.setdefault("keyvault", {}).setdefault("certificates", {})["contoso-root-2019"] = "old-root"


@pytest.mark.parametrize(
    ("names", "reason"),
    [
        ("contoso-root-2019", "does not match any trusted Key Vault certificate"),
        ("no-such-certificate", "the trusted source could not be read"),
    ],
)
def test_key_vault_mismatch_turns_apply_into_propose(
    sandbox_factory: Factory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    names: str,
    reason: str,
) -> None:
    handle = sandbox_factory(scenario_file(tmp_path, "ilb-ase-v2-root", _with_old_root_in_vault))
    assert handle.env.get("KEY_VAULT_URL"), "the sandbox Key Vault is not running"
    bot = make_remediator(handle, tmp_path, monkeypatch, TRUSTED_CERT_NAMES=names)

    outcome = bot.fix(handle.gateway_ids[0], requester=ALICE)

    assert (outcome.mode, outcome.action, outcome.arm_writes) == ("apply", "proposed", 0)
    assert reason in outcome.reason
    assert outcome.proposal is not None
    assert put_count(handle) == 0


def _root_not_sent(data: dict[str, Any]) -> None:
    """The backend sends leaf and intermediate but not its root, as Microsoft recommends."""
    data["name"] = "v2-root-not-sent"
    data["backends"][0]["sni"]["test.appgwtestase.com"] = ["app-cert", "new-int"]


def _root_not_sent_old_root_in_vault(data: dict[str, Any]) -> None:
    _root_not_sent(data)
    _with_old_root_in_vault(data)
    data["name"] = "v2-root-not-sent-old-root"


def test_v2_root_not_sent_is_taken_from_key_vault_never_the_intermediate(
    sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = sandbox_factory(scenario_file(tmp_path, "ilb-ase-v2-root", _root_not_sent))
    bot = make_remediator(handle, tmp_path, monkeypatch)

    outcome = bot.fix(handle.gateway_ids[0], requester=ALICE)

    assert outcome.action == "applied", outcome.reason
    assert (outcome.arm_writes, outcome.verified) == (1, True)
    after = stored(handle)
    name = certificate_name(_sha1(handle, "new-root"))
    assert name in cert_names(after, TRUSTED_ROOTS)
    assert cert_data(after, TRUSTED_ROOTS, name) == b64_der(handle, "new-root")  # self-signed
    intermediate = certificate_name(_sha1(handle, "new-int"))
    assert intermediate not in cert_names(after, TRUSTED_ROOTS)


def test_v2_root_not_sent_nor_in_key_vault_names_the_root_and_uploads_nothing(
    sandbox_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = sandbox_factory(
        scenario_file(tmp_path, "ilb-ase-v2-root", _root_not_sent_old_root_in_vault)
    )
    bot = make_remediator(handle, tmp_path, monkeypatch, TRUSTED_CERT_NAMES="contoso-root-2019")

    outcome = bot.fix(handle.gateway_ids[0], requester=ALICE)

    assert (outcome.action, outcome.arm_writes, outcome.proposal) == ("none", 0, None)
    assert put_count(handle) == 0
    root = handle.certs["new-root"].cert
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ski.digest.hex().upper()
    assert f"obtain the trusted root {root.subject.rfc4514_string()}" in outcome.reason
    assert aki in outcome.reason
    assert outcome.diagnosis is not None
    fix = outcome.diagnosis["findings"][0]["fix"]
    assert fix["action"] == "none" and fix["certificate"] is None
    assert fix["required_root"]["authority_key_identifier"] == aki


def test_sandbox_scenario_settings_are_what_the_tests_assume(v1: SandboxHandle) -> None:
    # The acceptance tests rely on the scenario's own bot settings (apply mode) and, with the
    # roles infra/ grants (sandbox_factory's rbac="infra"), on infra's scope: the gateway ids.
    assert v1.env["REMEDIATION_MODE"] == "apply"
    assert v1.env["ALLOWED_SCOPES"] == ",".join(v1.gateway_ids)
    assert v1.gateway_ids[0].endswith("/agw-ase-v1")


def test_stale_periodic_health_is_not_verified_but_on_demand_evidence_is_fresh(
    sandbox_factory: Callable[..., SandboxHandle], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 30 s probe interval: the periodic result right after the write is the stale, unhealthy one.
    def slow_probes(data: dict[str, Any]) -> None:
        for gateway in data["gateways"]:
            for probe in gateway["properties"].get("probes", []):
                probe["properties"]["interval"] = 30

    # The emulator's probe interval is this test's subject: it overrides the fast timing's 0.
    handle = sandbox_factory(
        scenario_file(tmp_path, "ilb-ase-v1", slow_probes), probe_interval_seconds=30
    )
    bot = make_remediator(handle, tmp_path, monkeypatch, VERIFY_DEADLINE_SECONDS="3")
    outcome = bot.fix(handle.gateway_ids[0])
    assert (outcome.action, outcome.arm_writes) == ("applied", 1)
    assert outcome.verified is False  # only the periodic health decides
    periodic = [c for c in outcome.verification if c["source"] == "backend-health"]
    fresh = [c for c in outcome.verification if c["source"] == "on-demand"]
    assert periodic and all(c["health"] == "unhealthy" for c in periodic)
    assert fresh and all(c["health"] == "healthy" for c in fresh)
    assert any(r["path"].endswith("/getBackendHealthOnDemand") for r in arm_requests(handle))
