"""Overlap rotation, pure: trust a backend's next certificate next to the current one, and later
retire the old trust once no backend presents it.

v1 authentication certificates and v2 trusted roots map one to one to what a backend presents, so
swapping the backend certificate first is an outage until the gateway follows
(docs/sources.md#rotation). The overlap avoids it:

1. `rotations`: when a backend's next certificate is known (presented by another member of the
   same settings, found in the trusted source, or given by the operator), the trust it needs (v1:
   the next leaf as an authentication certificate; v2: the root it chains to, never an
   intermediate or a leaf) is added to the same HTTP settings' list, next to the old one, in one
   gateway write (an ordinary certificate plan, so the safe writer, change records, proposals and
   rollback apply unchanged). The plan remembers which reference it overlaps (`Plan.replaces`).
2. `retirements`: on a later run, for each such recorded rotation, when every member of those
   settings presented a chain the new trust accepts and none presents one only the old trust
   accepts, the removal of the old reference (and of the stored certificate when nothing else
   references it) is planned. It is only ever proposed: a person approves the end of the overlap.

There is never a moment in which neither certificate is trusted: the new trust is added before a
backend switches, and the old one leaves only after no backend presents it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.common.errors import InputError
from shared.core.backend_units import RouteHosts, targets, units
from shared.core.capture import TlsCapture
from shared.core.certs import (
    CertInfo,
    cert_info,
    der_from_arm_data,
    is_root,
    matches_host,
    same_public_key,
    signed_by,
)
from shared.core.diagnosis import Fix, FixAction
from shared.core.facts import fix_certificate
from shared.core.gateway import CertificateRef, Gateway, Generation, HttpSettings
from shared.core.health import ServerHealth
from shared.remediation.plan import Plan, plan_for_fix

Captures = Mapping[tuple[str, int, str | None], TlsCapture]
_MAX_CHAIN = 8


class Source:
    POOL = "pool"  # presented by another member of the same settings
    KEY_VAULT = "key_vault"  # a trusted-source certificate
    OPERATOR = "operator"  # fix --next-cert FILE


@dataclass(frozen=True)
class Candidate:
    """A certificate that may be a backend's next one, and what came with it (its chain, or the
    other certificates in the same file or vault)."""

    info: CertInfo
    source: str
    companions: tuple[CertInfo, ...] = ()


@dataclass(frozen=True)
class Rotation:
    """One settings' next certificate and what to trust for it (`fix`, None when nothing)."""

    settings: str
    current: CertInfo  # the leaf presented now
    next: Candidate
    replaces: str | None  # the reference that trusts the current leaf
    fix: Fix | None
    note: str

    @property
    def vouched(self) -> str | None:
        """SHA-1 of the certificate to add, when it came from a source the bot trusts to name
        it: the pool, the trusted source, or the operator's own file."""
        return self.fix.certificate.sha1.upper() if self.fix and self.fix.certificate else None


def _infos(ders: Iterable[bytes]) -> list[CertInfo]:
    out = []
    for der in ders:
        try:
            out.append(cert_info(bytes(der)))
        except InputError:
            continue
    return out


def _stored(ref: CertificateRef) -> CertInfo | None:
    if not ref.data:
        return None
    try:
        return cert_info(der_from_arm_data(ref.data))
    except InputError:
        return None


def root_of(leaf: CertInfo, pool: Sequence[CertInfo]) -> CertInfo | None:
    """The self-signed CA root `leaf` chains to through `pool` (signatures checked), or None."""
    current = leaf
    for _ in range(_MAX_CHAIN):
        if is_root(current):
            return current if current is not leaf else None
        parent = next(
            (p for p in pool if p.sha1 != current.sha1 and signed_by(current, p)),
            None,
        )
        if parent is None:
            return None
        current = parent
    return None


def trusts(ref_cert: CertInfo, chain: Sequence[CertInfo], generation: Generation) -> bool:
    """The stored certificate accepts the presented chain: v1 pins the leaf's public key; v2
    needs the root the chain ends at (sent, or the one that signed the top of the chain)."""
    if not chain:
        return False
    if generation is Generation.V1:
        return same_public_key(ref_cert, chain[0])
    if any(c.sha1 == ref_cert.sha1 for c in chain):
        return True
    return signed_by(chain[-1], ref_cert)


