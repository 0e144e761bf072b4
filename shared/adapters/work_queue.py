"""Storage queue adapter of `WorkQueue`: JSON messages, optionally delayed, never expiring.

Why these choices: the Functions host's queue trigger reads base64, so every queue client is built
with `TextBase64EncodePolicy` (a `QueueServiceClient`'s policy is not passed on to the queue clients
it makes); a verify message may wait days for an offline panel, so
messages never expire (time-to-live -1) and delays use the queue's own visibility timeout (at most
7 days), which survives any restart of the app. Queues are created on first use in each process.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from shared.adapters.tables import storage_errors_mapped

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueServiceClient

# Azure Storage queues: a message may stay invisible for at most 7 days.
MAX_DELAY_S = 7 * 24 * 3600 - 1
NEVER_EXPIRE = -1


@storage_errors_mapped("Queue storage")
class StorageWorkQueue:
    def __init__(self, service: QueueServiceClient) -> None:
        self._service = service
        self._clients: dict[str, QueueClient] = {}
        self._lock = threading.Lock()

    def send(self, *, queue: str, message: Mapping[str, Any], delay_s: float = 0.0) -> None:
        client = self._client(queue)
        body = json.dumps(dict(message), separators=(",", ":"), sort_keys=True)
        delay = min(MAX_DELAY_S, math.ceil(delay_s)) if delay_s > 0 else None
        try:
            client.send_message(body, visibility_timeout=delay, time_to_live=NEVER_EXPIRE)
        except ResourceNotFoundError:
            # Deleted behind our back (or a fresh Azurite): create and send again, once.
            self._create(client)
            client.send_message(body, visibility_timeout=delay, time_to_live=NEVER_EXPIRE)

    def _client(self, queue: str) -> QueueClient:
        with self._lock:
            client = self._clients.get(queue)
            if client is None:
                from azure.storage.queue import TextBase64EncodePolicy

                # `get_queue_client` does NOT inherit the service client's encode policy: say it again.
                client = self._clients[queue] = self._service.get_queue_client(
                    queue, message_encode_policy=TextBase64EncodePolicy()
                )
                self._create(client)
            return client

    @staticmethod
    def _create(client: QueueClient) -> None:
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
