"""Remediation through the sandbox, continued (tests/test_remediate_sandbox.py): rollback and the
guards after it, the daily cap, Key Vault as the trusted source, the scenarios' settings and
fresh health evidence. Real SDKs against the local ARM emulator, real TLS backends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from sandbox.runtime import SandboxHandle
from shared.remediation.plan import AUTH_CERTS, TRUSTED_ROOTS, certificate_name
from tests import remediate_helpers
from tests.remediate_helpers import (
    ALICE,
    BOB,
    Factory,
    _sha1,
    add_tag,
    arm_requests,
    b64_der,
    cert_data,
    cert_names,
    comparable,
    make_remediator,
    put_count,
    ref_names,
    scenario_file,
    sdk_put,
    settings_entry,
    stored,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

v1 = remediate_helpers.v1


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
