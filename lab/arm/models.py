"""The ARM backend: connectedClusters, fluxConfigurations (with their long-running operations), extensions.

Method names follow the REST operation ids (`FluxConfigurations_Update` -> `flux_configurations_update`).
State is the fleet (`lab.fleet.model`), indexed per subscription; this class adds ARM's bookkeeping:
existence checks in ARM's order (subscription, resource group, resource), generation counting,
and the asynchronous operations behind PUT/PATCH/DELETE.

An accepted write changes the *desired* state at once (ARM stores it even while the panel is
offline) and starts an operation that moves `Running` -> `Succeeded` after `LRO_DURATION_LAB_S`
of lab time, while the resource shows `provisioningState` `Creating`/`Updating`/`Deleting`.
Operations settle lazily, whenever ARM is asked anything, so no timer task is needed.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from lab.arm.errors import BadRequest, ResourceGroupNotFound, ResourceNotFound, SubscriptionNotFound
from lab.core.clock import LabClock
from lab.fleet.model import (
    CONNECTED_CLUSTER_TYPE,
    EXTENSION_TYPE,
    FLUX_CONFIGURATION_TYPE,
    FLUX_EXTENSION_NAME,
    Actor,
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

OperationKind = Literal["create", "update", "delete"]


@dataclass
class Operation:
    id: str
    kind: OperationKind
    panel: Panel
    config: FluxConfig
    due: float  # lab elapsed seconds when it succeeds
    status: Literal["Running", "Succeeded"] = "Running"

    def matches(self, subscription: str, group: str, cluster: str, config_name: str) -> bool:
        ident = self.panel.identity
        return (
            ident.subscription.lower(),
            ident.resource_group.lower(),
            ident.name.lower(),
            self.config.name.lower(),
        ) == (subscription.lower(), group.lower(), cluster.lower(), config_name.lower())


@dataclass(frozen=True)
class WriteResult:
    panel: Panel
    config: FluxConfig
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
        """PUT: create, or replace the whole configuration. A PUT always counts as a change (re-apply)."""
        self.settle()
        panel = self._cluster(subscription, group, cluster)
        now = self.clock.now()
        existing = panel.flux_config(name)
        if existing is None or existing.deleting:
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
        self, subscription: str, group: str, cluster: str, name: str
    ) -> Operation | None:
        """DELETE: None when there is nothing to delete (ARM's 204)."""
        self.settle()
        panel = self._cluster(subscription, group, cluster)
        config = panel.flux_config(name)
        if config is None:
            return None
        config.deleting = True
        config.provisioning_state = "Deleting"
        return self._start(panel, config, "delete")

    def flux_config_operation_status_get(
        self, subscription: str, group: str, cluster: str, name: str, operation_id: str
    ) -> Operation:
        self.settle()
        self._cluster(subscription, group, cluster)
        operation = self._operations.get(operation_id.lower())
        if operation is None or not operation.matches(subscription, group, cluster, name):
            raise ResourceNotFound(
                resource_type=f"{FLUX_CONFIGURATION_TYPE}/{name}/operations", name=operation_id, group=group
            )
        return operation

    # --- Microsoft.KubernetesConfiguration/extensions ----------------------------------------------
    def extensions_get(self, subscription: str, group: str, cluster: str, name: str) -> Panel:
        panel = self._cluster(subscription, group, cluster)
        if name.lower() != FLUX_EXTENSION_NAME:
            raise ResourceNotFound(resource_type=EXTENSION_TYPE, name=name, group=group)
        return panel

    def extensions_list(self, subscription: str, group: str, cluster: str) -> Panel:
        return self._cluster(subscription, group, cluster)

    # --- operations ---------------------------------------------------------------------------------
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

    def _start(self, panel: Panel, config: FluxConfig, kind: OperationKind) -> Operation:
        operation = Operation(
            id=str(uuid.uuid4()),
            kind=kind,
            panel=panel,
            config=config,
            due=self.clock.elapsed() + LRO_DURATION_LAB_S,
        )
        config.pending_operations += 1
        self._operations[operation.id] = operation
        heapq.heappush(self._pending, (operation.due, next(self._sequence), operation))
        return operation

    def settle(self) -> None:
        """Complete every operation whose time has come; forget old completed ones."""
        now = self.clock.elapsed()
        while self._pending and self._pending[0][0] <= now:
            _, _, operation = heapq.heappop(self._pending)
            operation.status = "Succeeded"
            config = operation.config
            config.pending_operations -= 1
            if operation.kind == "delete":
                if operation.panel.flux_configs.get(config.name.lower()) is config:
                    del operation.panel.flux_configs[config.name.lower()]
            elif config.pending_operations == 0 and not config.deleting:
                config.provisioning_state = "Succeeded"
            self._finished.append((operation.due, operation.id))
        while self._finished and self._finished[0][0] < now - OPERATION_RETENTION_LAB_S:
            self._operations.pop(self._finished.popleft()[1], None)

    def seconds_until_done(self, operation: Operation) -> float:
        """Lab seconds until the operation succeeds (0 when done)."""
        return max(0.0, operation.due - self.clock.elapsed())
