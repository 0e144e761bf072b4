"""The composition root: settings → SDK clients → adapters → services, each built once per worker.

This is the only module that imports both adapters and services (an import-linter layers contract
holds it: `functions` → `shared.container` → adapters | services → ports and models). Trigger handlers
ask `get_container()` for the one service they call; every part is a typed, cached property built on
first use — not at import, for cold start (bench/cold_start.py) — and shared by every invocation of the
worker. The pieces every capability shares are built here once: the SDK clients, **one ARM boundary**
(`ArmFleet`, which paces every ARM request of the app through **one shared pacer**), one notifier, one
clock, the operation store and queue, and the fleet-change engine with its strategies handed over
explicitly.

(Over 500 lines on purpose: it is the one place every service is wired, one short property each; split,
the wiring would be scattered again, which is what issue 11 removed.)

Tests replace whole services (or build a container over their own settings) with `set_container`;
they never patch import paths. A capability whose settings are missing fails when it is first used,
with `MissingSetting` naming the variable, and the others keep working.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from shared.config import Settings

if TYPE_CHECKING:
    from shared.adapters.arm_fleet import ArmFleet
    from shared.adapters.clients import AzureClients
    from shared.adapters.health_store import TableHealthSnapshotStore
    from shared.adapters.resource_graph import ResourceGraphFleet
    from shared.image_policy.manifests import ImageObjects
    from shared.models.runner import RunnerSelector
    from shared.ports import Clock, Notifier, OperationStore, WorkQueue
    from shared.services.conformance.service import ConformanceService, DeclarationStore
    from shared.services.credentials.ports import (
        CredentialLedger,
        GitProbe,
        SecretStore,
        WorkloadIdentityReader,
    )
    from shared.services.credentials.router import CredentialRouter
    from shared.services.credentials.service import CredentialService
    from shared.services.fleet.engine import FleetChangeEngine
    from shared.services.fleet.health_report import FleetHealth
    from shared.services.fleet.health_snapshot import HealthSnapshots
    from shared.services.fleet.inventory import FleetInventory
    from shared.services.fleet.pacing import SharedPacer
    from shared.services.fleet.service import FleetService
    from shared.services.fleet.strategy import ChangeStrategy
    from shared.services.health import HealthService
    from shared.services.images.ports import RepoReader
    from shared.services.images.runner import RunnerCheck
    from shared.services.images.service import ImageChecks

T = TypeVar("T")

# Concurrent remote reads per worker for image checks: the three reads of a push, file reads of a new
# commit, tag lists of `GET /api/images`, Flux configuration reads of a follow-up. Azure DevOps and ARM
# budgets are per identity, so a handful is plenty and keeps one worker from starving the others.
IMAGE_IO_THREADS = 8


class Container:
    """Everything a worker needs, built once each. See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        clients: AzureClients | None = None,
        engine: FleetChangeEngine | None = None,
        fleet: FleetService | None = None,
        credentials: CredentialService | None = None,
        images: ImageChecks | None = None,
        health: HealthService | None = None,
        conformance: ConformanceService | None = None,
        fleet_health: FleetHealth | None = None,
        runner_check: RunnerCheck | None = None,
    ) -> None:
        """`settings` and, for tests, any part already built (it is used instead of building one)."""
        self.settings = settings
        self._built: dict[str, object] = {}
        for name, part in (
            ("clients", clients),
            ("engine", engine),
            ("fleet", fleet),
            ("credentials", credentials),
            ("images", images),
            ("health", health),
            ("conformance", conformance),
            ("fleet_health", fleet_health),
            ("runner_check", runner_check),
        ):
            if part is not None:
                self._built[name] = part
        # Re-entrant: building the engine builds the credential strategies, which build the ledger...
        self._lock = threading.RLock()

    def _once(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            part: T = self._built[name]  # type: ignore[assignment]
            return part

    # --- shared pieces ------------------------------------------------------------------------------
    @property
    def clients(self) -> AzureClients:
        def build() -> AzureClients:
            from shared.adapters.clients import AzureClients

            return AzureClients(self.settings)

        return self._once("clients", build)

    @property
    def clock(self) -> Clock:
        def build() -> Clock:
            from shared.adapters.clock import SystemClock

            return SystemClock()

        return self._once("clock", build)

    @property
    def pacer(self) -> SharedPacer:
        """ARM's budget per subscription and identity, shared by every instance (a Table row each)."""

        def build() -> SharedPacer:
            from shared.adapters.operation_store import TableBucketStore
            from shared.services.fleet.pacing import SharedPacer, limits_from_settings

            return SharedPacer(
                store=TableBucketStore(self.clients.tables),
                clock=self.clock,
                limits=limits_from_settings(self.settings),
            )

        return self._once("pacer", build)

    @property
    def arm(self) -> ArmFleet:
        """The one ARM boundary: every ARM request of the app is paced and observed here."""

        def build() -> ArmFleet:
            from shared.adapters.arm_fleet import ArmFleet

            return ArmFleet(self.clients, pacer=self.pacer, observer=self.pacer)

        return self._once("arm", build)

    @property
    def notifier(self) -> Notifier:
        def build() -> Notifier:
            from shared.adapters.notifier import NullNotifier, WebhookNotifier

            url = self.settings.webhook_url
            return WebhookNotifier(url=url) if url else NullNotifier()

        return self._once("notifier", build)

    @property
    def operation_store(self) -> OperationStore:
        def build() -> OperationStore:
            from shared.adapters.operation_store import TableOperationStore

            return TableOperationStore(self.clients.tables)

        return self._once("operation_store", build)

    @property
    def work_queue(self) -> WorkQueue:
        def build() -> WorkQueue:
            from shared.adapters.work_queue import StorageWorkQueue

            return StorageWorkQueue(self.clients.queues)

        return self._once("work_queue", build)

    # --- the fleet ----------------------------------------------------------------------------------
    @property
    def inventory(self) -> FleetInventory:
        def build() -> FleetInventory:
            from shared.services.fleet.inventory import FleetInventory

            return FleetInventory(
                reader=self.arm,
                subscriptions=self.settings.subscription_ids,
                configuration=self.settings.flux_configuration,
                graph=self.graph,
            )

        return self._once("inventory", build)

    @property
    def strategies(self) -> list[ChangeStrategy]:
        """Every kind of fleet-wide change, handed to the engine explicitly (a missing one is a bug)."""

        def build() -> list[ChangeStrategy]:
            from shared.services.credentials.migration import WorkloadIdentityMigrationStrategy
            from shared.services.credentials.rollout import CredentialRolloutStrategy
            from shared.services.fleet.suspend import suspend_strategies

            # Building them does no I/O and needs no Key Vault setting: the adapters create their SDK
            # clients on first use, so a deployment without Key Vault still runs suspend/resume.
            return [
                *suspend_strategies(),
                CredentialRolloutStrategy(
                    secrets=[self.secrets, self.automation_secrets],
                    ledger=self.ledger,
                    notifier=self.notifier,
                ),
                WorkloadIdentityMigrationStrategy(
                    readiness=self.readiness, ledger=self.ledger, notifier=self.notifier
                ),
                *self.conformance_strategies,
            ]

        return self._once("strategies", build)

    @property
    def engine(self) -> FleetChangeEngine:
        def build() -> FleetChangeEngine:
            from shared.services.fleet.engine import EngineSettings, FleetChangeEngine

            return FleetChangeEngine(
                reader=self.arm,
                writer=self.arm,
                directory=self.inventory,
                store=self.operation_store,
                queue=self.work_queue,
                clock=self.clock,
                strategies=self.strategies,
                settings=EngineSettings.from_settings(self.settings),
            )

        return self._once("engine", build)

    @property
    def fleet(self) -> FleetService:
        def build() -> FleetService:
            from shared.services.fleet.service import FleetService

            return FleetService(engine=self.engine, inventory=self.inventory)

        return self._once("fleet", build)

    # --- fleet health (issue 13) ----------------------------------------------------------------------
    @property
    def graph(self) -> ResourceGraphFleet:
        """The fleet from Azure Resource Graph (one query per 1,000 panels), paced by the shared pacer."""

        def build() -> ResourceGraphFleet:
            from shared.adapters.resource_graph import ResourceGraphFleet

            return ResourceGraphFleet(
                self.clients,
                configuration=self.settings.flux_configuration,
                pacer=self.pacer,
                observer=self.pacer,
            )

        return self._once("graph", build)

    @property
    def fleet_health(self) -> FleetHealth:
        def build() -> FleetHealth:
            from shared.services.fleet.health_report import FleetHealth

            settings = self.settings
            return FleetHealth(
                graph=self.graph,
                arm=self.arm,
                subscriptions=settings.subscription_ids,
                configuration=settings.flux_configuration,
                # Read lazily, once per request: a deployment without Azure DevOps settings still answers.
                head=lambda: str(self.repo_reader.head_commit(branch=settings.git_branch)),
                ledger=lambda: self.ledger,
                secret_name=settings.pat_secret_name,
                operations=lambda: self.operation_store,
                snapshots=lambda: self.health_snapshot_store,
            )

        return self._once("fleet_health", build)

    @property
    def health_snapshot_store(self) -> TableHealthSnapshotStore:
        def build() -> TableHealthSnapshotStore:
            from shared.adapters.health_store import TableHealthSnapshotStore

            return TableHealthSnapshotStore(service=self.clients.tables)

        return self._once("health_snapshot_store", build)

    @property
    def health_snapshots(self) -> HealthSnapshots:
        """The 15-minute health snapshot: a real `since`, and notifications once (fleet.health_snapshot)."""

        def build() -> HealthSnapshots:
            from shared.services.fleet.health_snapshot import HealthSnapshots

            return HealthSnapshots(
                health=self.fleet_health,
                store=self.health_snapshot_store,
                notifier=self.notifier,
                clock=self.clock,
            )

        return self._once("health_snapshots", build)

    # --- conformance (issue 14) ---------------------------------------------------------------------
    @property
    def repo_reader(self) -> RepoReader:
        """The GitOps repository through Azure DevOps' Git REST API, with the app's own identity."""

        def build() -> RepoReader:
            from shared.adapters.repo_reader import DevOpsRepoReader

            settings = self.settings
            return DevOpsRepoReader(
                org_url=settings.require("devops_org_url"),
                project=settings.require("devops_project"),
                repository=settings.require("devops_repository"),
                credential=self.clients.credential,
            )

        return self._once("repo_reader", build)

    @property
    def declarations(self) -> DeclarationStore:
        def build() -> DeclarationStore:
            from shared.services.conformance.service import DeclarationStore

            return DeclarationStore(reader=lambda: self.repo_reader, branch=self.settings.git_branch)

        return self._once("declarations", build)

    @property
    def conformance_strategies(self) -> list[ChangeStrategy]:
        def build() -> list[ChangeStrategy]:
            from shared.services.conformance.service import KeyVaultHttpsKeys
            from shared.services.conformance.strategy import ConformStrategy, ResetStrategy

            # No I/O here: the repository reader and Key Vault are used on the first conform only. The
            # runner's declared `credentialSecret` is the automation secret: only it gets the write PAT.
            keys = KeyVaultHttpsKeys(
                secrets=self.secrets,
                ledger=self.ledger,
                stores={self.settings.automation_pat_secret_name: self.automation_secrets},
            )
            arm, declarations, rings = self.arm, self.declarations, self.settings.rings
            return [
                ConformStrategy(arm=arm, declarations=declarations, keys=keys, rings=rings),
                ResetStrategy(arm=arm, declarations=declarations, keys=keys, rings=rings),
            ]

        return self._once("conformance_strategies", build)

    @property
    def conformance(self) -> ConformanceService:
        def build() -> ConformanceService:
            from shared.services.conformance.service import ConformanceService

            return ConformanceService(
                reader=self.arm,
                directory=self.inventory,
                declarations=self.declarations,
                engine=self.engine,
                fleet=self.fleet,
                configuration=self.settings.flux_configuration,
                git_url=self.settings.require("git_url"),
            )

        return self._once("conformance", build)

    # --- credentials --------------------------------------------------------------------------------
    @property
    def secrets(self) -> SecretStore:
        def build() -> SecretStore:
            from shared.adapters.keyvault import KeyVaultSecretStore

            return KeyVaultSecretStore(
                client=lambda: self.clients.secrets, secret_name=self.settings.pat_secret_name
            )

        return self._once("secrets", build)

    @property
    def automation_secrets(self) -> SecretStore:
        """The runner's write PAT (issue 15): its own Key Vault secret, same vault and adapter."""

        def build() -> SecretStore:
            from shared.adapters.keyvault import KeyVaultSecretStore

            return KeyVaultSecretStore(
                client=lambda: self.clients.secrets, secret_name=self.settings.automation_pat_secret_name
            )

        return self._once("automation_secrets", build)

    @property
    def runner_selector(self) -> RunnerSelector:
        """Which cluster is the image-automation runner (`FLUXFLEET_RUNNER_TAG`, checked by config)."""

        def build() -> RunnerSelector:
            from shared.models.runner import RunnerSelector

            return RunnerSelector.parse(self.settings.runner_tag)

        return self._once("runner_selector", build)

    @property
    def ledger(self) -> CredentialLedger:
        def build() -> CredentialLedger:
            from shared.adapters.credential_ledger import TableCredentialLedger

            return TableCredentialLedger(service=self.clients.tables)

        return self._once("ledger", build)

    @property
    def git_probe(self) -> GitProbe:
        def build() -> GitProbe:
            from shared.adapters.git_probe import HttpGitProbe

            return HttpGitProbe()

        return self._once("git_probe", build)

    @property
    def readiness(self) -> WorkloadIdentityReader:
        def build() -> WorkloadIdentityReader:
            from shared.adapters.arc_readiness import ArmWorkloadIdentityReader

            return ArmWorkloadIdentityReader(self.arm)

        return self._once("readiness", build)

    @property
    def credentials(self) -> CredentialService:
        """The fleet credential (read-only, factory panels only)."""
        return self._once("credentials", lambda: self._credential_service(automation=False))

    @property
    def automation_credentials(self) -> CredentialService:
        """The automation credential (read & write, the image-automation runner only; issue 15)."""
        return self._once("automation_credentials", lambda: self._credential_service(automation=True))

    def _credential_service(self, *, automation: bool) -> CredentialService:
        from shared.models.credentials import CredentialPurpose
        from shared.services.credentials.service import CredentialService, CredentialSettings

        settings = self.settings
        return CredentialService(
            settings=CredentialSettings(
                secret_name=settings.automation_pat_secret_name if automation else settings.pat_secret_name,
                git_url=settings.require("git_url"),
                https_user=settings.git_https_user,
                rings=settings.rings,
                ring_threshold=settings.credential_ring_threshold,
                warning_days=settings.expiry_warning_days,
                purpose=CredentialPurpose.AUTOMATION if automation else CredentialPurpose.FLEET,
                runner=self.runner_selector,
            ),
            secrets=self.automation_secrets if automation else self.secrets,
            probe=self.git_probe,
            ledger=self.ledger,
            notifier=self.notifier,
            engine=self.engine,
            directory=self.inventory,
            readiness=None if automation else self.readiness,
        )

    @property
    def credential_router(self) -> CredentialRouter:
        """Both credentials behind one door: events and the timer by secret name, the map of both."""

        def build() -> CredentialRouter:
            from contextlib import suppress

            from shared.errors import MissingSetting
            from shared.models.credentials import CredentialPurpose
            from shared.services.credentials.router import CredentialRouter

            services = {CredentialPurpose.FLEET: self.credentials}
            # A fleet service given ready-made (tests) without settings: the map says automation is absent.
            with suppress(MissingSetting):
                services[CredentialPurpose.AUTOMATION] = self.automation_credentials
            return CredentialRouter(services=services)

        return self._once("credential_router", build)

    # --- images -------------------------------------------------------------------------------------
    @property
    def images(self) -> ImageChecks:
        def build() -> ImageChecks:
            from shared.adapters.image_store import QueueFollowUps, TableCheckStore
            from shared.adapters.registry import AcrTagLister
            from shared.adapters.repo_reader import DevOpsRepoReader
            from shared.services.images.panels import FleetPanelReports
            from shared.services.images.service import ImageCheckConfig, ImageChecks

            settings = self.settings
            executor = ThreadPoolExecutor(max_workers=IMAGE_IO_THREADS, thread_name_prefix="images")
            reader = DevOpsRepoReader(
                org_url=settings.require("devops_org_url"),
                project=settings.require("devops_project"),
                repository=settings.require("devops_repository"),
                credential=self.clients.credential,
            )
            return ImageChecks(
                reader=reader,
                registry=AcrTagLister(client=self.clients.registry),
                store=TableCheckStore(service=self.clients.tables),
                follow_ups=QueueFollowUps(service=self.clients.queues),
                panels=FleetPanelReports(
                    directory=self.inventory,
                    reader=self.arm,
                    configuration=settings.flux_configuration,
                    executor=executor,
                    runner=self.runner_selector,
                ),
                notifier=self.notifier,
                config=ImageCheckConfig.from_settings(settings),
                executor=executor,
            )

        return self._once("images", build)

    @property
    def runner_check(self) -> RunnerCheck:
        """`GET /api/images/runner`: the one image-automation runner, checked (issue 15)."""

        def build() -> RunnerCheck:
            from shared.services.images.runner import RunnerCheck

            settings = self.settings

            def current_version() -> str | None:
                current = self.automation_secrets.list_versions().current
                return current.version if current else None

            def image_objects() -> ImageObjects:
                # HEAD through the image checks' snapshot cache (one tree listing per new commit).
                head = self.repo_reader.head_commit(branch=settings.git_branch)
                return self.images.snapshots.at(head).objects

            return RunnerCheck(
                directory=self.inventory,
                extensions=self.arm,
                image_objects=image_objects,
                proofs=lambda: self.ledger,
                current_version=current_version,
                selector=self.runner_selector,
                secret_name=settings.automation_pat_secret_name,
                clock=self.clock.now,
            )

        return self._once("runner_check", build)

    # --- health -------------------------------------------------------------------------------------
    @property
    def health(self) -> HealthService:
        def build() -> HealthService:
            from shared.services.health import HealthService, Probe

            settings = self.settings
            probes: dict[str, Probe] = {}
            if settings.subscription_ids:
                subscription = settings.subscription_ids[0]
                probes["arm"] = lambda: self.arm.probe(subscription=subscription)
            if settings.storage_connection:
                probes["storage"] = lambda: next(
                    iter(self.clients.tables.list_tables(results_per_page=1)), None
                )
            if settings.keyvault_url:
                probes["keyvault"] = lambda: next(
                    iter(self.clients.secrets.list_properties_of_secret_versions(settings.pat_secret_name)),
                    None,
                )
            if settings.git_url and settings.devops_org_url and settings.subscription_ids:
                # Says when HEAD's kubernetes/fleet/flux.yaml is invalid and the last valid one is in use.
                probes["declaration"] = lambda: self.conformance.probe_declaration()  # noqa: PLW0108 - lazy
            if settings.acr_endpoint:
                probes["acr"] = lambda: next(
                    iter(self.clients.registry.list_repository_names(results_per_page=1)), None
                )
            return HealthService(settings=settings, probes=probes)

        return self._once("health", build)


_container: Container | None = None
_container_lock = threading.Lock()


def get_container() -> Container:
    """This worker's container, built from the environment on first use."""
    global _container  # noqa: PLW0603 - one container per worker process is the point
    with _container_lock:
        if _container is None:
            _container = Container(Settings.from_env())
        return _container


def set_container(container: Container | None) -> None:
    """Install a container (tests), or None to rebuild from the environment on next use."""
    global _container  # noqa: PLW0603
    with _container_lock:
        _container = container
