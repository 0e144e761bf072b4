"""The ARM backend: connectedClusters, fluxConfigurations and extensions, with their long-running operations.

Method names follow the REST operation ids (`FluxConfigurations_Update` -> `flux_configurations_update`,
`Extensions_Create` -> `extensions_create`). State is the fleet (`lab.fleet.model`), indexed per
subscription; this class adds ARM's bookkeeping: existence checks in ARM's order (subscription, resource
group, resource), generation counting, and the asynchronous operations behind PUT/PATCH/DELETE.

An accepted write changes the *desired* state at once (ARM stores it even while the panel is
offline) and starts an operation that moves `Running` -> `Succeeded` (or `Failed`) after
`LRO_DURATION_LAB_S` of lab time, while the resource shows `provisioningState`
`Creating`/`Updating`/`Deleting`. An extension operation's outcome is decided when it is accepted —
which version it installs, or why it cannot (an unreleased version, a skipped upgrade step) — and
shows when it completes: `currentVersion` moves, or the extension goes `Failed` with `errorInfo` in
the RP's words. Operations settle lazily, whenever ARM is asked anything, so no timer task is needed.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from lab.arm import flux_releases
from lab.arm.errors import (
    BadRequest,
    ExtensionNotFound,
    FluxExtensionNotInstalled,
    ResourceGroupNotFound,
    ResourceNotFound,
    SubscriptionNotFound,
)
from lab.core.clock import LabClock
from lab.fleet.model import (
    CONNECTED_CLUSTER_TYPE,
    EXTENSION_TYPE,
    FLUX_CONFIGURATION_TYPE,
    FLUX_EXTENSION_TYPE,
    Actor,
    Extension,
    ExtensionError,
    ExtensionSpec,
    Fleet,
    FluxConfig,
    FluxReport,
    FluxSpec,
    Panel,
)

# How long (lab seconds) an accepted change stays `Running`: long enough that a poller really
# polls at least once, short enough for tests at time-scale 1.
LRO_DURATION_LAB_S = 1.0
# Completed operations stay readable for a lab day (a poller resuming from a continuation token).
OPERATION_RETENTION_LAB_S = 24 * 3600.0
# The code and wording the extensions RP gives a failed install or upgrade: "(ExtensionOperationFailed)
# The extension operation failed with the following error: Failed to resolve the extension version from
# the given values." (Azure/azure-cli-extensions#5325).
EXTENSION_OPERATION_FAILED = "ExtensionOperationFailed"
UNRESOLVABLE_VERSION = "Failed to resolve the extension version from the given values."
# What a Helm install that never becomes ready reports (Azure/azure-sdk-for-go#21668, Azure/AKS#5645);
# the default reason of a failure injected through the control API.
DEFAULT_FAILURE = (
    "Helm installation failed : Timed out waiting for the resource to come to a ready/completed state"
)

OperationKind = Literal["create", "update", "delete"]
ResourceKind = Literal["fluxConfigurations", "extensions"]


def extension_failure(reason: str) -> ExtensionError:
    return ExtensionError(
        code=EXTENSION_OPERATION_FAILED,
        message=f"The extension operation failed with the following error: {reason}",
    )


@dataclass
class Operation:
    id: str
    kind: OperationKind
    panel: Panel
    resource_kind: ResourceKind
    resource: FluxConfig | Extension
    due: float  # lab elapsed seconds when it completes
    status: Literal["Running", "Succeeded", "Failed"] = "Running"
    # Extensions only: what the operation installs, or the failure it ends in (decided when accepted).
    target_version: str | None = None
    error: ExtensionError | None = None

    def matches(self, subscription: str, group: str, cluster: str, kind: ResourceKind, name: str) -> bool:
        ident = self.panel.identity
        return self.resource_kind == kind and (
            ident.subscription.lower(),
            ident.resource_group.lower(),
            ident.name.lower(),
            self.resource.name.lower(),
        ) == (subscription.lower(), group.lower(), cluster.lower(), name.lower())


@dataclass(frozen=True)
class WriteResult:
    panel: Panel
    config: FluxConfig
    operation: Operation | None  # None: nothing changed (PATCH 200)
    created: bool = False


@dataclass(frozen=True)
class ExtensionWrite:
    panel: Panel
    extension: Extension
    operation: Operation | None  # None: nothing changed (PATCH 200)
    created: bool = False


class ArmBackend:
    def __init__(self, *, clock: LabClock, fleet: Fleet) -> None:
        self.clock = clock
        self.fleet = fleet
        self._operations: dict[str, Operation] = {}
        self._pending: list[tuple[float, int, Operation]] = []
        self._finished: deque[tuple[float, str]] = deque()
        self._sequence = itertools.count()

    def load(self, fleet: Fleet) -> None:
        """Replace the fleet (seed or reset); operations of the old fleet are forgotten."""
        self.fleet = fleet
        self._operations.clear()
        self._pending.clear()
        self._finished.clear()

    # --- existence, in ARM's order -----------------------------------------------------------------
    def _group(self, subscription: str, group: str) -> None:
        if not self.fleet.has_subscription(subscription):
            raise SubscriptionNotFound(subscription)
        if not self.fleet.has_resource_group(subscription, group):
            raise ResourceGroupNotFound(group)

    def _cluster(self, subscription: str, group: str, name: str) -> Panel:
        self._group(subscription, group)
        panel = self.fleet.find(subscription, group, name)
        if panel is None:
            raise ResourceNotFound(resource_type=CONNECTED_CLUSTER_TYPE, name=name, group=group)
        return panel

    # --- Microsoft.Kubernetes/connectedClusters ----------------------------------------------------
    def connected_cluster_get(self, subscription: str, group: str, name: str) -> Panel:
        return self._cluster(subscription, group, name)

    def connected_cluster_list_by_resource_group(self, subscription: str, group: str) -> list[Panel]:
        self._group(subscription, group)
        return self.fleet.in_resource_group(subscription, group)

    def connected_cluster_list_by_subscription(self, subscription: str) -> list[Panel]:
        if not self.fleet.has_subscription(subscription):
            raise SubscriptionNotFound(subscription)
        return self.fleet.in_subscription(subscription)

    # --- Microsoft.KubernetesConfiguration/fluxConfigurations --------------------------------------
    def flux_configurations_get(
        self, subscription: str, group: str, cluster: str, name: str
    ) -> tuple[Panel, FluxConfig]:
        self.settle()
        panel = self._cluster(subscription, group, cluster)
        config = panel.flux_config(name)
        if config is None:
            raise ResourceNotFound(resource_type=FLUX_CONFIGURATION_TYPE, name=name, group=group)
        return panel, config

    def flux_configurations_list(
        self, subscription: str, group: str, cluster: str
    ) -> tuple[Panel, list[FluxConfig]]:
        self.settle()
        panel = self._cluster(subscription, group, cluster)
        return panel, list(panel.flux_configs.values())

    def flux_configurations_create_or_update(
        self,
        subscription: str,
        group: str,
        cluster: str,
        name: str,
        *,
        spec: FluxSpec,
        protected_settings: Mapping[str, str],
        actor: Actor,
    ) -> WriteResult:
        """PUT: create, or replace the whole configuration. A PUT always counts as a change (re-apply).

        Creating one needs a running microsoft.flux on the cluster ("The microsoft.flux extension must
        be installed in the cluster before one or more fluxConfigurations can be created").
        """
        self.settle()
        panel = self._cluster(subscription, group, cluster)
        now = self.clock.now()
        existing = panel.flux_config(name)
        if existing is None or existing.deleting:
            extension = panel.flux_extension()
            if extension is None or extension.deleting or extension.provisioning_state != "Succeeded":
                state = None
                if extension is not None:
                    state = "Deleting" if extension.deleting else extension.provisioning_state
                raise FluxExtensionNotInstalled(panel.name, state)
            config = FluxConfig(
                name=name,
                uid=str(uuid.uuid4()),
                spec=spec,
                protected_settings=dict(protected_settings),
                generation=1,
                changed_at=now,
                provisioning_state="Creating",
                created_at=now,
                created_by=actor,
                last_modified_at=now,
                last_modified_by=actor,
                report=FluxReport(),
            )
            panel.flux_configs[name.lower()] = config
            return WriteResult(panel, config, self._start(panel, config, "create"), created=True)
        if (existing.spec.scope, existing.spec.namespace) != (spec.scope, spec.namespace):
            raise BadRequest(
                "The 'scope' and 'namespace' of a Flux configuration can only be set when it is "
                "created; delete and re-create it to change them.",
                target="properties.scope",
            )
        self._change(existing, spec, dict(protected_settings), actor, now)
        return WriteResult(panel, existing, self._start(panel, existing, "update"))

    def flux_configurations_update(
        self,
        subscription: str,
        group: str,
        cluster: str,
        name: str,
        *,
        spec: FluxSpec,
        protected_settings: Mapping[str, str] | None,
        actor: Actor,
    ) -> WriteResult:
        """PATCH, already merged into `spec`; protected settings always count as a change (write-only)."""
        panel, config = self.flux_configurations_get(subscription, group, cluster, name)
        if spec == config.spec and protected_settings is None:
            return WriteResult(panel, config, None)
        self._change(config, spec, protected_settings, actor, self.clock.now())
        return WriteResult(panel, config, self._start(panel, config, "update"))

    def flux_configurations_delete(
        self, subscription: str, group: str, cluster: str, name: str, *, force: bool = False
    ) -> Operation | Literal["gone", "forced"]:
        """DELETE: an operation; "gone" when there is nothing to delete (ARM's 204); "forced" when
        `forceDelete=true` removed the Azure resource at once (200)."""
        self.settle()
        panel = self._cluster(subscription, group, cluster)
        config = panel.flux_config(name)
        if config is None:
            return "gone"
        if force:
            del panel.flux_configs[name.lower()]
            return "forced"
        config.deleting = True
        config.provisioning_state = "Deleting"
        return self._start(panel, config, "delete")

    def flux_config_operation_status_get(
        self, subscription: str, group: str, cluster: str, name: str, operation_id: str
    ) -> Operation:
        return self._operation(
            subscription, group, cluster, kind="fluxConfigurations", name=name, operation_id=operation_id
        )

    # --- Microsoft.KubernetesConfiguration/extensions ----------------------------------------------
    def extensions_get(
        self, subscription: str, group: str, cluster: str, name: str
    ) -> tuple[Panel, Extension]:
        self.settle()
        panel = self._cluster(subscription, group, cluster)
        extension = panel.extension(name)
        if extension is None:
            raise ExtensionNotFound(name)
        return panel, extension

    def extensions_list(self, subscription: str, group: str, cluster: str) -> tuple[Panel, list[Extension]]:
        self.settle()
        panel = self._cluster(subscription, group, cluster)
        return panel, list(panel.extensions.values())

    def extensions_create(
        self,
        subscription: str,
        group: str,
        cluster: str,
        name: str,
        *,
        spec: ExtensionSpec,
        protected_settings: Mapping[str, str],
        actor: Actor,
    ) -> ExtensionWrite:
        """PUT: install (201), or replace the spec of an existing instance (200). Always an operation."""
        self.settle()
        panel = self._cluster(subscription, group, cluster)
        if spec.extension_type.lower() != FLUX_EXTENSION_TYPE:
            raise BadRequest(
                f"Extension type '{spec.extension_type}' is not known to the lab; only "
                f"'{FLUX_EXTENSION_TYPE}' can be installed.",
                target="properties.extensionType",
            )
        now = self.clock.now()
        existing = panel.extension(name)
        if existing is None or existing.deleting:
            other = panel.flux_extension()
            if other is not None and not other.deleting:
                raise BadRequest(
                    f"The extension type '{FLUX_EXTENSION_TYPE}' is already installed on the cluster as "
                    f"'{other.name}'; a cluster can have only one instance of it.",
                    target="properties.extensionType",
                )
            extension = Extension(
                name=name,
                uid=str(uuid.uuid4()),
                spec=spec,
                protected_settings=dict(protected_settings),
                current_version=None,
                provisioning_state="Creating",
                created_at=now,
                created_by=actor,
                last_modified_at=now,
                last_modified_by=actor,
                principal_id=str(uuid.uuid4()) if spec.identity_type is not None else None,
            )
            panel.extensions[name.lower()] = extension
            return ExtensionWrite(panel, extension, self._start_extension(panel, extension, "create"), True)
        if existing.spec.extension_type.lower() != spec.extension_type.lower():
            raise BadRequest(
                "The 'extensionType' of an extension cannot be changed; delete and re-create it.",
                target="properties.extensionType",
            )
        if (existing.spec.scope_kind, existing.spec.scope_namespace) != (
            spec.scope_kind,
            spec.scope_namespace,
        ):
            raise BadRequest(
                "The 'scope' of an extension can only be set when it is created.", target="properties.scope"
            )
        spec = replace(spec, managed_by=existing.spec.managed_by)  # managedBy is create-only
        self._change_extension(existing, spec, dict(protected_settings), actor, now)
        return ExtensionWrite(panel, existing, self._start_extension(panel, existing, "update"))

    def extensions_update(
        self,
        subscription: str,
        group: str,
        cluster: str,
        name: str,
        *,
        spec: ExtensionSpec,
        protected_settings: Mapping[str, str] | None,
        actor: Actor,
    ) -> ExtensionWrite:
        """PATCH, already merged into `spec`: 200 without an operation when nothing changes, else 202."""
        panel, extension = self.extensions_get(subscription, group, cluster, name)
        if spec == extension.spec and protected_settings is None:
            return ExtensionWrite(panel, extension, None)
        self._change_extension(extension, spec, protected_settings, actor, self.clock.now())
        return ExtensionWrite(panel, extension, self._start_extension(panel, extension, "update"))

    def extensions_delete(
        self, subscription: str, group: str, cluster: str, name: str, *, force: bool = False
    ) -> Operation | Literal["gone", "forced"]:
        """DELETE: the agent uninstalls the release; `forceDelete` removes only the Azure resource, now."""
        self.settle()
        panel = self._cluster(subscription, group, cluster)
        extension = panel.extension(name)
        if extension is None:
            return "gone"
        if force:
            del panel.extensions[name.lower()]
            return "forced"
        extension.deleting = True
        extension.provisioning_state = "Deleting"
        return self._start_extension(panel, extension, "delete")

    def operation_status_get(
        self, subscription: str, group: str, cluster: str, name: str, operation_id: str
    ) -> Operation:
        """OperationStatus_Get of the extensions RP."""
        return self._operation(
            subscription, group, cluster, kind="extensions", name=name, operation_id=operation_id
        )

    # --- outside ARM: what the cluster's agent reports -----------------------------------------------
    def report_extension_state(self, panel: Panel, *, failed: bool, reason: str | None = None) -> Extension:
        """The agent reports the flux extension broken (`Failed`, with errorInfo) or healthy again."""
        self.settle()
        extension = panel.flux_extension()
        if extension is None:
            raise LookupError(f"{panel.name} has no microsoft.flux extension")
        if failed:
            extension.provisioning_state = "Failed"
            extension.error_info = extension_failure(reason or DEFAULT_FAILURE)
        else:
            extension.provisioning_state = "Succeeded"
            extension.error_info = None
            if extension.current_version is None:  # a first install that failed now completed
                extension.current_version, _ = self._resolve(extension.spec, None)
        return extension

    # --- operations ---------------------------------------------------------------------------------
    def _operation(
        self, subscription: str, group: str, cluster: str, *, kind: ResourceKind, name: str, operation_id: str
    ) -> Operation:
        self.settle()
        self._cluster(subscription, group, cluster)
        operation = self._operations.get(operation_id.lower())
        if operation is None or not operation.matches(subscription, group, cluster, kind, name):
            resource_type = FLUX_CONFIGURATION_TYPE if kind == "fluxConfigurations" else EXTENSION_TYPE
            raise ResourceNotFound(
                resource_type=f"{resource_type}/{name}/operations", name=operation_id, group=group
            )
        return operation

    @staticmethod
    def _change(
        config: FluxConfig,
        spec: FluxSpec,
        protected_settings: Mapping[str, str] | None,
        actor: Actor,
        now: datetime,
    ) -> None:
        config.spec = spec
        if protected_settings is not None:
            config.protected_settings = dict(protected_settings)
        config.generation += 1
        config.changed_at = now
        config.last_modified_at, config.last_modified_by = now, actor
        config.provisioning_state = "Updating"

    @staticmethod
    def _change_extension(
        extension: Extension,
        spec: ExtensionSpec,
        protected_settings: Mapping[str, str] | None,
        actor: Actor,
        now: datetime,
    ) -> None:
        extension.spec = spec
        if protected_settings is not None:
            extension.protected_settings = dict(protected_settings)
        extension.last_modified_at, extension.last_modified_by = now, actor
        extension.provisioning_state = "Updating"

    @staticmethod
    def _resolve(spec: ExtensionSpec, current: str | None) -> tuple[str | None, ExtensionError | None]:
        """The version an install or upgrade puts on the cluster, or the RP's reason it cannot."""
        target = flux_releases.newest(spec.release_train) if spec.auto_upgrade_minor_version else spec.version
        if target is None or not flux_releases.is_released(target):
            return None, extension_failure(UNRESOLVABLE_VERSION)
        blocker = flux_releases.upgrade_blocker(current, target)
        if blocker is not None:
            return None, extension_failure(blocker)
        return target, None

    def _start(self, panel: Panel, config: FluxConfig, kind: OperationKind) -> Operation:
        config.pending_operations += 1
        return self._schedule(Operation(str(uuid.uuid4()), kind, panel, "fluxConfigurations", config, 0.0))

    def _start_extension(self, panel: Panel, extension: Extension, kind: OperationKind) -> Operation:
        operation = Operation(str(uuid.uuid4()), kind, panel, "extensions", extension, 0.0)
        if kind != "delete":
            operation.target_version, operation.error = self._resolve(
                extension.spec, extension.current_version
            )
        extension.pending_operations += 1
        return self._schedule(operation)

    def _schedule(self, operation: Operation) -> Operation:
        operation.due = self.clock.elapsed() + LRO_DURATION_LAB_S
        self._operations[operation.id] = operation
        heapq.heappush(self._pending, (operation.due, next(self._sequence), operation))
        return operation

    def settle(self) -> None:
        """Complete every operation whose time has come; forget old completed ones."""
        now = self.clock.elapsed()
        while self._pending and self._pending[0][0] <= now:
            _, _, operation = heapq.heappop(self._pending)
            if isinstance(operation.resource, FluxConfig):
                self._complete_flux(operation, operation.resource)
            else:
                self._complete_extension(operation, operation.resource)
            self._finished.append((operation.due, operation.id))
        while self._finished and self._finished[0][0] < now - OPERATION_RETENTION_LAB_S:
            self._operations.pop(self._finished.popleft()[1], None)

    @staticmethod
    def _complete_flux(operation: Operation, config: FluxConfig) -> None:
        operation.status = "Succeeded"
        config.pending_operations -= 1
        if operation.kind == "delete":
            if operation.panel.flux_configs.get(config.name.lower()) is config:
                del operation.panel.flux_configs[config.name.lower()]
        elif config.pending_operations == 0 and not config.deleting:
            config.provisioning_state = "Succeeded"

    @staticmethod
    def _complete_extension(operation: Operation, extension: Extension) -> None:
        extension.pending_operations -= 1
        if operation.kind == "delete":
            operation.status = "Succeeded"
            if operation.panel.extensions.get(extension.name.lower()) is extension:
                del operation.panel.extensions[extension.name.lower()]
            return
        if operation.error is not None:
            operation.status = "Failed"
            if not extension.deleting:
                extension.provisioning_state = "Failed"
                extension.error_info = operation.error
            return
        operation.status = "Succeeded"
        extension.current_version = operation.target_version
        if extension.pending_operations == 0 and not extension.deleting:
            extension.provisioning_state = "Succeeded"
            extension.error_info = None

    def seconds_until_done(self, operation: Operation) -> float:
        """Lab seconds until the operation completes (0 when done)."""
        return max(0.0, operation.due - self.clock.elapsed())
