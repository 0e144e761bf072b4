"""Ports: the small interfaces services depend on, implemented by adapters (Azure) and by test fakes.

Services never import an Azure SDK; they take these Protocols as keyword arguments. That keeps the
logic testable with in-memory fakes and lets `import-linter` hold the layering
(`functions` → `shared.services` → ports ← `shared.adapters`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from shared.errors import Conflict
from shared.models import ClusterId, FluxState, OperationId, Panel, PanelState
from shared.models.health import PanelView

# ==================================================================================================
# The fleet: what every capability reads of it, and what the fleet-change engine writes
# (shared.services.fleet). Implemented by the one paced ARM boundary, shared.adapters.arm_fleet.
# ==================================================================================================

# ARM's token buckets per subscription and principal: one per operation type; and Resource Graph's
# per-principal query quota (`graph`: 15 queries per 5 s), paced by the same shared pacer.
RateKind = Literal["reads", "writes", "deletes", "graph"]


class FleetReader(Protocol):
    """Read the fleet from ARM: connectedClusters and their Flux configurations.

    Every call is paced by the implementation (ARM's budget belongs to the subscription and the
    identity, so one boundary paces every caller) and raises the app's errors, never an SDK's.
    """

    def list_panels(self, *, subscriptions: Sequence[str]) -> list[Panel]:
        """Every connected cluster of these subscriptions (all pages)."""
        ...

    def get_panel(self, *, panel_id: ClusterId) -> Panel:
        """One connected cluster now (connectivity!); NotFound when it is gone."""
        ...

    def get_flux_state(self, *, panel: Panel, configuration: str) -> FluxState | None:
        """The panel's Flux configuration of that name, or None when the panel has none."""
        ...


class FleetGraph(Protocol):
    """The whole fleet in a few queries (Azure Resource Graph, 1,000 panels a page): every panel with its
    Flux configuration and extension, as ARM returned them moments ago (Resource Graph lags ARM by
    seconds, so a write just made is verified through `FleetReader`, never here)."""

    def panel_views(self, *, subscriptions: Sequence[str]) -> list[PanelView]:
        """Every connected cluster of these subscriptions (all pages), ordered by lower-cased id."""
        ...


class PanelDirectory(Protocol):
    """The fleet the app operates on: every panel of the configured subscriptions."""

    def panels(self) -> list[Panel]:
        """Every panel now (`MissingSetting` when no subscription is configured)."""
        ...


@dataclass(frozen=True)
class AcceptedWrite:
    """An ARM write that ARM accepted. Its long-running operation is followed through the resource's
    `provisioningState` when the panel is verified (see `FluxWriter.begin_patch`)."""

    accepted_at: datetime  # on ARM's clock (see `AppliedChange.accepted_at`)
    changed: bool = True  # False when ARM answered 200: the resource already held exactly this


class FluxWriter(Protocol):
    def begin_patch(self, *, panel: Panel, configuration: str, patch: Mapping[str, Any]) -> AcceptedWrite:
        """PATCH the Flux configuration (never PUT: it resets unset fields) and return once ARM accepted.

        The LRO is not polled here: polling costs ARM *reads* (a status poll and a final GET per write,
        more than the read budget allows at the write budget's pace). The engine follows it through
        the resource's `provisioningState` (Updating → Succeeded | Failed) when it verifies the panel.

        `patch` is the `properties` of a FluxConfigurationPatch in ARM's JSON spelling
        (e.g. `{"suspend": True}`), and may hold a secret: adapters never log or echo it.
        Errors: `Throttled` (429, with `retry_after`), `TransientError` (5xx, resets, timeouts),
        `NotFound`, `PermanentError` — never an azure.core exception.
        """
        ...


class RateObserver(Protocol):
    """Told about every ARM response, so pacing adapts to what ARM says is left."""

    def observe(
        self,
        *,
        subscription: str,
        kind: RateKind,
        remaining: int | None,
        retry_after_s: float | None,
        throttled: bool,
    ) -> None: ...


@dataclass(frozen=True)
class BucketRow:
    """A shared token bucket as stored (one per subscription and kind): tokens at `updated` (Unix s)."""

    key: str
    tokens: float
    updated: float
    blocked_until: float = 0.0  # Unix s before which nobody may take tokens (ARM said Retry-After)
    etag: str | None = None


class BucketStore(Protocol):
    """Storage for token buckets shared by every instance; compare-and-swap on the ETag."""

    def read(self, key: str) -> BucketRow | None: ...

    def create(self, row: BucketRow) -> BucketRow | None:
        """Insert; None when another instance created it first."""
        ...

    def replace(self, row: BucketRow) -> BucketRow | None:
        """Replace if the stored ETag is still `row.etag`; None when someone else changed it."""
        ...


class Pacer(Protocol):
    def acquire(self, *, subscription: str, kind: RateKind) -> float:
        """Block until one ARM call of `kind` on `subscription` fits the shared budget; seconds waited."""
        ...


class ConcurrentUpdate(Conflict):
    """An optimistic-concurrency write lost the race (ETag mismatch): re-read and decide again."""

    code = "ConcurrentUpdate"


