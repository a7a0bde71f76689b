"""TLS evidence: open one connection the way the gateway would and capture the presented chain.

The handshake runs over memory BIOs so that (a) the whole exchange obeys one deadline (a silent
peer costs about `timeout`, never more) and (b) we see the peer's first bytes, which tells "not
TLS at all" (e.g. plain HTTP on the port) apart from a TLS handshake failure. Verification is off
on purpose: the point is to record whatever the backend presents, trusted or not.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from OpenSSL.crypto import X509

from shared.common.errors import InputError
from shared.core.capture import (
    ProbeErrorKind,
    ProbeRequest,
    TlsCapture,
    Vantage,
    VantageKind,
    effective_sni,
)
from shared.core.certs import CertInfo, cert_info

# TLS record content types (change_cipher_spec .. heartbeat): any other first byte is not TLS.
_TLS_RECORD_TYPES = frozenset(range(0x14, 0x19))
_CHUNK = 65536


class _ProbeFailure(Exception):
    def __init__(self, kind: ProbeErrorKind, detail: str, *, refused: bool = False) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.refused = refused  # the peer spoke TLS and refused the handshake


def detect_vantage(
    declared: str | None = None, environ: Mapping[str, str] | None = None
) -> Vantage:
    """Where this process probes from. `declared` is PROBE_VANTAGE (auto | gateway_network |
    operator_machine; default: the environment's PROBE_VANTAGE, else auto). Auto: App Service
    (Flex Consumption included) sets WEBSITE_SITE_NAME, the app's name: that is the deployed bot,
    VNet-integrated by infra/ to reach the backends. FUNCTIONS_WORKER_RUNTIME alone does not count:
    `func start` on a laptop sets it too. Anything else is an operator's machine (its host name)."""
    env = os.environ if environ is None else environ
    value = (declared if declared is not None else env.get("PROBE_VANTAGE", "auto")).strip().lower()
    host = socket.gethostname() or "unknown host"
    if value == VantageKind.GATEWAY_NETWORK.value:
        return Vantage(VantageKind.GATEWAY_NETWORK, host)
    if value == VantageKind.OPERATOR_MACHINE.value:
        return Vantage(VantageKind.OPERATOR_MACHINE, host)
    site = env.get("WEBSITE_SITE_NAME", "").strip()
    if site:
        return Vantage(VantageKind.FUNCTION_APP, site)
    return Vantage(VantageKind.OPERATOR_MACHINE, host)


def capture(
    address: str,
    port: int,
    sni: str | None,
    *,
    timeout: float,
    vantage: Vantage | None = None,
) -> TlsCapture:
    """Connect once the way the gateway does, handshake without verification, return the presented
    chain, the negotiated protocol and cipher, or the error.

    When the backend refuses the gateway's offer (TLS 1.2 and later, the gateway's suites), one
    more permissive handshake learns why: an older protocol (`protocol_mismatch`) or a cipher the
    gateway does not offer (`cipher_mismatch`). Never raises for network errors; `timeout` bounds
    everything together. The capture records `vantage` (default: detect_vantage()).
    """
    where = vantage or detect_vantage()
    sent_sni = effective_sni(address, sni)
    deadline = time.monotonic() + max(timeout, 0.0)
    try:
        shake = _attempt(address, port, sent_sni, deadline, gateway_context())
    except _ProbeFailure as failure:
        learned = _why_refused(address, port, sent_sni, deadline) if failure.refused else None
        if learned is None:
            return TlsCapture(address, port, sent_sni, (), failure.kind, failure.detail, where)
        kind, other = learned
        detail = (
            f"{failure.detail}; the backend accepts {other.protocol} with {other.cipher}, which "
            "the gateway does not offer backends"
        )
        return TlsCapture(
            address, port, sent_sni, other.chain, kind, detail, where, other.protocol, other.cipher
        )
    return TlsCapture(
        address,
        port,
        sent_sni,
        shake.chain,
        vantage=where,
        protocol=shake.protocol,
        cipher=shake.cipher,
    )


def capture_all(
    requests: Iterable[ProbeRequest],
    *,
    timeout: float,
    max_workers: int = 256,
    vantage: Vantage | None = None,
) -> dict[ProbeRequest, TlsCapture]:
    """Capture every distinct request concurrently: N silent peers cost about one timeout.

    The threads only wait on sockets, so the pool is sized to the work (up to `max_workers`):
    a pool smaller than the number of silent peers would pay one timeout per round.
    """
    unique = list(dict.fromkeys(requests))
    if not unique:
        return {}
    where = vantage or detect_vantage()
    workers = max(1, min(max_workers, len(unique)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tls-probe") as pool:
        results = pool.map(
            lambda r: capture(r[0], r[1], r[2], timeout=timeout, vantage=where), unique
        )
        return dict(zip(unique, results, strict=True))


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _ProbeFailure(ProbeErrorKind.TIMEOUT, "timed out")
    return left


def _connect(address: str, port: int, deadline: float) -> socket.socket:
    host = address.strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise _ProbeFailure(
            ProbeErrorKind.UNRESOLVED, f"cannot resolve {address!r}: {exc}"
        ) from None
    last: _ProbeFailure | None = None
    for family, socktype, proto, _, sockaddr in infos:
        sock = socket.socket(family, socktype, proto)
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(sockaddr)
        except _ProbeFailure:
            sock.close()
            raise
        except TimeoutError:
            sock.close()
            raise _ProbeFailure(ProbeErrorKind.TIMEOUT, "connect timed out") from None
        except ConnectionRefusedError as exc:
            sock.close()
            last = _ProbeFailure(ProbeErrorKind.REFUSED, f"connection refused: {exc}")
            continue
        except OSError as exc:
            sock.close()
            last = _ProbeFailure(ProbeErrorKind.REFUSED, f"cannot connect: {exc}")
            continue
        return sock
    raise last or _ProbeFailure(ProbeErrorKind.UNRESOLVED, f"no address for {address!r}")


@dataclass(frozen=True)
class _Shake:
    chain: tuple[CertInfo, ...]
    protocol: str | None
    cipher: str | None


def _attempt(address: str, port: int, sni: str | None, deadline: float, ctx: SSL.Context) -> _Shake:
    sock = _connect(address, port, deadline)
    try:
        return _handshake(sock, sni, deadline, ctx)
    finally:
        sock.close()


def _why_refused(
    address: str, port: int, sni: str | None, deadline: float
) -> tuple[ProbeErrorKind, _Shake] | None:
    """After the gateway's offer was refused: does the backend accept an older protocol or
    another cipher? None when it refuses that too (then the first error stands)."""
    try:
        other = _attempt(address, port, sni, deadline, permissive_context())
    except _ProbeFailure:
        return None
    if other.protocol in GATEWAY_PROTOCOLS:
        return ProbeErrorKind.CIPHER_MISMATCH, other
    return ProbeErrorKind.PROTOCOL_MISMATCH, other


# What the gateway offers backends (docs/sources.md#backend-tls-policy). Learn: backend
# connections use "preferred TLS v1.3 and minimum up to TLS v1.2" on v2 since 2025-08-31, the
# listener's TLS policy does not govern them, and their cipher suites "are based on the type of
# server certificates presented by the backend servers". No page lists the backend suites, so the
# bot offers every suite of the gateway's documented catalogue (the TLS policy overview) that v2
# supports at TLS 1.2 and later, for RSA and ECDSA certificates alike: a mismatch is named only
# when the backend shares none of them. [INFERENCE: the exact backend list is not published.]
GATEWAY_PROTOCOLS = frozenset({"TLSv1.2", "TLSv1.3"})
GATEWAY_TLS13_SUITES = "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"
GATEWAY_TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",  # TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        "ECDHE-ECDSA-AES128-GCM-SHA256",  # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        "ECDHE-RSA-AES256-GCM-SHA384",  # TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        "ECDHE-RSA-AES128-GCM-SHA256",  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        "ECDHE-ECDSA-AES256-SHA384",  # TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384
        "ECDHE-ECDSA-AES128-SHA256",  # TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256
        "ECDHE-RSA-AES256-SHA384",  # TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384
        "ECDHE-RSA-AES128-SHA256",  # TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256
        "ECDHE-ECDSA-AES256-SHA",  # TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA
        "ECDHE-ECDSA-AES128-SHA",  # TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA
        "ECDHE-RSA-AES256-SHA",  # TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA
        "ECDHE-RSA-AES128-SHA",  # TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA
        "AES256-GCM-SHA384",  # TLS_RSA_WITH_AES_256_GCM_SHA384
        "AES128-GCM-SHA256",  # TLS_RSA_WITH_AES_128_GCM_SHA256
        "AES256-SHA256",  # TLS_RSA_WITH_AES_256_CBC_SHA256
        "AES128-SHA256",  # TLS_RSA_WITH_AES_128_CBC_SHA256
        "AES256-SHA",  # TLS_RSA_WITH_AES_256_CBC_SHA
        "AES128-SHA",  # TLS_RSA_WITH_AES_128_CBC_SHA
    )
)


def gateway_context() -> SSL.Context:
    """The handshake the gateway makes to a backend: TLS 1.2-1.3 and the gateway's suites.
    Verification stays off: the chain is recorded, not trusted, and judged by shared.core.chain."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE, lambda *_: True)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    # SECLEVEL=0: weak keys are a certificate question, not a reason to refuse the handshake here.
    ctx.set_cipher_list(f"{GATEWAY_TLS12_CIPHERS}:@SECLEVEL=0".encode("ascii"))
    ctx.set_tls13_ciphersuites(GATEWAY_TLS13_SUITES.encode("ascii"))
    return ctx


def permissive_context() -> SSL.Context:
    """Whatever the backend offers (old protocols, any cipher): to learn why the gateway's
    offer was refused."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE, lambda *_: True)
    ctx.set_min_proto_version(SSL.TLS1_VERSION)
    ctx.set_cipher_list(b"ALL:@SECLEVEL=0")
    return ctx


def _handshake(sock: socket.socket, sni: str | None, deadline: float, ctx: SSL.Context) -> _Shake:
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    if sni:
        try:
            name = sni.encode("idna")
        except UnicodeError as exc:  # not a host name: nothing a gateway could send either
            detail = f"cannot send SNI {sni!r}: {exc}"
            raise _ProbeFailure(ProbeErrorKind.TLS_ERROR, detail) from None
        conn.set_tlsext_host_name(name)
    seen_bytes = False
    while True:
        try:
            conn.do_handshake()
            break
        except SSL.WantReadError:
            pass
        except SSL.Error as exc:
            detail = f"handshake failed: {exc}"
            raise _ProbeFailure(ProbeErrorKind.TLS_ERROR, detail, refused=True) from None
        _flush(conn, sock, deadline)
        data = _receive(sock, deadline)
        if not data:
            conn.bio_shutdown()
            detail = "peer closed the connection during the handshake"
            raise _ProbeFailure(ProbeErrorKind.TLS_ERROR, detail, refused=True)
        if not seen_bytes and data[0] not in _TLS_RECORD_TYPES:
            preview = data[:40].decode("ascii", "replace").splitlines()[0:1]
            raise _ProbeFailure(
                ProbeErrorKind.NOT_TLS, f"peer answered but not with TLS: {preview}"
            )
        seen_bytes = True
        conn.bio_write(data)
    _flush(conn, sock, deadline)
    chain = conn.get_peer_cert_chain() or []
    try:
        certs = tuple(cert_info(_der(cert)) for cert in chain)
    except InputError as exc:
        raise _ProbeFailure(ProbeErrorKind.TLS_ERROR, f"unreadable certificate: {exc}") from None
    return _Shake(certs, conn.get_protocol_version_name() or None, conn.get_cipher_name())


def _der(cert: X509) -> bytes:
    return cert.to_cryptography().public_bytes(Encoding.DER)


def _flush(conn: SSL.Connection, sock: socket.socket, deadline: float) -> None:
    while True:
        try:
            data = conn.bio_read(_CHUNK)
        except SSL.WantReadError:
            return
        try:
            sock.settimeout(_remaining(deadline))
            sock.sendall(data)
        except TimeoutError:
            raise _ProbeFailure(ProbeErrorKind.TIMEOUT, "handshake timed out") from None
        except OSError as exc:
            raise _ProbeFailure(ProbeErrorKind.TLS_ERROR, f"send failed: {exc}") from None


def _receive(sock: socket.socket, deadline: float) -> bytes:
    try:
        sock.settimeout(_remaining(deadline))
        return sock.recv(_CHUNK)
    except TimeoutError:
        raise _ProbeFailure(ProbeErrorKind.TIMEOUT, "handshake timed out") from None
    except ConnectionResetError:
        return b""
    except OSError as exc:
        raise _ProbeFailure(ProbeErrorKind.TLS_ERROR, f"receive failed: {exc}") from None
