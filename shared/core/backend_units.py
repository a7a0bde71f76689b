"""Units of work, one per (pool, settings, server), and the handshakes worth capturing for each.

Pure: reads the parsed gateway and backend health only. Only a pool's own members over HTTPS get a
TLS target (the security rule: never probe an address that is not in the gateway's pools).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.common.ids import last_segment
from shared.core.capture import is_ip_literal
from shared.core.gateway import BackendAddress, Gateway, HttpSettings, Pool
from shared.core.health import HealthState, ServerHealth
from shared.core.tls_target import TlsTarget, alternate_sni, gateway_target


@dataclass(frozen=True)
class Unit:
    pool: Pool | None
    settings: HttpSettings | None
    pool_name: str
    settings_name: str
    server: str
    health: HealthState
    probe_log: str | None
    member: BackendAddress | None  # set only when the server is one of the pool's own members


def _members(pool: Pool) -> dict[str, BackendAddress]:
    """A pool's members by address (trimmed, lower-case); the first of duplicates wins."""
    out: dict[str, BackendAddress] = {}
    for member in pool.addresses:
        out.setdefault(member.value.strip().lower(), member)
    return out


def units(gw: Gateway, health: Sequence[ServerHealth]) -> list[Unit]:
    units: list[Unit] = []
    seen: set[tuple[str, str, str]] = set()
    # One index per pool: a pool of 1,200 members is not scanned once per server.
    indexes: dict[str, dict[str, BackendAddress]] = {}
    for sh in health:
        pool, settings = gw.pool_by_id(sh.pool_id), gw.settings_by_id(sh.settings_id)
        index = indexes.setdefault(pool.id, _members(pool)) if pool is not None else {}
        key = (sh.pool_id.lower(), sh.settings_id.lower(), sh.address.lower())
        if key in seen:
            continue
        seen.add(key)
        units.append(
            Unit(
                pool,
                settings,
                pool.name if pool else last_segment(sh.pool_id),
                settings.name if settings else last_segment(sh.settings_id),
                sh.address,
                sh.health,
                sh.probe_log,
                index.get(sh.address.strip().lower()),
            )
        )
    # Routed members the health result did not mention still get a finding (health unknown).
    for pool_id, settings_id in gw.routes:
        pool, settings = gw.pool_by_id(pool_id), gw.settings_by_id(settings_id)
        if pool is None or settings is None:
            continue
        for member in pool.addresses:
            key = (pool.id.lower(), settings.id.lower(), member.value.lower())
            if not member.value or key in seen:
                continue
            seen.add(key)
            units.append(
                Unit(
                    pool,
                    settings,
                    pool.name,
                    settings.name,
                    member.value,
                    HealthState.UNKNOWN,
                    None,
                    member,
                )
            )
    return units


def is_https(settings: HttpSettings | None) -> bool:
    return settings is not None and (settings.protocol or "").lower() == "https"


RouteHosts = Mapping[tuple[str, str], tuple[str, ...]]


def _usable_name(name: str) -> bool:
    return bool(name) and "*" not in name and not is_ip_literal(name)


def targets(
    gw: Gateway, unit: Unit, hosts: RouteHosts | None = None
) -> tuple[TlsTarget, str | None] | None:
    """The gateway's own handshake and the alternative SNI, for pool members over HTTPS only."""
    if unit.member is None or unit.pool is None or unit.settings is None:
        return None  # security rule: never probe an address that is not in the gateway's pools
    if not is_https(unit.settings):
        return None
    target = gateway_target(gw, unit.settings, unit.member)
    alt = alternate_sni(gw, unit.settings, unit.member)
    if alt is None and target.sni is None and hosts:
        key = (unit.pool.id.lower().rstrip("/"), unit.settings.id.lower().rstrip("/"))
        alt = next((h for h in hosts.get(key, ()) if _usable_name(h)), None)
    return target, alt