@dataclass(frozen=True)
class OperationRecord:
    """An operation's own row: who, when, why, what, and where it stands (panels have their own rows)."""

    id: OperationId
    kind: str
    status: str  # OperationStatus value
    reason: str
    requested_by: str
    created_at: datetime
    updated_at: datetime
    configuration: str
    params: Mapping[str, Any]
    selection: Mapping[str, Any]
    stage_names: tuple[str, ...]
    stage_thresholds: tuple[float, ...]
    current_stage: int = 0
    total: int = 0
    summary: Mapping[str, int] = field(default_factory=dict)
    halted_reason: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    finished_at: datetime | None = None
    cancelled_by: str | None = None  # who cancelled it (the reason is `halted_reason`)
    etag: str | None = None


@dataclass(frozen=True)
class PanelRecord:
    """One panel's row in one operation: the per-panel state machine (ETag-guarded)."""

    operation_id: OperationId
    key: str
    panel_id: ClusterId
    name: str
    subscription: str
    resource_group: str
    stage: int
    state: PanelState
    detail: str = ""
    attempts: int = 0  # ARM writes tried
    checks: int = 0  # convergence checks made
    updated_at: datetime | None = None  # app clock
    lease_until: datetime | None = None  # app clock; APPLYING rows only
    accepted_at: datetime | None = None  # ARM clock; when ARM accepted our write
    accepted_local: datetime | None = None  # app clock; the same moment
    baseline_status_updated_at: datetime | None = None
    baseline_commit_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    reapply: bool = False  # re-send a change ARM already holds (Arc's 48-hour window lapsed)
    # A PATCH was sent (its answer may have been lost): a later "nothing to write" is then our write
    # having landed, and the panel is verified like any written one. Sticky through retries.
    write_attempted: bool = False
    sweeps: int = 0  # times the sweeper re-sent this panel's work (a lost or always-failing message)
    etag: str | None = None

    @property
    def settled(self) -> bool:
        from shared.models import SETTLED_STATES

        return self.state in SETTLED_STATES


class OperationStore(Protocol):
    """Operations, their per-panel rows, panel locks and idempotency keys (Table storage in Azure)."""

    def create_operation(self, operation: OperationRecord, panels: Sequence[PanelRecord]) -> None:
        """Write the panel rows, then the operation row (its presence means the operation exists)."""
        ...

    def get_operation(self, operation_id: str) -> OperationRecord | None: ...

    def replace_operation(self, operation: OperationRecord) -> OperationRecord:
        """CAS on `operation.etag`; ConcurrentUpdate when it changed. Returns the row with its new ETag."""
        ...

    def list_operations(self, *, kind: str | None, limit: int) -> list[OperationRecord]:
        """Most recent first."""
        ...

    def get_panels(self, operation_id: str, *, keys: Sequence[str] | None = None) -> list[PanelRecord]: ...

    def replace_panel(self, panel: PanelRecord) -> PanelRecord:
        """CAS on `panel.etag`; ConcurrentUpdate when it changed."""
        ...

    def has_unsettled(self, operation_id: str, *, stage: int | None = None) -> bool:
        """Whether any panel (of that stage) is not yet settled — cheap (stops at the first)."""
        ...

    def take_locks(
        self, *, group: str, operation_id: str, keys: Sequence[str], is_running: Callable[[str], bool]
    ) -> str | None:
        """Lock the panels for this operation. Returns the id of a *running* operation that already
        holds one of them (and takes nothing), else None. Locks of finished operations are taken over."""
        ...

    def lock_owner(self, *, group: str, key: str) -> str | None: ...

    def claim_idempotency(
        self, *, scope: str, key: str, request_hash: str, operation_id: str
    ) -> tuple[str, str] | None:
        """Record `key` → operation; when the key exists already, return its (operation_id, request_hash)."""
        ...

    def release_idempotency(self, *, scope: str, key: str, operation_id: str) -> None:
        """Forget a key whose operation was never created (the request was refused)."""
        ...

    def take_over_idempotency(
        self, *, scope: str, key: str, abandoned_id: str, operation_id: str, request_hash: str
    ) -> bool:
        """Point `key` at `operation_id` if it still names `abandoned_id` (ETag-guarded): a claim whose
        process died before creating its operation. False when another request took it first."""
        ...


class WorkQueue(Protocol):
    def send(self, *, queue: str, message: Mapping[str, Any], delay_s: float = 0.0) -> None:
        """Enqueue a JSON message, invisible for `delay_s`. Messages never carry a secret."""
        ...


class Notifier(Protocol):
    """Where people hear about what needs them: a Teams/Slack incoming webhook, or nowhere.

    Credential expiry warnings, halted rollouts and image checks that will not roll out all go through
    the one notifier the composition root builds (`shared.adapters.notifier`). `level` is "warning" or
    "error"; `facts` are short name/value pairs. Never a secret in any of them.
    """

    def notify(self, *, title: str, text: str, level: str, facts: dict[str, str]) -> None: ...


class Clock(Protocol):
    """The app's clock (not ARM's); a fake in unit tests."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...

    def monotonic(self) -> float: ...
