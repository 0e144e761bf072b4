"""Image checks in Table storage, and their follow-up messages in Queue storage.

One table, `ffimagechecks`, partitioned by image (a hash of the canonical repository name, because
PartitionKeys may not contain `/`). Each row is one check, RowKey `check-<inverted ms>-<salt>` (the
inverted timestamp sorts the newest check of an image first): the stored JSON document, split over
`Doc0..DocN` properties because a string property holds at most 64 KiB, plus `Image`, `Tag`,
`Verdict`, `Outcome`, `Trigger`, `EventId`, `CreatedAt` columns for queries. A push check's salt
derives from its Event Grid event id, so the insert-only `create_check` is also the atomic test of
"was this event processed already?": of two deliveries racing, one insert wins.

The follow-up queue `ff-image-followups` carries `{"checkId", "attempt"}` (never a secret) with a
visibility delay; the client base64-encodes messages as the Functions queue trigger expects.
The whole layout is documented in docs/storage.md.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shared.adapters.tables import Tables
from shared.errors import Conflict, TransientError, from_azure_error
from shared.models.images import CheckId, CheckRecord, FollowUpMessage, StoredCheck, image_key, split_check_id
from shared.queues import IMAGE_FOLLOW_UP_QUEUE

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient
    from azure.storage.queue import QueueClient, QueueServiceClient

CHECKS_TABLE = "ffimagechecks"
CHECK_PREFIX = "check-"
# A Table string property holds 64 KiB, i.e. 32K UTF-16 characters; chunks stay well below.
DOC_CHUNK_CHARS = 30_000
# Azure Queue storage: a visibility delay of at most 7 days; `-1` time-to-live keeps the message
# until it is processed, however long the delay.
MAX_VISIBILITY_S = 7 * 24 * 3600
NEVER_EXPIRE = -1


def _chunks(document: str) -> dict[str, str | int]:
    parts = [document[i : i + DOC_CHUNK_CHARS] for i in range(0, len(document), DOC_CHUNK_CHARS)] or [""]
    columns: dict[str, str | int] = {f"Doc{index}": part for index, part in enumerate(parts)}
    columns["DocParts"] = len(parts)
    return columns


def _document(entity: Any) -> dict[str, Any]:
    parts = int(entity.get("DocParts") or 0)
    return dict(json.loads("".join(str(entity.get(f"Doc{index}") or "") for index in range(parts))))


class TableCheckStore:
    """A `CheckStore` over Azure Table storage (Azurite locally)."""

    def __init__(self, *, service: TableServiceClient, table: str = CHECKS_TABLE) -> None:
        self._table_name = table
        self._tables = Tables(service)

    def _client(self) -> TableClient:
        return self._tables.get(self._table_name)

    def _entity(self, record: CheckRecord, image: str) -> dict[str, Any]:
        parts = split_check_id(record.id)
        if parts is None:
            raise ValueError(f"malformed check id {record.id!r}")
        follow_up = record.follow_up
        return {
            "PartitionKey": parts[0],
            "RowKey": CHECK_PREFIX + parts[1],
            "Image": image,
            "Tag": record.verdict.ref.tag,
            "Verdict": record.verdict.verdict,
            "Outcome": (follow_up.outcome or follow_up.status) if follow_up else "",
            "Trigger": record.trigger,
            "EventId": record.event_id or "",
            "CreatedAt": record.created_at,
            **_chunks(json.dumps(record.to_document(), separators=(",", ":"))),
        }

    def create_check(self, *, record: CheckRecord, image: str) -> StoredCheck | None:
        from azure.core.exceptions import AzureError, ResourceExistsError

        try:
            self._client().create_entity(self._entity(record, image))
            return None
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise from_azure_error(exc, what=f"store check {record.id}") from exc
        existing = self.get_check(check_id=record.id)
        if existing is None:  # deleted between the two calls: the caller's redelivery starts afresh
            raise TransientError(f"check {record.id} vanished while being stored")
        return existing

    def delete_check(self, *, check_id: CheckId) -> None:
        from azure.core.exceptions import AzureError

        parts = split_check_id(check_id)
        if parts is None:
            return
        try:
            self._client().delete_entity(parts[0], CHECK_PREFIX + parts[1])
        except AzureError as exc:
            raise from_azure_error(exc, what=f"delete check {check_id}") from exc

    def get_check(self, *, check_id: CheckId) -> StoredCheck | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        parts = split_check_id(check_id)
        if parts is None:
            return None
        try:
            entity = self._client().get_entity(parts[0], CHECK_PREFIX + parts[1])
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise from_azure_error(exc, what=f"read check {check_id}") from exc
        return StoredCheck(CheckRecord.from_document(_document(entity)), str(entity.metadata["etag"]))

    def update_check(self, *, record: CheckRecord, image: str, etag: str) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError
        from azure.data.tables import UpdateMode

        try:
            self._client().update_entity(
                self._entity(record, image),
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except AzureError as exc:
            error = from_azure_error(exc, what=f"update check {record.id}")
            raise (Conflict(error.message) if isinstance(error, Conflict) else error) from exc

    def list_checks(self, *, image: str, tag: str | None, limit: int) -> Sequence[CheckRecord]:
        from azure.core.exceptions import AzureError

        query = "PartitionKey eq @pk and RowKey ge @first and RowKey lt @after"
        parameters: dict[str, Any] = {"pk": image_key(image), "first": CHECK_PREFIX, "after": "check."}
        if tag is not None:
            query += " and Tag eq @tag"
            parameters["tag"] = tag
        records: list[CheckRecord] = []
        try:
            for entity in self._client().query_entities(query, parameters=parameters, results_per_page=limit):
                records.append(CheckRecord.from_document(_document(entity)))
                if len(records) >= limit:
                    break
        except AzureError as exc:
            raise from_azure_error(exc, what="list image checks") from exc
        return records


class QueueFollowUps:
    """A `FollowUpQueue` over Azure Queue storage."""

    def __init__(self, *, service: QueueServiceClient, queue: str = IMAGE_FOLLOW_UP_QUEUE) -> None:
        self._service = service
        self._queue_name = queue
        self._queue: QueueClient | None = None
        self._lock = threading.Lock()

    def _client(self) -> QueueClient:
        from azure.core.exceptions import AzureError, ResourceExistsError
        from azure.storage.queue import TextBase64EncodePolicy

        with self._lock:
            if self._queue is None:
                # `get_queue_client` does not pass on the service client's encode policy, so it is
                # set here: the Functions queue trigger expects base64 (host.json messageEncoding).
                queue = self._service.get_queue_client(
                    self._queue_name, message_encode_policy=TextBase64EncodePolicy()
                )
                try:
                    queue.create_queue()
                except ResourceExistsError:
                    pass
                except AzureError as exc:
                    raise from_azure_error(exc, what=f"create queue {self._queue_name}") from exc
                self._queue = queue
            return self._queue

    def schedule(self, *, check_id: CheckId, attempt: int, delay_s: float) -> None:
        from azure.core.exceptions import AzureError

        message: FollowUpMessage = {"checkId": check_id, "attempt": attempt}
        try:
            self._client().send_message(
                json.dumps(message),
                visibility_timeout=int(min(max(delay_s, 0.0), MAX_VISIBILITY_S)),
                time_to_live=NEVER_EXPIRE,
            )
        except AzureError as exc:
            raise from_azure_error(exc, what=f"queue the follow-up of {check_id}") from exc
