"""A finding's JSON evidence, its alternatives to the proposed fix and its warnings.

Pure: reads the facts and the verdict (`shared.core.verdict`), decides nothing.
"""

from __future__ import annotations

from typing import Any

from shared.core.capture import TlsCapture
from shared.core.certs import evidence
from shared.core.chain import chain_json
from shared.core.facts import Facts, Ref, Verdict, refs
from shared.core.findings import Cause

# docs/sources.md#sku-and-retirement
V1_RETIREMENT_WARNING = (
    "Application Gateway v1 (Standard/WAF) was retired on 2026-04-28: Microsoft stops and deletes "
    "remaining v1 gateways; migrate to v2 (Standard_v2/WAF_v2)."
)
# Only when `data` is absent: a Key Vault reference, or an API version / tool that omits it (real
# GETs return it, tests/data/recorded/cli_ag_auth_cert_v1.json and cli_ag_root_cert_v2.json).
INFERRED_WARNING = (
    "The authentication certificate data is absent from the gateway document (a Key Vault "
    "reference or an older API version): verdict inferred from the probe log, not compared"
)
ROOT_INFERRED_WARNING = (
    "The trusted root certificate data is absent from the gateway document (a Key Vault "
    "reference or an older API version): verdict inferred from the probe log and the presented "
    "chains, not compared with the referenced roots"
)
# Seed article alternatives (docs/sources.md#ilb-ase), in the article's order of preference.
ALT_FQDN = (
    "Put the backend's FQDN (resolved by private DNS to the same address) in the backend pool "
    "instead of the IP, so the gateway sends SNI and the backend presents the app certificate."
)
ALT_WILDCARD = (
    "Use a wildcard certificate on the ILB (default certificate) and on the apps, so the same "
    "certificate is presented with or without SNI."
)
ALT_USE_FOR_APP_SERVICE = (
    'Clear "Use for App service" (pickHostNameFromBackendAddress) on these HTTP settings: the '
    "pool holds the ILB IP, so the host name picked from it is the IP."
)


def _capture_json(cap: TlsCapture | None) -> dict[str, Any] | None:
    if cap is None:
        return None
    return {
        "address": cap.address,
        "port": cap.port,
        "sni": cap.sni,
        "error": cap.error.value if cap.error else None,
        "detail": cap.detail,
        "chain": [evidence(c) for c in cap.chain],
        # What the handshake negotiated; on protocol_mismatch / cipher_mismatch, what the backend
        # accepted when the gateway's offer was refused.
        "protocol": cap.protocol,
        "cipher": cap.cipher,
        # Where the handshake was made from (docs/diagnosis.md#where-the-evidence-comes-from).
        "vantage": cap.vantage.kind.value if cap.vantage else None,
    }


def _ref_json(r: Ref) -> dict[str, Any]:
    out: dict[str, Any] = {"name": r.ref.name, "id": r.ref.id, "data_known": r.info is not None}
    if r.info is not None:
        out |= {
            "sha1": r.info.sha1,
            "sha256": r.info.sha256,
            "subject": r.info.subject,
            "public_key_sha256": r.info.public_key_sha256,
        }
    if r.ref.key_vault_secret_id:
        out["key_vault_secret_id"] = r.ref.key_vault_secret_id
    return out


def finding_alternatives(f: Facts, cause: Cause) -> tuple[str, ...]:
    if cause not in {
        Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI,
        Cause.CERTIFICATE_NOT_ALLOWLISTED,
        Cause.TRUSTED_ROOT_MISMATCH,
    }:
        return ()
    ip_member = f.unit.member is not None and f.unit.member.fqdn is None
    no_sni = f.target is not None and f.target.sni is None
    alts: list[str] = []
    if ip_member and no_sni:
        alts.append(ALT_FQDN)
    if cause is Cause.DEFAULT_CERTIFICATE_WITHOUT_SNI:
        alts.append(ALT_WILDCARD)
    settings = f.unit.settings
    if ip_member and settings is not None and settings.pick_host_name_from_backend_address:
        alts.append(ALT_USE_FOR_APP_SERVICE)
    return tuple(alts)


def finding_warnings(f: Facts, verdict: Verdict) -> tuple[str, ...]:
    warnings: list[str] = []
    if f.v1:
        warnings.append(V1_RETIREMENT_WARNING)
    if verdict.inferred:
        warnings.append(INFERRED_WARNING if f.v1 else ROOT_INFERRED_WARNING)
    return tuple(warnings)


def _allow_listed(f: Facts) -> dict[str, Any]:
    settings = f.unit.settings
    if settings is None:
        return {"authentication_certificates": [], "trusted_root_certificates": []}
    return {
        "authentication_certificates": [
            _ref_json(r) for r in refs(f.gw, settings, settings.authentication_certificate_ids)
        ],
        "trusted_root_certificates": [
            _ref_json(r) for r in refs(f.gw, settings, settings.trusted_root_certificate_ids)
        ],
    }


def finding_evidence(f: Facts, verdict: Verdict) -> dict[str, Any]:
    target = None
    if f.target is not None:
        target = {
            "address": f.target.address,
            "port": f.target.port,
            "sni": f.target.sni,
            "host_header": f.target.host_header,
            "validate_sni": f.target.validate_sni,
            "validate_chain": f.target.validate_chain,
            "reason": f.target.reason,
        }
    return {
        "target": target,
        "alternate_sni": f.alt_sni,
        "captures": {"gateway": _capture_json(f.gw_cap), "alternative": _capture_json(f.alt_cap)},
        "allow_listed": _allow_listed(f),
        "probe_log_kind": f.kind.value,
        # v2: the path the gateway builds from each presented chain (shared.core.chain): the
        # gateway's own handshake, and the one under the alternative SNI.
        "gateway_chain": chain_json(f.gateway_chain(), f.now) if f.chain and not f.v1 else None,
        "alternative_chain": (
            chain_json(f.gateway_chain(f.alt_cap.chain), f.now)
            if f.alt_cap is not None and f.alt_cap.chain and not f.v1
            else None
        ),
        "trust": verdict.trust,
        "explanation": verdict.explanation,
    }
