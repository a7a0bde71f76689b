"""Wiring for the CLI: build a Remediator from settings with local stores (state directory), or
with the function app's own stores when its storage is configured.

With `AzureWebJobsStorage` (or its identity-based `__accountName` / `__tableServiceUri` form) set,
the CLI shares the function app's state: its ledger (changes and rollbacks), its proposals and its
gateway leases, so changes the app made are listed and reversible here, and the CLI and the app
never write one gateway at once. Otherwise it keeps `STATE_DIR` (docs/remediation.md).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from shared.cloud.arm import ArmClient, make_credential
from shared.cloud.keyvault import trusted_source
from shared.common.settings import Settings
from shared.remediation.changelog import ChangeLog, LocalChangeLog
from shared.remediation.holds import HoldStore, LocalHoldStore
from shared.remediation.notices import LocalExpiryNotices
from shared.remediation.proposals import LocalProposalStore
from shared.remediation.remediate import Remediator
from shared.service.local_lock import LocalGatewayLock
from shared.service.notify import notifier

if TYPE_CHECKING:
    from shared.service.storage import Storage

log = logging.getLogger(__name__)

_APP_STORAGE_KEYS = (
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__tableServiceUri",
)


def app_storage(env: Mapping[str, str] | None = None) -> Storage | None:
    """The function app's storage when its settings are in the environment, else None."""
    env = os.environ if env is None else env
    if not any((env.get(key) or "").strip() for key in _APP_STORAGE_KEYS):
        return None
    from shared.common.errors import SettingsError
    from shared.service.storage import storage_from_settings

    try:
        return storage_from_settings(env)
    except ValueError as exc:  # the SDK's "Connection string is either blank or malformed."
        raise SettingsError(
            f"AzureWebJobsStorage: {exc} Set it to the function app's storage connection string, "
            "or unset it to keep the CLI's state in STATE_DIR"
        ) from None


_said: set[str] = set()


def local_state(settings: Settings, env: Mapping[str, str] | None = None) -> Path:
    """STATE_DIR; when the operator did not set it, say once on stderr which directory is read
    (the default is relative to the current directory)."""
    env = os.environ if env is None else env
    state = Path(settings["STATE_DIR"])
    if not (env.get("STATE_DIR") or "").strip() and str(state) not in _said:
        _said.add(str(state))
        sys.stderr.write(
            f"note: using the local state directory {state.resolve()} (STATE_DIR is not set; "
            "set it, or AzureWebJobsStorage to use the function app's state)\n"
        )
    return state


def change_log(settings: Settings, *, env: Mapping[str, str] | None = None) -> ChangeLog:
    """The change log the CLI reads: the app's ledger when configured, else STATE_DIR's file."""
    storage = app_storage(env)
    if storage is not None:
        from shared.service.table_changelog import TableChangeLog

        return TableChangeLog(storage)
    return LocalChangeLog(local_state(settings, env))


def hold_store(settings: Settings, *, env: Mapping[str, str] | None = None) -> HoldStore:
    """The holds the CLI reads and writes: the app's ledger when configured, else STATE_DIR's."""
    storage = app_storage(env)
    if storage is not None:
        from shared.service.holds import TableHoldStore

        return TableHoldStore(storage)
    return LocalHoldStore(local_state(settings, env))


def local_remediator(
    settings: Settings,
    *,
    state_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Remediator:
    """A Remediator for the operator CLI: the function app's stores when its storage is
    configured (app_storage), else file lock, proposals and change log on local disk."""
    credential = make_credential(settings)
    storage = app_storage(env)
    if storage is not None:
        from shared.service.expiry_notices import TableExpiryNotices
        from shared.service.holds import TableHoldStore
        from shared.service.lease import GatewayLease
        from shared.service.proposals_blob import BlobProposalStore
        from shared.service.table_changelog import TableChangeLog

        return Remediator(
            settings,
            arm=ArmClient(settings, credential=credential),
            proposals=BlobProposalStore(storage),
            changes=TableChangeLog(storage),
            lock_for=lambda gid: GatewayLease(storage, gid),
            trusted_certificates=trusted_source(settings, credential),
            notify=notifier(settings),
            holds=TableHoldStore(storage),
            expiry_notices=TableExpiryNotices(storage),
        )
    state = Path(state_dir) if state_dir else local_state(settings, env)
    return Remediator(
        settings,
        arm=ArmClient(settings, credential=credential),
        proposals=LocalProposalStore(state / "proposals"),
        changes=LocalChangeLog(state),
        lock_for=lambda gid: LocalGatewayLock(state, gid),
        trusted_certificates=trusted_source(settings, credential),
        notify=notifier(settings),
        holds=LocalHoldStore(state),
        expiry_notices=LocalExpiryNotices(state),
    )


__all__ = ["app_storage", "change_log", "hold_store", "local_remediator"]
