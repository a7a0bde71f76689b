"""Property tests: the parsers give a result or a clear InputError for any input, never a crash."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.common.errors import InputError
from shared.core.certs import cert_info, load_certificates, to_pem
from shared.core.gateway import Gateway, parse_gateway, unwrap_example
from shared.core.health import ProbeLogKind, ServerHealth, classify_probe_log, parse_backend_health
from shared.core.tls_target import TlsTarget, alternate_sni, gateway_target

EXAMPLES = Path(__file__).resolve().parent / "data" / "arm-examples"  # see tests/data/SOURCES.md
DATA = Path(__file__).parent / "data"
MODEST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Keys the parsers look for, so random documents reach the interesting code paths.
KEYS = [
    "id", "name", "type", "properties", "sku", "tier", "tags", "backendAddressPools",
    "backendAddresses", "ipAddress", "fqdn", "backendHttpSettingsCollection", "port", "protocol",
    "hostName", "pickHostNameFromBackendAddress", "probe", "probes", "host", "match",
    "statusCodes", "pickHostNameFromBackendHttpSettings", "authenticationCertificates",
    "trustedRootCertificates", "data", "validateSNI", "sniName", "requestRoutingRules",
    "backendAddressPool", "backendHttpSettings", "urlPathMaps", "pathRules",
    "defaultBackendAddressPool", "defaultBackendHttpSettings", "servers", "address", "health",
    "healthProbeLog", "backendHealthHttpSettings", "ipConfiguration",
]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["Standard", "WAF_v2", "Basic", "Up", "Down", "10.0.0.1", "a.example.com"])
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=40,
)


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


GATEWAYS = [
    dict(unwrap_example(_load(EXAMPLES / "ApplicationGatewayGet.json"))),
    dict(unwrap_example(_load(EXAMPLES / "ApplicationGatewayCreate.json"))),
    _load(DATA / "cli_gateway_v1.json"),
    _load(DATA / "mixed_case_ids_gateway.json"),
]
HEALTH = [
    _load(EXAMPLES / "ApplicationGatewayBackendHealthGet.json")["responses"]["200"]["body"],
    _load(EXAMPLES / "ApplicationGatewayBackendHealthTest.json")["responses"]["200"]["body"],
    _load(DATA / "cli_backend_health.json"),
    _load(DATA / "lowercase_ids_backend_health.json"),
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    return out


@st.composite
def mutated(draw: st.DrawFn, docs: list[Any]) -> Any:
    """A valid document with a few random edits: a value replaced, or a key or item removed."""
    doc = copy.deepcopy(draw(st.sampled_from(docs)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()):
            parent[path[-1]] = draw(JSON)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    return doc


def _gateway_or_input_error(doc: Any) -> Gateway | None:
    try:
        gw = parse_gateway(doc)
    except InputError as exc:
        assert str(exc)  # a message fit to show an operator
        return None
    assert isinstance(gw, Gateway)
    # Whatever parsed must be usable downstream: every target can be computed.
    for s in gw.settings:
        for pool in gw.pools:
            for address in pool.addresses:
                assert isinstance(gateway_target(gw, s, address), TlsTarget)
                alt = alternate_sni(gw, s, address)
                assert alt is None or isinstance(alt, str)
    return gw


def _health_or_input_error(doc: Any) -> None:
    try:
        servers = parse_backend_health(doc)
    except InputError as exc:
        assert str(exc)
        return
    assert all(isinstance(s, ServerHealth) for s in servers)
    for s in servers:
        assert isinstance(classify_probe_log(s.probe_log), ProbeLogKind)


@MODEST
@given(st.text())
def test_classify_any_text(text: str) -> None:
    assert isinstance(classify_probe_log(text), ProbeLogKind)


@MODEST
@given(JSON | st.binary())
def test_classify_any_value(value: object) -> None:
    assert isinstance(classify_probe_log(value), ProbeLogKind)


REFERENCE_SAMPLES = [
    ("Backend server certificate is not whitelisted with Application Gateway.", "not_allowlisted"),
    ("The Common Name (CN) of the backend certificate doesn\u2019t match.", "cn_mismatch"),
    (
        "The Intermediate certificate is missing from the certificate chain presented by the "
        "backend server.",
        "intermediate_missing",
    ),
    (
        "Application Gateway could not connect to the backend. Check that the backend responds on "
        "the port used for the probe.",
        "connection_failed",
    ),
]


@MODEST
@given(
    st.sampled_from(REFERENCE_SAMPLES),
    st.lists(st.booleans(), min_size=200, max_size=200),
    st.sampled_from([" ", "  ", "\t", "\n", " \u00a0"]),
)
def test_case_and_whitespace_do_not_change_the_kind(
    sample: tuple[str, str], flips: list[bool], space: str
) -> None:
    text, kind = sample
    varied = "".join(
        (c.upper() if flip else c.lower())
        for c, flip in zip(text, flips + [False] * len(text), strict=False)
    ).replace(" ", space)
    assert classify_probe_log(varied).value == kind


@MODEST
@given(JSON)
def test_parse_gateway_any_json(doc: Any) -> None:
    _gateway_or_input_error(doc)


@MODEST
@given(mutated(GATEWAYS))
def test_parse_gateway_mutated(doc: Any) -> None:
    _gateway_or_input_error(doc)


@MODEST
@given(JSON)
def test_parse_backend_health_any_json(doc: Any) -> None:
    _health_or_input_error(doc)


@MODEST
@given(mutated(HEALTH))
def test_parse_backend_health_mutated(doc: Any) -> None:
    _health_or_input_error(doc)


@MODEST
@given(st.binary(max_size=2048) | st.text(max_size=2048))
def test_load_certificates_any_input(data: bytes | str) -> None:
    try:
        found = load_certificates(data)
    except InputError:
        return
    assert found and all(isinstance(d, bytes) for d in found)


@cache
def _pem() -> bytes:
    """A real certificate to corrupt."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "prop.contoso.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    return to_pem(cert.public_bytes(Encoding.DER)).encode()


@MODEST
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=700))
def test_load_certificates_corrupted_pem(noise: bytes, at: int) -> None:
    pem = _pem()
    corrupted = pem[:at] + noise + pem[at + len(noise) :]
    try:
        found = load_certificates(corrupted)
    except InputError:
        return
    assert all(isinstance(d, bytes) for d in found)


@MODEST
@given(st.binary(min_size=1, max_size=8), st.integers(min_value=0, max_value=400))
def test_cert_info_corrupted_der(noise: bytes, at: int) -> None:
    der = load_certificates(_pem())[0]
    corrupted = der[:at] + noise + der[at + len(noise) :]
    try:
        info = cert_info(corrupted)
    except InputError:
        return
    assert info.der == corrupted and len(info.sha1) == 40
