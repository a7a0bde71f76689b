"""Backend health: parse the ARM and CLI forms, normalise states, classify probe-log texts.

CONTRACT (types are fixed; functions are implemented by the diagnosis work).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.common.errors import InputError


class HealthState(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"
    PARTIAL = "partial"
    DRAINING = "draining"


class ProbeLogKind(StrEnum):
    """What a healthProbeLog text says, by tolerant matching (see
    docs/sources.md#probe-log-texts)."""

    SUCCESS = "success"
    NOT_ALLOWLISTED = "not_allowlisted"  # v1 "not whitelisted / isn't allow-listed"
    CN_MISMATCH = "cn_mismatch"
    EXPIRED = "expired"
    INVALID_CERTIFICATE = "invalid_certificate"  # v1 "marked invalid" / invalid CA
    INTERMEDIATE_MISSING = "intermediate_missing"
    LEAF_MISSING = "leaf_missing"
    LEAF_NOT_TOPMOST = "leaf_not_topmost"
    NOT_WELL_KNOWN_CA = "not_well_known_ca"
    ROOT_MISMATCH = "root_mismatch"
    VERIFICATION_FAILED = "verification_failed"  # generic OpenSSL error code text
    TIMEOUT = "timeout"
    CONNECTION_FAILED = "connection_failed"
    PROBE_NOT_CREATED = "probe_not_created"  # FQDN could not be resolved / probe not created
    STATUS_MISMATCH = "status_mismatch"
    BODY_MISMATCH = "body_mismatch"
    PROXY_PROTOCOL = "proxy_protocol"
    HEALTH_UNKNOWN = "health_unknown"  # NSG/UDR/DNS/CRL "could not be retrieved"
    EMPTY = "empty"
    OTHER = "other"


@dataclass(frozen=True)
class ServerHealth:
    pool_id: str
    settings_id: str
    address: str
    health: HealthState
    probe_log: str | None


# The swagger enum says Up/Down (docs/sources.md#health-states); docs, CLI and PowerShell print
# Healthy/Unhealthy.
_HEALTH_WORDS = {
    "up": HealthState.HEALTHY,
    "healthy": HealthState.HEALTHY,
    "down": HealthState.UNHEALTHY,
    "unhealthy": HealthState.UNHEALTHY,
    "partial": HealthState.PARTIAL,
    "draining": HealthState.DRAINING,
}


def normalise_health(value: object) -> HealthState:
    """One of the five states; anything unrecognised is `unknown` (never a certificate verdict)."""
    if isinstance(value, str):
        return _HEALTH_WORDS.get(value.strip().lower(), HealthState.UNKNOWN)
    return HealthState.UNKNOWN


# ---- probe-log classification (docs/sources.md#probe-log-texts) ----

# Ordered: the first rule whose pattern occurs in the normalised text wins. Order matters where
# messages share words: the body-mismatch text echoes arbitrary backend content, the v1
# "marked invalid" text mentions the validity period, the v2 root-mismatch text ends with
# "to allowlist the backend", and the Unknown-state text mentions an unresolvable FQDN.
_RULES: tuple[tuple[ProbeLogKind, tuple[str, ...]], ...] = (
    (ProbeLogKind.BODY_MISMATCH, (r"body of the backend'?s? http response did not match",)),
    (
        ProbeLogKind.STATUS_MISMATCH,
        (r"status code of the backend'?s? http response did not match",),
    ),
    (ProbeLogKind.PROXY_PROTOCOL, (r"proxy protocol",)),
    (
        ProbeLogKind.HEALTH_UNKNOWN,
        (
            r"health status could not be retrieved",
            r"unknownbackendhealth",
            # Older wording, recorded on a v2 gateway (tests/data/probe_logs/SOURCES.md).
            r"unable to retrieve health status",
            r"blocking (?:access|traffic) (?:to|on) ports 65",
        ),
    ),
    (ProbeLogKind.SUCCESS, (r"^success\b", r"^received \d{3} status code")),
    (ProbeLogKind.PROBE_NOT_CREATED, (r"could not create a probe",)),
    (ProbeLogKind.TIMEOUT, (r"more than the timeout threshold", r"\btimed out\b")),
    (
        ProbeLogKind.CONNECTION_FAILED,
        (r"could not connect to the backend", r"can not connect to (?:the )?backend"),
    ),
    # v1: "marked invalid" (internal event BackendSecureConnectionError), "Invalid CA".
    (ProbeLogKind.INVALID_CERTIFICATE, (r"marked invalid", r"\binvalid ca\b")),
    (
        ProbeLogKind.ROOT_MISMATCH,
        (
            r"root certificate of the server certificate .*does not match",
            r"does not match the trusted root",
            r"not signed by any root certificates? uploaded",
        ),
    ),
    (ProbeLogKind.LEAF_NOT_TOPMOST, (r"not the topmost certificate",)),
    (ProbeLogKind.LEAF_MISSING, (r"leaf certificate is missing",)),
    (
        ProbeLogKind.INTERMEDIATE_MISSING,
        (
            r"intermediate certificate is missing",
            r"incomplete certificate chain",
            r"including only the leaf certificate",
        ),
    ),
    (ProbeLogKind.NOT_WELL_KNOWN_CA, (r"not signed by a well[- ]?known certificate authority",)),
    (
        ProbeLogKind.CN_MISMATCH,
        (r"common name\b.*\bdoes not match", r"\bcn\b.*\bdoes not match", r"\binvalid cn\b"),
    ),
    (
        ProbeLogKind.EXPIRED,
        (r"not within the \W*valid from", r"\bcertificate (has )?expired\b"),
    ),
    (ProbeLogKind.NOT_ALLOWLISTED, (r"\bnot allowlisted\b", r"authcertificatemismatch")),
    # Code 13 "HTTPS probe connection error. Check if ... whitelisted" names no verdict, and the
    # v2 OpenSSL text names only an error code: both are "verification failed, reason unknown".
    (
        ProbeLogKind.VERIFICATION_FAILED,
        (r"could not be verified", r"https probe connection error", r"openssl diagnostics"),
    ),
)
_COMPILED = tuple((kind, tuple(re.compile(p) for p in pats)) for kind, pats in _RULES)

_APOSTROPHES = re.compile(r"[\u2018\u2019\u201b\u02bc\u00b4`\uff07]")
_QUOTES = re.compile(r"[\u201c\u201d\u201e\u00ab\u00bb]")
_DASHES = re.compile(r"[\u2010-\u2015\u2212]")
_CANT = re.compile(r"\bcan'?t\b|\bcannot\b")
_WONT = re.compile(r"\bwon'?t\b")
_NT = re.compile(r"\b([a-z]+)n't\b")
_ALLOW = re.compile(r"\b(?:white|allow)[- ]?list(ed|ing|s)?\b")
_SPACE = re.compile(r"\s+")


def _normalise_text(text: str) -> str:
    """Lower-case, one apostrophe, one dash, no contractions, one spelling of allow-list."""
    t = _APOSTROPHES.sub("'", text.lower())
    t = _QUOTES.sub('"', t)
    t = _DASHES.sub("-", t)
    t = _CANT.sub("can not", t)
    t = _WONT.sub("will not", t)
    t = _NT.sub(r"\1 not", t)
    t = _ALLOW.sub(lambda m: "allowlist" + (m.group(1) or ""), t)
    return _SPACE.sub(" ", t).strip()


def classify_probe_log(text: object) -> ProbeLogKind:
    """What a healthProbeLog says, by tolerant fragment matching; never raises."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if text is None or (isinstance(text, str) and not text.strip()):
        return ProbeLogKind.EMPTY
    if not isinstance(text, str):
        return ProbeLogKind.OTHER
    normalised = _normalise_text(text[:10_000])  # health texts are short; bound the work
    for kind, patterns in _COMPILED:
        if any(p.search(normalised) for p in patterns):
            return kind
    return ProbeLogKind.OTHER


# ---- backend-health documents (docs/sources.md#arm-shape) ----


def parse_backend_health(doc: Mapping[str, Any]) -> tuple[ServerHealth, ...]:
    """Servers of a backend-health result: ARM (also $expand), CLI or on-demand form."""
    if not isinstance(doc, Mapping):
        raise InputError("not a backend-health result: expected a JSON object")
    if "responses" in doc and "parameters" in doc:
        raise InputError("not a backend-health result: an API example wrapper; use its body")
    if _get(doc, "sku") is not None or _get(doc, "properties") is not None:
        raise InputError("not a backend-health result: this looks like the gateway itself")
    pools = _get(doc, "backendAddressPools")
    if pools is not None:
        if not isinstance(pools, list):
            raise InputError("not a backend-health result: backendAddressPools is not a list")
        if pools and not any(_get(e, "backendAddressPool") is not None for e in pools):
            # The `az ... show` gateway also has a top-level backendAddressPools list.
            raise InputError("not a backend-health result: no entry names its backendAddressPool")
        return tuple(s for entry in pools for s in _pool_entry(entry))
    if _get(doc, "backendAddressPool") is not None and _get(doc, "backendHealthHttpSettings"):
        # On-demand form: one pool and a single settings object, not a list (SOURCES.md).
        pool_id = _ref_id(_get(doc, "backendAddressPool"))
        if pool_id is None:
            raise InputError("not a backend-health result: backendAddressPool has no id")
        return tuple(_settings_entry(pool_id, _get(doc, "backendHealthHttpSettings")))
    raise InputError(
        "not a backend-health result: expected backendAddressPools (backend health) or "
        "backendAddressPool with backendHealthHttpSettings (on-demand probe)"
    )


def _get(obj: object, key: str) -> Any:
    """A field by name, accepting PowerShell's PascalCase as well as ARM's camelCase."""
    if not isinstance(obj, Mapping):
        return None
    if key in obj:
        return obj[key]
    lowered = key.lower()
    return next((v for k, v in obj.items() if isinstance(k, str) and k.lower() == lowered), None)


def _ref_id(value: object) -> str | None:
    """Id of a plain `{id}` reference or of an $expand-ed resource (`{id, name, properties}`)."""
    raw = _get(value, "id") if isinstance(value, Mapping) else value
    return raw.strip() if isinstance(raw, str) and raw.strip() else None


def _pool_entry(entry: object) -> Iterator[ServerHealth]:
    pool_id = _ref_id(_get(entry, "backendAddressPool"))
    collection = _get(entry, "backendHttpSettingsCollection")
    if pool_id is None or not isinstance(collection, list):
        return
    for settings_entry in collection:
        yield from _settings_entry(pool_id, settings_entry)


def _settings_entry(pool_id: str, entry: object) -> Iterator[ServerHealth]:
    settings_id = _ref_id(_get(entry, "backendHttpSettings"))
    servers = _get(entry, "servers")
    if settings_id is None or not isinstance(servers, list):
        return
    for server in servers:
        address = _server_address(server)
        if address is None:
            continue
        log = _get(server, "healthProbeLog")
        yield ServerHealth(
            pool_id=pool_id,
            settings_id=settings_id,
            address=address,
            health=normalise_health(_get(server, "health")),
            probe_log=log if isinstance(log, str) and log.strip() else None,
        )


def _server_address(server: object) -> str | None:
    address = _get(server, "address")
    if isinstance(address, str) and address.strip():
        return address.strip()
    # NIC-based members may be identified by their IP configuration only.
    return _ref_id(_get(server, "ipConfiguration"))
