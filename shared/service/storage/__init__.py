"""The function app's state in Azure Storage (Azurite locally): the ledger table, the job queue and
the evidence blobs,
one module per noun (base, alerts, jobs, ledger, evidence, holds), composed into `Storage` here.

Ledger table layout (one table, PartitionKey/RowKey by record kind):
  alert/<sha256(alertId|condition)>  one row per (alertId, monitorCondition): create_entity dedups
  job/<job_id>                       a job: kind, mode, state, hint, diagnosis, outcome, error
  active/<sha256(gateway key)>       the job queued or running for a gateway (ETag-guarded marker)
  decision-<sha256(gateway)>/<time>  what happened to a gateway, by whom (seen/changed/verified…)
  hold/<hold id>                     what an operator told the bot to leave alone (holds.py)

Action groups retry and send duplicates, so the alert path deduplicates on (alertId,
monitorCondition) and coalesces with an active job (docs/sources.md#action-groups).
Every storage failure surfaces as StorageUnavailable so the HTTP layer can answer 503, the one
answer an action group retries on (docs/sources.md#action-groups); a request storage refuses as
malformed (400/413) as its subclass StorageRejected, a bug the HTTP layer answers 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.common.errors import SettingsError
from shared.service.storage.alerts import AlertsMixin
from shared.service.storage.base import (
    StorageBase,
    StorageNames,
    StorageRejected,
    StorageUnavailable,
    gateway_hash,
    gateway_key,
    guard,
)
from shared.service.storage.evidence import EvidenceNotFound
from shared.service.storage.holds import HoldsMixin
from shared.service.storage.jobs import (
    Job,
    JobClaim,
    JobsMixin,
    JobState,
    JobStateError,
    new_job_id,
)
from shared.service.storage.ledger import Decision, LedgerMixin

__all__ = [
    "Decision",
    "EvidenceNotFound",
    "Job",
    "JobClaim",
    "JobState",
    "JobStateError",
    "Storage",
    "StorageNames",
    "StorageRejected",
    "StorageUnavailable",
    "gateway_hash",
    "gateway_key",
    "guard",
    "new_job_id",
    "storage_from_settings",
]


class Storage(AlertsMixin, JobsMixin, LedgerMixin, HoldsMixin, StorageBase):
    """Ledger, job queue and evidence over one storage account. Thread-safe."""


def storage_from_settings(env: Mapping[str, str], *, credential: Any = None) -> Storage:
    """Build Storage the way the Functions host reads `AzureWebJobsStorage`: a connection string
    locally; in Azure identity-based settings `AzureWebJobsStorage__accountName` (or
    `__blobServiceUri`/`__queueServiceUri`/`__tableServiceUri`), `__credential=managedidentity`
    and `__clientId` for a user-assigned identity."""
    names = StorageNames.from_env(env)
    conn = (env.get("AzureWebJobsStorage") or "").strip()
    if conn:
        return Storage.from_connection_string(conn, names)
    prefix = "AzureWebJobsStorage__"
    account = (env.get(prefix + "accountName") or "").strip()
    urls = {
        svc: (env.get(f"{prefix}{svc}ServiceUri") or "").strip()
        for svc in ("blob", "queue", "table")
    }
    if not account and not all(urls.values()):
        raise SettingsError(
            "AzureWebJobsStorage: set a connection string, or AzureWebJobsStorage__accountName "
            "for an identity-based connection"
        )
    for svc in urls:
        urls[svc] = urls[svc] or f"https://{account}.{svc}.core.windows.net"
    cred = credential or _credential(env.get(prefix + "credential"), env.get(prefix + "clientId"))
    return Storage.from_endpoints(
        blob_url=urls["blob"],
        queue_url=urls["queue"],
        table_url=urls["table"],
        credential=cred,
        names=names,
    )


def _credential(kind: str | None, client_id: str | None) -> Any:
    # Imported lazily: only identity-based deployments need azure-identity here.
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if (kind or "").strip().lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id.strip() if client_id else None)
    return DefaultAzureCredential()
