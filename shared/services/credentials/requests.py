"""The HTTP requests of the credentials API, validated into typed values (4xx problems naming the field).

- `POST /api/credentials/rollout` `{"reason", "version"?, "dryRun"?, "target"?, "purpose"?}` (`purpose`:
  `fleet`, the default, or `automation`, the image-automation runner's write PAT);
- `POST /api/credentials/migrate` `{"reason", "target", "dryRun"?}`.

The caller and the `Idempotency-Key` come from the HTTP intake (`functions.http`); they are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import InvalidInput
from shared.models import Selector
from shared.models.credentials import CredentialPurpose, SecretVersionId
from shared.services.credentials.rollout import VERSION_PATTERN
from shared.services.credentials.service import MigrationRequest, RolloutRequest
from shared.services.fleet.intake import check_reason
from shared.services.fleet.selection import parse_selector

ROLLOUT_FIELDS = frozenset({"reason", "version", "dryRun", "target", "purpose"})
MIGRATE_FIELDS = frozenset({"reason", "dryRun", "target"})


def parse_rollout_request(
    body: Mapping[str, Any], *, requested_by: str, idempotency_key: str | None
) -> RolloutRequest:
    _check_fields(body, ROLLOUT_FIELDS)
    return RolloutRequest(
        reason=check_reason(body.get("reason")),
        requested_by=requested_by,
        trigger="api",
        version=_version(body.get("version")),
        selection=_target(body.get("target"), required=False),
        dry_run=_flag(body, "dryRun"),
        idempotency_key=idempotency_key,
        purpose=parse_purpose(body.get("purpose")),
    )


def parse_purpose(value: Any, *, field: str = "purpose") -> CredentialPurpose:
    """`fleet` (default) or `automation`; 400 naming the field otherwise."""
    if value is None:
        return CredentialPurpose.FLEET
    try:
        return CredentialPurpose(value)
    except ValueError:
        allowed = ", ".join(p.value for p in CredentialPurpose)
        raise InvalidInput(field, f"must be one of: {allowed}") from None


def parse_migration_request(
    body: Mapping[str, Any], *, requested_by: str, idempotency_key: str | None
) -> MigrationRequest:
    _check_fields(body, MIGRATE_FIELDS)
    selection = _target(body.get("target"), required=True)
    assert selection is not None
    return MigrationRequest(
        reason=check_reason(body.get("reason")),
        requested_by=requested_by,
        selection=selection,
        dry_run=_flag(body, "dryRun"),
        idempotency_key=idempotency_key,
    )


def _check_fields(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(unknown[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _version(value: Any) -> SecretVersionId | None:
    if value is None:
        return None
    if not isinstance(value, str) or not VERSION_PATTERN.match(value):
        raise InvalidInput("version", "must be a Key Vault secret version id (hex digits)")
    return SecretVersionId(value)


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(name, "must be true or false")
    return value


def _target(value: Any, *, required: bool) -> Selector | None:
    if value is None:
        if required:
            raise InvalidInput(
                "target", 'is required: name clusters, tags, resourceGroups, subscriptions or "all"'
            )
        return None
    return parse_selector(value)
