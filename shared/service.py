"""Wiring for the CLI: build a Remediator from settings with local stores (state directory).

The function app wires the same Remediator with Azure Storage stores (shared.worker).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shared.arm import ArmClient, make_credential
from shared.changelog import LocalChangeLog
from shared.ids import GatewayId
from shared.lease import LocalGatewayLock
from shared.proposals import LocalProposalStore
from shared.remediate import Remediator
from shared.settings import Settings

log = logging.getLogger(__name__)


def trusted_source(settings: Settings, credential: Any) -> Callable[[], Sequence[bytes]]:
    """Reads the trusted-source certificates from Key Vault when one is configured."""
    from shared.trust import fetch_trusted_certificates

    vault = str(settings["KEY_VAULT_URL"])
    names = tuple(settings["TRUSTED_CERT_NAMES"])

    def fetch() -> Sequence[bytes]:
        if not vault or not names:
            return ()
        kwargs: dict[str, Any] = {}
        if not vault.lower().split("/")[2].endswith(".vault.azure.net"):
            # A local emulator (the sandbox) answers on another host name.
            kwargs["verify_challenge_resource"] = False
        return fetch_trusted_certificates(vault, names, credential, **kwargs)

    return fetch


def notifier(settings: Settings) -> Callable[[str, dict[str, Any]], None]:
    from shared.notify import EVENTS, notify

    url = str(settings["NOTIFY_WEBHOOK_URL"])
    fmt = settings["NOTIFY_WEBHOOK_FORMAT"]

    def send(kind: str, event: dict[str, Any]) -> None:
        if url:
            notify(url, fmt, {"title": EVENTS.get(kind, kind.replace("_", " ")), **event})

    return send


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


__all__ = ["GatewayId", "local_remediator", "notifier", "trusted_source"]
