"""TLS causes: the backend refuses the protocol or every cipher the gateway offers backends.

Pure. The probe (shared.probe.tls) makes the gateway's handshake and, when it is refused, a
permissive one that says why (docs/sources.md#backend-tls-policy). No certificate fixes these.
"""

from __future__ import annotations

from shared.core.capture import ProbeErrorKind
from shared.core.facts import VAGUE_LOGS, Facts, Verdict
from shared.core.findings import Cause
from shared.core.health import ProbeLogKind

# What the probe log may say when the handshake is refused: a connection failure ("could not
# connect", "cannot connect to backend server"), a vague or OpenSSL text, or a certificate text: a
# cipher outside the policy has been reported to users as "certificate expired"
# (MicrosoftDocs/azure-docs#41492).
_TLS_LOGS = VAGUE_LOGS | {ProbeLogKind.CONNECTION_FAILED, ProbeLogKind.EXPIRED}

_LEARN = "https://learn.microsoft.com/azure/application-gateway/application-gateway-tls-version-retirement"


def tls_verdict(f: Facts) -> Verdict | None:
    cap = f.gw_cap
    if cap is None or f.kind not in _TLS_LOGS:
        return None
    accepted = f"{cap.protocol or 'an unknown protocol'} with {cap.cipher or 'an unknown cipher'}"
    no_cert = (
        " The gateway's TLS policy governs only client connections, not backend ones, and no "
        "certificate change helps (docs/sources.md#backend-tls-policy)."
    )
    if cap.error is ProbeErrorKind.PROTOCOL_MISMATCH:
        return Verdict(
            Cause.TLS_PROTOCOL_MISMATCH,
            explanation=f"The backend refuses TLS 1.2 and later: it accepts only {accepted}. "
            "Since 2025-08-31 the gateway connects to backends with TLS 1.2 or later (TLS 1.3 "
            f"preferred, {_LEARN}): enable TLS 1.2 or 1.3 on the backend." + no_cert,
            trust="compared",
        )
    if cap.error is ProbeErrorKind.CIPHER_MISMATCH:
        return Verdict(
            Cause.TLS_CIPHER_MISMATCH,
            explanation=f"The backend shares no cipher suite with what the gateway offers "
            f"backends: it accepts only {accepted}. Enable on the backend one of the gateway's "
            "suites for its certificate type: ECDHE with AES-GCM (or AES-CBC) for RSA and ECDSA "
            "certificates, TLS 1.3 AES-GCM." + no_cert,
            trust="compared",
        )
    return None
