"""Backend-health rules of the emulated Application Gateway, and the prober that applies them.

Facts cite `docs/sources.md` by anchor. The prober really connects to
each pool member (loopback only), captures the presented chain with pyOpenSSL (verification
off) and does the SKU's certificate checks itself with `cryptography`. Every verdict is looked
up in RULES, the one table of outcome -> health + probe-log text.

Decisions where the sources are silent:
- A peer that does not speak TLS on an HTTPS port gets the "could not connect" text
  (docs/sources.md#probe-log-texts).
- v1 settings that reference no authentication certificate pin nothing
  (docs/sources.md#backend-trust: trusted Azure services need no auth cert); then only expiry and,
  for an FQDN member, the CN are checked.
- v2 health probes use SNI = custom probe host > `sniName` > settings hostName (or the member
  FQDN with pickHostNameFromBackendAddress) > member FQDN; IPs are never SNI
  (docs/sources.md#sni-rules).
  The on-demand test probe ignores `sniName`, `validateSNI` and `validateCertChainAndExpiry`
  (docs/sources.md#sni-rules: "These settings don't apply to test probe functionality").
- With no host name at all (IP member, no host anywhere) v2 skips the name check: there is
  nothing to compare against.
- FQDN members resolve only through the `hosts` option (never DNS); anything outside
  127.0.0.0/8 is never contacted and reports Unknown
  (docs/sources.md#probe-log-texts, the Unknown text).
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import select
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
UNKNOWN = "Unknown"

V2_TIERS = frozenset({"standard_v2", "waf_v2", "basic"})  # docs/sources.md#sku-and-retirement


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    UNREACHABLE = "unreachable"  # unresolved FQDN or an address we must not contact
    CONNECT_FAILED = "connect-failed"
    TIMEOUT = "timeout"
    NOT_TLS = "not-tls"
    STATUS_MISMATCH = "status-mismatch"
    BODY_MISMATCH = "body-mismatch"
    NOT_WHITELISTED = "not-whitelisted"
    CERT_INVALID = "cert-invalid"
    CN_MISMATCH = "cn-mismatch"
    EXPIRED = "expired"
    INTERMEDIATE_MISSING = "intermediate-missing"
    LEAF_MISSING = "leaf-missing"
    LEAF_NOT_TOPMOST = "leaf-not-topmost"
    LEAF_NOT_WELL_KNOWN = "leaf-not-well-known"
    INTERMEDIATE_NOT_WELL_KNOWN = "intermediate-not-well-known"
    ROOT_MISMATCH_NO_ROOT = "root-mismatch-no-root-sent"
    ROOT_MISMATCH_ROOT_SENT = "root-mismatch-root-sent"


@dataclass(frozen=True)
class Rule:
    outcome: Outcome
    sku: str  # "v1", "v2" or "any"
    health: str
    log: str  # may hold {expected}/{received}/{body}/{status} placeholders
    source: str


_CONNECT = (
    "Application Gateway could not connect to the backend. Check that the backend responds on the "
    "port used for the probe. Also check whether any NSG/UDR/Firewall is blocking access to the Ip "
    "and port of this backend."
)
_UNKNOWN = (
    "The backend health status could not be retrieved. This happens when an NSG/UDR/Firewall "
    "on the application gateway subnet is blocking traffic on ports 65503-65534 in case of v1 "
    "SKU, and ports 65200-65535 in case of the v2 SKU or if the FQDN configured in the backend "
    "pool could not be resolved to an IP address. To learn more visit - "
    "https://aka.ms/UnknownBackendHealth."
)

RULES: tuple[Rule, ...] = (
    Rule(
        Outcome.SUCCESS,
        "any",
        HEALTHY,
        "Success. Received {status} status code",
        "docs/sources.md#probe-log-texts",
    ),
    Rule(Outcome.UNREACHABLE, "any", UNKNOWN, _UNKNOWN, "docs/sources.md#probe-log-texts Unknown"),
    Rule(Outcome.CONNECT_FAILED, "any", UNHEALTHY, _CONNECT, "docs/sources.md#probe-log-texts"),
    Rule(
        Outcome.TIMEOUT,
        "any",
        UNHEALTHY,
        "Time taken by the backend to respond to application gateway's health probe is more than "
        "the timeout threshold in the probe setting.",
        "docs/sources.md#probe-log-texts",
    ),
    Rule(Outcome.NOT_TLS, "any", UNHEALTHY, _CONNECT, "choice: no TLS = no connection"),
    Rule(
        Outcome.STATUS_MISMATCH,
        "any",
        UNHEALTHY,
        "Status code of the backend's HTTP response did not match the probe setting. "
        "Expected:{expected} Received:{received}.",
        "docs/sources.md#probe-log-texts",
    ),
    Rule(
        Outcome.BODY_MISMATCH,
        "any",
        UNHEALTHY,
        "Body of the backend's HTTP response did not match the probe setting. Received response "
        "body doesn't contain {body}.",
        "docs/sources.md#probe-log-texts",
    ),
    # v1 keeps the older texts (docs/sources.md#probe-log-texts: new
    # certificate messages are v2 only).
    Rule(
        Outcome.NOT_WHITELISTED,
        "v1",
        UNHEALTHY,
        "Backend server certificate is not whitelisted with Application Gateway.",
        "docs/sources.md#probe-log-texts v1 not whitelisted",
    ),
    Rule(
        Outcome.CERT_INVALID,
        "v1",
        UNHEALTHY,
        "Backend certificate has been marked invalid. Either the certificate is not within its "
        "validity period, or it has been revoked by the issuing authority, or there is a problem "
        "with the certificate chain.",
        "docs/sources.md#probe-log-texts v1 invalid",
    ),
    Rule(
        Outcome.CN_MISMATCH,
        "v1",
        UNHEALTHY,
        "The Common Name (CN) of the backend certificate doesn\u2019t match.",
        "docs/sources.md#probe-log-texts v1 CN mismatch",
    ),
    Rule(
        Outcome.CN_MISMATCH,
        "v2",
        UNHEALTHY,
        "The Common Name of the leaf certificate presented by the backend server does not match "
        "the Probe or Backend Setting hostname of the application gateway.",
        "docs/sources.md#probe-log-texts CN / SNI mismatch",
    ),
    Rule(
        Outcome.EXPIRED,
        "v2",
        UNHEALTHY,
        'Backend certificate is invalid. Current date isn\'t within the "Valid from" and '
        '"Valid to" date range on the certificate.',
        "docs/sources.md#probe-log-texts expired",
    ),
    Rule(
        Outcome.INTERMEDIATE_MISSING,
        "v2",
        UNHEALTHY,
        "The Intermediate certificate is missing from the certificate chain presented by the "
        "backend server. Ensure the certificate chain is complete and correctly ordered on the "
        "backend server.",
        "docs/sources.md#probe-log-texts, docs/sources.md#backend-trust",
    ),
    Rule(
        Outcome.LEAF_MISSING,
        "v2",
        UNHEALTHY,
        "The Leaf certificate is missing from the certificate chain presented by the backend "
        "server. Ensure the chain is complete and correctly ordered on the backend server.",
        "docs/sources.md#probe-log-texts missing leaf",
    ),
    Rule(
        Outcome.LEAF_NOT_TOPMOST,
        "v2",
        UNHEALTHY,
        "The Leaf certificate isn't the topmost certificate in the chain presented by the backend "
        "server. Ensure the certificate chain is correctly ordered on the backend server.",
        "docs/sources.md#probe-log-texts leaf not first",
    ),
    Rule(
        Outcome.LEAF_NOT_WELL_KNOWN,
        "v2",
        UNHEALTHY,
        "The backend Server certificate isn't signed by a well-known Certificate Authority (CA). "
        "To use unknown CA certificates, its Root certificate must be uploaded to the Backend "
        "Setting of the application gateway.",
        "docs/sources.md#probe-log-texts leaf not well-known",
    ),
    Rule(
        Outcome.INTERMEDIATE_NOT_WELL_KNOWN,
        "v2",
        UNHEALTHY,
        "The Intermediate certificate isn't signed by a well-known Certificate Authority (CA). "
        "Ensure the certificate chain is complete and correctly ordered on the backend server.",
        "docs/sources.md#probe-log-texts intermediate",
    ),
    Rule(
        Outcome.ROOT_MISMATCH_NO_ROOT,
        "v2",
        UNHEALTHY,
        "The Intermediate certificate not signed by any Root certificates uploaded to the "
        "application gateway. Ensure the certificate chain is complete and correctly ordered on "
        "the backend server.",
        "docs/sources.md#probe-log-texts root, none sent",
    ),
    Rule(
        Outcome.ROOT_MISMATCH_ROOT_SENT,
        "v2",
        UNHEALTHY,
        "The root certificate of the server certificate used by the backend doesn't match the "
        "trusted root certificate added to the application gateway. Ensure that you add the "
        "correct root certificate to allowlist the backend.",
        "docs/sources.md#probe-log-texts root sent",
    ),
)


def rule_for(outcome: Outcome, v2: bool) -> Rule:
    """The table row for an outcome on a SKU family; SKU-specific rows win over "any"."""
    family = "v2" if v2 else "v1"
    for sku in (family, "any"):
        for rule in RULES:
            if rule.outcome is outcome and rule.sku == sku:
                return rule
    # v1 expiry is reported with the v1 "marked invalid" text (docs/sources.md#probe-log-texts).
    if outcome is Outcome.EXPIRED and not v2:
        return rule_for(Outcome.CERT_INVALID, v2)
    raise KeyError(f"no rule for {outcome} on {family}")


def is_v2_tier(tier: str | None) -> bool:
    return (tier or "").lower() in V2_TIERS


# ---------------------------------------------------------------------------------------------
# Certificates


def load_certificate_data(data: str) -> x509.Certificate:
    """Parse ARM certificate `data`: base64 of DER, or base64 of PEM text
    (docs/sources.md#certificate-formats)."""
    raw = base64.b64decode(data.strip(), validate=True)
    if b"-----BEGIN CERTIFICATE-----" in raw:
        return x509.load_pem_x509_certificate(raw)
    return x509.load_der_x509_certificate(raw)


def try_load_certificate_data(data: object) -> x509.Certificate | None:
    if not isinstance(data, str):
        return None
    try:
        return load_certificate_data(data)
    except (ValueError, binascii.Error):
        return None


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    if child.issuer != issuer.subject:
        return False
    try:
        child.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _self_signed(cert: x509.Certificate) -> bool:
    return _issued_by(cert, cert)


def _in_date(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _same_cert(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.subject == b.subject and _spki(a) == _spki(b)


def name_matches(cert: x509.Certificate, host: str) -> bool:
    """RFC 6125 as docs/sources.md#sni-rules says: SAN DNS names only when a SAN exists, else the
    CN; a wildcard covers exactly one left-most label."""
    host = host.lower().rstrip(".")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = [
            str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    return any(_dns_match(pattern, host) for pattern in names)


def _dns_match(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


@dataclass(frozen=True)
class Trust:
    """What the settings trust: v1 allow-listed leaves, v2 roots (None = well-known store)."""

    v2: bool
    auth_certs: tuple[x509.Certificate, ...] = ()
    trusted_roots: tuple[x509.Certificate, ...] | None = None
    well_known_roots: tuple[x509.Certificate, ...] = ()
    validate_chain: bool = True
    validate_sni: bool = True


def check_chain_v1(
    chain: list[x509.Certificate], trust: Trust, fqdn: str | None, now: datetime
) -> Outcome | None:
    """v1: the leaf's public key must equal an allow-listed one's and be in date
    (docs/sources.md#backend-trust)."""
    if not chain:
        return Outcome.NOT_WHITELISTED
    leaf = chain[0]
    if trust.auth_certs:
        if _spki(leaf) not in {_spki(c) for c in trust.auth_certs}:
            return Outcome.NOT_WHITELISTED
    elif fqdn and not name_matches(leaf, fqdn):
        return Outcome.CN_MISMATCH
    if not _in_date(leaf, now):
        return Outcome.EXPIRED
    return None


def check_chain_v2(
    chain: list[x509.Certificate], trust: Trust, name: str | None, now: datetime
) -> Outcome | None:
    """v2: build a path from the leaf through presented intermediates to a trusted root, then
    check dates and the leaf name (docs/sources.md#probe-log-texts,
    docs/sources.md#sni-rules, docs/sources.md#backend-trust)."""
    if not chain:
        return Outcome.LEAF_MISSING
    if trust.validate_chain:
        verdict = _walk_chain(chain, trust)
        if verdict is not None:
            return verdict
        if not all(_in_date(c, now) for c in chain):
            return Outcome.EXPIRED
    if trust.validate_sni and name and not name_matches(chain[0], name):
        return Outcome.CN_MISMATCH
    return None


def _walk_chain(chain: list[x509.Certificate], trust: Trust) -> Outcome | None:
    leaf = chain[0]
    if _is_ca(leaf) and any(not _is_ca(c) for c in chain[1:]):
        return Outcome.LEAF_NOT_TOPMOST
    well_known = trust.trusted_roots is None
    anchors = trust.well_known_roots if well_known else (trust.trusted_roots or ())
    # Only a self-signed root anchors a chain: an intermediate uploaded as a trusted root does
    # not, intermediates belong on the server ("only the root certificate is valid here",
    # https://learn.microsoft.com/azure/application-gateway/certificates-for-backend-authentication).
    anchors = tuple(a for a in anchors if _self_signed(a))
    current = leaf
    for _ in range(len(chain) + 1):
        if _self_signed(current):
            if current is leaf and not _is_ca(leaf):
                return Outcome.INTERMEDIATE_MISSING  # docs/sources.md#backend-trust
            if any(_same_cert(current, a) for a in anchors):
                return None
            return Outcome.LEAF_NOT_WELL_KNOWN if well_known else Outcome.ROOT_MISMATCH_ROOT_SENT
        if any(_issued_by(current, a) for a in anchors):
            return None
        parent = next((c for c in chain if c is not current and _issued_by(current, c)), None)
        if parent is None:
            return _dead_end(current is leaf, well_known)
        current = parent
    return Outcome.INTERMEDIATE_MISSING


def _dead_end(at_leaf: bool, well_known: bool) -> Outcome:
    if at_leaf:
        return Outcome.LEAF_NOT_WELL_KNOWN if well_known else Outcome.INTERMEDIATE_MISSING
    return Outcome.INTERMEDIATE_NOT_WELL_KNOWN if well_known else Outcome.ROOT_MISMATCH_NO_ROOT


# ---------------------------------------------------------------------------------------------
# Probe plan: what to contact and how, from the gateway document


@dataclass(frozen=True)
class ProbeTarget:
    address: str  # as reported in `servers[].address`
    connect_ip: str | None  # None: could not be resolved / must not be contacted
    port: int
    https: bool
    sni: str | None
    host_header: str
    path: str
    timeout: float
    status_ranges: tuple[tuple[int, int], ...]
    status_text: str
    body: str | None
    trust: Trust
    fqdn: str | None  # the member's FQDN, for the v1 CN rule


@dataclass(frozen=True)
class ProbeResult:
    health: str
    log: str
    outcome: Outcome


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        return False


def resolve(address: str, hosts: dict[str, str]) -> str | None:
    """Loopback only, and never DNS: FQDNs resolve through the `hosts` option alone."""
    ip = address if _is_ip(address) else hosts.get(address.lower())
    return ip if ip is not None and _loopback(ip) else None


def parse_status_ranges(codes: list[str] | None) -> tuple[tuple[int, int], ...]:
    ranges = []
    for code in codes or ["200-399"]:  # default match (docs/sources.md#health-states)
        low, _, high = str(code).partition("-")
        ranges.append((int(low), int(high or low)))
    return tuple(ranges)


# ---------------------------------------------------------------------------------------------
# The prober


def probe(target: ProbeTarget, *, now: Callable[[], datetime] | None = None) -> ProbeResult:
    """Probe one member once; costs at most one `target.timeout`."""
    v2 = target.trust.v2
    outcome, values = _probe_outcome(target, now or (lambda: datetime.now(UTC)))
    rule = rule_for(outcome, v2)
    return ProbeResult(rule.health, rule.log.format(**values), outcome)


def _probe_outcome(
    target: ProbeTarget, now: Callable[[], datetime]
) -> tuple[Outcome, dict[str, str]]:
    if target.connect_ip is None:
        return Outcome.UNREACHABLE, {}
    deadline = time.monotonic() + target.timeout
    try:
        sock = socket.create_connection((target.connect_ip, target.port), timeout=target.timeout)
    except TimeoutError:
        return Outcome.TIMEOUT, {}
    except OSError:
        return Outcome.CONNECT_FAILED, {}
    try:
        sock.setblocking(False)
        return _converse(sock, target, deadline, now)
    except TimeoutError:
        return Outcome.TIMEOUT, {}
    except (SSL.Error, OSError):
        return Outcome.CONNECT_FAILED, {}
    finally:
        sock.close()


def _converse(
    sock: socket.socket, target: ProbeTarget, deadline: float, now: Callable[[], datetime]
) -> tuple[Outcome, dict[str, str]]:
    channel: _Channel
    if target.https:
        try:
            tls = _tls_handshake(sock, target.sni, deadline)
        except TimeoutError:
            raise
        except (SSL.Error, OSError):
            return Outcome.NOT_TLS, {}
        chain = tls.get_peer_cert_chain(as_cryptography=True) or []
        verdict = _check_certificate(list(chain), target, now())
        if verdict is not None:
            return verdict, {}
        channel = _TlsChannel(tls, sock, deadline)
    else:
        channel = _PlainChannel(sock, deadline)
    return _http_exchange(channel, target)


def _check_certificate(
    chain: list[x509.Certificate], target: ProbeTarget, now: datetime
) -> Outcome | None:
    if target.trust.v2:
        return check_chain_v2(chain, target.trust, target.sni, now)
    return check_chain_v1(chain, target.trust, target.fqdn, now)


def _wait(sock: socket.socket, deadline: float, *, write: bool = False) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    readable, writable, _ = select.select(
        [] if write else [sock], [sock] if write else [], [], remaining
    )
    if not readable and not writable:
        raise TimeoutError


def _tls_handshake(sock: socket.socket, sni: str | None, deadline: float) -> SSL.Connection:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE, lambda *_: True)  # we judge the chain ourselves
    conn = SSL.Connection(ctx, sock)
    if sni:
        conn.set_tlsext_host_name(sni.encode("idna"))
    conn.set_connect_state()
    while True:
        try:
            conn.do_handshake()
            return conn
        except SSL.WantReadError:
            _wait(sock, deadline)
        except SSL.WantWriteError:
            _wait(sock, deadline, write=True)


class _Channel:
    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def recv(self) -> bytes:
        raise NotImplementedError


class _PlainChannel(_Channel):
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock, self._deadline = sock, deadline

    def send(self, data: bytes) -> None:
        while data:
            _wait(self._sock, self._deadline, write=True)
            data = data[self._sock.send(data) :]

    def recv(self) -> bytes:
        _wait(self._sock, self._deadline)
        return self._sock.recv(65536)


class _TlsChannel(_Channel):
    def __init__(self, conn: SSL.Connection, sock: socket.socket, deadline: float) -> None:
        self._conn, self._sock, self._deadline = conn, sock, deadline

    def send(self, data: bytes) -> None:
        while data:
            try:
                data = data[self._conn.send(data) :]
            except SSL.WantWriteError:
                _wait(self._sock, self._deadline, write=True)
            except SSL.WantReadError:
                _wait(self._sock, self._deadline)

    def recv(self) -> bytes:
        while True:
            try:
                return self._conn.recv(65536)
            except SSL.WantReadError:
                _wait(self._sock, self._deadline)
            except (SSL.ZeroReturnError, SSL.SysCallError):
                return b""


def _http_exchange(channel: _Channel, target: ProbeTarget) -> tuple[Outcome, dict[str, str]]:
    request = (
        f"GET {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
        "User-Agent: Azure Application Gateway Sandbox Probe\r\nConnection: close\r\n\r\n"
    )
    channel.send(request.encode("ascii", "replace"))
    data = b""
    while b"\r\n" not in data or (target.body is not None and len(data) < 1 << 20):
        chunk = channel.recv()
        if not chunk:
            break
        data += chunk
    status = _status_code(data)
    if status is None:
        return Outcome.CONNECT_FAILED, {}
    if not any(low <= status <= high for low, high in target.status_ranges):
        return Outcome.STATUS_MISMATCH, {"expected": target.status_text, "received": str(status)}
    if target.body is not None:
        _, _, body = data.partition(b"\r\n\r\n")
        if target.body.encode() not in body:
            return Outcome.BODY_MISMATCH, {"body": target.body}
    return Outcome.SUCCESS, {"status": str(status)}


def _status_code(data: bytes) -> int | None:
    parts = data.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])


def probe_all(targets: list[ProbeTarget], pool: ThreadPoolExecutor) -> list[ProbeResult]:
    """Probe concurrently, so silent backends cost one timeout in total, not one each."""
    return list(pool.map(probe, targets))


# ---------------------------------------------------------------------------------------------
# From a gateway document to probe targets

DEFAULT_INTERVAL = 30.0  # docs/sources.md#health-states: 30 s, threshold 3
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class ProbeLimits:
    hosts: dict[str, str]
    well_known_roots: tuple[x509.Certificate, ...]
    timeout_cap: float = 3.0
    interval_cap: float | None = None


@dataclass(frozen=True)
class PairPlan:
    pool_id: str
    settings_id: str
    interval: float
    targets: tuple[ProbeTarget, ...]


def props(node: object) -> dict:
    if isinstance(node, dict) and isinstance(node.get("properties"), dict):
        return node["properties"]
    return {}


def find_child(doc: dict, collection: str, ref: object) -> dict | None:
    """Resolve `{"id": ...}` to a child of `collection`, case-insensitively (ARM ids are)."""
    ref_id = ref.get("id") if isinstance(ref, dict) else None
    if not isinstance(ref_id, str):
        return None
    wanted = ref_id.lower()
    gw_id = str(doc.get("id", "")).lower()
    for child in props(doc).get(collection) or []:
        if not isinstance(child, dict):
            continue
        own = str(child.get("id") or f"{gw_id}/{collection}/{child.get('name')}").lower()
        if own == wanted:
            return child
    return None


def routed_pairs(doc: dict) -> list[tuple[dict, dict]]:
    """(pool, settings) pairs in use by routing rules and URL path maps, in document order."""
    refs: list[tuple[object, object]] = []
    p = props(doc)
    for rule in p.get("requestRoutingRules") or []:
        rp = props(rule)
        refs.append((rp.get("backendAddressPool"), rp.get("backendHttpSettings")))
    for path_map in p.get("urlPathMaps") or []:
        mp = props(path_map)
        refs.append((mp.get("defaultBackendAddressPool"), mp.get("defaultBackendHttpSettings")))
        for path_rule in mp.get("pathRules") or []:
            pr = props(path_rule)
            refs.append((pr.get("backendAddressPool"), pr.get("backendHttpSettings")))
    pairs: list[tuple[dict, dict]] = []
    seen: set[tuple[int, int]] = set()
    for pool_ref, settings_ref in refs:
        pool = find_child(doc, "backendAddressPools", pool_ref)
        settings = find_child(doc, "backendHttpSettingsCollection", settings_ref)
        if pool is None or settings is None or (id(pool), id(settings)) in seen:
            continue
        seen.add((id(pool), id(settings)))
        pairs.append((pool, settings))
    return pairs


def child_id(doc: dict, collection: str, child: dict) -> str:
    return str(child.get("id") or f"{doc.get('id')}/{collection}/{child.get('name')}")


def member_address(member: object) -> str | None:
    """Pool members are `{"ipAddress"}` / `{"fqdn"}` objects, or plain strings in one MS example."""
    if isinstance(member, str):
        return member
    if isinstance(member, dict):
        value = member.get("ipAddress") or member.get("fqdn")
        return str(value) if value else None
    return None


def plan_gateway(doc: dict, limits: ProbeLimits) -> list[PairPlan]:
    plans = []
    for pool, settings in routed_pairs(doc):
        custom = find_child(doc, "probes", props(settings).get("probe"))
        plans.append(_plan_pair(doc, pool, settings, props(custom) if custom else None, limits))
    return plans


def plan_on_demand(doc: dict, request: dict, limits: ProbeLimits) -> PairPlan | None:
    """The on-demand probe body acts as the custom probe; the v2 validation switches do not
    apply to it (docs/sources.md#sni-rules)."""
    pool = find_child(doc, "backendAddressPools", request.get("backendAddressPool"))
    settings = find_child(doc, "backendHttpSettingsCollection", request.get("backendHttpSettings"))
    if pool is None or settings is None:
        return None
    return _plan_pair(doc, pool, settings, request, limits, on_demand=True)


def _plan_pair(
    doc: dict,
    pool: dict,
    settings: dict,
    probe_props: dict | None,
    limits: ProbeLimits,
    *,
    on_demand: bool = False,
) -> PairPlan:
    v2 = is_v2_tier((props(doc).get("sku") or {}).get("tier"))
    trust = _trust(doc, props(settings), v2, limits, on_demand)
    interval = float((probe_props or {}).get("interval") or DEFAULT_INTERVAL)
    if limits.interval_cap is not None:
        interval = min(interval, limits.interval_cap)
    targets = []
    for member in props(pool).get("backendAddresses") or []:
        address = member_address(member)
        if address:
            targets.append(
                _target(address, props(settings), probe_props, v2, trust, limits, on_demand)
            )
    return PairPlan(
        child_id(doc, "backendAddressPools", pool),
        child_id(doc, "backendHttpSettingsCollection", settings),
        interval,
        tuple(targets),
    )


def _trust(doc: dict, settings: dict, v2: bool, limits: ProbeLimits, on_demand: bool) -> Trust:
    if not v2:
        certs = _referenced_certs(doc, "authenticationCertificates", settings)
        return Trust(v2=False, auth_certs=tuple(certs))
    roots_refs = settings.get("trustedRootCertificates") or []
    roots = (
        tuple(_referenced_certs(doc, "trustedRootCertificates", settings)) if roots_refs else None
    )
    return Trust(
        v2=True,
        trusted_roots=roots,
        well_known_roots=limits.well_known_roots,
        validate_chain=on_demand or settings.get("validateCertChainAndExpiry", True) is not False,
        validate_sni=on_demand or settings.get("validateSNI", True) is not False,
    )


def _referenced_certs(doc: dict, collection: str, settings: dict) -> list[x509.Certificate]:
    certs = []
    for ref in settings.get(collection) or []:
        child = find_child(doc, collection, ref)
        cert = try_load_certificate_data(props(child).get("data")) if child else None
        if cert is not None:
            certs.append(cert)
    return certs


def _target(
    address: str,
    settings: dict,
    probe_props: dict | None,
    v2: bool,
    trust: Trust,
    limits: ProbeLimits,
    on_demand: bool,
) -> ProbeTarget:
    probe_props = probe_props or {}
    protocol = str(probe_props.get("protocol") or settings.get("protocol") or "Http")
    https = protocol.lower() == "https"
    port = int(settings.get("port") or (443 if https else 80))
    if v2 and probe_props.get("port"):  # custom probe port is v2 only
        port = int(probe_props["port"])
    fqdn = None if _is_ip(address) else address
    settings_host = address if settings.get("pickHostNameFromBackendAddress") else None
    settings_host = settings_host or settings.get("hostName") or None
    explicit_probe_host = probe_props.get("host") or None
    probe_host = explicit_probe_host
    if not probe_host and probe_props.get("pickHostNameFromBackendHttpSettings"):
        probe_host = settings_host
    # Default probe: <protocol>://127.0.0.1:<port>/ - 127.0.0.1 is only the Host header
    # (docs/sources.md#sni-rules).
    host_header = probe_host or settings_host or "127.0.0.1"
    if v2:
        sni_name = None if on_demand else settings.get("sniName")
        candidates = [explicit_probe_host, sni_name, settings_host, fqdn]
        sni = next((c for c in candidates if c), None)
    else:
        # v1: the pool FQDN or nothing; a probe host never becomes SNI (docs/sources.md#sni-rules)
        sni = fqdn
    if sni is not None and _is_ip(sni):
        sni = None
    match = probe_props.get("match") or {}
    codes = match.get("statusCodes") or ["200-399"]
    timeout = float(probe_props.get("timeout") or DEFAULT_TIMEOUT)
    return ProbeTarget(
        address=address,
        connect_ip=resolve(address, limits.hosts),
        port=port,
        https=https,
        sni=sni,
        host_header=host_header,
        path=str(probe_props.get("path") or "/"),
        timeout=min(timeout, limits.timeout_cap),
        status_ranges=parse_status_ranges(codes),
        status_text=",".join(str(c) for c in codes),
        body=match.get("body") or None,
        trust=trust,
        fqdn=fqdn,
    )
