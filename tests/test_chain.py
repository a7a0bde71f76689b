"""The chain as the gateway builds it (shared.core.chain) and upload formats, as pure functions."""

from __future__ import annotations

import base64
import datetime as dt

from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from test_tls_probe import make_cert

from shared.core.certs import cert_info
from shared.core.chain import AnchorSource, ChainStatus, Role, Validity, build_chain, validity
from shared.core.upload_format import UploadFormat, upload_format

ROOT = make_cert("Root", ca=True)
INTER = make_cert("Inter", issuer=ROOT, ca=True)
LEAF = make_cert("leaf.test", issuer=INTER, sans=("leaf.test",))
OTHER_ROOT = make_cert("Other Root", ca=True)
RT, IN, LF, OT = (cert_info(c.der) for c in (ROOT, INTER, LEAF, OTHER_ROOT))


def test_path_uses_only_what_was_sent_and_ends_at_an_anchor() -> None:
    gc = build_chain((LF, IN), trusted_roots=(RT,))
    assert gc.status is ChainStatus.TRUSTED and gc.anchor_source is AnchorSource.TRUSTED_ROOT
    assert [c.role for c in gc.path] == [Role.LEAF, Role.INTERMEDIATE, Role.ROOT]
    assert [c.presented for c in gc.path] == [True, True, False]


def test_unordered_extras_are_used_or_left_aside() -> None:
    gc = build_chain((LF, OT, IN, RT), trusted_roots=(RT,))
    assert gc.certs == (LF, IN, RT) and gc.unused == (OT,)


def test_missing_intermediate_is_incomplete_even_when_the_root_is_trusted() -> None:
    gc = build_chain((LF,), trusted_roots=(RT,))
    assert gc.status is ChainStatus.INCOMPLETE and gc.missing_issuer == "CN=Inter"


def test_an_intermediate_is_never_an_anchor_of_trusted_roots() -> None:
    assert build_chain((LF, IN), trusted_roots=(IN,)).status is ChainStatus.INCOMPLETE


def test_untrusted_root_self_signed_leaf_and_empty() -> None:
    assert build_chain((LF, IN, RT), trusted_roots=(OT,)).status is ChainStatus.UNTRUSTED_ROOT
    lone = cert_info(make_cert("self", sans=("self",)).der)
    assert build_chain((lone,)).status is ChainStatus.SELF_SIGNED_LEAF
    assert build_chain(()).status is ChainStatus.EMPTY


def test_well_known_store_anchors_when_no_trusted_root_does() -> None:
    gc = build_chain((LF, IN), trusted_roots=(OT,), well_known=(RT,))
    assert gc.status is ChainStatus.TRUSTED and gc.anchor_source is AnchorSource.WELL_KNOWN


def test_out_of_date_names_each_certificate() -> None:
    now = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
    gc = build_chain((LF, IN), trusted_roots=(RT,))
    assert [v for _, v in gc.out_of_date(now)] == [Validity.EXPIRED] * 3
    assert validity(LF, dt.datetime(2020, 1, 1, tzinfo=dt.UTC)) is Validity.NOT_YET_VALID


def test_upload_formats() -> None:
    b64 = base64.b64encode
    assert upload_format(b64(LEAF.der).decode()) is UploadFormat.CER
    assert upload_format(LEAF.pem.decode()) is UploadFormat.CER
    assert upload_format(b64(LEAF.pem).decode()) is UploadFormat.CER  # what az sends
    bundle = (LEAF.pem + INTER.pem).decode()
    assert upload_format(bundle) is UploadFormat.MULTIPLE_CERTIFICATES
    assert upload_format(LEAF.pem.decode() + LEAF.key_pem.decode()) is UploadFormat.PRIVATE_KEY
    p7b = pkcs7.serialize_certificates([LEAF.cert], Encoding.DER)
    assert upload_format(b64(p7b).decode()) is UploadFormat.PKCS7
    assert upload_format("not base64 at all!") is UploadFormat.UNREADABLE
    assert upload_format("A" * 2_000_000) is UploadFormat.UNREADABLE
