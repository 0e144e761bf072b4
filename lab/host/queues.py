"""Queue triggers and queue output bindings against Azure Queue storage (Azurite in the lab).

The listener follows the Azure Functions queue extension (`QueueListener`/`QueueProcessor`, Storage
extension 5.x) step for step, because retry and poison behaviour is what a fan-out design relies on:

- poll with Get Messages for `batchSize` messages, each made invisible for 10 minutes and kept invisible
  by renewing at half that while the function runs; run the batch in parallel and poll again once at
  most `newBatchThreshold` are still running;
- on an empty queue back off exponentially (randomised) from 100 ms to `maxPollingInterval`; a message
  this host itself enqueues wakes the listener at once (the extension's shared queue watcher);
- success deletes the message; failure makes it visible again after `visibilityTimeout`, or moves it to
  `<queue>-poison` once `dequeue_count` reached `maxDequeueCount` (a message received with a higher count,
  e.g. after a crash, goes to the poison queue without running); a body that is not valid base64 under
  base64 encoding goes straight to the poison queue;
- several hosts may poll one queue: Azure Queue's visibility and pop receipts make that safe, so there is
  no lock here; a lost pop receipt (someone else took the message over) is ignored, as in the extension.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueMessage as StorageQueueMessage
from azure.storage.queue.aio import QueueClient

from lab.host import triggers
from lab.host.errors import HostStartupError
from lab.host.hostconfig import MIN_POLLING_INTERVAL, MessageEncoding, QueuesOptions
from lab.host.indexing import BindingSpec, IndexedFunction
from lab.host.invocation import Invoker
from lab.host.settings import resolve_expression

log = logging.getLogger("lab.host.queues")

# QueueListener: messages are received invisible for 10 minutes, renewed at half that while running.
RECEIVE_VISIBILITY = timedelta(minutes=10)
RENEW_EVERY = RECEIVE_VISIBILITY / 2
# RandomizedExponentialBackoffStrategy's randomisation: each backoff step is ±20 % of its nominal size.
BACKOFF_RANDOMISATION = 0.2
POISON_SUFFIX = "-poison"
# Azure queue names: 3-63 lowercase letters, digits and single dashes, starting and ending alphanumeric.
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
MAX_QUEUE_NAME = 63
DEFAULT_CONNECTION = "AzureWebJobsStorage"


def encode_body(body: bytes, encoding: MessageEncoding) -> str:
    if encoding == "base64":
        return base64.b64encode(body).decode("ascii")
    return body.decode("utf-8")


def decode_body(content: str, encoding: MessageEncoding) -> bytes:
    """The message body the function sees; ValueError when it is not valid under the encoding."""
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except binascii.Error as exc:
            raise ValueError("message is not valid base64") from exc
    return content.encode("utf-8")


def poison_queue_name(queue: str) -> str | None:
    """`<queue>-poison`, or None where the extension has no poison queue (already poison, or too long)."""
    if queue.endswith(POISON_SUFFIX) or len(queue) + len(POISON_SUFFIX) > MAX_QUEUE_NAME:
        return None
    return queue + POISON_SUFFIX


def resolve_connection(connection: str | None, settings: Mapping[str, str]) -> str:
    """The connection string a binding's `connection` names (setting NAME or AzureWebJobsNAME)."""
    name = connection or DEFAULT_CONNECTION
    for candidate in (name, f"AzureWebJobs{name}"):
        value = settings.get(candidate)
        if value:
            return value
    raise HostStartupError(
        f"storage connection {name!r} is not an app setting (nor AzureWebJobs{name}); "
        "start the lab with Azurite or set it in local.settings.json"
    )


def queue_name_of(binding: BindingSpec, settings: Mapping[str, str], *, function: str) -> str:
    name = resolve_expression(str(binding.get("queueName", "")), settings, where=f"{function}.{binding.name}")
    if not _QUEUE_NAME.match(name):
        raise HostStartupError(f"{function}: queue name {name!r} is not a valid Azure queue name")
    return name


class BackoffDelay:
    """RandomizedExponentialBackoffStrategy: minimum after a hit, doubling (±20 %) towards the maximum."""

    def __init__(self, *, minimum: timedelta, maximum: timedelta, rng: random.Random | None = None) -> None:
        self._minimum = minimum.total_seconds()
        self._maximum = maximum.total_seconds()
        self._current = self._minimum
        self._exponent = 0
        self._rng = rng or random.Random()

    def next_delay(self, *, found_messages: bool) -> float:
        if found_messages:
            self._current, self._exponent = self._minimum, 1
        elif self._current != self._maximum:
            interval = self._minimum
            if self._exponent > 0:
                factor = self._rng.uniform(1 - BACKOFF_RANDOMISATION, 1 + BACKOFF_RANDOMISATION)
                interval += factor * 2 ** (self._exponent - 1) * self._minimum
            if interval < self._maximum:
                self._current = interval
                self._exponent += 1
            else:
                self._current = self._maximum
        return self._current


