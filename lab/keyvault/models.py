"""The vault's state: secrets, their versions and soft-deleted secrets (after moto: a backend per resource).

The lab has one vault (`kv-ipc-fluxfleet`), so one `KeyVaultBackend` holds it. Method names follow Key Vault's
REST operation ids (SetSecret, GetSecret, UpdateSecret, GetSecrets, GetSecretVersions, DeleteSecret, ...).
Times are whole Unix seconds of the lab clock, as Key Vault's attributes are. Values live only here: nothing
that leaves the backend for logs or ground truth carries them (see `fingerprint`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lab.core.clock import LabClock
from lab.keyvault.errors import BadParameter, Conflict, Forbidden, SecretNotFound

# Soft delete is on for every new vault, with the default (and maximum) retention of 90 days.
RECOVERABLE_DAYS = 90
RECOVERY_LEVEL = "Recoverable+Purgeable"
_SECONDS_PER_DAY = 86_400
# Key Vault's documented limits: a secret value up to 25 KB, up to 15 tags, names of 1-127 of [0-9a-zA-Z-].
MAX_VALUE_BYTES = 25 * 1024
MAX_TAGS = 15
MAX_NAME_LENGTH = 127
_NAME_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")
# The ground truth shows this many hex digits of sha256(value): enough to tell versions apart, useless to
# an attacker.
FINGERPRINT_HEX_DIGITS = 16


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:FINGERPRINT_HEX_DIGITS]


def validate_secret_name(name: str) -> None:
    if not (1 <= len(name) <= MAX_NAME_LENGTH) or not set(name) <= _NAME_CHARS:
        raise BadParameter(f"The request URI contains an invalid name: {name}")


@dataclass(frozen=True)
class SecretAttributes:
    enabled: bool
    not_before: int | None
    expires: int | None
    created: int
    updated: int


@dataclass(frozen=True)
class SecretVersion:
    name: str
    version: str  # 32 lowercase hex digits, as Key Vault's
    value: str = field(repr=False)
    content_type: str | None
    tags: Mapping[str, str]
    attributes: SecretAttributes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.value)


@dataclass(frozen=True)
class Deletion:
    deleted_date: int
    scheduled_purge_date: int


@dataclass
class SecretRecord:
    """All versions of one secret name, oldest first; the last one is the current ("latest") version."""

    name: str
    versions: list[SecretVersion] = field(default_factory=list)
    deletion: Deletion | None = None

    @property
    def latest(self) -> SecretVersion:
        return self.versions[-1]

    def find(self, version: str) -> SecretVersion | None:
        for candidate in self.versions:
            if candidate.version == version.lower():
                return candidate
        return None


@dataclass(frozen=True)
class SecretPatch:
    """An UpdateSecret body; None means "leave as it is" (the SDK sends only what the caller set)."""

    content_type: str | None = None
    tags: Mapping[str, str] | None = None
    enabled: bool | None = None
    not_before: int | None = None
    expires: int | None = None


NewVersionListener = Callable[[SecretVersion], None]


class KeyVaultBackend:
    """One vault's secrets. Names are case-insensitive in Key Vault; the first spelling is kept."""

    def __init__(self, *, clock: LabClock, on_new_version: NewVersionListener | None = None) -> None:
        self.clock = clock
        self.on_new_version = on_new_version
        self._secrets: dict[str, SecretRecord] = {}

    def _now(self) -> int:
        return int(self.clock.timestamp())

    def _record(self, name: str) -> SecretRecord | None:
        return self._secrets.get(name.lower())

    def _live(self, name: str, version: str | None = None) -> SecretRecord:
        record = self._record(name)
        if record is None or record.deletion is not None:
            raise SecretNotFound.named(name, version)
        return record

    # --- operations (Key Vault operation ids) -------------------------------------------------------
    def set_secret(
        self,
        name: str,
        *,
        value: str,
        content_type: str | None = None,
        tags: Mapping[str, str] | None = None,
        enabled: bool = True,
        not_before: int | None = None,
        expires: int | None = None,
        notify: bool = True,
    ) -> SecretVersion:
        validate_secret_name(name)
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise BadParameter(f"The secret value exceeds the maximum size of {MAX_VALUE_BYTES} bytes.")
        if tags is not None and len(tags) > MAX_TAGS:
            raise BadParameter(f"A secret can have at most {MAX_TAGS} tags.")
        record = self._record(name)
        if record is not None and record.deletion is not None:
            raise Conflict.deleted_but_recoverable(record.name)
        if record is None:
            record = self._secrets.setdefault(name.lower(), SecretRecord(name=name))
        now = self._now()
        version = SecretVersion(
            name=record.name,
            version=uuid.uuid4().hex,
            value=value,
            content_type=content_type,
            tags=dict(tags or {}),
            attributes=SecretAttributes(
                enabled=enabled, not_before=not_before, expires=expires, created=now, updated=now
            ),
        )
        record.versions.append(version)
        if notify and self.on_new_version is not None:
            self.on_new_version(version)
        return version

    def get_secret(self, name: str, version: str | None = None) -> SecretVersion:
        """The value-bearing read: refused for a disabled version (Key Vault's 403 SecretDisabled)."""
        found = self.get_secret_properties(name, version)
        if not found.attributes.enabled:
            raise Forbidden.disabled_secret()
        return found

    def get_secret_properties(self, name: str, version: str | None = None) -> SecretVersion:
        record = self._live(name, version)
        if not version:
            return record.latest
        found = record.find(version)
        if found is None:
            raise SecretNotFound.named(name, version)
        return found

    def update_secret(self, name: str, version: str | None, patch: SecretPatch) -> SecretVersion:
        current = self.get_secret_properties(name, version)
        attributes = dataclasses.replace(
            current.attributes,
            enabled=current.attributes.enabled if patch.enabled is None else patch.enabled,
            not_before=current.attributes.not_before if patch.not_before is None else patch.not_before,
            expires=current.attributes.expires if patch.expires is None else patch.expires,
            updated=self._now(),
        )
        updated = dataclasses.replace(
            current,
            content_type=current.content_type if patch.content_type is None else patch.content_type,
            tags=current.tags if patch.tags is None else dict(patch.tags),
            attributes=attributes,
        )
        record = self._live(name)
        record.versions[record.versions.index(current)] = updated
        return updated

    def get_secrets(self) -> list[SecretVersion]:
        """The current version of every live secret, by name (list shows no deleted secrets)."""
        live = [r for r in self._secrets.values() if r.deletion is None and r.versions]
        return [r.latest for r in sorted(live, key=lambda r: r.name.lower())]

    def get_secret_versions(self, name: str) -> list[SecretVersion]:
        return list(self._live(name).versions)

    def delete_secret(self, name: str) -> SecretRecord:
        record = self._live(name)
        now = self._now()
        record.deletion = Deletion(
            deleted_date=now, scheduled_purge_date=now + RECOVERABLE_DAYS * _SECONDS_PER_DAY
        )
        return record

    def get_deleted_secret(self, name: str) -> SecretRecord:
        record = self._record(name)
        if record is None or record.deletion is None:
            raise SecretNotFound.deleted(name)
        return record

    def get_deleted_secrets(self) -> list[SecretRecord]:
        deleted = [r for r in self._secrets.values() if r.deletion is not None]
        return sorted(deleted, key=lambda r: r.name.lower())

    def purge_deleted_secret(self, name: str) -> None:
        record = self.get_deleted_secret(name)
        del self._secrets[record.name.lower()]

    def recover_deleted_secret(self, name: str) -> SecretVersion:
        record = self.get_deleted_secret(name)
        record.deletion = None
        return record.latest

    # --- lab-side views -------------------------------------------------------------------------
    def current_versions(self) -> list[SecretVersion]:
        return self.get_secrets()

    def records(self) -> list[SecretRecord]:
        return sorted(self._secrets.values(), key=lambda r: r.name.lower())

    def reset(self) -> None:
        self._secrets.clear()
