"""The operator command line, `python -m shared`: diagnose, export-cert, fix, proposals,
changes, rollback.

Owns: argument parsing, exit codes (2 for bad input), text and JSON output, local wiring.
May import: shared.common, shared.core, shared.probe, shared.cloud, shared.remediation,
shared.service.
"""
