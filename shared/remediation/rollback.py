"""Rollback and holds for the Remediator: undo exactly what a change added, and keep the bot
from making an undone change again.

A rollback is a gateway write by the same safe writer (shared.remediation.writer) and follows
the effective mode as a fix does; an operator's rollback sets a hold (shared.remediation.holds)
that every later fix and approval checks first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from shared.common.errors import InputError
from shared.common.ids import GatewayId, parse_gateway_id
from shared.common.settings import Mode
from shared.remediation.assessment import gateway_tags
from shared.remediation.changelog import ChangeRecord, new_change_id, rollback_of
from shared.remediation.changelog import find_change as find_recorded
from shared.remediation.holds import active_hold, hold_for_rollback
from shared.remediation.outcome import RemediationOutcome, RollbackPreview
from shared.remediation.plan import Plan, plan_from_dict, revert_plan
from shared.remediation.policy import check_scope, effective_mode
from shared.remediation.preflight import check_write_permissions
from shared.remediation.proposals import DRAINING_WARNING
from shared.remediation.render import az_rollback_commands, json_patch, rollback_summary
from shared.remediation.writer import WriteRefused, is_failed

if TYPE_CHECKING:
    from shared.remediation.remediate import Remediator


def find_change(rem: Remediator, change_id: str, gateway_id: str | None = None) -> ChangeRecord:
    """The change `change_id` (made to `gateway_id` when given); InputError when unknown."""
    if gateway_id:
        return find_recorded(rem.changes, parse_gateway_id(gateway_id).id, change_id)
    change = rem.changes.get(change_id)
    if change is None:
        raise InputError(f"no change {change_id[:80]!r} in {rem.changes.describe()}")
    return change


def rollback_preview(change: ChangeRecord, doc: Mapping[str, Any]) -> RollbackPreview:
    """What rolling `change` back would do to the gateway document `doc` (pure)."""
    plan = plan_from_dict(change.plan)
    return RollbackPreview(
        change=change.id,
        gateway=change.gateway_id,
        summary=rollback_summary(plan, change.id),
        patch=json_patch(doc, revert_plan(doc, plan)),
        az=az_rollback_commands(plan, change.gateway_id),
        warnings=[DRAINING_WARNING],
    )


def rollback(
    rem: Remediator,
    gateway_id: str | None,
    change_id: str,
    *,
    by: str = "cli",
    requested_mode: Mode | None = None,
    show: Callable[[RollbackPreview], None] | None = None,
    confirm: Callable[[RollbackPreview], bool] | None = None,
    dry_run: bool = False,
) -> RemediationOutcome:
    """Remove exactly what change `change_id` added, by the same safe write.

    The gateway comes from the change record when not given. A rollback is a gateway write,
    so it follows the effective mode as a fix does: diagnose and dry runs only preview,
    propose refuses (docs/remediation.md#rollback), the kill switch refuses. `show` gets the
    preview first, `confirm` decides. A change already rolled back is reported, not redone.
    """
    change = rem.find_change(change_id, gateway_id)
    gid = parse_gateway_id(change.gateway_id)
    check_scope(rem.settings, gid.id)
    if change.kind != "apply":
        undoes = change.extra.get("rolls_back")
        raise InputError(
            f"{change.id} is the rollback of {undoes}, not a change: apply the fix again instead"
        )
    configured = Mode.lowest(rem.settings.mode, requested_mode).value
    done = rollback_of(rem.changes.for_gateway(gid.id), change.id)
    if done is not None:
        return RemediationOutcome(
            gid.id,
            configured,
            "none",
            change=done.id,
            reason=f"already rolled back: {done.id} by {done.by} at {done.when}; nothing written",
        )
    current = rem.arm.get_gateway(gid)
    decision = effective_mode(rem.settings, gateway_tags(current.doc), requested_mode)
    mode = decision.mode.value
    preview = rem.rollback_preview(change, current.doc)
    if show is not None:
        show(preview)
    if not preview.patch:
        # Nothing of ours is left (someone removed it): recorded, so the change reads as undone.
        if decision.mode is Mode.APPLY and not dry_run and not rem.settings.kill_switch:
            return hold_after(rem, change, revert(rem, gid, change, by=by, mode=mode), by)
        return RemediationOutcome(
            gid.id, mode, "none", reason=f"nothing of {change.id} is left on the gateway"
        )
    why = "; ".join(decision.reasons)
    if rem.settings.kill_switch:
        return RemediationOutcome(
            gid.id, mode, "refused", reason="kill switch is on: no gateway writes"
        )
    if decision.mode is Mode.DIAGNOSE:
        return RemediationOutcome(
            gid.id, mode, "none", reason=f"diagnose mode ({why}): nothing written"
        )
    if decision.mode is Mode.PROPOSE:
        return RemediationOutcome(
            gid.id,
            mode,
            "refused",
            reason=f"propose mode ({why}): a rollback writes the gateway and needs apply "
            "mode; nothing written (the preview's az commands do it by hand)",
        )
    if dry_run:
        return RemediationOutcome(gid.id, mode, "none", reason="dry run: nothing written")
    if confirm is not None and not confirm(preview):
        return RemediationOutcome(gid.id, mode, "none", reason="not confirmed by the operator")
    try:
        check_write_permissions(rem.arm, gid, current.doc)
    except WriteRefused as exc:
        return RemediationOutcome(gid.id, mode, "refused", reason=str(exc), azure_refused=True)
    return hold_after(rem, change, revert(rem, gid, change, by=by, mode=mode), by)


# ---- holds (shared.remediation.holds) -----------------------------------------------------


def held(rem: Remediator, outcome: RemediationOutcome, plan: Plan) -> bool:
    """When an active hold covers `plan`, mark `outcome` held (nothing applied or proposed)."""
    if rem.holds is None:
        return False
    now = rem.clock()
    hold = active_hold(
        rem.holds.list(outcome.gateway),
        outcome.gateway,
        plan.settings_names,
        plan.action.value,
        now,
    )
    if hold is None:
        return False
    outcome.action, outcome.hold, outcome.reason = "held", hold.id, hold.describe()
    return True


def hold_after(
    rem: Remediator, change: ChangeRecord, outcome: RemediationOutcome, by: str
) -> RemediationOutcome:
    """An operator's rollback holds what it undid, so no job makes that change again."""
    if rem.holds is None or outcome.action == "failed" or not outcome.change:
        return outcome
    hold = hold_for_rollback(
        gateway_id=change.gateway_id,
        settings=change.settings,
        kind=str(change.plan.get("action") or ""),
        change=change.id,
        rollback=outcome.change,
        by=by,
        now=rem.clock(),
    )
    rem.holds.add(hold)
    outcome.hold = hold.id
    rem._notify(
        "hold_set",
        {
            "event": "hold_set",
            "gateway": hold.gateway_id,
            "action": hold.kind,
            "settings": list(hold.settings),
            "change": change.id,
            "hold": hold.id,
            "by": by,
            "reason": hold.describe(),
        },
    )
    outcome.reason += f"; {hold.id} keeps the bot from making it again (`holds release`)"
    return outcome


def revert(
    rem: Remediator, gid: GatewayId, change: ChangeRecord, *, by: str, mode: str
) -> RemediationOutcome:
    """The rollback write, recorded against the change (`extra.rolls_back`, `extra.result`)."""
    plan = plan_from_dict(change.plan)

    def build(doc: dict[str, Any]) -> dict[str, Any] | None:
        body = revert_plan(doc, plan)
        return None if body == doc else body

    try:
        written = rem.writer.write(gid, build, what="rollback")
    except WriteRefused as exc:
        return RemediationOutcome(
            gid.id,
            mode,
            "refused" if exc.writes == 0 else "failed",
            arm_writes=exc.writes,
            reason=f"the rollback of {change.id} was not done: {exc}",
            azure_refused=True,
        )
    before, after, writes = written.before, written.after, written.writes
    result = "nothing_left" if after is None else "failed" if is_failed(after) else "rolled_back"
    record = ChangeRecord(
        id=new_change_id(rem.clock()),
        gateway_id=gid.id,
        when=rem.clock().isoformat(),
        by=by,
        kind="rollback",
        plan=change.plan,
        settings=(),
        thumbprint=None,
        etag_before=before.etag if before else None,
        etag_after=after.etag if after else None,
        extra={"rolls_back": change.id, "result": result},
    )
    rem.changes.record(record)
    outcome = RemediationOutcome(
        gid.id,
        mode,
        {"rolled_back": "rolled_back", "failed": "failed"}.get(result, "none"),
        arm_writes=writes,
        change=record.id,
        reason={
            "rolled_back": f"reverted {change.id}",
            "failed": f"the rollback of {change.id} failed; the gateway is Failed",
            "nothing_left": f"nothing of {change.id} was left on the gateway",
        }[result],
    )
    if writes:
        rem._notify(
            outcome.action,
            {
                "event": outcome.action,
                "gateway": gid.id,
                "action": "rollback",
                "change": change.id,
                "by": by,
                "reason": outcome.reason,
            },
        )
    return outcome
