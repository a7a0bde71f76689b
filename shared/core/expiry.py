"""The expiry watch: every certificate the gateway relies on or is presented that expires soon.

Pure: from the gateway model, the TLS captures and the Key Vault certificates already read, and an
injected `now`. Dates come from the certificates themselves (ARM's `data` of trusted roots and
authentication certificates, the chains the backends presented, the `.cer` Key Vault returned),
never from metadata. A certificate already past its end is listed too (negative `days_left`):
the watch says what to renew, the diagnosis says what is broken.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.common.errors import InputError
from shared.core.capture import TlsCapture
from shared.core.certs import CertInfo, cert_info, der_from_arm_data, iso_z
from shared.core.gateway import CertificateRef, Gateway

DEFAULT_WARNING_DAYS = 30


class Where(StrEnum):
    BACKEND_LEAF = "backend_leaf"  # the certificate a backend presented first
    BACKEND_CHAIN = "backend_chain"  # the rest of what it presented (intermediates, a root)
    TRUSTED_ROOT = "trusted_root"  # a v2 trusted root stored on the gateway
    AUTHENTICATION_CERTIFICATE = "authentication_certificate"  # a v1 one on the gateway
    KEY_VAULT = "key_vault"  # a trusted-source certificate version read from Key Vault


@dataclass(frozen=True)
class ExpiringCertificate:
    where: Where
    subject: str
    sha1: str
    not_after: str  # ISO 8601 UTC, "...Z"
    days_left: int  # whole days until not_after, rounded down; negative once expired

    def to_json(self) -> dict[str, Any]:
        return {
            "where": self.where.value,
            "subject": self.subject,
            "sha1": self.sha1,
            "not_after": self.not_after,
            "days_left": self.days_left,
        }


def days_left(info: CertInfo, now: datetime) -> int:
    moment = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return math.floor((info.not_after - moment).total_seconds() / 86400)


def _stored(refs: Iterable[CertificateRef]) -> Iterable[CertInfo]:
    for ref in refs:
        if not ref.data:
            continue  # a Key Vault reference: its dates are in the vault, read separately
        try:
            yield cert_info(der_from_arm_data(ref.data))
        except InputError:
            continue  # unreadable upload: the diagnosis reports it, it has no date to watch


def _candidates(
    gateway: Gateway | None,
    captures: Mapping[Any, TlsCapture] | None,
    key_vault: Sequence[bytes],
) -> Iterable[tuple[Where, CertInfo]]:
    if gateway is not None:
        for info in _stored(gateway.trusted_root_certificates):
            yield Where.TRUSTED_ROOT, info
        for info in _stored(gateway.authentication_certificates):
            yield Where.AUTHENTICATION_CERTIFICATE, info
    for capture in (captures or {}).values():
        for index, info in enumerate(capture.chain):
            yield (Where.BACKEND_LEAF if index == 0 else Where.BACKEND_CHAIN), info
    for der in key_vault:
        try:
            yield Where.KEY_VAULT, cert_info(bytes(der))
        except InputError:
            continue


def expiring(
    gateway: Gateway | None,
    captures: Mapping[Any, TlsCapture] | None,
    *,
    now: datetime,
    key_vault: Sequence[bytes] = (),
    warning_days: int = DEFAULT_WARNING_DAYS,
) -> tuple[ExpiringCertificate, ...]:
    """Each (where, certificate) once that ends within `warning_days` of `now`, soonest first."""
    moment = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    horizon = moment + timedelta(days=warning_days)
    seen: set[tuple[Where, str]] = set()
    out: list[ExpiringCertificate] = []
    for where, info in _candidates(gateway, captures, key_vault):
        if (where, info.sha1) in seen or info.not_after > horizon:
            continue
        seen.add((where, info.sha1))
        out.append(
            ExpiringCertificate(
                where, info.subject, info.sha1, iso_z(info.not_after), days_left(info, moment)
            )
        )
    order = list(Where)
    out.sort(key=lambda e: (e.not_after, order.index(e.where), e.sha1))
    return tuple(out)


def notice_key(gateway_id: str, item: ExpiringCertificate) -> str:
    """What "already notified" is remembered by: one notice per gateway, place and certificate."""
    return f"{gateway_id.lower()}|{item.where.value}|{item.sha1}"


__all__ = [
    "DEFAULT_WARNING_DAYS",
    "ExpiringCertificate",
    "Where",
    "days_left",
    "expiring",
    "notice_key",
]
