"""The diagnosis: a pure function over the gateway, its backend health and TLS evidence.

No I/O and no clock reads here: the captures and `now` are passed in. Precision beats coverage: a
cause is named only when the probe log and the evidence agree; otherwise the finding says `unknown`
and proposes nothing (issue 3). Rules cite docs/sources.md
(e.g. docs/sources.md#sni-rules).

This module is the entry point and the public import path; the work is split by what it does:

- `shared.core.findings`: the public result types (Cause, FixAction, Fix, Finding, Diagnosis, ...),
  re-exported here;
- `shared.core.backend_units`: one unit of work per (pool, settings, server) and its TLS targets;
- `shared.core.verdict`: one finding's cause and fix, from the probe log and the evidence;
- `shared.core.evidence`: a finding's JSON evidence, alternatives and warnings (the warning and
  alternative texts are re-exported here);
- here: `route_hosts`, `probe_requests`, `diagnose` and the assembly of findings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from shared.common.errors import InputError
from shared.core.backend_units import RouteHosts, Unit, targets, units
from shared.core.capture import TlsCapture
from shared.core.certs import CertInfo, cert_info
from shared.core.evidence import (
    ALT_FQDN,
    ALT_USE_FOR_APP_SERVICE,
    ALT_WILDCARD,
    INFERRED_WARNING,
    ROOT_INFERRED_WARNING,
    V1_RETIREMENT_WARNING,
    finding_alternatives,
    finding_evidence,
    finding_warnings,
)
from shared.core.findings import (
    Cause,
    Diagnosis,
    Finding,
    Fix,
    FixAction,
    FixCertificate,
    GatewaySummary,
    RequiredRoot,
)
from shared.core.gateway import Gateway
from shared.core.health import ServerHealth, classify_probe_log
from shared.core.verdict import Facts, decide

__all__ = [
    "ALT_FQDN",
    "ALT_USE_FOR_APP_SERVICE",
    "ALT_WILDCARD",
    "INFERRED_WARNING",
    "ROOT_INFERRED_WARNING",
    "V1_RETIREMENT_WARNING",
    "Cause",
    "Diagnosis",
    "Finding",
    "Fix",
    "FixAction",
    "FixCertificate",
    "GatewaySummary",
    "ProbeRequest",
    "RequiredRoot",
    "RouteHosts",
    "diagnose",
    "probe_requests",
    "route_hosts",
]

ProbeRequest = tuple[str, int, str | None]


def _view(obj: object) -> Mapping[str, Any]:
    """A child resource's fields: ARM nests them under `properties`, the CLI form flattens them."""
    if not isinstance(obj, Mapping):
        return {}
    props = obj.get("properties")
    return {**obj, **props} if isinstance(props, Mapping) else obj


def _ref(obj: object) -> str | None:
    rid = obj.get("id") if isinstance(obj, Mapping) else None
    return rid.lower().rstrip("/") if isinstance(rid, str) else None


