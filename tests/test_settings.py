"""The settings module reads every setting with validation; errors name the bad setting."""

from __future__ import annotations

import pytest

from shared.common.errors import SettingsError
from shared.common.settings import PUBLIC_ARM_ENDPOINT, SETTINGS, Mode, NotifyFormat, load_settings


def test_defaults_are_safe() -> None:
    settings = load_settings({})
    assert settings.mode is Mode.PROPOSE  # never apply unless asked
    assert settings.kill_switch is False
    assert settings.scopes == ()  # empty scope: the bot may act on nothing
    assert settings.arm_endpoint == PUBLIC_ARM_ENDPOINT
    assert settings["NOTIFY_WEBHOOK_FORMAT"] is NotifyFormat.JSON
    assert "managed-by-k8s-ingress" in settings["OWNERSHIP_TAGS"]


def test_values_are_parsed() -> None:
    settings = load_settings(
        {
            "REMEDIATION_MODE": " Apply ",
            "REMEDIATION_KILL_SWITCH": "yes",
            "ALLOWED_SCOPES": "/subscriptions/s1/resourceGroups/rg1, /subscriptions/s2",
            "COOLDOWN_MINUTES": "45",
            "PROBE_TIMEOUT_SECONDS": "2.5",
            "TRUSTED_SUBJECT_PATTERN": r".*\.appgwtestase\.com",
            "ARM_ENDPOINT": "https://127.0.0.1:8443/",
        }
    )
    assert settings.mode is Mode.APPLY and settings.kill_switch is True
    assert settings.scopes == ("/subscriptions/s1/resourceGroups/rg1", "/subscriptions/s2")
    assert settings["COOLDOWN_MINUTES"] == 45 and settings["PROBE_TIMEOUT_SECONDS"] == 2.5
    assert settings["TRUSTED_SUBJECT_PATTERN"].fullmatch("test.appgwtestase.com")
    assert settings.arm_endpoint == "https://127.0.0.1:8443"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REMEDIATION_MODE", "yolo"),
        ("REMEDIATION_KILL_SWITCH", "maybe"),
        ("ALLOWED_SCOPES", "/subscriptions/s1/../../etc"),
        ("ALLOWED_SCOPES", "rg1"),
        ("COOLDOWN_MINUTES", "-1"),
        ("DAILY_CERT_CAP", "many"),
        ("PROBE_TIMEOUT_SECONDS", "0"),
        ("ARM_ENDPOINT", "http://management.azure.com"),
        ("NOTIFY_WEBHOOK_URL", "ftp://hooks.example"),
        ("NOTIFY_WEBHOOK_FORMAT", "email"),
        ("TRUSTED_SUBJECT_PATTERN", "(unclosed"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({name: value})
    assert str(caught.value).startswith(f"{name}:")


def test_modes_are_ordered_and_lowest_wins() -> None:
    assert Mode.lowest(Mode.APPLY, Mode.PROPOSE, None) is Mode.PROPOSE
    assert Mode.lowest(Mode.APPLY, Mode.DIAGNOSE) is Mode.DIAGNOSE
    assert Mode.lowest() is Mode.PROPOSE


def test_every_setting_is_documented_for_operators() -> None:
    from pathlib import Path

    operations = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in operations]
    assert missing == []
