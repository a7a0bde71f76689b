"""The chain as the gateway builds it: from the presented leaf to an allow-listed or well-known
root.

Pure. The gateway (OpenSSL) does not fetch missing intermediates (docs/sources.md#backend-trust):
the path uses only what the backend sent, plus the anchor that closes it, which is a v2 trusted root
(a self-signed CA, never an intermediate) or a root of the well-known CA store
(`WELL_KNOWN_CA_BUNDLE`). Every certificate on the path, the anchor included, must be within its
validity period.

Public API (other modules, e.g. the expiry watch and the review page, may call it):

- `build_chain(presented, trusted_roots=(), well_known=())` -> `GatewayChain`
- `validity(cert, now)` -> `Validity`
- `GatewayChain.out_of_date(now)`: the certificates on the path that are not valid at `now`
- `chain_json(chain, now)`: the JSON evidence
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from shared.core.certs import CertInfo, is_root, iso_z, signed_by


class Validity(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"


class Role(StrEnum):
    LEAF = "leaf"
    INTERMEDIATE = "intermediate"
    ROOT = "root"


class ChainStatus(StrEnum):
    TRUSTED = "trusted"  # the path reaches an anchor
    INCOMPLETE = "incomplete"  # stops below a root: the next issuer was not sent, no anchor signed
    UNTRUSTED_ROOT = "untrusted_root"  # ends at a presented self-signed CA that is no anchor
    SELF_SIGNED_LEAF = "self_signed_leaf"  # the leaf signs itself and is not a CA
    EMPTY = "empty"  # nothing presented


class AnchorSource(StrEnum):
    TRUSTED_ROOT = "trusted_root"  # a trusted root certificate of the HTTP settings
    WELL_KNOWN = "well_known"  # the well-known CA store (WELL_KNOWN_CA_BUNDLE)


@dataclass(frozen=True)
class ChainCert:
    cert: CertInfo
    role: Role
    presented: bool  # False for an anchor the backend did not send


@dataclass(frozen=True)
class GatewayChain:
    path: tuple[ChainCert, ...]  # leaf first, each issued by the next; ends at the anchor if any
    status: ChainStatus
    anchor_source: AnchorSource | None = None
    unused: tuple[CertInfo, ...] = ()  # presented but not on the path (ignored by the gateway)

    @property
    def certs(self) -> tuple[CertInfo, ...]:
        return tuple(c.cert for c in self.path)

    @property
    def top(self) -> CertInfo | None:
        return self.path[-1].cert if self.path else None

    @property
    def anchor(self) -> CertInfo | None:
        return self.path[-1].cert if self.status is ChainStatus.TRUSTED else None

    @property
    def missing_issuer(self) -> str | None:
        """The issuer name the gateway could not find (status incomplete), else None."""
        top = self.top
        return top.issuer if top is not None and self.status is ChainStatus.INCOMPLETE else None

    def out_of_date(self, now: datetime) -> tuple[tuple[ChainCert, Validity], ...]:
        """Every certificate on the path (the anchor included) that is not valid at `now`."""
        states = ((c, validity(c.cert, now)) for c in self.path)
        return tuple((c, v) for c, v in states if v is not Validity.VALID)


def validity(cert: CertInfo, now: datetime) -> Validity:
    moment = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    if moment < cert.not_before:
        return Validity.NOT_YET_VALID
    if moment > cert.not_after:
        return Validity.EXPIRED
    return Validity.VALID


class _Anchors:
    """Anchors by subject name: each lookup costs one dict access, not a scan of the store."""

    def __init__(self, certs: Iterable[CertInfo], *, roots_only: bool) -> None:
        self.by_subject: dict[str, list[CertInfo]] = {}
        for cert in certs:
            # A v2 trusted root anchors only when it is a self-signed CA
            # (docs/sources.md#backend-trust); a CA store's entries are anchors as they stand.
            if is_root(cert) if roots_only else cert.is_ca:
                self.by_subject.setdefault(cert.subject, []).append(cert)

    def issuer(self, child: CertInfo) -> CertInfo | None:
        """The anchor that is `child` or that issued it (name, key identifier and signature)."""
        for cand in self.by_subject.get(child.issuer, ()):
            if cand.sha256 == child.sha256:
                return cand
            aki, ski = child.authority_key_identifier, cand.subject_key_identifier
            if aki and ski and aki != ski:
                continue
            if _issued(child, cand):
                return cand
        return None


def build_chain(
    presented: Sequence[CertInfo],
    trusted_roots: Iterable[CertInfo] = (),
    well_known: Iterable[CertInfo] | None = (),
) -> GatewayChain:
    """The path the gateway builds from `presented` (leaf first, as sent).

    `trusted_roots`: the settings' trusted roots (non-roots among them are ignored: they anchor
    nothing); `well_known`: the well-known CA store, consulted when no trusted root anchors.
    """
    if not presented:
        return GatewayChain((), ChainStatus.EMPTY)
    stores = [
        (_Anchors(trusted_roots, roots_only=True), AnchorSource.TRUSTED_ROOT),
        (_Anchors(well_known or (), roots_only=False), AnchorSource.WELL_KNOWN),
    ]
    sent = {c.sha256 for c in presented}
    pool = list(presented[1:])
    path: list[CertInfo] = [presented[0]]
    status, source = ChainStatus.INCOMPLETE, None
    while True:
        cur = path[-1]
        found = _anchor(cur, stores)
        if found is not None:
            anchor, source = found
            if anchor.sha256 != cur.sha256:
                path.append(anchor)
            status = ChainStatus.TRUSTED
            break
        if cur.self_signed:
            leaf_only = len(path) == 1 and not cur.is_ca
            status = ChainStatus.SELF_SIGNED_LEAF if leaf_only else ChainStatus.UNTRUSTED_ROOT
            break
        on_path = {c.sha256 for c in path}
        nxt = next(
            (c for c in pool if c.sha256 not in on_path and _issued(cur, c)),
            None,
        )
        if nxt is None:
            break
        path.append(nxt)
    used = {c.sha256 for c in path}
    links = tuple(
        ChainCert(cert, _role(i, cert, len(path)), cert.sha256 in sent)
        for i, cert in enumerate(path)
    )
    unused = tuple(c for c in presented if c.sha256 not in used)
    return GatewayChain(links, status, source, unused)


@lru_cache(maxsize=8192)
def _issued(child: CertInfo, issuer: CertInfo) -> bool:
    """signed_by, remembered: a pool's members present the same chain, and each finding asks
    several times (a pure function of two immutable values)."""
    return signed_by(child, issuer)


def _anchor(
    cert: CertInfo, stores: list[tuple[_Anchors, AnchorSource]]
) -> tuple[CertInfo, AnchorSource] | None:
    for anchors, source in stores:
        found = anchors.issuer(cert)
        if found is not None:
            return found, source
    return None


def _role(index: int, cert: CertInfo, length: int) -> Role:
    if index == 0:
        return Role.LEAF
    return Role.ROOT if index == length - 1 and cert.self_signed else Role.INTERMEDIATE


def describe(link: ChainCert) -> str:
    """`the intermediate CN=... (SHA-1 ...)`: how explanations name one certificate."""
    return f"the {link.role.value} {link.cert.subject} ({link.cert.sha1})"


def chain_json(chain: GatewayChain, now: datetime) -> dict[str, Any]:
    return {
        "status": chain.status.value,
        "anchor_source": chain.anchor_source.value if chain.anchor_source else None,
        "missing_issuer": chain.missing_issuer,
        "path": [
            {
                "sha1": c.cert.sha1,
                "subject": c.cert.subject,
                "role": c.role.value,
                "presented": c.presented,
                "not_before": iso_z(c.cert.not_before),
                "not_after": iso_z(c.cert.not_after),
                "validity": validity(c.cert, now).value,
            }
            for c in chain.path
        ],
        "unused": [c.sha1 for c in chain.unused],
    }


__all__ = [
    "AnchorSource",
    "ChainCert",
    "ChainStatus",
    "GatewayChain",
    "Role",
    "Validity",
    "build_chain",
    "chain_json",
    "describe",
    "validity",
]
