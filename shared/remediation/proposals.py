"""Change proposals: what the bot writes instead of changing a gateway, and where it keeps them.

`ProposalStore` is the interface; `LocalProposalStore` keeps one JSON file per proposal in a
directory for the CLI (the function app adds an Azure Storage implementation). Status changes are
compare-and-set so two approvers, or an approver and the sweep, cannot both win.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from shared.common.errors import BotError, InputError
from shared.common.identity import Approver, approver_ids, is_object_id, same_identity
from shared.remediation.plan import Plan, apply_plan, plan_from_dict, plan_to_dict
from shared.remediation.render import renderings

STATUSES = ("open", "approved", "rejected", "applied", "failed", "superseded")
# The side effect of any gateway update (docs/sources.md#overlapping-writes).
DRAINING_WARNING = (
    "A gateway update terminates ongoing connections after the connection-draining timeout."
)
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ProposalNotFound(BotError, KeyError):
    """No proposal with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "proposal not found"


class ProposalConflict(BotError):
    """The proposal changed underneath (status compare-and-set failed, or the id exists)."""


class ApprovalError(BotError):
    """This approver may not decide this proposal. `code` says why, in words that stay stable
    (the API's `error.reason`, the end of the CLI's message); docs/remediation.md lists them."""

    NOT_OPEN = "not_open"  # the proposal was already decided
    NO_IDENTITY = "no_approver_identity"  # nobody named
    OWN_PROPOSAL = "own_proposal"  # four eyes: the requester cannot approve
    NOT_AN_APPROVER = "not_an_approver"  # not in APPROVERS
    OWN_CHANGE = "own_change"  # four eyes on rollback: the one who applied the change

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


@dataclass
class Proposal:
    id: str
    created_at: str  # ISO 8601 UTC
    requester: str
    gateway_id: str
    gateway_etag: str | None
    plan: dict[str, Any]  # plan_to_dict form
    renderings: dict[str, Any]  # summary, json_patch, az, az_rollback, bicep
    evidence: list[dict[str, Any]]  # the findings as JSON
    certificate_cer: str | None  # Base-64 (PEM) CER of the certificate to add
    check_after: str
    warnings: list[str] = field(default_factory=list)
    status: str = "open"
    decided_by: str | None = None
    decided_at: str | None = None
    outcome: dict[str, Any] | None = None
    reasons: list[str] = field(default_factory=list)  # why a proposal and not a change

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Proposal:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def get_plan(self) -> Plan:
        return plan_from_dict(self.plan)


