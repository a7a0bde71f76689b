"""What one TLS handshake showed: the presented chain or the error, as frozen data. Pure.

The probing itself (sockets, OpenSSL) lives in shared.probe.tls; the diagnosis core reads only
these types, so it never imports an I/O module.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from shared.core.certs import CertInfo


class ProbeErrorKind(StrEnum):
    REFUSED = "refused"
    TIMEOUT = "timeout"
    NOT_TLS = "not_tls"
    TLS_ERROR = "tls_error"
    UNRESOLVED = "unresolved"


@dataclass(frozen=True)
class TlsCapture:
    address: str
    port: int
    sni: str | None
    chain: tuple[CertInfo, ...]  # as presented, leaf first; empty when the handshake failed
    error: ProbeErrorKind | None = None
    detail: str | None = None  # the error's text, or None

    @property
    def leaf(self) -> CertInfo | None:
        return self.chain[0] if self.chain else None


ProbeRequest = tuple[str, int, str | None]


def is_ip_literal(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def effective_sni(address: str, sni: str | None) -> str | None:
    """The SNI actually sent: none for an empty name or an IP literal (RFC 6066 forbids IPs)."""
    if not sni or is_ip_literal(sni):
        return None
    return sni


__all__ = ["ProbeErrorKind", "ProbeRequest", "TlsCapture", "effective_sni", "is_ip_literal"]