class QueueClients:
    """One async QueueClient per (connection, queue), shared by listeners and output bindings."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], QueueClient] = {}
        self._created: set[tuple[str, str]] = set()

    def get(self, connection_string: str, queue: str) -> QueueClient:
        key = (connection_string, queue)
        if key not in self._clients:
            self._clients[key] = QueueClient.from_connection_string(connection_string, queue)
        return self._clients[key]

    async def ensure_exists(self, connection_string: str, queue: str) -> QueueClient:
        client = self.get(connection_string, queue)
        if (connection_string, queue) not in self._created:
            with contextlib.suppress(ResourceExistsError):
                await client.create_queue()
            self._created.add((connection_string, queue))
        return client

    async def send(self, connection_string: str, queue: str, content: str) -> None:
        client = self.get(connection_string, queue)
        try:
            await client.send_message(content)
        except ResourceNotFoundError:
            # Output bindings create their queue on first use (AddMessageAndCreateIfNotExistsAsync).
            self._created.discard((connection_string, queue))
            await (await self.ensure_exists(connection_string, queue)).send_message(content)

    async def close(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        self._clients.clear()


@dataclass(frozen=True)
class QueueTarget:
    connection_string: str
    queue: str


class QueueOutputSink:
    """Sends the values of queue output bindings after a successful invocation, and wakes local listeners."""

    def __init__(self, *, clients: QueueClients, settings: Mapping[str, str], options: QueuesOptions) -> None:
        self._clients = clients
        self._settings = settings
        self._options = options
        self._targets: dict[tuple[str, str], QueueTarget] = {}
        self._watchers: dict[str, list[Callable[[], None]]] = {}

    def prepare(self, function: IndexedFunction) -> None:
        """Resolve every queue output binding's queue and connection now, so errors show at startup."""
        specs = [output.binding for output in function.outputs]
        if function.return_binding is not None:
            specs.append(function.return_binding)
        for spec in specs:
            if spec.type == "queue":
                self._targets[(function.name, spec.name)] = QueueTarget(
                    connection_string=resolve_connection(spec.get("connection"), self._settings),
                    queue=queue_name_of(spec, self._settings, function=function.name),
                )

    def watch(self, queue: str, wake: Callable[[], None]) -> None:
        self._watchers.setdefault(queue, []).append(wake)

    async def flush(
        self, function: IndexedFunction, *, outputs: Mapping[str, Any], return_value: Any
    ) -> None:
        values: list[tuple[BindingSpec, Any]] = [
            (output.binding, outputs.get(output.param)) for output in function.outputs
        ]
        if function.return_binding is not None:
            values.append((function.return_binding, return_value))
        for spec, value in values:
            if spec.type != "queue":
                continue
            target = self._targets[(function.name, spec.name)]
            for body in triggers.queue_output_messages(value):
                await self._clients.send(
                    target.connection_string, target.queue, encode_body(body, self._options.message_encoding)
                )
            for wake in self._watchers.get(target.queue, []):
                wake()


