"""Evidence blobs: what a job saw and exported (CER files, large JSON), named `<job>/<name>`."""

from __future__ import annotations

import re

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContentSettings

from shared.common.errors import BotError
from shared.service.storage.base import StorageBase, guard

_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_BLOB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class EvidenceNotFound(BotError):
    """No evidence blob with that reference."""


class EvidenceMixin(StorageBase):
    """The evidence container."""

    def put_evidence(
        self, job_id: str, name: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> str:
        """Store a job's evidence (e.g. the exported CER); returns the reference `<job>/<name>`."""
        if not _JOB_ID_RE.match(job_id) or not _BLOB_NAME_RE.match(name) or ".." in name:
            raise ValueError(f"unsafe evidence name {job_id[:70]!r}/{name[:130]!r}")
        ref = f"{job_id}/{name}"
        with guard("storing evidence"):
            self.container(self.names.evidence_container).upload_blob(
                ref, data, overwrite=True, content_settings=ContentSettings(content_type)
            )
        return ref

    def get_evidence(self, ref: str) -> bytes:
        with guard("reading evidence"):
            try:
                blob = self.container(self.names.evidence_container).download_blob(ref)
            except ResourceNotFoundError:
                raise EvidenceNotFound(f"no evidence {ref[:200]!r}") from None
            return blob.readall()

    def evidence_url(self, ref: str) -> str:
        return self.blob_service.get_blob_client(self.names.evidence_container, ref).url