def _is_next(candidate: CertInfo, current: CertInfo, host: str | None, now: datetime) -> bool:
    if candidate.sha1 == current.sha1 or candidate.is_ca:
        return False
    if candidate.not_after <= max(current.not_after, now):
        return False  # not newer than what is presented now, or already over
    if host and matches_host(candidate, host):
        return True
    shared = {s.lower() for s in candidate.sans} & {s.lower() for s in current.sans}
    return bool(shared) or (
        candidate.common_name is not None and candidate.common_name == current.common_name
    )


@dataclass(frozen=True)
class _Presented:
    settings: HttpSettings
    captures: tuple[TlsCapture, ...]  # the gateway's own handshake, one per member
    complete: bool  # every member of the settings was captured with a chain


def _presented(
    gw: Gateway, health: Sequence[ServerHealth], captures: Captures, hosts: RouteHosts | None
) -> list[_Presented]:
    by_settings: dict[str, tuple[HttpSettings, list[TlsCapture], list[bool]]] = {}
    for unit in units(gw, health):
        if unit.settings is None:
            continue
        entry = by_settings.setdefault(unit.settings.id.lower(), (unit.settings, [], []))
        found = targets(gw, unit, hosts)
        cap = captures.get((found[0].address, found[0].port, found[0].sni)) if found else None
        if cap is not None and cap.chain:
            entry[1].append(cap)
            entry[2].append(True)
        else:
            entry[2].append(False)
    return [_Presented(s, tuple(caps), all(ok)) for s, caps, ok in by_settings.values()]


def _references(gw: Gateway, settings: HttpSettings) -> list[tuple[CertificateRef, CertInfo]]:
    out = []
    for ref in gw.certificates_for(settings):
        info = _stored(ref)
        if info is not None:
            out.append((ref, info))
    return out


def rotations(
    gw: Gateway,
    health: Sequence[ServerHealth],
    captures: Captures,
    *,
    now: datetime,
    hosts: RouteHosts | None = None,
    trusted_source: Sequence[bytes] = (),
    operator: Sequence[bytes] = (),
) -> list[Rotation]:
    """Per HTTP settings, the next certificate of its backends when one is known, and the fix
    that trusts it next to the current one (None when already trusted or its root is unknown)."""
    vault = _infos(trusted_source)
    given = _infos(operator)
    out: list[Rotation] = []
    for seen in _presented(gw, health, captures, hosts):
        if not seen.captures:
            continue
        current = min(seen.captures, key=lambda c: c.chain[0].not_after)  # the one ending first
        leaf = current.chain[0]
        host = current.sni or seen.settings.host_name
        candidates = [
            Candidate(c.chain[0], Source.POOL, c.chain[1:])
            for c in seen.captures
            if c.chain[0].sha1 != leaf.sha1
        ]
        candidates += [Candidate(v, Source.KEY_VAULT, tuple(vault)) for v in vault]
        candidates += [Candidate(g, Source.OPERATOR, tuple(given + vault)) for g in given]
        nxt = next((c for c in candidates if _is_next(c.info, leaf, host, now)), None)
        if nxt is None:
            continue
        out.append(_rotation(gw, seen.settings, current, nxt))
    return out


def _rotation(gw: Gateway, settings: HttpSettings, current: TlsCapture, nxt: Candidate) -> Rotation:
    refs = _references(gw, settings)
    leaf = current.chain[0]
    old = next((ref.name for ref, info in refs if trusts(info, current.chain, gw.generation)), None)
    if old is None:
        # No stored certificate accepts what is presented now (v2 without trusted roots uses the
        # well-known CAs; v1 without authentication certificates pins nothing): adding one would
        # end that trust for the current certificate instead of overlapping it.
        note = "no stored certificate trusts the current one: nothing to overlap"
        return Rotation(settings.name, leaf, nxt, None, None, note)
    if gw.generation is Generation.V1:
        if any(same_public_key(info, nxt.info) for _, info in refs):
            return Rotation(
                settings.name,
                leaf,
                nxt,
                old,
                None,
                "the next certificate's key is already allow-listed",
            )
        fix = Fix(
            FixAction.ADD_AUTHENTICATION_CERTIFICATE, fix_certificate(nxt.info), (settings.name,)
        )
        return Rotation(settings.name, leaf, nxt, old, fix, "allow-list the next certificate")
    chain = (nxt.info, *nxt.companions)
    if any(trusts(info, chain, gw.generation) for _, info in refs):
        return Rotation(settings.name, leaf, nxt, old, None, "its root is already trusted")
    root = root_of(nxt.info, nxt.companions)
    if root is None:
        note = (
            f"the root of the next certificate ({nxt.info.issuer}) is not known: add it to the "
            "trusted source or give it with --next-cert"
        )
        return Rotation(settings.name, leaf, nxt, old, None, note)
    fix = Fix(FixAction.ADD_TRUSTED_ROOT_CERTIFICATE, fix_certificate(root), (settings.name,))
    return Rotation(settings.name, leaf, nxt, old, fix, "trust the next certificate's root")


