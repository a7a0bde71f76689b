"""appgw-cert-bot: diagnose and fix Application Gateway backend certificate trust.

The public API is re-exported here and loaded lazily, so importing one light module (the alert
endpoint's path) does not pull in the Azure SDKs or cryptography.

    from shared import parse_gateway, parse_backend_health, diagnose, to_text
"""

from __future__ import annotations

import importlib
from typing import Any

# The one version number: pyproject.toml reads it, `appgw-cert-bot --version` prints it.
__version__ = "0.1.0"

_EXPORTS = {
    # models and parsing (pure)
    "parse_gateway": "shared.core.gateway",
    "Gateway": "shared.core.gateway",
    "Generation": "shared.core.gateway",
    "parse_backend_health": "shared.core.health",
    "classify_probe_log": "shared.core.health",
    "HealthState": "shared.core.health",
    "ProbeLogKind": "shared.core.health",
    "gateway_target": "shared.core.tls_target",
    "cert_info": "shared.core.certs",
    "to_pem": "shared.core.certs",
    "to_arm_data": "shared.core.certs",
    # evidence and diagnosis
    "capture": "shared.probe.tls",
    "capture_all": "shared.probe.tls",
    "probe_requests": "shared.core.diagnosis",
    "diagnose": "shared.core.diagnosis",
    "Cause": "shared.core.diagnosis",
    "FixAction": "shared.core.diagnosis",
    "Diagnosis": "shared.core.diagnosis",
    "to_json": "shared.core.report",
    "to_text": "shared.core.report",
    # remediation
    "plan_fixes": "shared.remediation.plan",
    "apply_plan": "shared.remediation.plan",
    "revert_plan": "shared.remediation.plan",
    "effective_mode": "shared.remediation.policy",
    "Remediator": "shared.remediation.remediate",
    "ArmClient": "shared.cloud.arm",
    # settings and errors
    "load_settings": "shared.common.settings",
    "Mode": "shared.common.settings",
    "BotError": "shared.common.errors",
    "InputError": "shared.common.errors",
    "OutOfScopeError": "shared.common.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shared' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
