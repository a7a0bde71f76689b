"""The imperative shell of remediation: read, diagnose, decide, then write safely or propose.

Everything that decides is pure and lives elsewhere (diagnosis, plan, policy, trust, retry); this
module sequences the I/O around it:

- the safe write (shared.remediation.writer): one writer per gateway, a fresh read and
  re-plan before every attempt, an ETag check just before the PUT, the whole document sent
  back, back-off on contention and never a stale body replayed; locks and policy denials
  become a proposal;
- verification with backend health (shared.remediation.verify);
- rollback of exactly what we added, on request or when the write left the gateway failed.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from shared.cloud.arm import ArmClient, ArmError, GatewayDocument
from shared.cloud.authz import missing_permission
from shared.common.errors import BotError, InputError, OutOfScopeError
from shared.common.ids import GatewayId, parse_gateway_id, same_id
from shared.common.progress import Progress, no_progress
from shared.common.settings import Mode, Settings
from shared.core.capture import TlsCapture
from shared.core.certs import CertInfo, cert_info, signed_by
from shared.core.diagnosis import (
    Diagnosis,
    Finding,
    FixAction,
    diagnose,
    probe_requests,
    route_hosts,
)
from shared.core.expiry import expiring
from shared.core.gateway import Gateway, parse_gateway
from shared.core.health import HealthState, ServerHealth, parse_backend_health
from shared.core.probe_order import slow_first
from shared.core.report import to_json
from shared.probe.tls import capture_all, detect_vantage
from shared.probe.well_known import load_well_known
from shared.remediation import watch
from shared.remediation.changelog import (
    ChangeLog,
    ChangeRecord,
    find_change,
    new_change_id,
    rollback_of,
)
from shared.remediation.holds import HoldStore, active_hold, hold_for_rollback
from shared.remediation.notices import ExpiryNotices
from shared.remediation.plan import (
    Plan,
    apply_plan,
    plan_fixes,
    plan_from_dict,
    plan_to_dict,
    replan,
)
from shared.remediation.plan import revert_plan as _revert_plan
from shared.remediation.policy import Guards, Outcome, check_scope, decide, effective_mode
from shared.remediation.preflight import check_write_permissions
from shared.remediation.proposals import (
    DRAINING_WARNING,
    Proposal,
    ProposalStore,
    build_proposal,
    check_approver,
)
from shared.remediation.render import (
    az_rollback_commands,
    json_patch,
    renderings,
    rollback_summary,
)
from shared.remediation.trust import TrustResult, check_certificate
from shared.remediation.verify import poll_interval, wait_until_healthy
from shared.remediation.writer import GatewayWriter, WriteRefused, WriteResult, is_failed

log = logging.getLogger(__name__)

Captures = Mapping[tuple[str, int, str | None], TlsCapture]
ProbeFn = Callable[[Iterable[tuple[str, int, str | None]]], Captures]


@dataclass
class RemediationOutcome:
    """What one remediation did; `to_json` is the CLI's last line and the job result."""

    gateway: str
    mode: str
    action: str  # applied | proposed | held | none | refused | failed | rolled_back
    arm_writes: int = 0
    verified: bool | None = None
    proposal: str | None = None
    reason: str = ""
    change: str | None = None
    diagnosis: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    verification: list[dict[str, Any]] = field(default_factory=list)
    hold: str | None = None  # the hold that stopped the change, or the one a rollback set

    def to_json(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "mode": self.mode,
            "action": self.action,
            "arm_writes": self.arm_writes,
            "verified": self.verified,
            "proposal": self.proposal,
            "reason": self.reason,
            # The change recorded (applied, or the rollback record): `changes show` / rollback.
            "change": self.change,
            "hold": self.hold,
        }


@dataclass(frozen=True)
class Assessment:
    """A gateway read and diagnosed: the document, the parsed model, health and captures."""

    current: GatewayDocument
    gateway: Gateway
    health: tuple[ServerHealth, ...]
    captures: Captures
    diagnosis: Diagnosis
    # The trusted source (Key Vault) as read for this assessment: its certificates, or why it
    # could not be read. Read once per run; the diagnosis and the trust checks both use it.
    trusted: tuple[bytes, ...] = ()
    trusted_error: str | None = None
    # SHA-1s an overlap rotation adds for a next certificate found in the pool or the trusted
    # source, or given by the operator: they count as fetched (shared.remediation.watch).
    vouched: frozenset[str] = frozenset()


