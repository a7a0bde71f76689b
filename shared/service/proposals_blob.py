"""The function app's ProposalStore: one JSON blob per proposal, `proposals/<id>.json` in the
evidence container. Compare-and-set on status uses the blob's ETag (If-Match), so two approvers,
or an approver and the sweep, cannot both win."""

from __future__ import annotations

import json
import re

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.remediation.proposals import STATUSES, Proposal, ProposalConflict, ProposalNotFound
from shared.service.storage import Storage, guard

PREFIX = "proposals/"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_JSON = ContentSettings(content_type="application/json")


class BlobProposalStore:
    """Implements shared.remediation.proposals.ProposalStore over Azure Blob Storage."""

    def __init__(self, storage: Storage, container: str | None = None) -> None:
        self.storage = storage
        self.container_name = container or storage.names.evidence_container

    @property
    def _container(self) -> ContainerClient:
        return self.storage.container(self.container_name)

    def _name(self, proposal_id: str) -> str:
        if not _ID_RE.match(proposal_id or ""):
            raise ProposalNotFound(f"not a proposal id: {str(proposal_id)[:80]!r}")
        return f"{PREFIX}{proposal_id}.json"

    def create(self, proposal: Proposal) -> None:
        _check_status(proposal)
        name = self._name(proposal.id)
        with guard("storing a proposal"):
            try:
                self._container.upload_blob(
                    name, _encode(proposal), overwrite=False, content_settings=_JSON
                )
            except ResourceExistsError:
                raise ProposalConflict(f"proposal {proposal.id} already exists") from None

    def get(self, proposal_id: str) -> Proposal:
        return self._read(self._name(proposal_id))[0]

    def list(self, status: str | None = None) -> list[Proposal]:
        found = []
        with guard("listing proposals"):
            names = [b.name for b in self._container.list_blobs(name_starts_with=PREFIX)]
        for name in names:
            try:
                proposal = self._read(name)[0]
            except ProposalNotFound:
                continue  # deleted between listing and reading
            if status is None or proposal.status == status:
                found.append(proposal)
        return sorted(found, key=lambda p: (p.created_at, p.id))

    def update(self, proposal: Proposal, *, expected_status: str) -> None:
        """Write `proposal` only if the stored one still has `expected_status` and nobody wrote
        in between (ETag); ProposalConflict otherwise."""
        _check_status(proposal)
        name = self._name(proposal.id)
        current, etag = self._read(name)
        if current.status != expected_status:
            raise ProposalConflict(
                f"proposal {proposal.id} is {current.status}, expected {expected_status}"
            )
        with guard("updating a proposal"):
            try:
                self._container.upload_blob(
                    name,
                    _encode(proposal),
                    overwrite=True,
                    content_settings=_JSON,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                raise ProposalConflict(f"proposal {proposal.id} changed meanwhile") from None

    def _read(self, name: str) -> tuple[Proposal, str]:
        with guard("reading a proposal"):
            try:
                downloader = self._container.download_blob(name)
                data = downloader.readall()
            except ResourceNotFoundError:
                raise ProposalNotFound(f"no proposal {name[len(PREFIX) : -5]}") from None
        return Proposal.from_dict(json.loads(data)), str(downloader.properties.etag)


def _encode(proposal: Proposal) -> bytes:
    return json.dumps(proposal.to_dict(), indent=2, sort_keys=True).encode()


def _check_status(proposal: Proposal) -> None:
    if proposal.status not in STATUSES:
        raise ValueError(f"unknown status {proposal.status!r}")
