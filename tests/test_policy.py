"""Policy table: modes only go down, kill switch, ownership tags, scope, guards, verdicts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from shared.common.errors import OutOfScopeError
from shared.common.settings import Mode, Settings, load_settings
from shared.core.diagnosis import FixAction
from shared.remediation.policy import (
    Change,
    Decision,
    Guards,
    Outcome,
    check_scope,
    decide,
    effective_mode,
)
from shared.remediation.trust import TrustResult

SUB = "11111111-1111-1111-1111-111111111111"
GW = (
    f"/subscriptions/{SUB}/resourceGroups/rg-ase/providers/Microsoft.Network/applicationGateways/gw"
)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OK = TrustResult(True, ())


def conf(**env: str) -> Settings:
    return load_settings({}, **env)


@pytest.mark.parametrize(
    ("glob", "tag", "req"),
    list(itertools.product(list(Mode), [None, *Mode], [None, *Mode])),
)
def test_tag_or_request_never_raises_the_mode(
    glob: Mode, tag: Mode | None, req: Mode | None
) -> None:
    tags = {"appgw-cert-bot-mode": tag.value} if tag else {}
    decision = effective_mode(conf(REMEDIATION_MODE=glob.value), tags, req)
    assert decision.mode.rank <= glob.rank
    if tag:
        assert decision.mode.rank <= tag.rank
    if req:
        assert decision.mode.rank <= req.rank
    assert decision.mode == Mode.lowest(glob, tag, req)


def test_tag_name_is_case_insensitive_and_invalid_value_diagnoses() -> None:
    s = conf(REMEDIATION_MODE="apply")
    assert effective_mode(s, {"AppGW-Cert-Bot-Mode": "Propose"}, None).mode is Mode.PROPOSE
    bad = effective_mode(s, {"appgw-cert-bot-mode": "yolo"}, None)
    assert bad.mode is Mode.DIAGNOSE
    assert any("invalid" in r for r in bad.reasons)
    custom = conf(REMEDIATION_MODE="apply", MODE_TAG="botmode")
    assert effective_mode(custom, {"botmode": "diagnose"}, Mode.APPLY).mode is Mode.DIAGNOSE


def test_default_global_mode_is_propose() -> None:
    assert effective_mode(conf(), {}, Mode.APPLY).mode is Mode.PROPOSE


def test_kill_switch_caps_at_propose() -> None:
    s = conf(REMEDIATION_MODE="apply", REMEDIATION_KILL_SWITCH="true")
    d = effective_mode(s, {}, None)
    assert d.mode is Mode.PROPOSE and any("kill switch" in r for r in d.reasons)
    assert effective_mode(s, {}, Mode.DIAGNOSE).mode is Mode.DIAGNOSE


@pytest.mark.parametrize(
    ("tags", "owner"),
    [
        ({"managed-by-k8s-ingress": "1.7.0"}, "managed-by-k8s-ingress=1.7.0"),
        ({"Managed-By-K8S-Ingress": ""}, "Managed-By-K8S-Ingress"),
        ({"managed-by": "Terraform"}, "managed-by=Terraform"),
        ({"managed-by": "bicep"}, None),
        ({"env": "prod"}, None),
    ],
)
def test_ownership_tags(tags: dict[str, str], owner: str | None) -> None:
    d = effective_mode(conf(REMEDIATION_MODE="apply"), tags, None)
    assert d.owner_tag == owner
    assert d.mode is (Mode.PROPOSE if owner else Mode.APPLY)


def test_scope() -> None:
    check_scope(conf(ALLOWED_SCOPES=f"/subscriptions/{SUB}"), GW)
    check_scope(conf(ALLOWED_SCOPES=f"/subscriptions/{SUB}/resourceGroups/RG-ASE"), GW)
    with pytest.raises(OutOfScopeError):
        check_scope(conf(), GW)  # empty: nothing is in scope
    with pytest.raises(OutOfScopeError):
        check_scope(conf(ALLOWED_SCOPES=f"/subscriptions/{SUB}/resourceGroups/rg-as"), GW)
    with pytest.raises(OutOfScopeError):
        check_scope(conf(ALLOWED_SCOPES=f"{GW}2"), GW)


def apply_decision() -> Decision:
    return effective_mode(conf(REMEDIATION_MODE="apply"), {}, None)


def test_decide_table() -> None:
    add = FixAction.ADD_AUTHENTICATION_CERTIFICATE
    assert decide(apply_decision(), add, OK).outcome is Outcome.APPLY
    bad = decide(apply_decision(), add, TrustResult(False, ("not in date",)))
    assert bad.outcome is Outcome.PROPOSE and "not in date" in bad.reasons
    assert decide(apply_decision(), add, None).outcome is Outcome.PROPOSE
    host = decide(apply_decision(), FixAction.SET_BACKEND_HOST_NAME, None)
    assert host.outcome is Outcome.PROPOSE and any("approved proposal" in r for r in host.reasons)
    guarded = decide(apply_decision(), add, OK, ["cooldown: x"])
    assert guarded.outcome is Outcome.PROPOSE and "cooldown: x" in guarded.reasons
    propose = effective_mode(conf(REMEDIATION_MODE="propose"), {}, None)
    assert decide(propose, add, OK).outcome is Outcome.PROPOSE
    diag = effective_mode(conf(REMEDIATION_MODE="apply"), {}, Mode.DIAGNOSE)
    assert decide(diag, add, OK).outcome is Outcome.DIAGNOSE
    assert decide(apply_decision(), FixAction.NONE, OK).outcome is Outcome.DIAGNOSE
    owned = effective_mode(conf(REMEDIATION_MODE="apply"), {"managed-by": "terraform"}, None)
    verdict = decide(owned, add, OK)
    assert verdict.outcome is Outcome.PROPOSE and verdict.owner_tag == "managed-by=terraform"


def test_guards_cooldown_and_daily_cap() -> None:
    thumb = "AA" * 20
    ledger = [
        Change(NOW - timedelta(minutes=10), GW.upper(), "ase-https", thumb.lower()),
        Change(NOW - timedelta(hours=2), GW, "other", "BB" * 20),
        Change(NOW - timedelta(hours=30), GW, "other", "CC" * 20),  # older than a day
    ]
    guards = Guards.from_settings(conf(COOLDOWN_MINUTES="30", DAILY_CERT_CAP="3"), ledger)
    reasons = guards.check(GW, ["ASE-HTTPS"], thumb, NOW, adds_certificate=False)
    assert len(reasons) == 1 and reasons[0].startswith("cooldown")
    assert guards.check(GW, ["ase-https-2"], thumb, NOW, adds_certificate=False) == ()
    later = NOW + timedelta(minutes=25)
    assert guards.check(GW, ["ase-https"], thumb, later, adds_certificate=False) == ()
    assert guards.certificates_today(GW, NOW) == 2
    assert guards.check(GW, ["x"], "DD" * 20, NOW, adds_certificate=True) == ()
    capped = Guards(ledger, timedelta(minutes=30), daily_cap=2)
    reasons = capped.check(GW, ["x"], "DD" * 20, NOW, adds_certificate=True)
    assert len(reasons) == 1 and reasons[0].startswith("daily cap")
    other_gw = GW + "2"
    assert capped.check(other_gw, ["x"], "DD" * 20, NOW, adds_certificate=True) == ()
    assert Guards([], daily_cap=0).check(GW, ["x"], "DD", NOW, adds_certificate=True)