def _issued_chain(top: CertInfo, root_der_b64: str) -> bool:
    """`top` (a presented chain's last certificate) was signed by the root in `root_der_b64`."""
    try:
        root = cert_info(base64.b64decode(root_der_b64, validate=True))
    except (ValueError, InputError):
        return False
    return top.sha256 != root.sha256 and signed_by(top, root)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _tags(doc: Mapping[str, Any]) -> dict[str, str]:
    tags = doc.get("tags")
    return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {}


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
        self._probe = probe or self._default_probe
        self._trusted = trusted_certificates or (lambda: ())
        self._notify = notify or (lambda kind, event: None)
        self._expiry_notices = expiry_notices
        self.clock = clock
        self.sleep = sleep

    # ---- reading ------------------------------------------------------------------------------

    def _default_probe(self, requests: Iterable[tuple[str, int, str | None]]) -> Captures:
        return capture_all(
            requests,
            timeout=float(self.settings["PROBE_TIMEOUT_SECONDS"]),
            vantage=detect_vantage(self.settings["PROBE_VANTAGE"]),
        )

    def assess(self, gid: GatewayId, *, hint: tuple[str, str] | None = None) -> Assessment:
        """Read the gateway and its backend health, probe its own pool members, diagnose."""
        self.progress(f"reading the gateway {gid.name}")
        current = self.arm.get_gateway(gid)
        gateway = parse_gateway(current.doc)
        self.progress("reading backend health (an ARM operation)")
        health = parse_backend_health(self.arm.backend_health(gid))
        hosts = route_hosts(current.doc)
        # Members the gateway reports as timing out go first: their waits overlap the rest.
        requests = slow_first(dict.fromkeys(probe_requests(gateway, health, hosts=hosts)), health)
        self.progress(f"probing {len(requests)} backend handshake(s)")
        captures = self._probe(requests)
        trusted, trusted_error = self._read_trusted()
        diagnosis = diagnose(
            gateway,
            health,
            captures,
            now=self.clock(),
            hint=hint,
            hosts=hosts,
            trusted_sources=trusted,
            well_known=self._well_known() if captures else (),
        )
        soon = expiring(
            gateway,
            captures,
            now=self.clock(),
            key_vault=trusted,
            warning_days=int(self.settings["EXPIRY_WARNING_DAYS"]),
        )
        diagnosis = replace(diagnosis, expiring=soon)
        watch.notice_expiring(self, gid, soon)
        return Assessment(current, gateway, health, captures, diagnosis, trusted, trusted_error)

    def _well_known(self) -> tuple[CertInfo, ...]:
        """The well-known CA store (WELL_KNOWN_CA_BUNDLE; default: certifi's Mozilla roots)."""
        return load_well_known(self.settings.values.get("WELL_KNOWN_CA_BUNDLE") or None)

    def _read_trusted(self) -> tuple[tuple[bytes, ...], str | None]:
        try:
            return tuple(bytes(d) for d in self._trusted()), None
        except Exception as exc:  # noqa: BLE001 - any failure of the trusted source means "propose"
            return (), str(exc)

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
            return RemediationOutcome(gid.id, mode.value, "refused", reason=reason)
        doc = assessment.current.doc
        decision = effective_mode(self.settings, _tags(doc), requested_mode)
        outcome = RemediationOutcome(
            gid.id, decision.mode.value, "none", diagnosis=to_json(assessment.diagnosis)
        )
        plans = [p for p in plan_fixes(doc, assessment.diagnosis) if not p.is_noop]
        assessment, rotated = watch.rotation_plans_for(self, gid, assessment, next_certificates)
        # A fix the diagnosis found for the same change keeps its place and gains `replaces`.
        plans = [next((r for r in rotated if _same_plan(p, r)), p) for p in plans]
        plans += [p for p in rotated if not any(_same_plan(p, q) for q in plans)]
        retire = watch.retirement_plans_for(self, gid, assessment)
        if not plans and not retire:
            outcome.reason = self._nothing_to_do(assessment.diagnosis)
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

    def _nothing_to_do(self, diagnosis: Diagnosis) -> str:
        unhealthy = [f for f in diagnosis.findings if f.health != HealthState.HEALTHY.value]
        if not unhealthy:
            return "every backend is healthy"
        causes = sorted({f.cause.value for f in unhealthy})
        reason = "no actionable fix for: " + ", ".join(causes)
        needed = {f.fix.required_root for f in unhealthy if f.fix.required_root is not None}
        for root in sorted(needed, key=lambda r: (r.subject, r.authority_key_identifier or "")):
            aki = root.authority_key_identifier
            reason += (
                f"; obtain the trusted root {root.subject}"
                + (f" (authority key identifier {aki})" if aki else "")
                + " and upload it (the backend does not send it and no trusted source holds it)"
            )
        return reason

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
        trust = self._trust(assessment, plan)
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
        if verdict.outcome is not Outcome.DIAGNOSE and self._held(result, plan):
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
            return self._propose(gid, assessment, plan, requester, verdict.reasons)
        if confirm is not None and not confirm(plan):
            result.reason = "not confirmed by the operator"
            return result
        try:
            check_write_permissions(self.arm, gid, assessment.current.doc)
            return self._apply(gid, plan, by=requester, affected=self._affected(assessment, plan))
        except WriteRefused as exc:
            if exc.propose:
                proposed = self._propose(gid, assessment, plan, requester, (str(exc),))
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

    @staticmethod
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

    # ---- trust --------------------------------------------------------------------------------

    def _trust(self, assessment: Assessment, plan: Plan) -> TrustResult | None:
        fix = plan.fix
        if fix is None or fix.certificate is None:
            return None
        wanted = fix.certificate.sha1.upper()
        # Only captures the bot made itself, of its own pool members, count as "fetched from pool".
        presented = [
            c for c in assessment.captures.values() if any(x.sha1 == wanted for x in c.chain)
        ]
        leaf = next((c.leaf.sha1 for c in presented if c.leaf is not None), None)
        if assessment.trusted_error is not None:
            return TrustResult(
                False, (f"the trusted source could not be read: {assessment.trusted_error}",)
            )
        trusted = list(assessment.trusted)
        # A v2 root the backend does not send comes from the trusted source; it counts as fetched
        # when the chain the bot fetched from the pool ends in a certificate it signed.
        signed = fix.action is FixAction.ADD_TRUSTED_ROOT_CERTIFICATE and any(
            c.chain and _issued_chain(c.chain[-1], fix.certificate.der_b64)
            for c in assessment.captures.values()
        )
        return check_certificate(
            fix,
            {"presented_sha1": leaf} if leaf else None,
            generation=assessment.gateway.generation,
            fetched_from_pool=bool(presented) or signed or wanted in assessment.vouched,
            now=self.clock(),
            trusted_ders=trusted,
            subject_pattern=self.settings["TRUSTED_SUBJECT_PATTERN"],
        )

    @staticmethod
    def _affected(assessment: Assessment, plan: Plan) -> list[Finding]:
        names = {n.lower() for n in plan.settings_names}
        return [
            f
            for f in assessment.diagnosis.findings
            if f.settings.lower() in names and f.health != HealthState.HEALTHY.value
        ]

    # ---- proposals ----------------------------------------------------------------------------

    def _propose(
        self,
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
            now=self.clock(),
            gateway_etag=assessment.current.etag,
            evidence=evidence,
            certificate_cer=cert.cer if cert else None,
            reasons=reasons,
        )
        open_twin = self._open_twin(proposal)
        if open_twin is not None:
            return RemediationOutcome(
                gid.id,
                "propose",
                "proposed",
                proposal=open_twin.id,
                reason="an open proposal for the same change exists",
                plan=proposal.plan,
            )
        self.proposals.create(proposal)
        self._notify("proposal_created", self._event(proposal, "proposal_created"))
        return RemediationOutcome(
            gid.id,
            "propose",
            "proposed",
            proposal=proposal.id,
            reason="; ".join(reasons),
            plan=proposal.plan,
        )

    def _open_twin(self, proposal: Proposal) -> Proposal | None:
        """An open proposal for the same gateway and the same planned change (no duplicates)."""
        for other in self.proposals.list(status="open"):
            if same_id(other.gateway_id, proposal.gateway_id) and _same_change(
                other.plan, proposal.plan
            ):
                return other
        return None

    @staticmethod
    def _event(proposal: Proposal, kind: str, **extra: Any) -> dict[str, Any]:
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
        self, proposal_id: str, approver: str, *, change_id: str | None = None
    ) -> RemediationOutcome:
        """Approve an open proposal: re-read, re-plan, refuse if it no longer applies, apply.
        `change_id`: the id to record the change under (the API answers it before the job runs)."""
        proposal = self.proposals.get(proposal_id)
        check_approver(proposal, approver, self.settings["APPROVERS"])
        gid = parse_gateway_id(proposal.gateway_id)
        check_scope(self.settings, gid.id)
        if self.settings.kill_switch:
            return RemediationOutcome(
                gid.id,
                "apply",
                "refused",
                proposal=proposal.id,
                reason="kill switch is on: no gateway writes",
            )
        plan = proposal.get_plan()
        held = RemediationOutcome(gid.id, "apply", "none", proposal=proposal.id)
        if self._held(held, plan):
            return held
        self.progress(f"reading the gateway {gid.name}")
        current = self.arm.get_gateway(gid)
        fresh = replan(current.doc, plan)
        if fresh.is_noop:
            self._close(proposal, "superseded", approver, {"reason": fresh.noop_reason})
            return RemediationOutcome(
                gid.id,
                "apply",
                "none",
                proposal=proposal.id,
                reason=f"no longer needed: {fresh.noop_reason}",
            )
        self._close(proposal, "approved", approver, None)
        proposal = self.proposals.get(proposal_id)
        try:
            check_write_permissions(self.arm, gid, current.doc)
            outcome = self._apply(gid, plan, by=approver, affected=None, change_id=change_id)
        except (WriteRefused, BotError) as exc:
            writes = exc.writes if isinstance(exc, WriteRefused) else 0
            self._close(proposal, "failed", approver, {"reason": str(exc)}, expected="approved")
            return RemediationOutcome(
                gid.id, "apply", "failed", arm_writes=writes, proposal=proposal.id, reason=str(exc)
            )
        outcome.proposal = proposal.id
        # A write that failed (and was rolled back) must not close the proposal as applied.
        status = "failed" if outcome.action == "failed" else "applied"
        self._close(proposal, status, approver, outcome.to_json(), expected="approved")
        kind = f"proposal_{status}"
        self._notify(kind, self._event(proposal, kind, by=approver))
        return outcome

    def reject(self, proposal_id: str, approver: str, reason: str = "") -> Proposal:
        proposal = self.proposals.get(proposal_id)
        check_approver(proposal, approver, self.settings["APPROVERS"])
        self._close(proposal, "rejected", approver, {"reason": reason})
        self._notify("proposal_rejected", self._event(proposal, "proposal_rejected", by=approver))
        return self.proposals.get(proposal_id)

    def _close(
        self,
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
            decided_at=self.clock().isoformat(),
            outcome=outcome if outcome is not None else proposal.outcome,
        )
        self.proposals.update(updated, expected_status=expected)

    # ---- the safe write -----------------------------------------------------------------------

    def _apply(
        self,
        gid: GatewayId,
        plan: Plan,
        *,
        by: str,
        affected: list[Finding] | None,
        change_id: str | None = None,
    ) -> RemediationOutcome:
        change_id = change_id or new_change_id(self.clock())
        written, final = self.safe_write(
            gid, lambda doc: replan(doc, plan), by=by, change_id=change_id
        )
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
        change = self._change_record(gid, final, by, change_id, before, after)
        self.changes.record(change)
        if after is not None and is_failed(after):
            # Not self.rollback: undoing our own failed update needs no mode or confirmation.
            rollback = self._revert(gid, change, by="auto-rollback", mode="apply")
            undone = (
                "rolled back" if rollback.arm_writes else "nothing of ours was left to roll back"
            )
            return RemediationOutcome(
                gid.id,
                "apply",
                "failed",
                arm_writes=writes + rollback.arm_writes,
                change=change.id,
                reason=f"the gateway update failed and left the gateway Failed; {undone}"
                + ("" if rollback.action == "rolled_back" else f" ({rollback.reason})"),
            )
        verified, checks = self.verify(gid, final, affected, (after or before).doc)
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
        self._notify(
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
        self,
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
        cid = change_id or new_change_id(self.clock())

        def build(doc: dict[str, Any]) -> dict[str, Any] | None:
            plan = make_plan(doc)
            planned.append(plan)
            return None if plan.is_noop else apply_plan(doc, plan)

        def before_put(target: GatewayId) -> None:
            sent.append(planned[-1])
            if self._before_write is not None:
                self._before_write(target, self._change_record(target, planned[-1], by, cid))

        written = self.writer.write(gid, build, what="gateway write", before_put=before_put)
        if written.after is not None and sent:
            return written, sent[-1]
        return written, planned[-1]

    def _change_record(
        self,
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
            when=self.clock().isoformat(),
            by=by,
            kind="apply",
            plan=plan_to_dict(plan),
            settings=plan.settings_names,
            thumbprint=plan.thumbprint,
            etag_before=before.etag if before else None,
            etag_after=after.etag if after else None,
        )

    def verify(
        self, gid: GatewayId, plan: Plan, affected: list[Finding] | None, doc: Mapping[str, Any]
    ) -> tuple[bool | None, list[dict[str, Any]]]:
        """Backend health of the affected servers after the change (shared.remediation.verify)."""
        servers = {(f.settings.lower(), f.server) for f in affected} if affected else None
        return wait_until_healthy(
            self.arm,
            gid,
            plan.settings_names,
            servers,
            deadline=float(self.settings["VERIFY_DEADLINE_SECONDS"]),
            interval=poll_interval(doc, floor=float(self.settings["VERIFY_POLL_MIN_SECONDS"])),
            doc=doc,
            sleep=self.sleep,
            progress=self.progress,
        )

    # ---- rollback -----------------------------------------------------------------------------

    def find_change(self, change_id: str, gateway_id: str | None = None) -> ChangeRecord:
        """The change `change_id` (made to `gateway_id` when given); InputError when unknown."""
        if gateway_id:
            return find_change(self.changes, parse_gateway_id(gateway_id).id, change_id)
        change = self.changes.get(change_id)
        if change is None:
            raise InputError(f"no change {change_id[:80]!r} in {self.changes.describe()}")
        return change

    @staticmethod
    def rollback_preview(change: ChangeRecord, doc: Mapping[str, Any]) -> RollbackPreview:
        """What rolling `change` back would do to the gateway document `doc` (pure)."""
        plan = plan_from_dict(change.plan)
        return RollbackPreview(
            change=change.id,
            gateway=change.gateway_id,
            summary=rollback_summary(plan, change.id),
            patch=json_patch(doc, _revert_plan(doc, plan)),
            az=az_rollback_commands(plan, change.gateway_id),
            warnings=[DRAINING_WARNING],
        )

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
        """Remove exactly what change `change_id` added, by the same safe write.

        The gateway comes from the change record when not given. A rollback is a gateway write,
        so it follows the effective mode as a fix does: diagnose and dry runs only preview,
        propose refuses (docs/remediation.md#rollback), the kill switch refuses. `show` gets the
        preview first, `confirm` decides. A change already rolled back is reported, not redone.
        """
        change = self.find_change(change_id, gateway_id)
        gid = parse_gateway_id(change.gateway_id)
        check_scope(self.settings, gid.id)
        if change.kind != "apply":
            undoes = change.extra.get("rolls_back")
            raise InputError(
                f"{change.id} is the rollback of {undoes}, not a change: "
                "apply the fix again instead"
            )
        configured = Mode.lowest(self.settings.mode, requested_mode).value
        done = rollback_of(self.changes.for_gateway(gid.id), change.id)
        if done is not None:
            return RemediationOutcome(
                gid.id,
                configured,
                "none",
                change=done.id,
                reason=f"already rolled back: {done.id} by {done.by} at {done.when}; "
                "nothing written",
            )
        current = self.arm.get_gateway(gid)
        decision = effective_mode(self.settings, _tags(current.doc), requested_mode)
        mode = decision.mode.value
        preview = self.rollback_preview(change, current.doc)
        if show is not None:
            show(preview)
        if not preview.patch:
            # Nothing of ours is left (someone removed it): recorded, so the change reads as undone.
            if decision.mode is Mode.APPLY and not dry_run and not self.settings.kill_switch:
                return self._hold_after(change, self._revert(gid, change, by=by, mode=mode), by)
            return RemediationOutcome(
                gid.id, mode, "none", reason=f"nothing of {change.id} is left on the gateway"
            )
        why = "; ".join(decision.reasons)
        if self.settings.kill_switch:
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
            check_write_permissions(self.arm, gid, current.doc)
        except WriteRefused as exc:
            return RemediationOutcome(gid.id, mode, "refused", reason=str(exc))
        return self._hold_after(change, self._revert(gid, change, by=by, mode=mode), by)

    # ---- holds (shared.remediation.holds) -----------------------------------------------------

    def _held(self, outcome: RemediationOutcome, plan: Plan) -> bool:
        """When an active hold covers `plan`, mark `outcome` held (nothing applied or proposed)."""
        if self.holds is None:
            return False
        now = self.clock()
        hold = active_hold(
            self.holds.list(outcome.gateway),
            outcome.gateway,
            plan.settings_names,
            plan.action.value,
            now,
        )
        if hold is None:
            return False
        outcome.action, outcome.hold, outcome.reason = "held", hold.id, hold.describe()
        return True

    def _hold_after(
        self, change: ChangeRecord, outcome: RemediationOutcome, by: str
    ) -> RemediationOutcome:
        """An operator's rollback holds what it undid, so no job makes that change again."""
        if self.holds is None or outcome.action == "failed" or not outcome.change:
            return outcome
        hold = hold_for_rollback(
            gateway_id=change.gateway_id,
            settings=change.settings,
            kind=str(change.plan.get("action") or ""),
            change=change.id,
            rollback=outcome.change,
            by=by,
            now=self.clock(),
        )
        self.holds.add(hold)
        outcome.hold = hold.id
        self._notify(
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

    def _revert(
        self, gid: GatewayId, change: ChangeRecord, *, by: str, mode: str
    ) -> RemediationOutcome:
        """The rollback write, recorded against the change (`extra.rolls_back`, `extra.result`)."""
        plan = plan_from_dict(change.plan)

        def build(doc: dict[str, Any]) -> dict[str, Any] | None:
            body = _revert_plan(doc, plan)
            return None if body == doc else body

        try:
            written = self.writer.write(gid, build, what="rollback")
        except WriteRefused as exc:
            return RemediationOutcome(
                gid.id,
                mode,
                "refused" if exc.writes == 0 else "failed",
                arm_writes=exc.writes,
                reason=f"the rollback of {change.id} was not done: {exc}",
            )
        before, after, writes = written.before, written.after, written.writes
        result = (
            "nothing_left" if after is None else "failed" if is_failed(after) else "rolled_back"
        )
        record = ChangeRecord(
            id=new_change_id(self.clock()),
            gateway_id=gid.id,
            when=self.clock().isoformat(),
            by=by,
            kind="rollback",
            plan=change.plan,
            settings=(),
            thumbprint=None,
            etag_before=before.etag if before else None,
            etag_after=after.etag if after else None,
            extra={"rolls_back": change.id, "result": result},
        )
        self.changes.record(record)
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
            self._notify(
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


@dataclass(frozen=True)
class FixPreview:
    """What a fix would do before it does it: the outcome policy chose (apply | propose |
    diagnose) and why, readable lines, the RFC 6902 JSON Patch from the document read to the
    body sent (the bot PUTs the whole document), the equivalent az commands and their rollback,
    and the warnings (connection draining, where the evidence came from)."""

    gateway: str
    outcome: str
    reasons: list[str]
    summary: str
    patch: list[dict[str, Any]]
    az: list[str]
    az_rollback: list[str]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RollbackPreview:
    """What a rollback would remove: readable lines, the JSON Patch on the current document and
    the equivalent az commands (each its own gateway update)."""

    change: str
    gateway: str
    summary: str
    patch: list[dict[str, Any]]
    az: list[str]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _same_plan(a: Plan, b: Plan) -> bool:
    return _same_change(plan_to_dict(a), plan_to_dict(b))


def _same_change(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two serialised plans make the same change (ignoring the document they were planned on)."""
    keys = ("action", "certificate_ref_name", "collection")
    if any(a.get(k) != b.get(k) for k in keys):
        return False
    names_a = sorted(c.get("settings_name", "") for c in a.get("settings_changes", []))
    names_b = sorted(c.get("settings_name", "") for c in b.get("settings_changes", []))
    return names_a == names_b
