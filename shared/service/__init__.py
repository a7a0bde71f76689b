"""The function app's service layer: alerts, the HTTP API and its MCP tools, the queue worker
and sweep, Azure Storage state (ledger, jobs, evidence, proposals), leases (the blob lease in
`lease`; the command line's file lock in `local_lock`, which imports no storage SDK), logs and
notifications.

Owns: everything function_app.py's triggers call; free of the Functions SDK itself.
May import: shared.common, shared.core, shared.probe, shared.cloud, shared.remediation.
Never shared.cli.
"""
