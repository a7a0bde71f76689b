"""Remediation: from a diagnosis to a safe change or a proposal, then verification.

Owns: the pure plan (plan, render, policy, trust, retry decisions, overlap rotation in
`rotation`), change records and proposals, the expiry notices and watch steps (`notices`, `watch`),
and the imperative shell around them: the safe writer, verification and the Remediator
(`remediate`: the fix path; `assessment`: read, probe, diagnose, trust check; `applying`: the
safe write, its record and verification; `approvals`: proposals approved or rejected;
`rollback`: rollback and the holds it sets; `outcome`: what a run reports and its previews).
May import: shared.common, shared.core, shared.probe, shared.cloud. Never shared.service or
shared.cli.
"""
