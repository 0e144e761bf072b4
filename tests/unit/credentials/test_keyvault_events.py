"""Key Vault events parse whichever way Azure spells them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.errors import InvalidInput
from shared.services.credentials.keyvault_events import SecretEventKind, parse_secret_event

WHEN = datetime(2026, 8, 20, tzinfo=UTC)


def parse(event_type: str, data: object, subject: str | None = "flux-gitops-pat"):  # type: ignore[no-untyped-def]
    return parse_secret_event(
        event_id="e1", event_type=event_type, subject=subject, data=data, event_time=WHEN
    )


def test_the_documented_sample_with_pascal_case_strings_and_a_trailing_space_parses() -> None:
    event = parse(
        "Microsoft.KeyVault.SecretNewVersionCreated",
        {
            "Id": "https://kv.vault.azure.net/secrets/flux-gitops-pat/ee05",
            "VaultName": "kv",
            "ObjectType": "Secret",
            "ObjectName ": "flux-gitops-pat",
            "Version": "ee05",
            "NBF": "1559081980",
            "EXP": "1559082102",
        },
    )
    assert event is not None
    assert event.kind is SecretEventKind.NEW_VERSION
    assert (event.secret_name, event.version) == ("flux-gitops-pat", "ee05")
    assert event.expires_on == datetime.fromtimestamp(1559082102, tz=UTC)


def test_the_schema_spelling_with_numbers_and_null_times_parses() -> None:
    event = parse(
        "Microsoft.KeyVault.SecretNearExpiry",
        {
            "objectName": "flux-gitops-pat",
            "version": "ab12",
            "vaultName": "kv",
            "nbf": None,
            "exp": 1790000000,
        },
    )
    assert event is not None
    assert event.kind is SecretEventKind.NEAR_EXPIRY
    assert event.not_before is None
    assert event.expires_on is not None


def test_other_event_types_are_ignored() -> None:
    assert parse("Microsoft.KeyVault.KeyNewVersionCreated", {"ObjectName": "k", "Version": "1"}) is None


def test_a_secret_event_without_a_version_is_rejected_as_permanent() -> None:
    with pytest.raises(InvalidInput):
        parse("Microsoft.KeyVault.SecretExpired", {"ObjectName": "flux-gitops-pat"})


def test_a_malformed_expiry_is_rejected() -> None:
    with pytest.raises(InvalidInput):
        parse("Microsoft.KeyVault.SecretExpired", {"ObjectName": "x", "Version": "1", "EXP": "soon"})
