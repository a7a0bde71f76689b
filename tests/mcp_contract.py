"""The MCP tools' names as docs/agents.md promises them, spelled out once for the tests (not read
from the code, so a renamed tool fails them)."""

from __future__ import annotations

TOOL_NAMES = [
    "list_unhealthy_gateways",
    "diagnose_gateway",
    "get_job",
    "export_backend_certificate",
    "preview_fix",
    "propose_fix",
    "get_proposal",
    "list_changes",
    "preview_rollback",
]
