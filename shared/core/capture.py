"""What one TLS handshake showed: the presented chain or the error, as frozen data. Pure.

The probing itself (sockets, OpenSSL) lives in shared.probe.tls; the diagnosis core reads only
these types, so it never imports an I/O module.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from shared.core.certs import CertInfo


class VantageKind(StrEnum):
    """Where a probe ran, which decides whether its captures show what the gateway sees."""

    FUNCTION_APP = "function_app"  # the deployed bot, VNet-integrated to reach the backends
    GATEWAY_NETWORK = "gateway_network"  # declared by PROBE_VANTAGE (a jump host, the sandbox)
    OPERATOR_MACHINE = "operator_machine"  # anywhere else: a proxy or DNS may answer instead


@dataclass(frozen=True)
class Vantage:
    kind: VantageKind
    host: str  # the machine (or function app) name

    @property
    def in_gateway_network(self) -> bool:
        return self.kind is not VantageKind.OPERATOR_MACHINE

    def describe(self) -> str:
        if self.kind is VantageKind.FUNCTION_APP:
            return f"the function app {self.host} (in the gateway's network)"
        if self.kind is VantageKind.GATEWAY_NETWORK:
            return f"{self.host} (declared in the gateway's network by PROBE_VANTAGE)"
        return f"the operator machine {self.host} (not the gateway's network)"

    def warning(self) -> str | None:
        """Why captures from here may not be what the gateway sees; None when in its network."""
        if self.in_gateway_network:
            return None
        return (
            f"The TLS captures were made from {self.describe()}. A proxy, firewall, DNS answer or "
            "route on this machine's path may present another certificate than the gateway "
            "sees; the bot applies nothing from such evidence without --trust-local-probe."
        )


class ProbeErrorKind(StrEnum):
    REFUSED = "refused"
    TIMEOUT = "timeout"
    NOT_TLS = "not_tls"
    TLS_ERROR = "tls_error"
    UNRESOLVED = "unresolved"
    # The gateway's own handshake failed, a permissive one succeeded (shared.probe.tls): the
    # backend speaks only protocols below TLS 1.2, or shares no cipher with what the gateway
    # offers backends (docs/sources.md#backend-tls-policy). `chain`, `protocol` and `cipher` are
    # then what the permissive handshake saw.
    PROTOCOL_MISMATCH = "protocol_mismatch"
    CIPHER_MISMATCH = "cipher_mismatch"


@dataclass(frozen=True)
class TlsCapture:
    address: str
    port: int
    sni: str | None
    chain: tuple[CertInfo, ...]  # as presented, leaf first; empty when the handshake failed
    error: ProbeErrorKind | None = None
    detail: str | None = None  # the error's text, or None
    vantage: Vantage | None = None  # where the handshake was made from; None when unknown
    protocol: str | None = None  # negotiated protocol, e.g. "TLSv1.3"; None when none was
    cipher: str | None = None  # negotiated cipher suite (OpenSSL name); None when none was

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


__all__ = [
    "ProbeErrorKind",
    "ProbeRequest",
    "TlsCapture",
    "Vantage",
    "VantageKind",
    "effective_sni",
    "is_ip_literal",
]
