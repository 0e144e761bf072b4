"""Table `ffhealth`: each panel's cause and since when, and the active notification conditions.

Layout (docs/storage.md): PartitionKey `panel`, RowKey the panel key (sanitised), `Name`, `Ring`, `Cause`,
`Since` (datetime); one row PartitionKey `state`, RowKey `alerts`, `Alerts` (JSON list). Writes are upserts
(and deletes) in transactions of 100, only for panels whose cause changed, so a quiet fleet costs one
partition read per snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.tables import Tables, storage_errors_mapped
from shared.models.health import SnapshotRow

if TYPE_CHECKING:
    from azure.data.tables import TableServiceClient

TABLE_NAME = "ffhealth"
PANELS = "panel"
# Table storage's limit of operations in one transaction.
BATCH = 100


@storage_errors_mapped("health snapshot")
class TableHealthSnapshotStore:
    def __init__(self, *, service: TableServiceClient, table_name: str = TABLE_NAME) -> None:
        self._tables = Tables(service)
        self._table_name = table_name

    def rows(self) -> dict[str, SnapshotRow]:
        client = self._tables.get(self._table_name)
        found: dict[str, SnapshotRow] = {}
        for entity in client.query_entities("PartitionKey eq @pk", parameters={"pk": PANELS}):
            since = entity.get("Since")
            if isinstance(since, datetime) and since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            key = str(entity.get("Key") or entity["RowKey"])
            found[key] = SnapshotRow(
                key,
                str(entity.get("Name", "")),
                str(entity.get("Ring", "")),
                str(entity.get("Cause", "")),
                since if isinstance(since, datetime) else datetime.now(UTC),
            )
        return found

    def save(self, *, changed: Sequence[SnapshotRow], removed: Sequence[str]) -> None:
        operations: list[Any] = [
            (
                "upsert",
                {
                    "PartitionKey": PANELS,
                    "RowKey": _row_key(r.key),
                    "Key": r.key,
                    "Name": r.name,
                    "Ring": r.ring,
                    "Cause": r.cause,
                    "Since": r.since,
                },
            )
            for r in changed
        ]
        operations += [("delete", {"PartitionKey": PANELS, "RowKey": _row_key(key)}) for key in removed]
        client = self._tables.get(self._table_name)
        for start in range(0, len(operations), BATCH):
            client.submit_transaction(operations[start : start + BATCH])

    def alerts(self) -> frozenset[str]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._tables.get(self._table_name).get_entity("state", "alerts")
        except ResourceNotFoundError:
            return frozenset()
        return frozenset(json.loads(str(entity.get("Alerts") or "[]")))

    def save_alerts(self, alerts: frozenset[str]) -> None:
        self._tables.get(self._table_name).upsert_entity(
            {"PartitionKey": "state", "RowKey": "alerts", "Alerts": json.dumps(sorted(alerts))}
        )


def _row_key(key: str) -> str:
    return "".join(ch if ch not in "/\\#?" and ord(ch) >= 0x20 else "_" for ch in key).lower()
