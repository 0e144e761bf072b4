"""The Event Grid events a vault raises about secrets, and the watcher that raises the time-driven ones.

Key Vault publishes `SecretNewVersionCreated` when a version is created, `SecretNearExpiry` 30 days before the
current version's `exp` and `SecretExpired` at `exp` (each once per version). The app's rotation reacts to
these, so the lab raises them by the lab clock: the watcher sleeps until the next one is due and wakes at once
when the clock is advanced (`POST /_lab/clock/advance`) or a secret changes.

The data is what Key Vault sends (PascalCase keys, as in Azure's published samples, NBF/EXP as Unix seconds or
null); the subject is the secret name and the topic the vault's ARM id.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Literal, TypedDict

from lab.core.clock import LabClock
from lab.core.events import TopicEvent
from lab.keyvault.models import KeyVaultBackend, SecretVersion

NEW_VERSION = "Microsoft.KeyVault.SecretNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.SecretNearExpiry"
EXPIRED = "Microsoft.KeyVault.SecretExpired"
# Key Vault's documented lead time for SecretNearExpiry.
NEAR_EXPIRY_LEAD_S = 30 * 86_400
# Key Vault system-topic events use data version "1" (and metadata version "1" once Event Grid wraps them).
DATA_VERSION = "1"

ExpiryKind = Literal["near", "expired"]


class SecretEventData(TypedDict):
    """`data` of a Key Vault secret event, keys as Key Vault sends them."""

    Id: str
    VaultName: str
    ObjectType: str
    ObjectName: str
    Version: str
    NBF: int | None
    EXP: int | None


def secret_event(
    *, event_type: str, version: SecretVersion, vault_url: str, vault_name: str, vault_id: str, at: datetime
) -> TopicEvent:
    data: SecretEventData = {
        "Id": f"{vault_url}/secrets/{version.name}/{version.version}",
        "VaultName": vault_name,
        "ObjectType": "Secret",
        "ObjectName": version.name,
        "Version": version.version,
        "NBF": version.attributes.not_before,
        "EXP": version.attributes.expires,
    }
    return TopicEvent(
        id=str(uuid.uuid4()),
        topic=vault_id,
        subject=version.name,
        event_type=event_type,
        event_time=at,
        data=dict(data),
        data_version=DATA_VERSION,
    )


class ExpiryWatcher:
    """Raises NearExpiry/Expired for the current version of each secret when the lab clock reaches them."""

    def __init__(
        self, *, backend: KeyVaultBackend, clock: LabClock, raise_event: Callable[[str, SecretVersion], None]
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.raise_event = raise_event
        self._raised: set[tuple[str, ExpiryKind]] = set()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="keyvault-expiry-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def poke(self) -> None:
        """A secret changed (new version, new exp, delete): recompute what is due next."""
        self._changed.set()

    def reset(self) -> None:
        self._raised.clear()
        self.poke()

    def raise_due(self) -> float | None:
        """Raise every event that is due; return lab seconds until the next one (None: nothing pending)."""
        now = self.clock.timestamp()
        next_due: float | None = None
        for version in self.backend.current_versions():
            expires = version.attributes.expires
            if expires is None:
                continue
            # A version created already expired never was "near" expiry; one created within the 30 days is,
            # at once (it is raised when the watcher first sees it).
            schedule: list[tuple[ExpiryKind, float, str]] = []
            if version.attributes.created < expires:
                schedule.append(("near", expires - NEAR_EXPIRY_LEAD_S, NEAR_EXPIRY))
            schedule.append(("expired", float(expires), EXPIRED))
            for kind, due, event_type in schedule:
                key = (version.version, kind)
                if key in self._raised:
                    continue
                if now >= due:
                    self._raised.add(key)
                    self.raise_event(event_type, version)
                    continue
                next_due = due - now if next_due is None else min(next_due, due - now)
                break  # Expired is never raised before NearExpiry of the same version
        return next_due

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            wait_s = self.raise_due()
            waiters: list[asyncio.Task[object]] = [asyncio.ensure_future(self._changed.wait())]
            if wait_s is not None:
                waiters.append(asyncio.ensure_future(self.clock.sleep(wait_s)))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