def _items(view: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = view.get(key)
    return [_view(v) for v in value] if isinstance(value, list) else []


def route_hosts(doc: Mapping[str, Any]) -> dict[tuple[str, str], tuple[str, ...]]:
    """Listener host names per routed (pool id, settings id), ids lower-case.

    On v2 "the application gateway uses the incoming request's host header as the SNI" for real
    traffic (docs/sources.md#sni-rules), so a listener's host name is the natural name to try when
    the probe sends no SNI (the ilb-ase-v2-nosni case). Never raises: odd documents give fewer
    names.
    """
    view = _view(doc)
    listeners = {_ref(v): v for v in _items(view, "httpListeners")}
    path_maps = {_ref(v): v for v in _items(view, "urlPathMaps")}
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for rule in _items(view, "requestRoutingRules"):
        listener = listeners.get(_ref(rule.get("httpListener"))) or {}
        extra = listener.get("hostNames")
        names = [listener.get("hostName"), *(extra if isinstance(extra, list) else [])]
        hosts = [n.strip().rstrip(".") for n in names if isinstance(n, str) and n.strip()]
        pairs = [(rule.get("backendAddressPool"), rule.get("backendHttpSettings"))]
        path_map = path_maps.get(_ref(rule.get("urlPathMap")))
        if path_map is not None:
            pairs.append(
                (
                    path_map.get("defaultBackendAddressPool"),
                    path_map.get("defaultBackendHttpSettings"),
                )
            )
            pairs += [
                (pr.get("backendAddressPool"), pr.get("backendHttpSettings"))
                for pr in _items(path_map, "pathRules")
            ]
        for pool_ref, settings_ref in pairs:
            key = (_ref(pool_ref), _ref(settings_ref))
            if key[0] and key[1]:
                out[(key[0], key[1])] += [h for h in hosts if h not in out[(key[0], key[1])]]
    return {k: tuple(v) for k, v in out.items()}


def probe_requests(
    gw: Gateway, health: Sequence[ServerHealth], *, hosts: RouteHosts | None = None
) -> list[ProbeRequest]:
    """Every handshake worth capturing: the gateway's own way and the alternative, deduplicated.

    `hosts` (from `route_hosts(doc)`) adds listener host names as alternative SNI names.
    """
    requests: dict[ProbeRequest, None] = {}
    for unit in units(gw, health):
        found = targets(gw, unit, hosts)
        if found is None:
            continue
        target, alt = found
        requests[(target.address, target.port, target.sni)] = None
        if alt != target.sni:
            requests[(target.address, target.port, alt)] = None
    return list(requests)


# ---------------------------------------------------------------------------------------------
# Assembly: the facts of each unit, one finding each, fixes grouped across settings.


def _facts(
    gw: Gateway,
    unit: Unit,
    captures: Mapping[ProbeRequest, TlsCapture] | None,
    now: datetime,
    hosts: RouteHosts | None,
    sources: tuple[CertInfo, ...] = (),
    well_known: tuple[CertInfo, ...] = (),
) -> Facts:
    found = targets(gw, unit, hosts)
    target, alt = found if found else (None, None)
    gw_cap = alt_cap = None
    if target is not None and captures is not None:
        gw_cap = captures.get((target.address, target.port, target.sni))
        if alt != target.sni:
            alt_cap = captures.get((target.address, target.port, alt))
    kind = classify_probe_log(unit.probe_log)
    return Facts(gw, unit, kind, target, alt, gw_cap, alt_cap, now, sources, well_known)


def _trusted_sources(ders: Sequence[bytes]) -> tuple[CertInfo, ...]:
    out = []
    for der in ders:
        try:
            out.append(cert_info(der))
        except InputError:
            continue  # not a certificate: it can match nothing
    return tuple(out)


def _finding(f: Facts) -> Finding:
    verdict = decide(f)
    return Finding(
        pool=f.unit.pool_name,
        settings=f.unit.settings_name,
        server=f.unit.server,
        health=f.unit.health.value,
        probe_log=f.unit.probe_log,
        cause=verdict.cause,
        evidence=finding_evidence(f, verdict),
        fix=verdict.fix,
        alternatives=finding_alternatives(f, verdict.cause),
        warnings=finding_warnings(f, verdict),
        inferred_from_probe_log=verdict.inferred,
    )


def _fix_key(fix: Fix) -> tuple[str, str | None, str | None] | None:
    if fix.action is FixAction.NONE:
        return None
    return (fix.action.value, fix.certificate.sha256 if fix.certificate else None, fix.host_name)


def _with_fix_settings(findings: list[Finding]) -> list[Finding]:
    """fix.settings: every HTTP settings whose findings carry the same fix, sorted."""
    groups: dict[tuple[str, str | None, str | None], set[str]] = defaultdict(set)
    for finding in findings:
        key = _fix_key(finding.fix)
        if key is not None:
            groups[key].add(finding.settings)
    out = []
    for finding in findings:
        key = _fix_key(finding.fix)
        names = tuple(sorted(groups[key])) if key is not None else ()
        out.append(replace(finding, fix=replace(finding.fix, settings=names)))
    return out


def _order(findings: list[Finding], hint: tuple[str, str] | None) -> list[Finding]:
    if hint is None:
        return findings
    pool, settings = (h.lower() for h in hint)

    def rank(finding: Finding) -> int:
        return 0 if (finding.pool.lower(), finding.settings.lower()) == (pool, settings) else 1

    return sorted(findings, key=rank)  # stable: document order within each group


def diagnose(
    gw: Gateway,
    health: Sequence[ServerHealth],
    captures: Mapping[ProbeRequest, TlsCapture] | None,
    *,
    now: datetime,
    hint: tuple[str, str] | None = None,
    hosts: RouteHosts | None = None,
    trusted_sources: Sequence[bytes] = (),
    well_known: Sequence[CertInfo] = (),
) -> Diagnosis:
    """One finding per (pool, settings, server) of the whole gateway; `hint` only orders them.

    Pass the same `hosts` as to `probe_requests` so the alternative captures are found.
    `trusted_sources`: DER of the trusted-source certificates (Key Vault, TRUSTED_CERT_NAMES), read
    by the caller; where a v2 backend does not send its root, the root is looked up there.
    `well_known`: the well-known CA store (`shared.probe.well_known.load_well_known`, read once by
    the caller); v2 settings without trusted roots are judged against it. Empty: not judged.
    """
    sources = _trusted_sources(trusted_sources)
    store = tuple(well_known)
    findings = [
        _finding(_facts(gw, unit, captures, now, hosts, sources, store))
        for unit in units(gw, health)
    ]
    summary = GatewaySummary(gw.id, gw.name, gw.sku_tier, gw.generation.value)
    vantage = next((c.vantage for c in (captures or {}).values() if c.vantage), None)
    return Diagnosis(summary, tuple(_order(_with_fix_settings(findings), hint)), vantage)