class QueueListener:
    """Polls one queue for one queue-triggered function."""

    def __init__(
        self,
        *,
        function: IndexedFunction,
        target: QueueTarget,
        clients: QueueClients,
        options: QueuesOptions,
        invoker: Invoker,
    ) -> None:
        self.function = function
        self.target = target
        self._clients = clients
        self._options = options
        self._invoker = invoker
        self._backoff = BackoffDelay(minimum=MIN_POLLING_INTERVAL, maximum=options.max_polling_interval)
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._processing: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._poison = poison_queue_name(target.queue)

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name=f"queue-listener:{self.function.name}")

    def wake(self) -> None:
        self._wakeup.set()

    async def stop_polling(self) -> None:
        self._stopping.set()
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def finish(self, *, timeout: float) -> None:
        """Wait for message completion (delete/release) after the invocations ended or were cancelled."""
        if self._processing:
            await asyncio.wait(set(self._processing), timeout=timeout)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)
        self._wakeup.clear()

    async def _receive(self) -> list[StorageQueueMessage]:
        client = await self._clients.ensure_exists(self.target.connection_string, self.target.queue)
        pages = client.receive_messages(
            messages_per_page=self._options.batch_size,
            visibility_timeout=int(RECEIVE_VISIBILITY.total_seconds()),
        ).by_page()
        async for page in pages:
            return [message async for message in page]
        return []

    async def _poll(self) -> None:
        found_since_last_delay = False
        while not self._stopping.is_set():
            try:
                batch = await self._receive()
            except AzureError as exc:
                log.warning(
                    "polling queue %s for %s failed (%s); backing off",
                    self.target.queue,
                    self.function.name,
                    type(exc).__name__,
                )
                batch = []
            if self._stopping.is_set():
                await self._release_unstarted(batch)
                return
            if not batch:
                await self._sleep(self._backoff.next_delay(found_messages=found_since_last_delay))
                found_since_last_delay = False
                continue
            found_since_last_delay = True
            for message in batch:
                task = asyncio.create_task(self._process(message))
                self._processing.add(task)
                task.add_done_callback(self._processing.discard)
            await self._wait_for_new_batch_threshold()

    async def _wait_for_new_batch_threshold(self) -> None:
        """Fetch again only when at most newBatchThreshold messages are still being processed."""
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            while len(self._processing) > self._options.new_batch_threshold and not self._stopping.is_set():
                await asyncio.wait({*self._processing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()

    async def _release_unstarted(self, batch: list[StorageQueueMessage]) -> None:
        client = self._clients.get(self.target.connection_string, self.target.queue)
        for message in batch:
            await self._update_visibility(client, message, timedelta(0))

    async def _process(self, message: StorageQueueMessage) -> None:
        """One message, start to finish; a storage failure leaves it to reappear after its visibility."""
        try:
            await self._process_message(message)
        except AzureError as exc:
            log.warning(
                "completing message %s on %s failed (%s); it will be retried when it becomes visible",
                message.id,
                self.target.queue,
                type(exc).__name__,
            )

    async def _process_message(self, message: StorageQueueMessage) -> None:
        client = self._clients.get(self.target.connection_string, self.target.queue)
        if message.dequeue_count is not None and message.dequeue_count > self._options.max_dequeue_count:
            await self._to_poison(client, message)
            return
        try:
            body = decode_body(message.content or "", self._options.message_encoding)
        except ValueError:
            log.warning(
                "message %s on %s is not valid %s; moving it to the poison queue",
                message.id,
                self.target.queue,
                self._options.message_encoding,
            )
            await self._to_poison(client, message)
            return
        renewal = asyncio.create_task(self._keep_invisible(client, message))
        pytype = self.function.trigger_pytype

        def make_trigger(_: object) -> Any:
            return triggers.queue_message(
                body=body,
                message_id=message.id,
                dequeue_count=message.dequeue_count or 0,
                insertion_time=message.inserted_on,
                expiration_time=message.expires_on,
                next_visible_time=message.next_visible_on,
                pop_receipt=message.pop_receipt,
                pytype=pytype,
            )

        try:
            outcome = await self._invoker.invoke(
                self.function, trigger_label="queue", make_trigger=make_trigger, invocation_id=None
            )
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
        if outcome.succeeded:
            await self._delete(client, message)
        elif not outcome.started:
            await self._update_visibility(client, message, timedelta(0))  # shutdown: someone else may take it
        elif self._poison is None:
            pass  # no poison queue: leave it invisible rather than loop on it (the extension's rule)
        elif (message.dequeue_count or 0) >= self._options.max_dequeue_count:
            await self._to_poison(client, message)
        else:
            await self._update_visibility(client, message, self._options.visibility_timeout)

    async def _keep_invisible(self, client: QueueClient, message: StorageQueueMessage) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY.total_seconds())
            try:
                updated = await client.update_message(
                    message,
                    pop_receipt=message.pop_receipt,
                    visibility_timeout=int(RECEIVE_VISIBILITY.total_seconds()),
                )
            except AzureError as exc:
                log.warning(
                    "renewing message %s on %s failed (%s)", message.id, self.target.queue, type(exc).__name__
                )
                return
            message.pop_receipt = updated.pop_receipt
            message.next_visible_on = updated.next_visible_on

    async def _update_visibility(
        self, client: QueueClient, message: StorageQueueMessage, visibility: timedelta
    ) -> None:
        try:
            await client.update_message(
                message, pop_receipt=message.pop_receipt, visibility_timeout=int(visibility.total_seconds())
            )
        except (ResourceNotFoundError, HttpResponseError) as exc:
            # Pop receipt mismatch (another host took it over) or the message is gone: nothing to release.
            log.debug("releasing message %s on %s: %s", message.id, self.target.queue, type(exc).__name__)

    async def _delete(self, client: QueueClient, message: StorageQueueMessage) -> None:
        try:
            await client.delete_message(message, pop_receipt=message.pop_receipt)
        except (ResourceNotFoundError, HttpResponseError) as exc:
            log.debug("deleting message %s on %s: %s", message.id, self.target.queue, type(exc).__name__)

    async def _to_poison(self, client: QueueClient, message: StorageQueueMessage) -> None:
        if self._poison is None:
            return
        log.warning(
            "message %s has reached MaxDequeueCount of %d; moving it to queue '%s'",
            message.id,
            self._options.max_dequeue_count,
            self._poison,
        )
        await self._clients.send(self.target.connection_string, self._poison, message.content or "")
        await self._delete(client, message)
