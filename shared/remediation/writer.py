"""The safe gateway write: one writer per gateway, a fresh read before every attempt, an ETag
check just before the PUT, retries decided by shared.remediation.retry, and never a stale body
replayed.

The gateway is one big resource that Terraform, the portal, AGIC and pipelines also PUT, and ARM
does not honour If-Match on it (appgw-backend-tls.md §6): the fresh read, the second read just
before the PUT and the per-gateway lock are what keep other writers' changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from shared.cloud.arm import ArmClient, ArmError, GatewayDocument, LroFailed
from shared.common.errors import BotError
from shared.common.ids import GatewayId
from shared.common.settings import Settings
from shared.remediation.retry import Verdict, decide_retry

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


def is_failed(doc: GatewayDocument) -> bool:
    return (doc.provisioning_state or "").lower() == "failed"


class GatewayWriter:
    """Writes one gateway at a time under its lock; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        arm: ArmClient,
        lock_for: Callable[[GatewayId], AbstractContextManager[Any]],
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.arm = arm
        self.lock_for = lock_for
        self.sleep = sleep

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
        with self.lock_for(gid) as lock:
            for attempt in range(1, attempts + 1):
                current = self.arm.get_gateway(gid)
                body = build(current.doc)
                if body is None:
                    return WriteResult(current, None, writes)
                # Another writer between our read and our write: build again on their document.
                if self.arm.get_gateway(gid).etag != current.etag:
                    last_reason = "the gateway changed between read and write"
                    log.info("gateway %s changed under us; re-planning", gid.name)
                    continue
                if getattr(lock, "lost", False):
                    # Another worker may hold the gateway now: writing would make two writers.
                    raise WriteRefused("lost the gateway lease", propose=False, writes=writes)
                if before_put is not None:
                    before_put(gid)
                try:
                    writes += 1
                    after = self.arm.put_gateway(gid, body)
                except ArmError as exc:
                    failed = self._left_failed(gid, exc)
                    if failed is not None:
                        # Accepted, then failed: the caller rolls back what we added.
                        return WriteResult(current, failed, writes)
                    decision = decide_retry(
                        exc, attempt, base=float(self.settings["WRITE_BACKOFF_SECONDS"])
                    )
                    last_reason = decision.reason
                    if decision.verdict is Verdict.RETRY and attempt < attempts:
                        log.info(
                            "%s on %s: %s; retry in %.1f s", what, gid.name, exc, decision.delay
                        )
                        self.sleep(decision.delay)
                        continue
                    raise WriteRefused(
                        f"{what} not done: {decision.reason}",
                        propose=decision.verdict is Verdict.PROPOSE,
                        writes=writes,
                    ) from exc
                return WriteResult(current, after, writes)
        raise WriteRefused(
            f"{what} not done after {attempts} attempts: {last_reason}",
            propose=False,
            writes=writes,
        )

    def _left_failed(self, gid: GatewayId, error: ArmError) -> GatewayDocument | None:
        """After an accepted PUT whose operation failed: the gateway, if it is now Failed."""
        if not isinstance(error, LroFailed):
            return None
        log.warning("update of %s failed after ARM accepted it: %s", gid.name, error)
        try:
            doc = self.arm.get_gateway(gid)
        except ArmError:
            return None
        return doc if is_failed(doc) else None
