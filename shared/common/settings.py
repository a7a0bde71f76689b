"""Every setting the bot reads, in one place, validated, with errors that name the setting.

`SETTINGS` is the registry: docs/operations.md and the infra tests enumerate it, so a setting added
here without an app setting in infra/ fails a test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.common.errors import SettingsError
from shared.common.identity import parse_approvers

PUBLIC_ARM_ENDPOINT = "https://management.azure.com"


class Mode(StrEnum):
    """Remediation modes, ordered: diagnose < propose < apply."""

    DIAGNOSE = "diagnose"
    PROPOSE = "propose"
    APPLY = "apply"

    @property
    def rank(self) -> int:
        return _MODE_ORDER.index(self)

    @classmethod
    def lowest(cls, *modes: Mode | None) -> Mode:
        """The most conservative of the given modes; None entries are ignored."""
        present = [m for m in modes if m is not None]
        return min(present, key=lambda m: m.rank) if present else cls.PROPOSE


_MODE_ORDER = (Mode.DIAGNOSE, Mode.PROPOSE, Mode.APPLY)


class NotifyFormat(StrEnum):
    TEAMS = "teams"
    SLACK = "slack"
    JSON = "json"


@dataclass(frozen=True)
class Setting:
    name: str
    description: str
    default: str | None = None
    parse: Callable[[str, str], Any] = field(default=lambda name, raw: raw)
    secret: bool = False
    # "bot": read by the bot's code; "platform": read by the Functions host or SDKs.
    consumer: str = "bot"


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{name}: expected true or false, got {raw!r}")


def _int(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}: expected a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}: must be between {low} and {high}, got {value}")
        return value

    return parse


def _float(low: float, high: float) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}: expected a number, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}: must be between {low} and {high}, got {value}")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower() or allowed[0]
        if value not in allowed:
            raise SettingsError(f"{name}: expected one of {', '.join(allowed)}, got {raw!r}")
        return value

    return parse


def _csv(name: str, raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _mode(name: str, raw: str) -> Mode:
    try:
        return Mode(raw.strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in Mode)
        raise SettingsError(f"{name}: expected one of {allowed}, got {raw!r}") from None


def _notify_format(name: str, raw: str) -> NotifyFormat:
    try:
        return NotifyFormat(raw.strip().lower())
    except ValueError:
        allowed = ", ".join(f.value for f in NotifyFormat)
        raise SettingsError(f"{name}: expected one of {allowed}, got {raw!r}") from None


def _https_url(name: str, raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value:
        return ""
    if not re.match(r"^https://[^\s/]+(/\S*)?$", value):
        raise SettingsError(f"{name}: expected an https:// URL, got {raw!r}")
    return value


def _scopes(name: str, raw: str) -> tuple[str, ...]:
    scopes = _csv(name, raw)
    for scope in scopes:
        if not re.match(
            r"^/subscriptions/[^/\s]+(/resourceGroups/[^/\s]+(/providers/"
            r"Microsoft\.Network/applicationGateways/[^/\s]+)?)?$",
            scope,
            re.IGNORECASE,
        ):
            raise SettingsError(
                f"{name}: {scope!r} is not a subscription, resource group or gateway id"
            )
    return scopes


def _regex(name: str, raw: str) -> re.Pattern[str] | None:
    if not raw.strip():
        return None
    try:
        return re.compile(raw.strip())
    except re.error as exc:
        raise SettingsError(f"{name}: not a valid regular expression: {exc}") from None


SETTINGS: tuple[Setting, ...] = (
    # Where Azure is.
    Setting(
        "ARM_ENDPOINT",
        "Base URL of Azure Resource Manager; the sandbox sets a local one.",
        PUBLIC_ARM_ENDPOINT,
        _https_url,
    ),
    Setting(
        "METRICS_ENDPOINT",
        "Azure Monitor metrics endpoint the sweep's pre-filter calls; `{region}` is replaced by "
        "the gateways' region. The sandbox sets a local one.",
        "https://{region}.metrics.monitor.azure.com",
        _https_url,
    ),
    Setting("AZURE_SUBSCRIPTION_ID", "Default subscription for commands given a gateway name.", ""),
    Setting("AZURE_CLIENT_ID", "Client id of the user-assigned managed identity the bot uses.", ""),
    Setting(
        "KEY_VAULT_URL", "Key Vault holding trusted-source certificates (optional).", "", _https_url
    ),
    Setting(
        "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE",
        "Check that Key Vault's auth challenge names the vault's own domain before sending a "
        "token. Leave true; only a local emulator (the sandbox) sets false.",
        "true",
        _bool,
    ),
    # What the bot may do.
    Setting(
        "REMEDIATION_MODE",
        "Global mode: diagnose, propose or apply. Tags and requests can only lower it.",
        "propose",
        _mode,
    ),
    Setting("REMEDIATION_KILL_SWITCH", "true turns every gateway write off.", "false", _bool),
    Setting(
        "ALLOWED_SCOPES",
        "Comma-separated subscription, resource group or gateway ids the "
        "bot may act on. Empty: none.",
        "",
        _scopes,
    ),
    Setting(
        "MODE_TAG",
        "Gateway tag whose value (diagnose/propose/apply) lowers the mode.",
        "appgw-cert-bot-mode",
    ),
    Setting(
        "OWNERSHIP_TAGS",
        "Tags (name or name=value) marking gateways owned by another "
        "writer: those get proposals with an IaC fragment.",
        "managed-by-k8s-ingress,managed-by=terraform",
        _csv,
    ),
    Setting(
        "TRUSTED_CERT_NAMES", "Key Vault certificate names that are trusted sources.", "", _csv
    ),
    Setting(
        "TRUSTED_SUBJECT_PATTERN",
        "Regular expression a certificate's subject or a SAN "
        "must match to be applied automatically (optional).",
        "",
        _regex,
    ),
    Setting(
        "COOLDOWN_MINUTES",
        "Minimum minutes between two changes for the same gateway, settings and thumbprint.",
        "30",
        _int(0, 10080),
    ),
    Setting(
        "DAILY_CERT_CAP",
        "Most certificates the bot adds to one gateway per day.",
        "3",
        _int(0, 100),
    ),
    Setting(
        "MAX_TARGETS_PER_ALERT",
        "Most in-scope gateways one alert queues jobs for; the rest are counted, not queued.",
        "50",
        _int(1, 1000),
    ),
    Setting(
        "APPROVERS",
        "Comma-separated Entra object ids allowed to approve proposals and roll changes back, "
        "each optionally with a display label: <object id>[=<label>].",
        "",
        parse_approvers,
    ),
    Setting(
        "EXPIRY_WARNING_DAYS",
        "Days ahead the expiry watch looks: a certificate the gateway relies on or is presented "
        "that ends within them is listed in `expiring` and notified once.",
        "30",
        _int(0, 3650),
    ),
    Setting(
        "ROLLBACK_BY_APPLIER",
        "true lets the approver who applied a change roll it back through the API; false (the "
        "default) needs a second approver, as approvals do.",
        "false",
        _bool,
    ),
    Setting(
        "PROBE_VANTAGE",
        "Where TLS probes run from: auto (the function app when WEBSITE_SITE_NAME is set, else "
        "an operator machine), gateway_network (a host in the gateway's network, e.g. a jump "
        "host) or operator_machine. Captures from an operator machine never become an applied "
        "fix without fix --trust-local-probe.",
        "auto",
        _choice("auto", "gateway_network", "operator_machine"),
    ),
    Setting(
        "WELL_KNOWN_CA_BUNDLE",
        "PEM file of the roots that stand in for the gateway's well-known CA store (v2 settings "
        "without trusted roots). Empty: the Mozilla roots that certifi ships.",
        "",
    ),
    # Timing.
    Setting(
        "PROBE_TIMEOUT_SECONDS", "Timeout of one TLS handshake to a backend.", "5", _float(0.1, 60)
    ),
    Setting(
        "LRO_TIMEOUT_SECONDS",
        "Longest wait for one ARM long-running operation.",
        "1200",
        _float(1, 3600),
    ),
    Setting(
        "VERIFY_DEADLINE_SECONDS",
        "How long to wait for backend health to turn healthy after a change.",
        "600",
        _float(0, 7200),
    ),
    Setting(
        "WRITE_ATTEMPTS",
        "Most attempts at one gateway write (re-read and re-plan each time).",
        "5",
        _int(1, 20),
    ),
    Setting(
        "WRITE_BACKOFF_SECONDS",
        "First back-off before retrying a contended write; doubles per attempt, capped at 60 s. "
        "ARM's Retry-After wins when it sends one.",
        "2",
        _float(0, 60),
    ),
    Setting(
        "BUSY_WAIT_SECONDS",
        "Longest wait for another operation on a gateway (provisioningState Updating) to end "
        "before the bot writes: a PUT meanwhile would cancel that operation. Polled every "
        "ARM_POLLING_INTERVAL, doubling up to 60 s; still busy after it: no write, reported.",
        "1200",
        _float(0, 7200),
    ),
    Setting(
        "VERIFY_POLL_MIN_SECONDS",
        "Shortest wait between two backend-health reads while verifying a change (the gateway's "
        "probe interval paces them otherwise).",
        "1",
        _float(0, 300),
    ),
    Setting(
        "ARM_POLLING_INTERVAL",
        "Seconds between LRO polls when ARM gives no Retry-After.",
        "10",
        _float(0, 120),
    ),
    # Notifications.
    Setting(
        "NOTIFY_WEBHOOK_URL",
        "Webhook for proposals and outcomes (optional).",
        "",
        _https_url,
        secret=True,
    ),
    Setting("NOTIFY_WEBHOOK_FORMAT", "teams, slack or json.", "json", _notify_format),
    Setting(
        "REVIEW_TOKEN_SECRET",
        "Key of the review page's anti-CSRF tokens (HMAC); empty: the page cannot approve.",
        "",
        secret=True,
    ),
    # Local stores for the CLI.
    Setting("STATE_DIR", "Directory for the CLI's proposals, locks and ledger.", ".state"),
    # Function app state (Azure Storage).
    Setting(
        "AzureWebJobsStorage",
        "Storage connection (connection string locally; "
        "identity-based __accountName settings in Azure).",
        "",
        secret=True,
        consumer="platform",
    ),
    Setting("JOBS_QUEUE", "Queue of remediation jobs.", "remediation-jobs"),
    Setting("LEDGER_TABLE", "Table of alerts, jobs and decisions.", "ledger"),
    Setting(
        "EVIDENCE_CONTAINER", "Blob container for evidence, CER files and proposals.", "evidence"
    ),
    Setting("LOCK_CONTAINER", "Blob container holding per-gateway leases.", "locks"),
    Setting(
        "SWEEP_SCHEDULE",
        "NCRONTAB schedule of the sweep over the scope.",
        "0 */15 * * * *",
        consumer="platform",
    ),
    Setting(
        "APPLICATIONINSIGHTS_CONNECTION_STRING", "Application Insights (optional).", "", secret=True
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Parsed settings. Build with `load_settings()`; tests pass a mapping."""

    values: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        if name not in _BY_NAME:
            raise KeyError(f"unknown setting {name}")
        return self.values[name]

    @property
    def arm_endpoint(self) -> str:
        return str(self.values["ARM_ENDPOINT"]) or PUBLIC_ARM_ENDPOINT

    @property
    def mode(self) -> Mode:
        return self.values["REMEDIATION_MODE"]

    @property
    def kill_switch(self) -> bool:
        return bool(self.values["REMEDIATION_KILL_SWITCH"])

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.values["ALLOWED_SCOPES"]


def load_settings(environ: Mapping[str, str] | None = None, **overrides: str) -> Settings:
    """Read and validate every setting; raise SettingsError naming the first bad one."""
    env = dict(os.environ if environ is None else environ)
    env.update(overrides)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.name)
        if raw is None:
            raw = setting.default or ""
        values[setting.name] = setting.parse(setting.name, raw)
    return Settings(values)
