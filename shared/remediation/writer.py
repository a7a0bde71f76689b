"""The safe gateway write: one writer per gateway, a fresh read before every attempt, an ETag
check just before the PUT, retries decided by shared.remediation.retry, and never a stale body
replayed.

The gateway is one big resource that Terraform, the portal, AGIC and pipelines also PUT, and ARM
does not honour If-Match on it (docs/sources.md#overlapping-writes): the fresh read, the second read
just before the PUT and the per-gateway lock are what keep other writers' changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from shared.cloud.arm import ArmClient, ArmError, GatewayDocument, LroFailed
from shared.cloud.authz import missing_permission
from shared.common.errors import BotError
from shared.common.ids import GatewayId
from shared.common.progress import Progress, no_progress
from shared.common.settings import Settings
from shared.remediation.retry import Verdict, backoff, decide_retry

log = logging.getLogger(__name__)

# Builds the body to PUT from the freshly read document; None when there is nothing to write.
BuildBody = Callable[[dict[str, Any]], dict[str, Any] | None]


class WriteRefused(BotError):
    """A write cannot go ahead now; `propose` says whether a human can take it from here."""

    def __init__(self, message: str, *, propose: bool, writes: int) -> None:
        super().__init__(message)
        self.propose = propose
        self.writes = writes


@dataclass(frozen=True)
class WriteResult:
    before: GatewayDocument  # the document the body was built from
    after: GatewayDocument | None  # None when there was nothing to write
    writes: int  # PUT requests sent
    # Why the result was read from the gateway rather than from ARM's operation status (for
    # example a 403 on the status URL: the identity cannot track operations); "" otherwise.
    note: str = ""


def is_failed(doc: GatewayDocument) -> bool:
    return (doc.provisioning_state or "").lower() == "failed"


def is_busy(doc: GatewayDocument) -> bool:
    """Another operation runs on the gateway: `Updating` in the PUT body and on GET until it
    ends (tests/data/recorded/cli_ag_auth_cert_v1.json idx 7-16, cli_ag_root_cert_v2.json)."""
    return (doc.provisioning_state or "").lower() == "updating"


def _untracked(error: LroFailed) -> str:
    """The operator's note when ARM accepted the PUT but its status was not Succeeded: what
    went wrong, and for a 403 the action and scope to grant."""
    missing = missing_permission(error.codes, str(error))
    what = missing.describe() if missing else str(error)
    return (
        f"ARM accepted the update but its operation status was not Succeeded ({what}); "
        "the result was read from the gateway"
    )


class GatewayWriter:
    """Writes one gateway at a time under its lock; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        arm: ArmClient,
        lock_for: Callable[[GatewayId], AbstractContextManager[Any]],
        *,
        sleep: Callable[[float], None] = time.sleep,
        progress: Progress = no_progress,
    ) -> None:
        self.settings = settings
        self.arm = arm
        self.lock_for = lock_for
        self.sleep = sleep
        self.progress = progress

    def write(
        self,
        gid: GatewayId,
        build: BuildBody,
        *,
        what: str,
        before_put: Callable[[GatewayId], None] | None = None,
    ) -> WriteResult:
        """Under the gateway's lock: read, build the body, check the ETag again, PUT; retry.

        Every attempt starts from a fresh read, so a body is never replayed after a conflict.
        `before_put` runs right before every PUT (write-ahead: a caller records its intent, so a
        process that dies between the PUT and its change record still leaves a trace).
        """
        if self.settings.kill_switch:
            raise WriteRefused("kill switch is on: no gateway writes", propose=True, writes=0)
        attempts = int(self.settings["WRITE_ATTEMPTS"])
        writes = 0
        last_reason = "no attempt made"
        # The read our last ACCEPTED PUT was built from (its operation then failed to report
        # Succeeded): if a later read finds the change in place, it is ours and was written.
        sent_from: GatewayDocument | None = None
        with self.lock_for(gid) as lock:
            for attempt in range(1, attempts + 1):
                current = self._read_when_idle(gid, what, writes)
                body = build(current.doc)
                if body is None:
                    if sent_from is not None:
                        return WriteResult(sent_from, current, writes)
                    return WriteResult(current, None, writes)
                # Another writer between our read and our write: build again on their document.
                if self.arm.get_gateway(gid).etag != current.etag:
                    last_reason = "the gateway changed between read and write"
                    log.info("gateway %s changed under us; re-planning", gid.name)
                    self.progress(f"{what}: the gateway changed under us; reading it again")
                    continue
                if getattr(lock, "lost", False):
                    # Another worker may hold the gateway now: writing would make two writers.
                    raise WriteRefused("lost the gateway lease", propose=False, writes=writes)
                if before_put is not None:
                    before_put(gid)
                try:
                    writes += 1
                    self.progress(f"{what}: sending the PUT (attempt {attempt} of {attempts})")
                    after = self.arm.put_gateway(gid, body, on_accepted=self._accepted)
                except ArmError as exc:
                    if isinstance(exc, LroFailed):
                        sent_from = current
                        settled = self._after_accepted(gid, exc, build, what, writes)
                        if settled is not None:
                            # Failed (the caller rolls back what we added), or our change is in
                            # the document although a status poll failed: written either way.
                            return WriteResult(current, settled, writes, _untracked(exc))
                    decision = decide_retry(
                        exc, attempt, base=float(self.settings["WRITE_BACKOFF_SECONDS"])
                    )
                    last_reason = decision.reason
                    if decision.verdict is Verdict.RETRY and attempt < attempts:
                        log.info(
                            "%s on %s: %s; retry in %.1f s", what, gid.name, exc, decision.delay
                        )
                        self.progress(
                            f"{what}: {decision.reason}; retrying in {decision.delay:.0f} s"
                        )
                        self.sleep(decision.delay)
                        continue
                    raise WriteRefused(
                        f"{what} not done: {decision.reason}",
                        propose=decision.verdict is Verdict.PROPOSE,
                        writes=writes,
                    ) from exc
                self.progress(
                    f"{what}: operation finished (provisioningState "
                    f"{after.provisioning_state or 'unknown'})"
                )
                return WriteResult(current, after, writes)
        raise WriteRefused(
            f"{what} not done after {attempts} attempts: {last_reason}",
            propose=False,
            writes=writes,
        )

    def _accepted(self) -> None:
        self.progress("PUT accepted; waiting for the operation (a gateway update takes minutes)")

    def _read_when_idle(self, gid: GatewayId, what: str, writes: int) -> GatewayDocument:
        """GET the gateway; while another operation runs on it (`Updating`), wait and read again.

        Azure accepts a PUT while the gateway is Updating and cancels the running operation
        (cli_ag_auth_cert_v1.json: four PUTs within 6 s, each 200 with its own operation; the
        earlier ones end Canceled, superseded: azure-cli issue #21156). That operation may be a
        Terraform apply, an AGIC sync or a pipeline, which would then fail: so the bot never PUTs
        while the gateway is Updating. It polls every ARM_POLLING_INTERVAL (at least 0.5 s),
        doubling up to 60 s, through the injected sleep, for at most BUSY_WAIT_SECONDS, then
        stops without writing.
        """
        limit = float(self.settings["BUSY_WAIT_SECONDS"])
        base = max(float(self.settings["ARM_POLLING_INTERVAL"]), 0.5)
        waited, polls = 0.0, 0
        current = self.arm.get_gateway(gid)
        while is_busy(current):
            if waited >= limit:
                raise WriteRefused(
                    f"{what} not done: the gateway stayed busy (provisioningState Updating: "
                    f"another operation in flight) for {waited:.0f} s; no write while it runs",
                    propose=False,
                    writes=writes,
                )
            polls += 1
            delay = min(backoff(polls, base=base), limit - waited)
            log.info("%s is Updating (another operation); waiting %.1f s", gid.name, delay)
            self.progress(
                f"{what}: the gateway is Updating (another operation); "
                f"reading again in {delay:.0f} s"
            )
            self.sleep(delay)
            waited += delay
            current = self.arm.get_gateway(gid)
        return current

    def _after_accepted(
        self, gid: GatewayId, error: LroFailed, build: BuildBody, what: str, writes: int
    ) -> GatewayDocument | None:
        """ARM accepted our PUT, then its operation did not report Succeeded (Failed, Canceled,
        or a status poll that failed: 403, retries exhausted). Decide by the document, read once
        no operation runs on it: Failed -> it (the caller rolls back); our change in place -> it
        (written: never a proposal or a second write for a change already made); else None, and
        the error decides."""
        log.warning(
            "update of %s did not report success after ARM accepted it: %s", gid.name, error
        )
        try:
            doc = self._read_when_idle(gid, what, writes)
        except ArmError:
            return None
        if is_failed(doc) or build(doc.doc) is None:
            return doc
        return None
