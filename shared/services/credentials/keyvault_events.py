"""Key Vault's secret events, parsed the forgiving way Azure's own documents require.

The Event Grid schema for Key Vault names the data fields camelCase with numbers (`objectName`, `exp`),
while the published samples send PascalCase strings (`ObjectName`, `"EXP": "1559082102"`) and one
sample even has a key with a trailing space (`"ObjectName "`). So keys are matched case-insensitively
after trimming, times are accepted as numbers or numeric strings, and `NBF`/`EXP` may be null.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from shared.errors import InvalidInput
from shared.models.credentials import SecretVersionId
from shared.timestamps import parse_time


class SecretEventKind(StrEnum):
    NEW_VERSION = "Microsoft.KeyVault.SecretNewVersionCreated"
    NEAR_EXPIRY = "Microsoft.KeyVault.SecretNearExpiry"
    EXPIRED = "Microsoft.KeyVault.SecretExpired"


@dataclass(frozen=True)
class SecretEvent:
    event_id: str
    kind: SecretEventKind
    vault_name: str
    secret_name: str
    version: SecretVersionId
    event_time: datetime | None
    not_before: datetime | None
    expires_on: datetime | None


def parse_secret_event(
    *, event_id: str, event_type: str, subject: str | None, data: Any, event_time: datetime | None
) -> SecretEvent | None:
    """The event as a `SecretEvent`; None for event types this capability ignores.

    Raises `InvalidInput` for a secret event without the fields every Key Vault event carries: such a
    delivery will never parse, so it must not be retried.
    """
    try:
        kind = SecretEventKind(event_type)
    except ValueError:
        return None
    if not isinstance(data, Mapping):
        raise InvalidInput("data", "a Key Vault secret event carries a JSON object")
    fields = {str(key).strip().lower(): value for key, value in data.items()}
    secret_name = _text(fields.get("objectname")) or (subject or "").strip()
    version = _text(fields.get("version"))
    if not secret_name:
        raise InvalidInput("data.ObjectName", "is missing")
    if not version:
        raise InvalidInput("data.Version", "is missing")
    return SecretEvent(
        event_id=event_id,
        kind=kind,
        vault_name=_text(fields.get("vaultname")),
        secret_name=secret_name,
        version=SecretVersionId(version),
        event_time=event_time.astimezone(UTC) if event_time is not None else None,
        not_before=_unix_time(fields.get("nbf"), "data.NBF"),
        expires_on=_unix_time(fields.get("exp"), "data.EXP"),
    )


def parse_secret_envelope(envelope: Mapping[str, Any]) -> SecretEvent | None:
    """`parse_secret_event` over the raw envelope of either Event Grid schema (`eventType`/`eventTime`,
    or CloudEvents' `type`/`time`)."""
    return parse_secret_event(
        event_id=str(envelope.get("id") or ""),
        event_type=str(envelope.get("eventType") or envelope.get("type") or ""),
        subject=envelope.get("subject"),
        data=envelope.get("data"),
        event_time=parse_time(envelope.get("eventTime") or envelope.get("time")),
    )


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _unix_time(value: Any, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise InvalidInput(name, "must be Unix seconds (a number or a numeric string) or null") from None
