"""Table storage adapter: operations, per-panel rows, panel locks, idempotency keys, pacing buckets.

Why Tables: operation state must outlive any one Functions instance and be shared by all of them
(the host's own `AzureWebJobsStorage`, Azurite locally). Every write is either an insert that fails
when the row exists, an upsert by a deterministic key, or a replace guarded by the row's ETag — so a
message processed twice, or two instances racing, can never count a panel twice or lose a change.
The layout (tables, keys, properties) is documented in docs/storage.md, "Fleet changes".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from shared.adapters.tables import Tables, storage_errors_mapped
from shared.models import SETTLED_STATES, ClusterId, OperationId, PanelState
from shared.ports import BucketRow, ConcurrentUpdate, OperationRecord, PanelRecord

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient

OPERATIONS_TABLE = "ffoperations"
PANELS_TABLE = "ffoperationpanels"
LOCKS_TABLE = "ffpanellocks"
IDEMPOTENCY_TABLE = "ffidempotency"
PACING_TABLE = "ffpacing"

OPERATIONS_PARTITION = "op"
PACING_PARTITION = "bucket"
# Azure Tables: at most 100 operations per transaction, all in one partition.
TRANSACTION_LIMIT = 100
# Table transactions in flight at once when an operation is created (its rows and its locks).
WRITE_CONCURRENCY = 8
# A filter may hold at most 15 comparisons; one is the PartitionKey.
KEYS_PER_QUERY = 14
# A string property holds at most 64 KiB (32 K UTF-16 characters); longer JSON is split over
# numbered properties (`Selection`, `Selection1`, ...) — a 64 KiB request body fits in a few.
CHUNK_CHARS = 30_000
MAX_CHUNKS = 20


@storage_errors_mapped("Table storage (operations)")
class TableOperationStore:
    """`OperationStore` over Azure Table storage."""

    def __init__(self, service: TableServiceClient) -> None:
        self._tables = Tables(service)

    # --- operations -----------------------------------------------------------------------------------
    def create_operation(self, operation: OperationRecord, panels: Sequence[PanelRecord]) -> None:
        table = self._tables.get(PANELS_TABLE)
        entities = [_panel_entity(panel) for panel in panels]
        chunks = [entities[i : i + TRANSACTION_LIMIT] for i in range(0, len(entities), TRANSACTION_LIMIT)]

        def write(chunk: list[dict[str, Any]]) -> None:
            table.submit_transaction([("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in chunk])

        # Concurrently: a 10,000-panel operation is 100 transactions, and the caller is waiting for its 202.
        with ThreadPoolExecutor(max_workers=WRITE_CONCURRENCY, thread_name_prefix="rows") as pool:
            list(pool.map(write, chunks))
        self._tables.get(OPERATIONS_TABLE).create_entity(_operation_entity(operation))

    def get_operation(self, operation_id: str) -> OperationRecord | None:
        try:
            entity = self._tables.get(OPERATIONS_TABLE).get_entity(
                OPERATIONS_PARTITION, operation_row_key(operation_id)
            )
        except ResourceNotFoundError:
            return None
        return _operation_record(entity)

    def replace_operation(self, operation: OperationRecord) -> OperationRecord:
        entity = _operation_entity(operation)
        try:
            metadata = self._tables.get(OPERATIONS_TABLE).update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=operation.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ConcurrentUpdate(f"operation {operation.id} changed meanwhile") from exc
        return replace(operation, etag=str(metadata["etag"]))

    def list_operations(self, *, kind: str | None, limit: int) -> list[OperationRecord]:
        query = "PartitionKey eq @pk" + (" and Kind eq @kind" if kind else "")
        parameters = {"pk": OPERATIONS_PARTITION, **({"kind": kind} if kind else {})}
        records: list[OperationRecord] = []
        # Row keys sort newest first (see `operation_row_key`), so the first `limit` rows are the answer.
        for entity in self._tables.get(OPERATIONS_TABLE).query_entities(
            query, parameters=parameters, results_per_page=min(max(limit, 1), 1000)
        ):
            records.append(_operation_record(entity))
            if len(records) >= limit:
                break
        return records

    # --- panels ------------------------------------------------------------------------------------------
    def get_panels(self, operation_id: str, *, keys: Sequence[str] | None = None) -> list[PanelRecord]:
        table = self._tables.get(PANELS_TABLE)
        if keys is None:
            entities: Iterator[Any] = iter(
                table.query_entities("PartitionKey eq @pk", parameters={"pk": operation_id})
            )
            return [_panel_record(e) for e in entities]
        found: list[PanelRecord] = []
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), KEYS_PER_QUERY):
            chunk = unique[start : start + KEYS_PER_QUERY]
            names = {f"k{i}": key for i, key in enumerate(chunk)}
            # Spaces around the parentheses: the SDK substitutes `@name` only in whitespace-separated words.
            clause = " or ".join(f"RowKey eq @{name}" for name in names)
            found.extend(
                _panel_record(e)
                for e in table.query_entities(
                    f"PartitionKey eq @pk and ( {clause} )", parameters={"pk": operation_id, **names}
                )
            )
        return found

    def replace_panel(self, panel: PanelRecord) -> PanelRecord:
        try:
            metadata = self._tables.get(PANELS_TABLE).update_entity(
                _panel_entity(panel),
                mode=UpdateMode.REPLACE,
                etag=panel.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ConcurrentUpdate(
                f"panel {panel.name} of operation {panel.operation_id} changed meanwhile"
            ) from exc
        return replace(panel, etag=str(metadata["etag"]))

    def has_unsettled(self, operation_id: str, *, stage: int | None = None) -> bool:
        query = "PartitionKey eq @pk and Settled eq false" + (
            " and Stage eq @stage" if stage is not None else ""
        )
        parameters: dict[str, Any] = {"pk": operation_id}
        if stage is not None:
            parameters["stage"] = stage
        rows = self._tables.get(PANELS_TABLE).query_entities(
            query, parameters=parameters, select=["RowKey"], results_per_page=1
        )
        return next(iter(rows), None) is not None

    # --- locks -------------------------------------------------------------------------------------------
    def take_locks(
        self, *, group: str, operation_id: str, keys: Sequence[str], is_running: Callable[[str], bool]
    ) -> str | None:
        table = self._tables.get(LOCKS_TABLE)
        wanted = set(keys)
        existing = {
            e["RowKey"]: e
            for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": group})
            if e["RowKey"] in wanted
        }
        owners = {str(e["OperationId"]) for e in existing.values()} - {operation_id}
        for owner in sorted(owners):
            if is_running(owner):
                return owner
        operations: list[tuple[Any, ...]] = []
        for key in keys:
            entity = {"PartitionKey": group, "RowKey": key, "OperationId": operation_id}
            if key in existing:
                current = existing[key]
                operations.append(
                    (
                        "update",
                        entity,
                        {
                            "mode": UpdateMode.REPLACE,
                            "etag": current.metadata["etag"],
                            "match_condition": MatchConditions.IfNotModified,
                        },
                    )
                )
            else:
                operations.append(("create", entity))
        chunks = [operations[i : i + TRANSACTION_LIMIT] for i in range(0, len(operations), TRANSACTION_LIMIT)]

        def submit(chunk: list[tuple[Any, ...]]) -> list[str] | None:
            try:
                table.submit_transaction(chunk)
            except TableTransactionError:
                return None
            return [op[1]["RowKey"] for op in chunk]

        with ThreadPoolExecutor(max_workers=WRITE_CONCURRENCY, thread_name_prefix="locks") as pool:
            results = list(pool.map(submit, chunks))
        if any(result is None for result in results):
            # Another request locked some of these panels at the same moment: undo ours, report theirs.
            self._release(table, group, operation_id, [key for result in results if result for key in result])
            for chunk, result in zip(chunks, results, strict=True):
                if result is not None:
                    continue
                for key in (op[1]["RowKey"] for op in chunk):
                    holder = self.lock_owner(group=group, key=key)
                    if holder and holder != operation_id and is_running(holder):
                        return holder
            raise ConcurrentUpdate("another operation locked the same panels at the same moment; retry")
        return None

    def lock_owner(self, *, group: str, key: str) -> str | None:
        try:
            entity = self._tables.get(LOCKS_TABLE).get_entity(group, key)
        except ResourceNotFoundError:
            return None
        return str(entity["OperationId"])

    @staticmethod
    def _release(table: TableClient, group: str, operation_id: str, keys: Sequence[str]) -> None:
        for key in keys:
            _delete_if_owned(table, group, key, operation_id)

    # --- idempotency ---------------------------------------------------------------------------------------
    def claim_idempotency(
        self, *, scope: str, key: str, request_hash: str, operation_id: str
    ) -> tuple[str, str] | None:
        table = self._tables.get(IDEMPOTENCY_TABLE)
        row_key = _key_hash(key)
        try:
            table.create_entity(
                {
                    "PartitionKey": scope,
                    "RowKey": row_key,
                    "OperationId": operation_id,
                    "RequestHash": request_hash,
                }
            )
            return None
        except ResourceExistsError:
            entity = table.get_entity(scope, row_key)
            return str(entity["OperationId"]), str(entity["RequestHash"])

    def release_idempotency(self, *, scope: str, key: str, operation_id: str) -> None:
        _delete_if_owned(self._tables.get(IDEMPOTENCY_TABLE), scope, _key_hash(key), operation_id)

    def take_over_idempotency(
        self, *, scope: str, key: str, abandoned_id: str, operation_id: str, request_hash: str
    ) -> bool:
        table = self._tables.get(IDEMPOTENCY_TABLE)
        row_key = _key_hash(key)
        try:
            entity = table.get_entity(scope, row_key)
            if entity["OperationId"] != abandoned_id:
                return False
            table.update_entity(
                {
                    "PartitionKey": scope,
                    "RowKey": row_key,
                    "OperationId": operation_id,
                    "RequestHash": request_hash,
                },
                mode=UpdateMode.REPLACE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceNotFoundError, ResourceModifiedError):
            return False
        return True


@storage_errors_mapped("Table storage (pacing)")
class TableBucketStore:
    """`BucketStore` over Table storage: one row per (subscription, kind), shared by every instance."""

    def __init__(self, service: TableServiceClient) -> None:
        self._tables = Tables(service)

    def read(self, key: str) -> BucketRow | None:
        try:
            entity = self._tables.get(PACING_TABLE).get_entity(PACING_PARTITION, key)
        except ResourceNotFoundError:
            return None
        return _bucket(entity)

    def create(self, row: BucketRow) -> BucketRow | None:
        try:
            metadata = self._tables.get(PACING_TABLE).create_entity(_bucket_entity(row))
        except ResourceExistsError:
            return None
        return BucketRow(row.key, row.tokens, row.updated, row.blocked_until, etag=str(metadata["etag"]))

    def replace(self, row: BucketRow) -> BucketRow | None:
        try:
            metadata = self._tables.get(PACING_TABLE).update_entity(
                _bucket_entity(row),
                mode=UpdateMode.REPLACE,
                etag=row.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return BucketRow(row.key, row.tokens, row.updated, row.blocked_until, etag=str(metadata["etag"]))


# --- helpers ---------------------------------------------------------------------------------------
def _delete_if_owned(table: TableClient, partition: str, row: str, operation_id: str) -> None:
    """Delete a claim row only while it still belongs to `operation_id` (ETag-guarded: a row another
    operation took in between is left alone; one already gone is fine)."""
    try:
        entity = table.get_entity(partition, row)
        if entity["OperationId"] == operation_id:
            table.delete_entity(
                partition, row, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified
            )
    except (ResourceNotFoundError, ResourceModifiedError):
        return


def operation_row_key(operation_id: str) -> str:
    """Newest first: the id's `YYYYMMDDThhmmssZ` prefix, inverted digit by digit, then the id itself."""
    stamp, _, _rest = operation_id.partition("-")
    digits = "".join(ch for ch in stamp if ch.isdigit())
    if len(digits) != 14:
        return operation_id
    inverted = "".join(str(9 - int(ch)) for ch in digits)
    return f"{inverted}-{operation_id}"


