"""The approvals path of the Remediator: propose a change, then approve or reject it.

A proposal (shared.remediation.proposals) holds the plan and its evidence; one open proposal per
gateway and change. Approval re-reads and re-plans, refuses what no longer applies, and applies
by the safe write (shared.remediation.applying); holds and the kill switch are checked first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from shared.common.errors import BotError
from shared.common.ids import GatewayId, parse_gateway_id, same_id
from shared.core.report import to_json
from shared.remediation.applying import apply
from shared.remediation.assessment import Assessment
from shared.remediation.outcome import RemediationOutcome, same_change
from shared.remediation.plan import Plan, replan
from shared.remediation.policy import check_scope
from shared.remediation.preflight import check_write_permissions
from shared.remediation.proposals import Proposal, build_proposal, check_approver
from shared.remediation.rollback import held
from shared.remediation.writer import WriteRefused

if TYPE_CHECKING:
    from shared.remediation.remediate import Remediator


def propose(
    rem: Remediator,
    gid: GatewayId,
    assessment: Assessment,
    plan: Plan,
    requester: str,
    reasons: Sequence[str],
) -> RemediationOutcome:
    findings = to_json(assessment.diagnosis)["findings"]
    names = {n.lower() for n in plan.settings_names}
    evidence = [f for f in findings if str(f.get("settings", "")).lower() in names]
    # A removal (the end of an overlap) adds no certificate: nothing to show as one to add.
    adds = plan.fix is not None and plan.removed_certificate is None
    cert = plan.fix.certificate if plan.fix is not None and adds else None
    proposal = build_proposal(
        plan,
        assessment.current.doc,
        requester=requester,
        now=rem.clock(),
        gateway_etag=assessment.current.etag,
        evidence=evidence,
        certificate_cer=cert.cer if cert else None,
        reasons=reasons,
    )
    twin = open_twin(rem, proposal)
    if twin is not None:
        return RemediationOutcome(
            gid.id,
            "propose",
            "proposed",
            proposal=twin.id,
            reason="an open proposal for the same change exists",
            plan=proposal.plan,
        )
    rem.proposals.create(proposal)
    rem._notify("proposal_created", event(proposal, "proposal_created"))
    return RemediationOutcome(
        gid.id,
        "propose",
        "proposed",
        proposal=proposal.id,
        reason="; ".join(reasons),
        plan=proposal.plan,
    )


def open_twin(rem: Remediator, proposal: Proposal) -> Proposal | None:
    """An open proposal for the same gateway and the same planned change (no duplicates)."""
    for other in rem.proposals.list(status="open"):
        if same_id(other.gateway_id, proposal.gateway_id) and same_change(
            other.plan, proposal.plan
        ):
            return other
    return None


def event(proposal: Proposal, kind: str, **extra: Any) -> dict[str, Any]:
    """The notification for `proposal` (`kind`: proposal_created, proposal_applied, ...)."""
    plan = proposal.get_plan()
    return {
        "event": kind,
        "gateway": proposal.gateway_id,
        "action": plan.action.value,
        "thumbprint": plan.thumbprint,
        "settings": list(plan.settings_names),
        "proposal": proposal.id,
        **extra,
    }


def approve(
    rem: Remediator, proposal_id: str, approver: str, *, change_id: str | None = None
) -> RemediationOutcome:
    """Approve an open proposal: re-read, re-plan, refuse if it no longer applies, apply.
    `change_id`: the id to record the change under (the API answers it before the job runs)."""
    proposal = rem.proposals.get(proposal_id)
    check_approver(proposal, approver, rem.settings["APPROVERS"])
    gid = parse_gateway_id(proposal.gateway_id)
    check_scope(rem.settings, gid.id)
    if rem.settings.kill_switch:
        return RemediationOutcome(
            gid.id,
            "apply",
            "refused",
            proposal=proposal.id,
            reason="kill switch is on: no gateway writes",
        )
    plan = proposal.get_plan()
    stopped = RemediationOutcome(gid.id, "apply", "none", proposal=proposal.id)
    if held(rem, stopped, plan):
        return stopped
    rem.progress(f"reading the gateway {gid.name}")
    current = rem.arm.get_gateway(gid)
    fresh = replan(current.doc, plan)
    if fresh.is_noop:
        close(rem, proposal, "superseded", approver, {"reason": fresh.noop_reason})
        return RemediationOutcome(
            gid.id,
            "apply",
            "none",
            proposal=proposal.id,
            reason=f"no longer needed: {fresh.noop_reason}",
        )
    close(rem, proposal, "approved", approver, None)
    proposal = rem.proposals.get(proposal_id)
    try:
        check_write_permissions(rem.arm, gid, current.doc)
        outcome = apply(rem, gid, plan, by=approver, affected=None, change_id=change_id)
    except (WriteRefused, BotError) as exc:
        writes = exc.writes if isinstance(exc, WriteRefused) else 0
        close(rem, proposal, "failed", approver, {"reason": str(exc)}, expected="approved")
        return RemediationOutcome(
            gid.id, "apply", "failed", arm_writes=writes, proposal=proposal.id, reason=str(exc)
        )
    outcome.proposal = proposal.id
    # A write that failed (and was rolled back) must not close the proposal as applied.
    status = "failed" if outcome.action == "failed" else "applied"
    close(rem, proposal, status, approver, outcome.to_json(), expected="approved")
    kind = f"proposal_{status}"
    rem._notify(kind, event(proposal, kind, by=approver))
    return outcome


def reject(rem: Remediator, proposal_id: str, approver: str, reason: str = "") -> Proposal:
    """Reject an open proposal (an approver only); nothing is written."""
    proposal = rem.proposals.get(proposal_id)
    check_approver(proposal, approver, rem.settings["APPROVERS"])
    close(rem, proposal, "rejected", approver, {"reason": reason})
    rem._notify("proposal_rejected", event(proposal, "proposal_rejected", by=approver))
    return rem.proposals.get(proposal_id)


def close(
    rem: Remediator,
    proposal: Proposal,
    status: str,
    by: str,
    outcome: dict[str, Any] | None,
    *,
    expected: str = "open",
) -> None:
    updated = replace(
        proposal,
        status=status,
        decided_by=by,
        decided_at=rem.clock().isoformat(),
        outcome=outcome if outcome is not None else proposal.outcome,
    )
    rem.proposals.update(updated, expected_status=expected)
