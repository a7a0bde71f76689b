"""Wiring for the CLI: build a Remediator from settings with local stores (state directory).

The function app wires the same Remediator with Azure Storage stores (shared.service.app).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from shared.cloud.arm import ArmClient, make_credential
from shared.cloud.keyvault import trusted_source
from shared.common.settings import Settings
from shared.remediation.changelog import LocalChangeLog
from shared.remediation.proposals import LocalProposalStore
from shared.remediation.remediate import Remediator
from shared.service.lease import LocalGatewayLock
from shared.service.notify import notifier

log = logging.getLogger(__name__)


def local_remediator(
    settings: Settings, *, state_dir: str | os.PathLike[str] | None = None
) -> Remediator:
    """A Remediator for the operator CLI: file lock, proposals and change log on local disk."""
    state = Path(state_dir or settings["STATE_DIR"])
    credential = make_credential(settings)
    return Remediator(
        settings,
        arm=ArmClient(settings, credential=credential),
        proposals=LocalProposalStore(state / "proposals"),
        changes=LocalChangeLog(state),
        lock_for=lambda gid: LocalGatewayLock(state, gid),
        trusted_certificates=trusted_source(settings, credential),
        notify=notifier(settings),
    )


__all__ = ["local_remediator"]
