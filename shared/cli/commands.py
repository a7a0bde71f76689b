"""Every command module, imported for its `register(...)` calls: add a new module here."""

from __future__ import annotations

from shared.cli import changes, gateways, holds, jobs, preflight, remediate

__all__ = ["changes", "gateways", "holds", "jobs", "preflight", "remediate"]
