"""Certificate evidence and Base-64 CER export, over certificates generated here."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import time
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from shared.common.errors import InputError
from shared.core.certs import (
    CertInfo,
    cert_info,
    der_from_arm_data,
    evidence,
    is_valid_at,
    load_certificates,
    matches_host,
    pem_blocks,
    same_public_key,
    to_arm_data,
    to_pem,
)

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2030, 1, 1, tzinfo=UTC)


@cache
def rsa_key(n: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def name(cn: str | None, org: str = "Contoso Test") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def make_cert(
    cn: str | None,
    *,
    key: Key | None = None,
    issuer: x509.Name | None = None,
    signer: Key | None = None,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    ca: bool | None = None,
    start: datetime = START,
    end: datetime = END,
) -> bytes:
    key = key or rsa_key()
    subject = name(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    cert = builder.sign(signer or key, hashes.SHA256())
    return cert.public_bytes(Encoding.DER)


@cache
def root_der() -> bytes:
    return make_cert("Contoso Root CA", key=rsa_key(1), ca=True)


@cache
def leaf_der() -> bytes:
    return make_cert(
        "app.contoso.com",
        issuer=name("Contoso Root CA"),
        signer=rsa_key(1),
        dns=("app.contoso.com", "www.contoso.com"),
        ca=False,
    )


@cache
def self_signed_der() -> bytes:
    return make_cert("ilb.ase.internal", dns=("*.ase.internal",))


def test_thumbprints_and_names() -> None:
    der = leaf_der()
    info = cert_info(der)
    assert info.der == der
    assert info.sha1 == hashlib.sha1(der).hexdigest().upper()
    assert info.sha256 == hashlib.sha256(der).hexdigest().upper()
    assert len(info.sha1) == 40 and info.sha1.isupper()
    assert info.subject == "CN=app.contoso.com,O=Contoso Test"
    assert info.issuer == "CN=Contoso Root CA,O=Contoso Test"
    assert info.common_name == "app.contoso.com"
    assert info.sans == ("app.contoso.com", "www.contoso.com")
    assert (info.not_before, info.not_after) == (START, END)
    assert not info.self_signed and not info.is_ca
    spki = rsa_key().public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert info.public_key_sha256 == hashlib.sha256(spki).hexdigest().upper()


def test_ca_and_self_signed_flags() -> None:
    root = cert_info(root_der())
    assert root.self_signed and root.is_ca
    plain = cert_info(self_signed_der())
    assert plain.self_signed and not plain.is_ca  # no basicConstraints -> not a CA
    explicit_leaf = cert_info(make_cert("x", ca=False))
    assert explicit_leaf.self_signed and not explicit_leaf.is_ca


def test_same_name_but_another_key_is_not_self_signed() -> None:
    # subject == issuer, but signed by a different key: the signature check must catch it.
    forged = cert_info(make_cert("loop.contoso.com", key=rsa_key(), signer=rsa_key(2)))
    assert forged.subject == forged.issuer
    assert not forged.self_signed


def test_ec_key() -> None:
    info = cert_info(make_cert("ec.contoso.com", key=ec_key(), dns=("ec.contoso.com",)))
    assert info.self_signed
    assert matches_host(info, "ec.contoso.com")
    spki = ec_key().public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert info.public_key_sha256 == hashlib.sha256(spki).hexdigest().upper()


def test_validity() -> None:
    expired = cert_info(
        make_cert(
            "old", start=datetime(2020, 1, 1, tzinfo=UTC), end=datetime(2021, 1, 1, tzinfo=UTC)
        )
    )
    when = datetime(2025, 6, 1, tzinfo=UTC)
    assert not is_valid_at(expired, when)
    assert is_valid_at(expired, datetime(2020, 6, 1, tzinfo=UTC))
    assert is_valid_at(expired, datetime(2020, 6, 1))  # naive means UTC
    info = cert_info(leaf_der())
    assert is_valid_at(info, when)
    assert is_valid_at(info, END) and not is_valid_at(info, END + timedelta(seconds=1))
    assert not is_valid_at(info, START - timedelta(seconds=1))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("app.contoso.com", True),
        ("APP.Contoso.COM", True),
        ("app.contoso.com.", True),
        ("www.contoso.com", True),
        ("contoso.com", False),
        ("api.contoso.com", False),
        ("", False),
    ],
)
def test_matches_host_dns_sans(host: str, expected: bool) -> None:
    assert matches_host(cert_info(leaf_der()), host) is expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("a.ase.internal", True),
        ("TEST.ASE.INTERNAL", True),
        ("a.b.ase.internal", False),  # the wildcard covers one label only
        ("ase.internal", False),
        ("ilb.ase.internal", True),
        ("xase.internal", False),
    ],
)
def test_matches_host_wildcard(host: str, expected: bool) -> None:
    assert matches_host(cert_info(self_signed_der()), host) is expected


def test_cn_is_ignored_when_a_dns_san_exists() -> None:
    info = cert_info(make_cert("cn.contoso.com", dns=("san.contoso.com",)))
    assert matches_host(info, "san.contoso.com")
    assert not matches_host(info, "cn.contoso.com")


def test_cn_is_used_without_sans() -> None:
    info = cert_info(make_cert("Legacy.Contoso.com"))
    assert info.sans == ()
    assert matches_host(info, "legacy.contoso.com")
    assert not matches_host(info, "other.contoso.com")
    assert not matches_host(cert_info(make_cert(None)), "legacy.contoso.com")


def test_cn_is_used_when_only_ip_sans_exist() -> None:
    info = cert_info(make_cert("host.contoso.com", ips=("10.1.5.11",)))
    assert matches_host(info, "host.contoso.com")


def test_ip_hosts_match_ip_sans_only() -> None:
    info = cert_info(make_cert("10.0.0.7", dns=("app.contoso.com",), ips=("10.1.5.11", "fd00::5")))
    assert info.sans == ("app.contoso.com", "10.1.5.11", "fd00::5")
    assert matches_host(info, "10.1.5.11")
    assert matches_host(info, "FD00:0:0::5")
    assert not matches_host(info, "10.0.0.7")  # an IP in the CN is not an IP SAN
    assert not matches_host(cert_info(make_cert("10.0.0.7")), "10.0.0.7")


def test_bad_wildcards_do_not_match() -> None:
    assert not matches_host(cert_info(make_cert("x", dns=("*.com",))), "contoso.com")
    assert not matches_host(cert_info(make_cert("x", dns=("a.*.com",))), "a.b.com")
    assert not matches_host(cert_info(make_cert("x", dns=("f*.contoso.com",))), "foo.contoso.com")


def test_same_public_key() -> None:
    first = cert_info(make_cert("app.contoso.com", key=rsa_key(3)))
    reissued = cert_info(make_cert("app.contoso.com", key=rsa_key(3), end=END + timedelta(days=1)))
    other = cert_info(make_cert("app.contoso.com", key=rsa_key(4)))
    assert first.sha1 != reissued.sha1
    assert same_public_key(first, reissued)
    assert not same_public_key(first, other)


def test_evidence_is_json_ready() -> None:
    ev = evidence(cert_info(leaf_der()))
    assert json.loads(json.dumps(ev)) == ev
    assert set(ev) == {
        "sha1",
        "sha256",
        "subject",
        "issuer",
        "common_name",
        "sans",
        "not_before",
        "not_after",
        "self_signed",
        "is_ca",
        "public_key_sha256",
        "subject_key_identifier",
        "authority_key_identifier",
    }
    assert (ev["not_before"], ev["not_after"]) == ("2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z")
    assert ev["sans"] == ["app.contoso.com", "www.contoso.com"]


def test_to_pem_is_base64_cer() -> None:
    der = leaf_der()
    pem = to_pem(der)
    lines = pem.splitlines()
    assert lines[0] == "-----BEGIN CERTIFICATE-----"
    assert lines[-1] == "-----END CERTIFICATE-----"
    assert pem.endswith("-----END CERTIFICATE-----\n")
    assert all(len(line) == 64 for line in lines[1:-2]) and 0 < len(lines[-2]) <= 64
    # cryptography writes the same 64-column form.
    assert pem == x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def test_to_arm_data() -> None:
    der = leaf_der()
    data = to_arm_data(der)
    assert "\n" not in data and "\r" not in data
    assert base64.b64decode(data) == der


def _pem_chain() -> str:
    return to_pem(leaf_der()) + to_pem(root_der())


def test_load_every_known_form() -> None:
    der = leaf_der()
    pem = to_pem(der)
    forms: dict[str, bytes | str] = {
        "DER": der,
        "PEM text": pem,
        "PEM bytes": pem.encode(),
        "PEM with CRLF": pem.replace("\n", "\r\n"),
        "doubled CRLF": pem.replace("\n", "\r\n\r\n").encode(),
        "base64 DER": to_arm_data(der),
        "base64 DER, wrapped": "\n".join(to_pem(der).splitlines()[1:-1]),
        "base64 DER bytes": to_arm_data(der).encode(),
        "base64 of PEM text": base64.b64encode(pem.encode()).decode(),
        "base64 of CRLF PEM": base64.b64encode(pem.replace("\n", "\r\n\r\n").encode()).decode(),
        "UTF-16 PEM with BOM": pem.encode("utf-16"),
        "UTF-16-LE PEM": pem.encode("utf-16-le"),
        "UTF-16-BE PEM": pem.encode("utf-16-be"),
        "base64 of UTF-16 PEM": base64.b64encode(pem.encode("utf-16")).decode(),
        "UTF-8 BOM PEM": b"\xef\xbb\xbf" + pem.encode(),
        "PEM with text around": "subject=CN=app\nissuer=CN=root\n" + pem + "trailer\n",
        "X509 CERTIFICATE label": pem.replace(" CERTIFICATE", " X509 CERTIFICATE"),
    }
    for label, data in forms.items():
        assert load_certificates(data) == [der], label
        if isinstance(data, str):  # ARM's `data` is a JSON string
            assert der_from_arm_data(data) == der, label


def test_load_a_chain_keeps_order() -> None:
    assert load_certificates(_pem_chain()) == [leaf_der(), root_der()]
    encoded = base64.b64encode(_pem_chain().encode()).decode()
    assert load_certificates(encoded) == [leaf_der(), root_der()]
    assert der_from_arm_data(encoded) == leaf_der()


@pytest.mark.parametrize(
    "data",
    [
        "",
        "****",
        "*****",
        "not a certificate",
        b"\x00\x01\x02",
        b"0\x82\x01\x00garbage",
        base64.b64encode(b"hello world").decode(),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    ],
)
def test_nothing_parses(data: bytes | str) -> None:
    with pytest.raises(InputError):
        load_certificates(data)


def test_broken_block_next_to_a_good_one_is_skipped() -> None:
    broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    assert load_certificates(broken + to_pem(root_der())) == [root_der()]


@pytest.mark.parametrize("data", [b"", b"junk", to_pem(b"\x30\x03\x02\x01\x01").encode()])
def test_cert_info_refuses_non_certificates(data: bytes) -> None:
    with pytest.raises(InputError):
        cert_info(data)


def test_cert_info_roundtrip_through_arm_data() -> None:
    info = cert_info(der_from_arm_data(to_arm_data(root_der())))
    assert isinstance(info, CertInfo) and info.is_ca


def test_invalid_version_is_an_input_error() -> None:
    # Found by hypothesis: cryptography raises InvalidVersion, which is not a ValueError.
    der = bytearray(make_cert("v.contoso.com", key=ec_key()))
    marker = der.index(b"\xa0\x03\x02\x01\x02")  # [0] EXPLICIT INTEGER 2 (v3)
    der[marker + 4] = 63
    with pytest.raises(InputError):
        load_certificates(bytes(der))
    with pytest.raises(InputError):
        cert_info(bytes(der))
    with pytest.raises(InputError):
        load_certificates(to_pem(bytes(der)))


def test_pem_splitting_is_linear_on_unterminated_markers() -> None:
    # A regex spanning BEGIN ... END retried from every BEGIN: 1 MB took over 90 s.
    hostile = "-----BEGIN CERTIFICATE-----\n" * (1024 * 1024 // 28)
    assert pem_blocks(hostile) == []
    started = time.perf_counter()
    with pytest.raises(InputError):
        load_certificates(hostile)
    with pytest.raises(InputError):
        load_certificates(hostile.encode() + b"-----END CERTIFICATE-----")
    assert time.perf_counter() - started < 0.5


def test_a_stray_begin_does_not_swallow_the_next_block() -> None:
    pem = to_pem(leaf_der())
    assert load_certificates("-----BEGIN CERTIFICATE-----\ngarbage\n" + pem) == [leaf_der()]
    assert pem_blocks("x -----BEGIN X509 CERTIFICATE-----ab-----END CERTIFICATE----- y") == ["ab"]
    # A chain: two blocks, in order.
    assert len(pem_blocks(_pem_chain())) == 2
