"""The expiry watch and overlap rotation steps of a remediation run (the Remediator calls them).

Pure decisions live in shared.core.expiry and shared.remediation.rotation; this module sequences
them around the Remediator's own stores: the notices already sent, the change log (which rotation
overlaps were applied and not rolled back) and the proposal store (an overlap ends only through
an approved proposal).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from shared.common.errors import BotError
from shared.common.ids import GatewayId
from shared.common.settings import Mode
from shared.core.diagnosis import route_hosts
from shared.core.expiry import ExpiringCertificate
from shared.remediation.changelog import rollback_of
from shared.remediation.notices import expiry_event
from shared.remediation.outcome import RemediationOutcome
from shared.remediation.plan import Plan, plan_for_fix, plan_to_dict
from shared.remediation.rotation import overlaps_from, retirements, rotation_plans, rotations

if TYPE_CHECKING:
    from shared.remediation.assessment import Assessment
    from shared.remediation.outcome import FixPreview
    from shared.remediation.remediate import Remediator

log = logging.getLogger(__name__)


def notice_expiring(rem: Remediator, gid: GatewayId, soon: Sequence[ExpiringCertificate]) -> None:
    """One notification per certificate entering the window (the store remembers it)."""
    notices = rem._expiry_notices
    if notices is None or not soon:
        return
    try:
        fresh = notices(gid.id, soon)
    except BotError as exc:
        log.warning("expiry notices not remembered, none sent: %s", exc)
        return
    for item in fresh:
        rem._notify("expiring", expiry_event(gid.id, item))


def rotation_plans_for(
    rem: Remediator, gid: GatewayId, assessment: Assessment, operator: Sequence[bytes]
) -> tuple[Assessment, list[Plan]]:
    """Plans adding each known next certificate's trust next to the old one; the assessment
    comes back with those certificates vouched for (the trust check counts them as fetched)."""
    doc = assessment.current.doc
    found = rotations(
        assessment.gateway,
        assessment.health,
        assessment.captures,
        now=rem.clock(),
        hosts=route_hosts(doc),
        trusted_source=assessment.trusted,
        operator=operator,
    )
    for rot in found:
        log.info(
            "rotation on %s: next certificate %s (%s): %s",
            rot.settings,
            rot.next.info.sha1,
            rot.next.source,
            rot.note,
        )
    vouched = frozenset(v for v in (r.vouched for r in found) if v)
    plans = [p for p in rotation_plans(doc, found, gid.id) if not p.is_noop]
    return replace(assessment, vouched=assessment.vouched | vouched), plans


def retirement_plans_for(rem: Remediator, gid: GatewayId, assessment: Assessment) -> list[Plan]:
    """Removals of the old trust of each applied, not rolled back, overlap rotation whose old
    certificate no backend presents any more."""
    records = rem.changes.for_gateway(gid.id)
    applied = [r.plan for r in records if r.kind == "apply" and rollback_of(records, r.id) is None]
    doc = assessment.current.doc
    found = retirements(
        assessment.gateway,
        assessment.health,
        assessment.captures,
        overlaps_from(applied),
        hosts=route_hosts(doc),
    )
    plans = [plan_for_fix(doc, r.fix, gateway_id=gid.id) for r in found]
    return [p for p in plans if not p.is_noop]


def retire(
    rem: Remediator,
    gid: GatewayId,
    assessment: Assessment,
    plan: Plan,
    decision: Any,
    requester: str,
    *,
    show: Callable[[FixPreview], None] | None,
    dry_run: bool,
) -> RemediationOutcome:
    """The end of an overlap is only ever proposed: a person approves removing a trust."""
    # Imported here: the approvals path imports the assessment, which imports this module.
    from shared.remediation.approvals import propose

    reasons = (
        f"no backend presents a certificate only {plan.certificate_ref_name} trusts any more; "
        "removing a trust is applied only through an approved proposal",
    )
    outcome = "diagnose" if decision.mode is Mode.DIAGNOSE else "propose"
    if show is not None:
        show(rem.fix_preview(plan, assessment, outcome, reasons))
    if decision.mode is Mode.DIAGNOSE or dry_run:
        why = "diagnose mode" if decision.mode is Mode.DIAGNOSE else "dry run"
        return RemediationOutcome(
            gid.id,
            decision.mode.value,
            "none",
            reason=f"{why}: would propose {plan.action.value} {plan.certificate_ref_name}",
            plan=plan_to_dict(plan),
        )
    return propose(rem, gid, assessment, plan, requester, reasons)


__all__ = ["notice_expiring", "retire", "retirement_plans_for", "rotation_plans_for"]