def new_proposal_id(now: datetime) -> str:
    """Sortable by creation time, unguessable enough to be a handle in a URL."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def build_proposal(
    plan: Plan,
    before: Mapping[str, Any],
    *,
    requester: str,
    now: datetime,
    gateway_etag: str | None = None,
    evidence: Sequence[Mapping[str, Any]] = (),
    certificate_cer: str | None = None,
    reasons: Sequence[str] = (),
    proposal_id: str | None = None,
) -> Proposal:
    """A proposal for `plan`, planned against document `before`, with every rendering."""
    after = apply_plan(before, plan)
    servers = ", ".join(plan.settings_names) or "the affected settings"
    check = (
        f"Backend health of {servers} on {plan.gateway_id.rsplit('/', 1)[-1]} turns healthy "
        "within a probe interval x unhealthy threshold (defaults 30 s x 3): "
        f"az network application-gateway show-backend-health --ids {plan.gateway_id}"
    )
    warnings = [DRAINING_WARNING]
    if plan.certificate is None and plan.certificate_ref_name and not plan.removed_certificate:
        warnings.append(f"certificate {plan.certificate_ref_name} is already on the gateway")
    return Proposal(
        id=proposal_id or new_proposal_id(now),
        created_at=now.astimezone(UTC).isoformat(),
        requester=requester,
        gateway_id=plan.gateway_id,
        gateway_etag=gateway_etag,
        plan=plan_to_dict(plan),
        renderings=renderings(plan, before, after),
        evidence=[dict(e) for e in evidence],
        certificate_cer=certificate_cer,
        check_after=check,
        warnings=warnings,
        reasons=list(reasons),
    )


def _not_an_approver(approver: str) -> ApprovalError:
    hint = "" if is_object_id(approver) else " (APPROVERS lists Entra object ids, not names)"
    return ApprovalError(ApprovalError.NOT_AN_APPROVER, f"{approver} is not in APPROVERS{hint}")


def check_approver(proposal: Proposal, approver: str, approvers: Sequence[Approver | str]) -> None:
    """Raise ApprovalError unless `approver` (an Entra object id) may decide this open proposal.
    The requester is compared by the identity recorded with the proposal (its object id when it
    was requested through the API), never by a display name."""
    who = approver.strip().lower()
    if proposal.status != "open":
        raise ApprovalError(
            ApprovalError.NOT_OPEN, f"proposal {proposal.id} is {proposal.status}, not open"
        )
    if not who:
        raise ApprovalError(ApprovalError.NO_IDENTITY, "an approver identity is required")
    if same_identity(who, proposal.requester):
        raise ApprovalError(
            ApprovalError.OWN_PROPOSAL, "the requester cannot approve their own proposal"
        )
    if who not in approver_ids(approvers):
        raise _not_an_approver(approver.strip())


def check_rollback_approver(
    applied_by: str,
    approver: str,
    approvers: Sequence[Approver | str],
    *,
    applier_may_roll_back: bool,
) -> None:
    """Raise ApprovalError unless `approver` may roll back a change `applied_by` made: an
    approver in APPROVERS (by object id), and not the one who applied it unless
    ROLLBACK_BY_APPLIER allows."""
    who = approver.strip().lower()
    if not who:
        raise ApprovalError(ApprovalError.NO_IDENTITY, "an approver identity is required")
    if who not in approver_ids(approvers):
        raise _not_an_approver(approver.strip())
    if same_identity(who, applied_by) and not applier_may_roll_back:
        raise ApprovalError(
            ApprovalError.OWN_CHANGE,
            "the one who applied a change cannot roll it back (ROLLBACK_BY_APPLIER is false)",
        )


class ProposalStore(Protocol):
    def create(self, proposal: Proposal) -> None: ...

    def get(self, proposal_id: str) -> Proposal: ...

    def list(self, status: str | None = None) -> list[Proposal]: ...

    def update(self, proposal: Proposal, *, expected_status: str) -> None: ...


class LocalProposalStore:
    """One JSON file per proposal under `directory`; atomic writes; a file lock for CAS."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, proposal_id: str) -> Path:
        if not _ID_RE.match(proposal_id):
            raise ProposalNotFound(f"not a proposal id: {proposal_id[:80]!r}")
        return self.directory / f"{proposal_id}.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # One lock for the store: writes are rare and tiny, and it also serialises create.
        with (self.directory / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write(self, path: Path, proposal: Proposal) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(proposal.to_dict(), out, indent=2, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _read(self, path: Path) -> Proposal:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            proposal = Proposal.from_dict(data)
            if not isinstance(proposal.plan, dict) or not isinstance(proposal.renderings, dict):
                raise ValueError("plan and renderings must be objects")
        except FileNotFoundError:
            raise ProposalNotFound(f"no proposal {path.stem}") from None
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            # A damaged file is bad input naming the file, not a crash of list/show/approve.
            reason = " ".join(str(exc).split())[:120] or type(exc).__name__
            raise InputError(
                f"proposal file {path} is not a proposal ({reason}); move it aside or repair it"
            ) from None
        return proposal

    def create(self, proposal: Proposal) -> None:
        if proposal.status not in STATUSES:
            raise ValueError(f"unknown status {proposal.status!r}")
        path = self._path(proposal.id)
        with self._locked():
            if path.exists():
                raise ProposalConflict(f"proposal {proposal.id} already exists")
            self._write(path, proposal)

    def get(self, proposal_id: str) -> Proposal:
        return self._read(self._path(proposal_id))

    def list(self, status: str | None = None) -> list[Proposal]:
        found = []
        for path in sorted(self.directory.glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                proposal = self._read(path)
            except ProposalNotFound:
                continue  # removed between glob and read
            if status is None or proposal.status == status:
                found.append(proposal)
        return sorted(found, key=lambda p: (p.created_at, p.id))

    def update(self, proposal: Proposal, *, expected_status: str) -> None:
        if proposal.status not in STATUSES:
            raise ValueError(f"unknown status {proposal.status!r}")
        path = self._path(proposal.id)
        with self._locked():
            current = self._read(path)
            if current.status != expected_status:
                raise ProposalConflict(
                    f"proposal {proposal.id} is {current.status}, expected {expected_status}"
                )
            self._write(path, proposal)


__all__ = [
    "DRAINING_WARNING",
    "STATUSES",
    "ApprovalError",
    "LocalProposalStore",
    "Proposal",
    "ProposalConflict",
    "ProposalNotFound",
    "ProposalStore",
    "build_proposal",
    "check_approver",
    "check_rollback_approver",
    "new_proposal_id",
]
