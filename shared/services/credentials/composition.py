"""Wiring the credential capability to Azure, once per worker (see `shared.runtime`).

Two entry points: `from_runtime` builds the `CredentialService` the triggers call, and
`change_strategies` gives the fleet-change engine the two strategies of this capability (the engine
lists this module in `STRATEGY_PROVIDERS`). Both share one set of adapters per worker, so the rollout
strategy inside a queue worker and the service behind an HTTP route read the same caches.
Adapters are imported here, inside functions, so importing the app stays free of Azure SDKs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from shared.config import Settings
from shared.services.credentials.migration import WorkloadIdentityMigrationStrategy
from shared.services.credentials.ports import (
    CredentialLedger,
    GitProbe,
    Notifier,
    SecretStore,
    WorkloadIdentityReader,
)
from shared.services.credentials.rollout import CredentialRolloutStrategy
from shared.services.credentials.service import CredentialService, CredentialSettings

# Keys of this capability's objects in `Runtime.services`.
COMPONENTS_SERVICE = "credentials.components"
SERVICE_NAME = "credentials"
# The fleet-change engine, shared with the fleet capability (the key its handlers use).
ENGINE_SERVICE = "fleet_changes"


@dataclass(frozen=True)
class CredentialComponents:
    secrets: SecretStore
    ledger: CredentialLedger
    notifier: Notifier
    probe: GitProbe
    readiness: WorkloadIdentityReader


# `Runtime.service` holds a non-reentrant lock while it builds a service, and the engine's build asks
# for this capability's strategies (and this capability's service needs the engine): building the
# shared components under a lock of their own keeps those nested builds from deadlocking.
_components_lock = threading.RLock()


def components(runtime: Any) -> CredentialComponents:
    with _components_lock:
        built: CredentialComponents | None = runtime.services.get(COMPONENTS_SERVICE)
        if built is None:
            built = runtime.services[COMPONENTS_SERVICE] = _build_components(runtime)
        return built


class _RuntimeEngine:
    """The worker's fleet-change engine, looked up when first used (never while a service is being built)."""

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime

    def _engine(self) -> Any:
        from shared.services import fleet_changes

        return self._runtime.service(ENGINE_SERVICE, fleet_changes.from_runtime)

    def start(self, **kwargs: Any) -> Any:
        return self._engine().start(**kwargs)

    def get_operation(self, operation_id: str) -> Any:
        return self._engine().get_operation(operation_id)

    def list_fleet(self) -> list[Any]:
        fleet: list[Any] = self._engine().list_fleet()
        return fleet


def _build_components(runtime: Any) -> CredentialComponents:
    from shared.adapters.arc_readiness import ArmWorkloadIdentityReader
    from shared.adapters.credential_ledger import TableCredentialLedger
    from shared.adapters.git_probe import HttpGitProbe
    from shared.adapters.keyvault import KeyVaultSecretStore
    from shared.adapters.notifier import NullNotifier, WebhookNotifier

    settings: Settings = runtime.settings
    notifier: Notifier = WebhookNotifier(url=settings.webhook_url) if settings.webhook_url else NullNotifier()
    return CredentialComponents(
        secrets=KeyVaultSecretStore(
            client=lambda: runtime.clients.secrets, secret_name=settings.pat_secret_name
        ),
        ledger=TableCredentialLedger(service=runtime.clients.tables),
        notifier=notifier,
        probe=HttpGitProbe(),
        readiness=ArmWorkloadIdentityReader(runtime.clients),
    )


def change_strategies(runtime: Any) -> list[Any]:
    """The `credential-rollout` and `workload-identity-migration` strategies of this worker.

    Building them does no I/O and needs no Key Vault setting: the adapters create their SDK clients on
    first use, so a deployment without Key Vault settings still runs fleet suspend/resume.
    """
    parts = components(runtime)
    return [
        CredentialRolloutStrategy(secrets=parts.secrets, ledger=parts.ledger, notifier=parts.notifier),
        WorkloadIdentityMigrationStrategy(
            readiness=parts.readiness, ledger=parts.ledger, notifier=parts.notifier
        ),
    ]


def from_runtime(runtime: Any) -> CredentialService:
    settings: Settings = runtime.settings
    parts = components(runtime)
    return CredentialService(
        settings=CredentialSettings(
            secret_name=settings.pat_secret_name,
            git_url=settings.require("git_url"),
            https_user=settings.git_https_user,
            rings=settings.rings,
            ring_threshold=settings.credential_ring_threshold,
            warning_days=settings.expiry_warning_days,
        ),
        secrets=parts.secrets,
        probe=parts.probe,
        ledger=parts.ledger,
        notifier=parts.notifier,
        engine=_RuntimeEngine(runtime),
        readiness=parts.readiness,
    )