def _key_hash(key: str) -> str:
    """Idempotency keys are the caller's text: store a hash (fixed length, no forbidden characters)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _split(prefix: str, text: str) -> dict[str, str]:
    chunks = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]
    if len(chunks) > MAX_CHUNKS:
        raise ValueError(f"{prefix} is too large to store ({len(text)} characters)")
    return {(prefix if i == 0 else f"{prefix}{i}"): chunk for i, chunk in enumerate(chunks)}


def _join(entity: Mapping[str, Any], prefix: str) -> str:
    parts = [str(entity.get(prefix, ""))]
    index = 1
    while f"{prefix}{index}" in entity:
        parts.append(str(entity[f"{prefix}{index}"]))
        index += 1
    return "".join(parts)


def _drop_none(entity: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entity.items() if value is not None}


def _operation_entity(op: OperationRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": OPERATIONS_PARTITION,
        "RowKey": operation_row_key(op.id),
        "OperationId": op.id,
        "Kind": op.kind,
        "Status": op.status,
        "Reason": op.reason,
        "RequestedBy": op.requested_by,
        "CreatedAt": op.created_at,
        "UpdatedAt": op.updated_at,
        "FinishedAt": op.finished_at,
        "Configuration": op.configuration,
        "Params": json.dumps(dict(op.params), sort_keys=True),
        "StageNames": json.dumps(list(op.stage_names)),
        "StageThresholds": json.dumps(list(op.stage_thresholds)),
        "CurrentStage": op.current_stage,
        "Total": op.total,
        "Summary": json.dumps(dict(op.summary), sort_keys=True),
        "HaltedReason": op.halted_reason,
        "CancelledBy": op.cancelled_by,
        "IdempotencyKeyHash": _key_hash(op.idempotency_key) if op.idempotency_key else None,
        "RequestHash": op.request_hash,
    }
    entity.update(_split("Selection", json.dumps(dict(op.selection), sort_keys=True)))
    return _drop_none(entity)


def _operation_record(entity: Any) -> OperationRecord:
    return OperationRecord(
        id=OperationId(str(entity["OperationId"])),
        kind=str(entity["Kind"]),
        status=str(entity["Status"]),
        reason=str(entity["Reason"]),
        requested_by=str(entity["RequestedBy"]),
        created_at=_time(entity["CreatedAt"]),
        updated_at=_time(entity["UpdatedAt"]),
        finished_at=_time(entity["FinishedAt"]) if "FinishedAt" in entity else None,
        configuration=str(entity["Configuration"]),
        params=json.loads(entity["Params"]),
        selection=json.loads(_join(entity, "Selection")),
        stage_names=tuple(json.loads(entity["StageNames"])),
        stage_thresholds=tuple(float(t) for t in json.loads(entity["StageThresholds"])),
        current_stage=int(entity["CurrentStage"]),
        total=int(entity["Total"]),
        summary=json.loads(entity["Summary"]),
        halted_reason=entity.get("HaltedReason"),
        cancelled_by=entity.get("CancelledBy"),
        idempotency_key=None,  # only its hash is stored
        request_hash=entity.get("RequestHash"),
        etag=str(entity.metadata["etag"]),
    )


def _panel_entity(panel: PanelRecord) -> dict[str, Any]:
    return _drop_none(
        {
            "PartitionKey": panel.operation_id,
            "RowKey": panel.key,
            "PanelId": panel.panel_id,
            "Name": panel.name,
            "Subscription": panel.subscription,
            "ResourceGroup": panel.resource_group,
            "Stage": panel.stage,
            "State": panel.state.value,
            "Settled": panel.state in SETTLED_STATES,
            "Detail": panel.detail,
            "Attempts": panel.attempts,
            "Checks": panel.checks,
            "UpdatedAt": panel.updated_at,
            "LeaseUntil": panel.lease_until,
            "AcceptedAt": panel.accepted_at,
            "AcceptedLocal": panel.accepted_local,
            "BaselineStatusUpdatedAt": panel.baseline_status_updated_at,
            "BaselineCommitId": panel.baseline_commit_id,
            "Tags": json.dumps(dict(panel.tags), sort_keys=True),
            "Reapply": panel.reapply,
            "WriteAttempted": panel.write_attempted,
            "Sweeps": panel.sweeps,
        }
    )


def _panel_record(entity: Any) -> PanelRecord:
    def when(name: str) -> datetime | None:
        return _time(entity[name]) if name in entity else None

    return PanelRecord(
        operation_id=OperationId(str(entity["PartitionKey"])),
        key=str(entity["RowKey"]),
        panel_id=ClusterId(str(entity["PanelId"])),
        name=str(entity["Name"]),
        subscription=str(entity["Subscription"]),
        resource_group=str(entity["ResourceGroup"]),
        stage=int(entity["Stage"]),
        state=PanelState(entity["State"]),
        detail=str(entity.get("Detail", "")),
        attempts=int(entity.get("Attempts", 0)),
        checks=int(entity.get("Checks", 0)),
        updated_at=when("UpdatedAt"),
        lease_until=when("LeaseUntil"),
        accepted_at=when("AcceptedAt"),
        accepted_local=when("AcceptedLocal"),
        baseline_status_updated_at=when("BaselineStatusUpdatedAt"),
        baseline_commit_id=entity.get("BaselineCommitId"),
        tags=json.loads(entity.get("Tags", "{}")),
        reapply=bool(entity.get("Reapply", False)),
        write_attempted=bool(entity.get("WriteAttempted", False)),
        sweeps=int(entity.get("Sweeps", 0)),
        etag=str(entity.metadata["etag"]),
    )


def _bucket_entity(row: BucketRow) -> dict[str, Any]:
    return {
        "PartitionKey": PACING_PARTITION,
        "RowKey": row.key,
        "Tokens": float(row.tokens),
        "Updated": float(row.updated),
        "BlockedUntil": float(row.blocked_until),
    }


def _bucket(entity: Any) -> BucketRow:
    return BucketRow(
        key=str(entity["RowKey"]),
        tokens=float(entity["Tokens"]),
        updated=float(entity["Updated"]),
        blocked_until=float(entity.get("BlockedUntil", 0.0)),
        etag=str(entity.metadata["etag"]),
    )


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    raise TypeError(f"expected a datetime, got {type(value).__name__}")