def rotation_plans(
    doc: Mapping[str, Any], found: Sequence[Rotation], gateway_id: str
) -> list[Plan]:
    """One certificate plan per certificate to add and reference it overlaps, every settings that
    needs it in the same write; each plan remembers what it overlaps."""
    groups: dict[tuple[str, str], list[Rotation]] = {}
    for rot in found:
        if rot.fix is not None and rot.vouched and rot.replaces:
            groups.setdefault((rot.vouched, rot.replaces.lower()), []).append(rot)
    plans = []
    for rots in groups.values():
        first = rots[0].fix
        assert first is not None
        names = tuple(dict.fromkeys(r.settings for r in rots))
        fix = Fix(first.action, first.certificate, names)
        plan = plan_for_fix(doc, fix, gateway_id=gateway_id)
        plans.append(replace(plan, replaces=rots[0].replaces))
    return plans


# ---- retiring the old trust ------------------------------------------------------------------


@dataclass(frozen=True)
class Retirement:
    settings: str
    old: str  # the reference to remove
    new: str  # the reference that now trusts every member
    fix: Fix


def retirements(
    gw: Gateway,
    health: Sequence[ServerHealth],
    captures: Captures,
    overlaps: Iterable[tuple[str, str, str]],
    *,
    hosts: RouteHosts | None = None,
) -> list[Retirement]:
    """For each recorded overlap (settings, old reference, new reference) still on the gateway:
    retire the old one when every member was captured, each presents a chain the new trust
    accepts, and none presents one that only the old trust accepts."""
    seen_by_settings = {p.settings.name.lower(): p for p in _presented(gw, health, captures, hosts)}
    out: list[Retirement] = []
    for settings_name, old_name, new_name in overlaps:
        seen = seen_by_settings.get(settings_name.lower())
        if seen is None or not seen.complete or not seen.captures:
            continue  # a member not captured may still present the old certificate
        refs = {ref.name.lower(): (ref, info) for ref, info in _references(gw, seen.settings)}
        old, new = refs.get(old_name.lower()), refs.get(new_name.lower())
        if old is None or new is None or old_name.lower() == new_name.lower():
            continue
        if any(trusts(old[1], c.chain, gw.generation) for c in seen.captures):
            continue  # still presented
        if not all(trusts(new[1], c.chain, gw.generation) for c in seen.captures):
            continue
        action = (
            FixAction.REMOVE_AUTHENTICATION_CERTIFICATE
            if gw.generation is Generation.V1
            else FixAction.REMOVE_TRUSTED_ROOT_CERTIFICATE
        )
        fix = Fix(action, fix_certificate(old[1]), (seen.settings.name,))
        out.append(Retirement(seen.settings.name, old[0].name, new[0].name, fix))
    return out


def overlaps_from(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(settings, old, new) of each applied rotation in serialised change records' plans."""
    out = []
    for plan in records:
        old, new = plan.get("replaces"), plan.get("certificate_ref_name")
        if not old or not new:
            continue
        for change in plan.get("settings_changes") or []:
            if change.get("add_reference"):
                out.append((str(change.get("settings_name")), str(old), str(new)))
    return list(dict.fromkeys(out))


__all__ = [
    "Candidate",
    "Retirement",
    "Rotation",
    "Source",
    "fix_certificate",
    "overlaps_from",
    "retirements",
    "root_of",
    "rotation_plans",
    "rotations",
    "trusts",
]
