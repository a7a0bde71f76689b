"""appgw-cert-bot: diagnose and fix Application Gateway backend certificate trust.

The public API is re-exported here and loaded lazily, so importing one light module (the alert
endpoint's path) does not pull in the Azure SDKs or cryptography.

    from shared import parse_gateway, parse_backend_health, diagnose, to_text
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # models and parsing (pure)
    "parse_gateway": "shared.gateway",
    "Gateway": "shared.gateway",
    "Generation": "shared.gateway",
    "parse_backend_health": "shared.health",
    "classify_probe_log": "shared.health",
    "HealthState": "shared.health",
    "ProbeLogKind": "shared.health",
    "gateway_target": "shared.tls_target",
    "cert_info": "shared.certs",
    "to_pem": "shared.certs",
    "to_arm_data": "shared.certs",
    # evidence and diagnosis
    "capture": "shared.tls_probe",
    "capture_all": "shared.tls_probe",
    "probe_requests": "shared.diagnosis",
    "diagnose": "shared.diagnosis",
    "Cause": "shared.diagnosis",
    "FixAction": "shared.diagnosis",
    "Diagnosis": "shared.diagnosis",
    "to_json": "shared.report",
    "to_text": "shared.report",
    # remediation
    "plan_fixes": "shared.plan",
    "apply_plan": "shared.plan",
    "revert_plan": "shared.plan",
    "effective_mode": "shared.policy",
    "Remediator": "shared.remediate",
    "ArmClient": "shared.arm",
    # settings and errors
    "load_settings": "shared.settings",
    "Mode": "shared.settings",
    "BotError": "shared.errors",
    "InputError": "shared.errors",
    "OutOfScopeError": "shared.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shared' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
