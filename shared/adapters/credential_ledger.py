"""The credential ledger in Table storage (`ffcredentials`): the map, preflights, warnings, rollouts.

One table, four partitions per secret (layout in docs/storage.md):

| PartitionKey          | RowKey                     | what                                          |
|-----------------------|----------------------------|-----------------------------------------------|
| `map|{secret}`        | panel key (`sub:rg:name`)  | the version a panel was given, proven or not  |
| `preflight|{secret}`  | version                    | the last preflight verdict of a version       |
| `warning|{secret}`    | `{version}|{days:03d}`     | an expiry threshold already warned about      |
| `rollout|{secret}`    | version                    | the latest rollout started for a version      |

Every write is an upsert by a deterministic key, so a retried message changes nothing twice; the one
write that must happen at most once — a warning — is an insert that loses quietly to an existing row.
No row ever holds a secret: versions, states, times and reasons only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.adapters.tables import Tables
from shared.errors import from_azure_error
from shared.models.credentials import (
    CheckOutcome,
    ExpiryWarning,
    PanelCredential,
    PanelCredentialState,
    PreflightCheck,
    PreflightReport,
    SecretVersionId,
)
from shared.timestamps import format_time, parse_time

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient

TABLE_NAME = "ffcredentials"


class TableCredentialLedger:
    """`CredentialLedger` over one Azure Table (Azurite locally)."""

    def __init__(self, *, service: TableServiceClient, table_name: str = TABLE_NAME) -> None:
        self._table_name = table_name
        self._tables = Tables(service)

    def _client(self) -> TableClient:
        return self._tables.get(self._table_name)

    # --- the map ----------------------------------------------------------------------------------
    def panel_credentials(self, secret: str) -> list[PanelCredential]:
        return [_panel(row) for row in self._query(f"map|{secret}")]

    def panel_credential(self, secret: str, panel_key: str) -> PanelCredential | None:
        row = self._get(f"map|{secret}", _row_key(panel_key))
        return _panel(row) if row is not None else None

    def save_panel_credential(self, secret: str, record: PanelCredential) -> None:
        self._upsert(
            {
                "PartitionKey": f"map|{secret}",
                "RowKey": _row_key(_panel_key(record)),
                "panelId": record.panel_id,
                "panelName": record.panel_name,
                "version": record.version or "",
                "state": record.state.value,
                "updatedAt": format_time(record.updated_at),
                "previousVersion": record.previous_version or "",
                "detail": record.detail[:1000],
            }
        )

    # --- preflights -------------------------------------------------------------------------------
    def save_preflight(self, report: PreflightReport) -> None:
        self._upsert(
            {
                "PartitionKey": f"preflight|{report.secret}",
                "RowKey": report.version,
                "passed": report.passed,
                "retryable": report.retryable,
                "checkedAt": format_time(report.checked_at),
                "checks": json.dumps(
                    [{"name": c.name, "outcome": c.outcome.value, "detail": c.detail} for c in report.checks]
                ),
            }
        )

    def preflight(self, secret: str, version: SecretVersionId) -> PreflightReport | None:
        row = self._get(f"preflight|{secret}", version)
        if row is None:
            return None
        checks = tuple(
            PreflightCheck(str(c["name"]), CheckOutcome(c["outcome"]), str(c["detail"]))
            for c in json.loads(str(row.get("checks") or "[]"))
        )
        return PreflightReport(
            secret=secret,
            version=version,
            checked_at=_stored_time(row["checkedAt"]),
            checks=checks,
            retryable=bool(row.get("retryable")),
        )

    # --- warnings ---------------------------------------------------------------------------------
    def claim_warning(self, warning: ExpiryWarning, *, at: datetime) -> bool:
        from azure.core.exceptions import AzureError, ResourceExistsError

        entity = {
            "PartitionKey": f"warning|{warning.secret}",
            "RowKey": f"{warning.version}|{warning.threshold_days:03d}",
            "version": warning.version,
            "thresholdDays": warning.threshold_days,
            "level": warning.level.value,
            "daysLeft": round(warning.days_left, 3),
            "sentAt": format_time(at),
        }
        try:
            self._client().create_entity(entity)
        except ResourceExistsError:
            return False
        except AzureError as exc:
            raise from_azure_error(exc, what="record an expiry warning") from exc
        return True

    def release_warning(self, warning: ExpiryWarning) -> None:
        from azure.core.exceptions import AzureError

        try:
            self._client().delete_entity(
                f"warning|{warning.secret}", f"{warning.version}|{warning.threshold_days:03d}"
            )
        except AzureError as exc:
            raise from_azure_error(exc, what="forget an expiry warning") from exc

    def sent_warnings(self, secret: str, version: SecretVersionId) -> Sequence[int]:
        rows = self._query(f"warning|{secret}", row_prefix=f"{version}|")
        return [int(row["thresholdDays"]) for row in rows]

    # --- rollouts ---------------------------------------------------------------------------------
    def save_rollout(self, secret: str, version: SecretVersionId, record: dict[str, Any]) -> None:
        self._upsert({"PartitionKey": f"rollout|{secret}", "RowKey": version, "doc": json.dumps(record)})

    def rollout(self, secret: str, version: SecretVersionId) -> dict[str, Any] | None:
        row = self._get(f"rollout|{secret}", version)
        if row is None:
            return None
        doc: dict[str, Any] = json.loads(str(row.get("doc") or "{}"))
        return doc

    # --- Table plumbing ---------------------------------------------------------------------------
    def _upsert(self, entity: dict[str, Any]) -> None:
        from azure.core.exceptions import AzureError
        from azure.data.tables import UpdateMode

        try:
            self._client().upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise from_azure_error(exc, what=f"write {entity['PartitionKey']} to {self._table_name}") from exc

    def _get(self, partition: str, row: str) -> dict[str, Any] | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            return dict(self._client().get_entity(partition, row))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise from_azure_error(exc, what=f"read {partition} from {self._table_name}") from exc

    def _query(self, partition: str, *, row_prefix: str | None = None) -> list[dict[str, Any]]:
        from azure.core.exceptions import AzureError

        flt = "PartitionKey eq @pk"
        parameters: dict[str, str] = {"pk": partition}
        if row_prefix:
            # RowKeys sort as strings: the prefix range is [prefix, prefix + the highest character).
            flt += " and RowKey ge @lo and RowKey lt @hi"
            parameters.update(lo=row_prefix, hi=row_prefix + "\uffff")
        try:
            return [dict(row) for row in self._client().query_entities(flt, parameters=parameters)]
        except AzureError as exc:
            raise from_azure_error(exc, what=f"query {partition} in {self._table_name}") from exc


def _row_key(key: str) -> str:
    """Table keys may not contain `/ \\ # ?` or control characters; panel keys never do, ids might."""
    return "".join(ch if ch not in "/\\#?" and ord(ch) >= 0x20 else "_" for ch in key).lower()


def _panel_key(record: PanelCredential) -> str:
    from shared.models import cluster_key, parse_cluster_id

    try:
        return cluster_key(*parse_cluster_id(record.panel_id))
    except ValueError:
        return record.panel_id


def _panel(row: dict[str, Any]) -> PanelCredential:
    return PanelCredential(
        panel_id=str(row.get("panelId") or ""),
        panel_name=str(row.get("panelName") or ""),
        version=SecretVersionId(str(row["version"])) if row.get("version") else None,
        state=PanelCredentialState(str(row.get("state"))),
        updated_at=_stored_time(row["updatedAt"]),
        previous_version=SecretVersionId(str(row["previousVersion"])) if row.get("previousVersion") else None,
        detail=str(row.get("detail") or ""),
    )


def _stored_time(value: object) -> datetime:
    moment = parse_time(value)
    if moment is None:
        raise ValueError(f"stored timestamp unreadable: {str(value)[:40]!r}")
    return moment
