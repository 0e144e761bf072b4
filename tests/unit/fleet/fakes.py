"""In-memory fakes of the fleet ports, faithful where the engine depends on it.

- `FakeClock`: the app's clock; `sleep` advances it (tests never wait).
- `FakeArm`: connectedClusters + fluxConfigurations with ARM's behaviours the engine relies on —
  writes accepted on ARM's clock, agents that report only when online and only on `tick()`, offline
  panels that miss changes older than 48 hours, injectable faults per call.
- `MemoryStore`: the OperationStore contract with ETag compare-and-swap, like Table storage.
- `MemoryQueue`: messages with delays on the fake clock; `run()` drains them through the engine as
  the Functions host would (a failing message is retried, never lost).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import NotFound
from shared.models import (
    SETTLED_STATES,
    ClusterId,
    FluxState,
    ObjectStatus,
    Panel,
    SubscriptionId,
)
from shared.ports import AcceptedWrite, ConcurrentUpdate, OperationRecord, PanelRecord
from shared.queues import FLEET_APPLY_QUEUE as APPLY_QUEUE
from shared.queues import FLEET_VERIFY_QUEUE as VERIFY_QUEUE
from shared.services.fleet.engine import EngineSettings, FleetChangeEngine
from shared.services.fleet.inventory import FleetInventory

START = datetime(2026, 8, 20, 9, 0, tzinfo=UTC)
SUB_A = "00000000-0000-4000-8000-00000000000a"
SUB_B = "00000000-0000-4000-8000-00000000000b"
CONFIG = "ipc-platform-config"
DELIVERY_WINDOW = timedelta(hours=48)


class FakeClock:
    def __init__(self, start: datetime = START) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))

    def monotonic(self) -> float:
        return (self.now() - START).total_seconds()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


def make_panel(
    index: int,
    *,
    subscription: str = SUB_A,
    group: str = "rg-ipc-platform-arc",
    ring: str = "broad",
    site: str = "munich",
) -> Panel:
    name = f"ipc-panel-{index:04d}"
    return Panel(
        id=ClusterId(
            f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Kubernetes/connectedClusters/{name}"
        ),
        name=name,
        subscription=SubscriptionId(subscription),
        resource_group=group,
        location="westeurope",
        tags={"ring": ring, "site": site},
        connectivity="Connected",
    )


@dataclass
class SimPanel:
    panel: Panel
    online: bool = True
    has_config: bool = True
    suspended: bool = False  # ARM's desired state
    agent_suspended: bool = False  # what the agent applied
    compliance: str = "Compliant"
    status_updated_at: datetime | None = None
    modified_at: datetime = START
    generation: int = 0
    delivered_generation: int = 0
    last_online: datetime = START
    provisioning: str = "Succeeded"
    patches: list[dict[str, Any]] = field(default_factory=list)


class FakeArm:
    """The reader and writer ports, with panels whose agents report on `tick()`."""

    def __init__(self, clock: FakeClock, panels: Sequence[Panel]) -> None:
        self.clock = clock
        self.sims = {p.key: SimPanel(p) for p in panels}
        # Fault injection: call ("get_flux", "patch", "get_panel", "list") → exceptions raised in order.
        self.faults: dict[str, list[BaseException]] = {}
        self.lro_outcome = "Succeeded"  # the provisioningState a write leaves: Succeeded, Failed, Updating
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    # --- ARM's clock: the same as the app's here, unless a test moves ARM on (`arm_offset`) ---------
    arm_offset = timedelta(0)

    def arm_now(self) -> datetime:
        return self.clock.now() + self.arm_offset

    def sim(self, name: str) -> SimPanel:
        return next(s for s in self.sims.values() if s.panel.name == name)

    def _fault(self, call: str) -> None:
        queue = self.faults.get(call)
        if queue:
            raise queue.pop(0)

    def list_panels(self, *, subscriptions: Sequence[str]) -> list[Panel]:
        self._fault("list")
        return [self._panel(s) for s in self.sims.values() if s.panel.subscription in subscriptions]

    def get_panel(self, *, panel_id: ClusterId) -> Panel:
        self._fault("get_panel")
        for sim in self.sims.values():
            if sim.panel.id.lower() == panel_id.lower():
                return self._panel(sim)
        raise NotFound(f"connected cluster {panel_id} not found")

    def _panel(self, sim: SimPanel) -> Panel:
        offline_for = self.arm_now() - sim.last_online
        # Arc says Offline after 15 minutes without a heartbeat.
        offline = not sim.online and offline_for >= timedelta(minutes=15)
        return replace(
            sim.panel,
            connectivity="Offline" if offline else "Connected",
            last_connectivity_time=self.arm_now() if sim.online else sim.last_online,
        )

    def get_flux_state(self, *, panel: Panel, configuration: str) -> FluxState | None:
        with self._lock:
            self.calls.append(("get_flux", panel.name))
        self._fault("get_flux")
        sim = self.sims[panel.key]
        if not sim.has_config or configuration != CONFIG:
            return None
        return FluxState(
            configuration=configuration,
            suspended=sim.suspended,
            compliance_state=sim.compliance,
            statuses=(
                ObjectStatus(
                    kind="GitRepository",
                    name="ipc-platform-config",
                    namespace="flux-system",
                    compliance_state=sim.compliance,
                    ready=True,
                    reason="Succeeded",
                    message="stored artifact",
                    last_transition_time=sim.status_updated_at,
                ),
            ),
            source_synced_commit_id="main/abc",
            status_updated_at=sim.status_updated_at,
            provisioning_state=sim.provisioning,
            modified_at=sim.modified_at,
            observed_at=self.arm_now(),
        )

    def begin_patch(self, *, panel: Panel, configuration: str, patch: Mapping[str, Any]) -> AcceptedWrite:
        with self._lock:
            self.calls.append(("patch", panel.name))
        self._fault("patch")
        sim = self.sims[panel.key]
        if not sim.has_config:
            raise NotFound(f"flux configuration {configuration} not found")
        sim.patches.append(dict(patch))
        if "suspend" in patch:
            sim.suspended = bool(patch["suspend"])
        sim.generation += 1
        sim.modified_at = self.arm_now()
        sim.provisioning = self.lro_outcome
        return AcceptedWrite(accepted_at=sim.modified_at)

    def tick(self) -> None:
        """Every online agent takes pending changes (unless older than 48 h) and reports."""
        now = self.arm_now()
        for sim in self.sims.values():
            if not sim.online:
                continue
            sim.last_online = now
            # Arc drops a change the panel did not receive within 48 hours.
            if sim.generation > sim.delivered_generation and now - sim.modified_at < DELIVERY_WINDOW:
                sim.delivered_generation = sim.generation
                sim.agent_suspended = sim.suspended
            sim.compliance = "Suspended" if sim.agent_suspended else "Compliant"
            sim.status_updated_at = now

    def set_online(self, name: str, online: bool) -> None:
        sim = self.sim(name)
        if sim.online and not online:
            sim.last_online = self.arm_now()
        sim.online = online

    def patch_count(self) -> int:
        return sum(1 for call, _ in self.calls if call == "patch")


class MemoryStore:
    """OperationStore with Table storage's concurrency contract (ETags)."""

    def __init__(self) -> None:
        self.operations: dict[str, OperationRecord] = {}
        self.panels: dict[str, dict[str, PanelRecord]] = {}
        self.locks: dict[tuple[str, str], str] = {}
        self.idempotency: dict[tuple[str, str], tuple[str, str]] = {}
        self._etags = itertools.count(1)
        self._lock = threading.RLock()
        self.fail_panel_writes_after: int | None = None  # simulate a crash: raise after N panel writes
        self.panel_writes = 0

    def _etag(self) -> str:
        return str(next(self._etags))

    def create_operation(self, operation: OperationRecord, panels: Sequence[PanelRecord]) -> None:
        with self._lock:
            self.panels[operation.id] = {p.key: replace(p, etag=self._etag()) for p in panels}
            self.operations[operation.id] = replace(operation, etag=self._etag())

    def get_operation(self, operation_id: str) -> OperationRecord | None:
        with self._lock:
            return self.operations.get(operation_id)

    def replace_operation(self, operation: OperationRecord) -> OperationRecord:
        with self._lock:
            current = self.operations.get(operation.id)
            if current is None or current.etag != operation.etag:
                raise ConcurrentUpdate("operation changed")
            stored = replace(operation, etag=self._etag())
            self.operations[operation.id] = stored
            return stored

    def list_operations(self, *, kind: str | None, limit: int) -> list[OperationRecord]:
        with self._lock:
            records = [r for r in self.operations.values() if kind is None or r.kind == kind]
        return sorted(records, key=lambda r: r.id, reverse=True)[:limit]

    def get_panels(self, operation_id: str, *, keys: Sequence[str] | None = None) -> list[PanelRecord]:
        with self._lock:
            rows = self.panels.get(operation_id, {})
            if keys is None:
                return list(rows.values())
            return [rows[k] for k in dict.fromkeys(keys) if k in rows]

    def replace_panel(self, panel: PanelRecord) -> PanelRecord:
        with self._lock:
            if self.fail_panel_writes_after is not None and self.panel_writes >= self.fail_panel_writes_after:
                raise CrashError("the worker died")
            current = self.panels[panel.operation_id].get(panel.key)
            if current is None or current.etag != panel.etag:
                raise ConcurrentUpdate("panel changed")
            stored = replace(panel, etag=self._etag())
            self.panels[panel.operation_id][panel.key] = stored
            self.panel_writes += 1
            return stored

    def has_unsettled(self, operation_id: str, *, stage: int | None = None) -> bool:
        with self._lock:
            return any(
                p.state not in SETTLED_STATES and (stage is None or p.stage == stage)
                for p in self.panels.get(operation_id, {}).values()
            )

    def take_locks(
        self, *, group: str, operation_id: str, keys: Sequence[str], is_running: Callable[[str], bool]
    ) -> str | None:
        with self._lock:
            for key in keys:
                owner = self.locks.get((group, key))
                if owner and owner != operation_id and is_running(owner):
                    return owner
            for key in keys:
                self.locks[(group, key)] = operation_id
            return None

    def lock_owner(self, *, group: str, key: str) -> str | None:
        with self._lock:
            return self.locks.get((group, key))

    def claim_idempotency(
        self, *, scope: str, key: str, request_hash: str, operation_id: str
    ) -> tuple[str, str] | None:
        with self._lock:
            existing = self.idempotency.get((scope, key))
            if existing:
                return existing
            self.idempotency[(scope, key)] = (operation_id, request_hash)
            return None

    def release_idempotency(self, *, scope: str, key: str, operation_id: str) -> None:
        with self._lock:
            if self.idempotency.get((scope, key), ("",))[0] == operation_id:
                del self.idempotency[(scope, key)]

    def take_over_idempotency(
        self, *, scope: str, key: str, abandoned_id: str, operation_id: str, request_hash: str
    ) -> bool:
        with self._lock:
            if self.idempotency.get((scope, key), ("",))[0] != abandoned_id:
                return False
            self.idempotency[(scope, key)] = (operation_id, request_hash)
            return True

    def states(self, operation_id: str) -> dict[str, str]:
        return {p.name: p.state.value for p in self.get_panels(operation_id)}


