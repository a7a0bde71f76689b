"""What an uploaded authentication or trusted root certificate's `data` really holds.

Pure. Azure asks for one certificate, "Base-64 encoded X.509 (.CER)"
(docs/sources.md#certificate-formats); users upload other things: a PEM bundle with the whole
chain, a PEM with the private key, a PKCS#7 (.p7b) chain, a PFX, or bytes that are no certificate
at all ("Invalid data in .cer file",
MicrosoftDocs/azure-docs#69393). The diagnosis reads the first certificate of such data and
compares it; this module says why the upload is wrong, so the fix can say what to upload instead.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

_MAX = 1024 * 1024  # an uploaded certificate is kilobytes; larger data is not one
_BEGIN = "-----BEGIN "


class UploadFormat(StrEnum):
    CER = "cer"  # one X.509 certificate: DER, Base-64 DER or PEM (base64 of it, as az sends)
    MULTIPLE_CERTIFICATES = "multiple_certificates"  # a PEM bundle: the chain, not one cert
    PRIVATE_KEY = "private_key"  # a PEM that holds a private key
    PKCS7 = "pkcs7"  # a .p7b/.p7c chain
    UNREADABLE = "unreadable"  # a PFX, or anything that is no certificate


@lru_cache(maxsize=1024)
def upload_format(data: str) -> UploadFormat:
    """The format of ARM `data` (never raises; bounded work on hostile input). Remembered: every
    finding of a gateway reads the same references."""
    if not isinstance(data, str) or not data.strip() or len(data) > _MAX:
        return UploadFormat.UNREADABLE
    text = data.strip()
    if _BEGIN in text:
        return _pem(text)
    raw = _b64(text)
    if raw is None:
        return UploadFormat.UNREADABLE
    if raw.lstrip().startswith(_BEGIN.encode()):
        return _pem(raw.decode("ascii", errors="replace"))
    return _der(raw)


def describe_format(fmt: UploadFormat) -> str:
    return {
        UploadFormat.CER: "one certificate",
        UploadFormat.MULTIPLE_CERTIFICATES: "several certificates (a PEM bundle of the chain)",
        UploadFormat.PRIVATE_KEY: "a private key",
        UploadFormat.PKCS7: "a PKCS#7 (.p7b) chain",
        UploadFormat.UNREADABLE: "no readable certificate (a PFX, or damaged data)",
    }[fmt]


def _pem(text: str) -> UploadFormat:
    if "PRIVATE KEY-----" in text:
        return UploadFormat.PRIVATE_KEY
    if "BEGIN PKCS7-----" in text:
        return UploadFormat.PKCS7
    count = text.count("CERTIFICATE-----") // 2
    if count > 1:
        return UploadFormat.MULTIPLE_CERTIFICATES
    if count == 1:
        body = text.split("CERTIFICATE-----", 2)[1].rsplit("-----END", 1)[0]
        raw = _b64(body)
        return _der(raw) if raw is not None else UploadFormat.UNREADABLE
    return UploadFormat.UNREADABLE


def _der(raw: bytes) -> UploadFormat:
    try:
        x509.load_der_x509_certificate(raw)
        return UploadFormat.CER
    except (ValueError, TypeError):
        pass
    try:
        pkcs7.load_der_pkcs7_certificates(raw)
        return UploadFormat.PKCS7
    except (ValueError, TypeError):
        return UploadFormat.UNREADABLE
    except Exception:  # noqa: BLE001 - unsupported PKCS#7 content still means "not one cert"
        return UploadFormat.UNREADABLE


def _b64(text: str) -> bytes | None:
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
