"""Remediation: from a diagnosis to a safe change or a proposal, then verification.

Owns: the pure plan (plan, render, policy, trust, retry decisions, overlap rotation in
`rotation`), change records and proposals, the expiry notices and watch steps (`notices`, `watch`),
and the imperative shell around them: the safe writer, verification and the Remediator.
May import: shared.common, shared.core, shared.probe, shared.cloud. Never shared.service or
shared.cli.
"""
