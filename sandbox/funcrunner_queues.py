"""Queue triggers and queue output bindings of the local Functions runner (sandbox/funcrunner.py),
against Azure Storage (Azurite): polling, host.json `messageEncoding`, the dequeue count, the
message made visible again after `visibilityTimeout` on failure and moved to `<queue>-poison`
after `maxDequeueCount` attempts (docs/sources.md#functions).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue import LinearRetry, QueueClient, TextBase64EncodePolicy
from azure.storage.queue import QueueMessage as StorageQueueMessage

from sandbox.funcrunner_index import IndexedFunction, Invocation, error_text

if TYPE_CHECKING:
    from sandbox.funcrunner import FunctionRunner, _Out

log = logging.getLogger("sandbox.funcrunner")

_INITIAL_LEASE = 600  # seconds a message stays invisible while its function runs


# The poll loop retries by itself: the SDK's default backoff (15 s, 18 s, 24 s…, ±3 s jitter)
# while storage is down would keep stop() waiting for minutes. One quick retry, then the loop.
def poll_retry() -> dict[str, Any]:
    """Client options for the runner's queue polls: one quick retry. A new policy per client:
    azure-core links each pipeline's policies through their `next` attribute, so one policy
    object shared by clients built on several threads would be re-linked under a request in
    flight (AttributeError: '_SansIOHTTPPolicyRunner' object has no attribute 'next')."""
    return {
        "retry_policy": LinearRetry(backoff=0.2, retry_total=1, random_jitter_range=0.1),  # type: ignore[arg-type]
        "connection_timeout": 5,
    }


def poll_queue(runner: FunctionRunner, fn: IndexedFunction) -> None:
    client = queue_client(runner, fn.trigger)
    poison = queue_client(runner, fn.trigger, suffix="-poison")
    batch = max(1, min(32, runner.config.batch_size))
    with ThreadPoolExecutor(max_workers=batch, thread_name_prefix=f"q-{fn.name}") as pool:
        while not runner._stop.is_set():
            try:
                messages = list(
                    client.receive_messages(
                        messages_per_page=batch,
                        max_messages=batch,
                        visibility_timeout=_INITIAL_LEASE,
                    )
                )
            except AzureError as exc:
                log.warning("polling %s failed: %s", fn.name, exc)
                messages = []
            if not messages:
                runner._stop.wait(runner.poll_interval)
                continue
            for future in [pool.submit(process, runner, fn, client, poison, m) for m in messages]:
                future.result()


def process(
    runner: FunctionRunner,
    fn: IndexedFunction,
    client: QueueClient,
    poison: QueueClient,
    msg: StorageQueueMessage,
) -> None:
    count = int(msg.dequeue_count or 1)
    try:
        if count > runner.config.max_dequeue_count:
            raise RuntimeError("dequeue count above maxDequeueCount")
        body = decode_message(str(msg.content), runner.config.base64)
        message = QueueMessage(
            id=msg.id,
            body=body,
            dequeue_count=count,
            expiration_time=msg.expires_on,
            insertion_time=msg.inserted_on,
            time_next_visible=msg.next_visible_on,
            pop_receipt=msg.pop_receipt,
        )
        outs = runner._outputs(fn)
        runner._call(fn, message, outs)
        runner._deliver(fn, outs)
    except Exception as exc:  # noqa: BLE001 - any failure counts, as in the host
        fail_message(runner, fn, client, poison, msg, count, exc)
        return
    try:
        client.delete_message(msg.id, msg.pop_receipt)
    except AzureError as exc:
        log.warning("could not delete message %s: %s", msg.id, exc)
    runner._record(Invocation(fn.name, "queueTrigger", True, dequeue_count=count))


def fail_message(
    runner: FunctionRunner,
    fn: IndexedFunction,
    client: QueueClient,
    poison: QueueClient,
    msg: StorageQueueMessage,
    count: int,
    exc: Exception,
) -> None:
    log.error("queue function %s failed (dequeue %d): %s", fn.name, count, exc)
    poisoned = count >= runner.config.max_dequeue_count
    try:
        if poisoned:
            # Copy the content as stored (already encoded), then drop the original.
            poison.send_message(msg.content)
            client.delete_message(msg.id, msg.pop_receipt)
        else:
            client.update_message(
                msg.id, msg.pop_receipt, visibility_timeout=int(runner.config.visibility_timeout)
            )
    except AzureError as err:
        log.warning("could not requeue message %s: %s", msg.id, err)
    runner._record(
        Invocation(fn.name, "queueTrigger", False, error_text(exc), count, poisoned=poisoned)
    )


def queue_client(
    runner: FunctionRunner, binding: Mapping[str, Any], suffix: str = ""
) -> QueueClient:
    name = runner._resolve(str(binding["queueName"])) + suffix
    conn = runner._connection(binding)
    # The raw client: decoding happens here, to mirror host.json messageEncoding.
    return QueueClient.from_connection_string(conn, name, **poll_retry())


def deliver(runner: FunctionRunner, fn: IndexedFunction, outs: Mapping[str, _Out]) -> None:
    for binding in fn.outputs:
        value = outs[binding["name"]].get()
        if value is None:
            continue
        policy = TextBase64EncodePolicy() if runner.config.base64 else None
        client = QueueClient.from_connection_string(
            runner._connection(binding),
            runner._resolve(str(binding["queueName"])),
            message_encode_policy=policy,
        )
        create_queue(client)
        for item in value if isinstance(value, list | tuple) else [value]:
            client.send_message(message_text(item))


def decode_message(content: str, is_base64: bool) -> bytes:
    if not is_base64:
        return content.encode()
    return base64.b64decode(content.encode(), validate=True)


def message_text(item: Any) -> str:
    if isinstance(item, bytes):
        return item.decode()
    if isinstance(item, str):
        return item
    return json.dumps(item)


def create_queue(client: QueueClient) -> None:
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
