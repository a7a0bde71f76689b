"""The safe write path of the Remediator: apply a plan, record it, verify it, undo a failed one.

shared.remediation.writer does the write itself (one writer per gateway, a fresh read and
re-plan before every attempt, the ETag checked just before the PUT, back-off on contention);
this module records the change (write-ahead through `before_write`, then the change log),
verifies with backend health (shared.remediation.verify) and rolls back an update that left the
gateway Failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shared.cloud.arm import GatewayDocument
from shared.common.ids import GatewayId
from shared.core.diagnosis import Finding
from shared.remediation.assessment import Assessment
from shared.remediation.changelog import ChangeRecord, new_change_id
from shared.remediation.outcome import FixPreview, RemediationOutcome
from shared.remediation.plan import Plan, apply_plan, plan_to_dict, replan
from shared.remediation.proposals import DRAINING_WARNING
from shared.remediation.render import renderings
from shared.remediation.rollback import revert
from shared.remediation.verify import poll_interval, wait_until_healthy
from shared.remediation.writer import WriteResult, is_failed

if TYPE_CHECKING:
    from shared.remediation.remediate import Remediator


def fix_preview(
    plan: Plan, assessment: Assessment, outcome: str, reasons: Sequence[str] = ()
) -> FixPreview:
    """What a fix would send (pure): renderings of the plan on the document it was made on."""
    before = assessment.current.doc
    shown = renderings(plan, before, apply_plan(before, plan))
    warnings = [DRAINING_WARNING]
    if plan.certificate is None and plan.certificate_ref_name and not plan.removed_certificate:
        warnings.append(f"certificate {plan.certificate_ref_name} is already on the gateway")
    vantage = assessment.diagnosis.vantage
    if vantage is not None and vantage.warning():
        warnings.append(str(vantage.warning()))
    return FixPreview(
        gateway=plan.gateway_id,
        outcome=outcome,
        reasons=list(reasons),
        summary=shown["summary"],
        patch=shown["json_patch"],
        az=shown["az"],
        az_rollback=shown["az_rollback"],
        warnings=warnings,
    )


def apply(
    rem: Remediator,
    gid: GatewayId,
    plan: Plan,
    *,
    by: str,
    affected: list[Finding] | None,
    change_id: str | None = None,
) -> RemediationOutcome:
    change_id = change_id or new_change_id(rem.clock())
    written, final = rem.safe_write(gid, lambda doc: replan(doc, plan), by=by, change_id=change_id)
    before, after, writes = written.before, written.after, written.writes
    if final.is_noop:
        return RemediationOutcome(
            gid.id,
            "apply",
            "none",
            arm_writes=writes,
            reason=f"already in place: {final.noop_reason}",
            plan=plan_to_dict(final),
        )
    change = change_record(rem, gid, final, by, change_id, before, after)
    rem.changes.record(change)
    if after is not None and is_failed(after):
        # Not rem.rollback: undoing our own failed update needs no mode or confirmation.
        rollback = revert(rem, gid, change, by="auto-rollback", mode="apply")
        undone = "rolled back" if rollback.arm_writes else "nothing of ours was left to roll back"
        return RemediationOutcome(
            gid.id,
            "apply",
            "failed",
            arm_writes=writes + rollback.arm_writes,
            change=change.id,
            reason=f"the gateway update failed and left the gateway Failed; {undone}"
            + ("" if rollback.action == "rolled_back" else f" ({rollback.reason})"),
        )
    verified, checks = rem.verify(gid, final, affected, (after or before).doc)
    outcome = RemediationOutcome(
        gid.id,
        "apply",
        "applied",
        arm_writes=writes,
        verified=verified,
        change=change.id,
        plan=plan_to_dict(final),
        verification=checks,
        reason=f"{final.action.value} on {', '.join(final.settings_names)}"
        + (f"; {written.note}" if written.note else ""),
    )
    rem._notify(
        "applied",
        {
            "event": "applied",
            "gateway": gid.id,
            "action": final.action.value,
            "thumbprint": final.thumbprint,
            "settings": list(final.settings_names),
            "change": change.id,
            "by": by,
            "reason": outcome.reason,
        },
    )
    return outcome


def safe_write(
    rem: Remediator,
    gid: GatewayId,
    make_plan: Callable[[dict[str, Any]], Plan],
    *,
    by: str = "",
    change_id: str | None = None,
) -> tuple[WriteResult, Plan]:
    """Re-plan on a fresh read and write it; returns the write and the plan applied.

    When ARM accepted a PUT whose operation then did not report success and a later read
    finds the change in place, the writer reports it written: the plan returned is the one
    that PUT carried (not the no-op planned on the later read), so it is recorded, verified
    and can be rolled back like any applied change.
    """
    planned: list[Plan] = []
    sent: list[Plan] = []
    cid = change_id or new_change_id(rem.clock())

    def build(doc: dict[str, Any]) -> dict[str, Any] | None:
        plan = make_plan(doc)
        planned.append(plan)
        return None if plan.is_noop else apply_plan(doc, plan)

    def before_put(target: GatewayId) -> None:
        sent.append(planned[-1])
        if rem._before_write is not None:
            rem._before_write(target, change_record(rem, target, planned[-1], by, cid))

    written = rem.writer.write(gid, build, what="gateway write", before_put=before_put)
    if written.after is not None and sent:
        return written, sent[-1]
    return written, planned[-1]


def change_record(
    rem: Remediator,
    gid: GatewayId,
    plan: Plan,
    by: str,
    change_id: str,
    before: GatewayDocument | None = None,
    after: GatewayDocument | None = None,
) -> ChangeRecord:
    return ChangeRecord(
        id=change_id,
        gateway_id=gid.id,
        when=rem.clock().isoformat(),
        by=by,
        kind="apply",
        plan=plan_to_dict(plan),
        settings=plan.settings_names,
        thumbprint=plan.thumbprint,
        etag_before=before.etag if before else None,
        etag_after=after.etag if after else None,
    )


def verify(
    rem: Remediator,
    gid: GatewayId,
    plan: Plan,
    affected: list[Finding] | None,
    doc: Mapping[str, Any],
) -> tuple[bool | None, list[dict[str, Any]]]:
    """Backend health of the affected servers after the change (shared.remediation.verify)."""
    servers = {(f.settings.lower(), f.server) for f in affected} if affected else None
    return wait_until_healthy(
        rem.arm,
        gid,
        plan.settings_names,
        servers,
        deadline=float(rem.settings["VERIFY_DEADLINE_SECONDS"]),
        interval=poll_interval(doc, floor=float(rem.settings["VERIFY_POLL_MIN_SECONDS"])),
        doc=doc,
        sleep=rem.sleep,
        progress=rem.progress,
    )
