"""The imperative shell of remediation: read, diagnose, decide, then write safely or propose.

Everything that decides is pure and lives elsewhere (diagnosis, plan, policy, trust, retry); the
Remediator sequences the I/O around it. This module holds the fix path (one run: assess, plan,
policy, then apply, propose or only report); the steps live next to it:

- shared.remediation.assessment: the read, the probes and the diagnosis; the trust check;
- shared.remediation.applying: the safe write (shared.remediation.writer: one writer per
  gateway, a fresh read and re-plan before every attempt, an ETag check just before the PUT,
  the whole document sent back, back-off on contention and never a stale body replayed; locks
  and policy denials become a proposal), the change record and verification with backend health
  (shared.remediation.verify);
- shared.remediation.approvals: proposals, their approval and rejection;
- shared.remediation.rollback: rollback of exactly what we added, on request or when the write
  left the gateway failed, and the holds a rollback sets;
- shared.remediation.watch: expiry notices and overlap rotation;
- shared.remediation.outcome: what a run reports, and the previews.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from shared.cloud.arm import ArmClient, ArmError
from shared.cloud.authz import missing_permission
from shared.common.errors import OutOfScopeError
from shared.common.ids import GatewayId, parse_gateway_id
from shared.common.progress import Progress, no_progress
from shared.common.settings import Mode, Settings
from shared.core.diagnosis import Finding
from shared.core.report import to_json
from shared.remediation import applying, approvals, rollback, watch
from shared.remediation.applying import apply
from shared.remediation.approvals import propose
from shared.remediation.assessment import (
    Assessment,
    Captures,
    ProbeFn,
    affected,
    default_probe,
    gateway_tags,
    nothing_to_do,
    trust_for,
)
from shared.remediation.assessment import assess as _assess
from shared.remediation.changelog import ChangeLog, ChangeRecord
from shared.remediation.holds import HoldStore
from shared.remediation.notices import ExpiryNotices
from shared.remediation.outcome import FixPreview, RemediationOutcome, RollbackPreview, same_plan
from shared.remediation.plan import Plan, plan_fixes, plan_to_dict
from shared.remediation.policy import Guards, Outcome, check_scope, decide, effective_mode
from shared.remediation.preflight import check_write_permissions
from shared.remediation.proposals import Proposal, ProposalStore
from shared.remediation.rollback import held
from shared.remediation.writer import GatewayWriter, WriteRefused, WriteResult

log = logging.getLogger(__name__)

__all__ = [
    "Assessment",
    "Captures",
    "FixPreview",
    "ProbeFn",
    "RemediationOutcome",
    "Remediator",
    "RollbackPreview",
]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Remediator:
    """Runs diagnosis, policy and the safe write for one gateway at a time."""

    def __init__(
        self,
        settings: Settings,
        *,
        arm: ArmClient,
        proposals: ProposalStore,
        changes: ChangeLog,
        lock_for: Callable[[GatewayId], AbstractContextManager[Any]],
        probe: ProbeFn | None = None,
        trusted_certificates: Callable[[], Sequence[bytes]] | None = None,
        notify: Callable[[str, dict[str, Any]], None] | None = None,
        before_write: Callable[[GatewayId, ChangeRecord], None] | None = None,
        expiry_notices: ExpiryNotices | None = None,
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], None] = time.sleep,
        progress: Progress = no_progress,
        holds: HoldStore | None = None,
    ) -> None:
        self.settings = settings
        self.holds = holds  # shared.remediation.holds: what operators told the bot to leave alone
        self.arm = arm
        self.proposals = proposals
        self.changes = changes
        # The writer sleeps and reports progress through self.sleep and self.progress, so a
        # caller may swap them after construction.
        self.writer = GatewayWriter(
            settings,
            arm,
            lock_for,
            sleep=lambda s: self.sleep(s),
            progress=lambda message: self.progress(message),
        )
        self.progress = progress
        # Write-ahead hook: gets the change record right before its PUT (the worker keeps it in
        # the ledger, so a delivery that dies between the PUT and `changes.record` leaves it).
        self._before_write = before_write
        self._probe = probe or partial(default_probe, self)
        self._trusted = trusted_certificates or (lambda: ())
        self._notify = notify or (lambda kind, event: None)
        self._expiry_notices = expiry_notices
        self.clock = clock
        self.sleep = sleep

    # ---- the steps (each in its own module) ---------------------------------------------------

    def assess(self, gid: GatewayId, *, hint: tuple[str, str] | None = None) -> Assessment:
        """Read the gateway and its backend health, probe its own pool members, diagnose."""
        return _assess(self, gid, hint=hint)

    fix_preview = staticmethod(applying.fix_preview)
    rollback_preview = staticmethod(rollback.rollback_preview)

    def safe_write(
        self,
        gid: GatewayId,
        make_plan: Callable[[dict[str, Any]], Plan],
        *,
        by: str = "",
        change_id: str | None = None,
    ) -> tuple[WriteResult, Plan]:
        """Re-plan on a fresh read and write it (shared.remediation.applying.safe_write)."""
        return applying.safe_write(self, gid, make_plan, by=by, change_id=change_id)

    def verify(
        self, gid: GatewayId, plan: Plan, affected: list[Finding] | None, doc: Mapping[str, Any]
    ) -> tuple[bool | None, list[dict[str, Any]]]:
        """Backend health of the affected servers after the change (shared.remediation.verify)."""
        return applying.verify(self, gid, plan, affected, doc)

    def approve(
        self, proposal_id: str, approver: str, *, change_id: str | None = None
    ) -> RemediationOutcome:
        """Approve an open proposal: re-read, re-plan, refuse if it no longer applies, apply.
        `change_id`: the id to record the change under (the API answers it before the job runs)."""
        return approvals.approve(self, proposal_id, approver, change_id=change_id)

    def reject(self, proposal_id: str, approver: str, reason: str = "") -> Proposal:
        """Reject an open proposal (an approver only); nothing is written."""
        return approvals.reject(self, proposal_id, approver, reason)

    def find_change(self, change_id: str, gateway_id: str | None = None) -> ChangeRecord:
        """The change `change_id` (made to `gateway_id` when given); InputError when unknown."""
        return rollback.find_change(self, change_id, gateway_id)

    def rollback(
        self,
        gateway_id: str | None,
        change_id: str,
        *,
        by: str = "cli",
        requested_mode: Mode | None = None,
        show: Callable[[RollbackPreview], None] | None = None,
        confirm: Callable[[RollbackPreview], bool] | None = None,
        dry_run: bool = False,
    ) -> RemediationOutcome:
        """Remove exactly what change `change_id` added (shared.remediation.rollback.rollback)."""
        return rollback.rollback(
            self,
            gateway_id,
            change_id,
            by=by,
            requested_mode=requested_mode,
            show=show,
            confirm=confirm,
            dry_run=dry_run,
        )

    # ---- the whole job ------------------------------------------------------------------------

    def fix(
        self,
        gateway_id: str,
        *,
        requested_mode: Mode | None = None,
        requester: str = "cli",
        hint: tuple[str, str] | None = None,
        confirm: Callable[[Plan], bool] | None = None,
        show: Callable[[FixPreview], None] | None = None,
        dry_run: bool = False,
        trust_local_probe: bool = False,
        next_certificates: Sequence[bytes] = (),
    ) -> RemediationOutcome:
        """Diagnose the gateway and apply, propose or only report the fixes policy allows.

        Overlap rotation (docs/remediation.md#overlap-rotation): when a backend's next certificate
        is known (another member presents it, the trusted source holds it, or the operator gives
        it in `next_certificates`), its trust is added next to the old one like any fix; the end
        of a recorded overlap, once no backend presents the old certificate, is proposed.

        `show` gets each plan's preview (patch, az commands, warnings) before anything is
        written; `dry_run` stops there: nothing is written, no proposal is stored. TLS evidence
        captured outside the gateway's network (an operator machine) turns apply into propose
        unless `trust_local_probe` (docs/diagnosis.md#where-the-evidence-comes-from).
        """
        gid = parse_gateway_id(gateway_id)
        mode = Mode.lowest(self.settings.mode, requested_mode)
        try:
            check_scope(self.settings, gid.id)
        except OutOfScopeError as exc:
            return RemediationOutcome(gid.id, mode.value, "refused", reason=str(exc))
        try:
            assessment = self.assess(gid, hint=hint)
        except ArmError as exc:
            # A 403 while reading: the operator grants the role (shared.cloud.authz); no proposal.
            missing = missing_permission(exc.codes, str(exc))
            if missing is None:
                raise
            reason = f"{missing.describe()}; ARM refused the request, nothing was written"
            return RemediationOutcome(
                gid.id, mode.value, "refused", reason=reason, azure_refused=True
            )
        doc = assessment.current.doc
        decision = effective_mode(self.settings, gateway_tags(doc), requested_mode)
        outcome = RemediationOutcome(
            gid.id, decision.mode.value, "none", diagnosis=to_json(assessment.diagnosis)
        )
        plans = [p for p in plan_fixes(doc, assessment.diagnosis) if not p.is_noop]
        assessment, rotated = watch.rotation_plans_for(self, gid, assessment, next_certificates)
        # A fix the diagnosis found for the same change keeps its place and gains `replaces`.
        plans = [next((r for r in rotated if same_plan(p, r)), p) for p in plans]
        plans += [p for p in rotated if not any(same_plan(p, q) for q in plans)]
        retire = watch.retirement_plans_for(self, gid, assessment)
        if not plans and not retire:
            outcome.reason = nothing_to_do(assessment.diagnosis)
            return outcome
        results = [
            self._handle_plan(
                gid,
                assessment,
                plan,
                decision,
                requester,
                confirm,
                show=show,
                dry_run=dry_run,
                trust_local_probe=trust_local_probe,
            )
            for plan in plans
        ]
        results += [
            watch.retire(self, gid, assessment, p, decision, requester, show=show, dry_run=dry_run)
            for p in retire
        ]
        return self._merge(outcome, results)

    def _merge(
        self, base: RemediationOutcome, results: list[RemediationOutcome]
    ) -> RemediationOutcome:
        # The first plan is the most important; writes add up; any proposal is reported.
        first = results[0]
        base.action = first.action
        base.reason = "; ".join(r.reason for r in results if r.reason)
        base.arm_writes = sum(r.arm_writes for r in results)
        base.proposal = next((r.proposal for r in results if r.proposal), None)
        base.change = next((r.change for r in results if r.change), None)
        base.hold = next((r.hold for r in results if r.hold), None)
        verified = [r.verified for r in results if r.verified is not None]
        base.verified = all(verified) if verified else None
        base.plan = first.plan
        base.verification = [v for r in results for v in r.verification]
        return base

    def _handle_plan(
        self,
        gid: GatewayId,
        assessment: Assessment,
        plan: Plan,
        decision: Any,
        requester: str,
        confirm: Callable[[Plan], bool] | None,
        *,
        show: Callable[[FixPreview], None] | None = None,
        dry_run: bool = False,
        trust_local_probe: bool = False,
    ) -> RemediationOutcome:
        trust = trust_for(self, assessment, plan)
        past = [c for rec in self.changes.for_gateway(gid.id) for c in rec.as_changes()]
        guards = Guards.from_settings(self.settings, past).check(
            gid.id,
            plan.settings_names,
            plan.thumbprint,
            self.clock(),
            adds_certificate=plan.certificate is not None,
        )
        verdict = decide(decision, plan.action, trust, guards)
        vantage = assessment.diagnosis.vantage
        if (
            verdict.outcome is Outcome.APPLY
            and vantage is not None
            and not vantage.in_gateway_network
            and not trust_local_probe
        ):
            outside = (
                f"the TLS evidence was captured from {vantage.describe()}; apply it with "
                "--trust-local-probe, or approve this proposal"
            )
            verdict = replace(verdict, outcome=Outcome.PROPOSE, reasons=(*verdict.reasons, outside))
        result = RemediationOutcome(gid.id, decision.mode.value, "none", plan=plan_to_dict(plan))
        if verdict.outcome is not Outcome.DIAGNOSE and held(self, result, plan):
            return result
        if show is not None and (dry_run or verdict.outcome is not Outcome.DIAGNOSE):
            show(self.fix_preview(plan, assessment, verdict.outcome.value, verdict.reasons))
        if verdict.outcome is Outcome.DIAGNOSE:
            result.reason = "diagnose mode: " + "; ".join(verdict.reasons)
            return result
        if dry_run:
            why = f" ({'; '.join(verdict.reasons)})" if verdict.outcome is Outcome.PROPOSE else ""
            result.reason = f"dry run: would {verdict.outcome.value}{why}; nothing written"
            return result
        if verdict.outcome is Outcome.PROPOSE:
            return propose(self, gid, assessment, plan, requester, verdict.reasons)
        if confirm is not None and not confirm(plan):
            result.reason = "not confirmed by the operator"
            return result
        try:
            check_write_permissions(self.arm, gid, assessment.current.doc)
            return apply(self, gid, plan, by=requester, affected=affected(assessment, plan))
        except WriteRefused as exc:
            if exc.propose:
                proposed = propose(self, gid, assessment, plan, requester, (str(exc),))
                proposed.arm_writes = exc.writes
                return proposed
            self._notify(
                "failed",
                {
                    "event": "failed",
                    "gateway": gid.id,
                    "action": plan.action.value,
                    "thumbprint": plan.thumbprint,
                    "settings": list(plan.settings_names),
                    "by": requester,
                    "reason": str(exc),
                },
            )
            return RemediationOutcome(
                gid.id, decision.mode.value, "failed", arm_writes=exc.writes, reason=str(exc)
            )