class CrashError(RuntimeError):
    """A worker process dying mid-message (not a domain error: nothing catches it)."""


@dataclass(order=True)
class _Queued:
    due: datetime
    seq: int
    queue: str = field(compare=False)
    message: dict[str, Any] = field(compare=False)
    dequeue_count: int = field(default=0, compare=False)


class MemoryQueue:
    """Queues with visibility delays on the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._heap: list[_Queued] = []
        self._seq = itertools.count()
        self.sent: list[tuple[str, dict[str, Any], float]] = []
        self._lock = threading.Lock()

    def send(self, *, queue: str, message: Mapping[str, Any], delay_s: float = 0.0) -> None:
        with self._lock:  # the engine sends a stage's messages from several threads
            self.sent.append((queue, dict(message), delay_s))
            due = self.clock.now() + timedelta(seconds=delay_s)
            heapq.heappush(self._heap, _Queued(due, next(self._seq), queue, dict(message)))

    def __len__(self) -> int:
        return len(self._heap)

    def run(
        self,
        engine: FleetChangeEngine,
        *,
        until: Callable[[], bool] | None = None,
        max_messages: int = 10_000,
        between: Callable[[], None] | None = None,
        retry_after_failure_s: float = 10.0,
    ) -> int:
        """Process messages in due order, advancing the clock to each; `between` runs before each one
        (e.g. agents ticking). A message that raises is put back, as the host would (visibility)."""
        processed = 0
        while self._heap and processed < max_messages:
            if until is not None and until():
                break
            item = heapq.heappop(self._heap)
            if item.due > self.clock.now():
                self.clock.advance((item.due - self.clock.now()).total_seconds())
            if between is not None:
                between()
            item.dequeue_count += 1
            try:
                if item.queue == APPLY_QUEUE:
                    engine.process_apply(item.message, dequeue_count=item.dequeue_count)
                elif item.queue == VERIFY_QUEUE:
                    engine.process_verify(item.message, dequeue_count=item.dequeue_count)
            except CrashError:
                item.due = self.clock.now() + timedelta(seconds=retry_after_failure_s)
                heapq.heappush(self._heap, item)
                raise
            processed += 1
        return processed

    def requeue_all(self) -> None:
        """Nothing to do: crashed messages were already put back by `run`."""


@dataclass
class World:
    clock: FakeClock
    arm: FakeArm
    store: MemoryStore
    queue: MemoryQueue
    engine: FleetChangeEngine


def make_world(
    panels: Sequence[Panel],
    *,
    strategies: Sequence[Any] | None = None,
    arm_class: type[FakeArm] | None = None,
    **settings: Any,
) -> World:
    """The engine over fakes; `arm_class` swaps in a FakeArm subclass with more behaviour."""
    from shared.services.fleet.suspend import SuspendStrategy

    clock = FakeClock()
    arm = (arm_class or FakeArm)(clock, panels)
    store = MemoryStore()
    queue = MemoryQueue(clock)
    defaults: dict[str, Any] = {
        "configuration": CONFIG,
        "subscriptions": (SUB_A, SUB_B),
        "batch_size": 3,
        "verify_delay_s": 30.0,
        "verify_max_checks": 5,
        "offline_recheck_s": 600.0,
    }
    defaults.update(settings)
    engine_settings = EngineSettings(**defaults)
    engine = FleetChangeEngine(
        reader=arm,
        writer=arm,
        directory=FleetInventory(
            reader=arm,
            subscriptions=engine_settings.subscriptions,
            configuration=engine_settings.configuration,
        ),
        store=store,
        queue=queue,
        clock=clock,
        strategies=strategies
        if strategies is not None
        else [SuspendStrategy(suspended=True), SuspendStrategy(suspended=False)],
        settings=engine_settings,
    )
    return World(clock, arm, store, queue, engine)
