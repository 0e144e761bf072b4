"""The one machinery behind every fleet-wide change (suspend, resume, credential rollout, ...).

Why one engine: each change kind differs only in *what* it writes to a panel's Flux configuration and
*how* it knows the panel's agent received it. Everything else — selecting panels, recording who/when/
why, staging (rings), pacing ARM writes within the subscription's budget, fanning out through queue
messages so no invocation holds 10,000 panels, restart safety, tracking offline panels through Arc's
48-hour delivery window, idempotent retries, the per-panel outcome — is the same, and is here once.

A kind is a `ChangeStrategy`:

    plan(panels, params)                      -> stages in order (suspend/resume: one; rollout: rings)
    desired_patch(panel, current, params)     -> the FluxConfigurationPatch `properties`, or None when
                                                 the panel is already as desired (`unchanged`).
                                                 Called in the WORKER at apply time, so a strategy may
                                                 fetch a secret then; it never travels in a message/row.
    check(panel, current, applied, params)    -> Convergence.converged() | .waiting() |
                                                 .failed(cause, halt_operation=...)
    on_stage_done(operation, stage, summary)  -> optional hook (e.g. notify), after a stage settles

Life of an operation (every step idempotent; state lives in the store, never in a process):

1. `start` — validate, resolve the selection, refuse overlaps (409) with a running operation of the
   same `lock_group`, honour `Idempotency-Key`, write the operation row and one `queued` row per
   panel, enqueue APPLY batches for stage 0. Returns at once (202) or, with `dry_run`, a plan.
2. APPLY (queue trigger, `process_apply`) — per panel: claim the row (`queued` → `applying` with a
   lease, ETag CAS), read the Flux configuration (paced read), ask `desired_patch`; None →
   `unchanged`; else take a write token (shared pacing), PATCH, record `verifying` with the time ARM
   accepted it. One VERIFY message is enqueued per batch, delayed. The LRO is followed through the
   resource's `provisioningState` at verify time rather than polled here: each poll is an ARM read,
   and ARM's read budget (25/s) cannot pay for a status poll and a final GET per write at the write
   budget's pace (10/s) on top of the reads the change itself needs.
3. VERIFY (queue trigger, `process_verify`) — per panel: read state (paced); an LRO still running
   (`provisioningState` Updating/Accepted) waits, a failed one is re-applied (bounded); then ask `check`:
   converged → `succeeded`; waiting → check again later (bounded count → `failed`); offline panel →
   `pending-offline`, re-checked on a slow cadence and re-applied when the change it has not received
   is older than Arc's 48-hour delivery window (or the panel reconnected after it); failed → `failed`,
   and `halt_operation` marks every not-yet-applied panel `skipped` with the cause.
4. After every message: when the current stage is settled and reached its threshold, enqueue the
   next stage (duplicates are harmless); when every panel is settled the operation gets its final
   status (`succeeded` | `partially-succeeded` | `failed`). Pending-offline panels keep being tracked
   and the document updates when they converge.

Adding a kind: implement `ChangeStrategy` in your service module, expose
`change_strategies(runtime) -> Iterable[ChangeStrategy]` there, and list the module in
`STRATEGY_PROVIDERS` below; then call `engine.start(kind=..., ...)`. See docs/fleet.md.
The worker's engine is `runtime.service("fleet_changes", fleet_changes.from_runtime)`, built once per
worker; a builder may itself ask `runtime.service` for what it needs (the lock is re-entrant).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import secrets
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypedDict, cast, runtime_checkable

from shared.config import Settings
from shared.errors import (
    Conflict,
    FluxfleetError,
    InvalidInput,
    MissingSetting,
    NotFound,
    TransientError,
    Unprocessable,
    safe_text,
)
from shared.models import (
    AppliedChange,
    Convergence,
    FluxState,
    OperationId,
    OperationStatus,
    Panel,
    PanelState,
    Params,
    Selector,
    Stage,
    SubscriptionId,
)
from shared.ports import (
    Clock,
    ConcurrentUpdate,
    FleetReader,
    FluxWriter,
    OperationRecord,
    OperationStore,
    Pacer,
    PanelRecord,
    WorkQueue,
)
from shared.services import fleet_queues
from shared.services.operations import (
    final_status,
    iso,
    operation_document,
    operation_listing,
    stage_share_done,
    summarize,
)
from shared.services.selection import check_selector, check_subscriptions, select

log = logging.getLogger("fluxfleet.fleet")

# Queues of the fan-out (Storage queues; base64 messages as the Functions host expects).
APPLY_QUEUE, VERIFY_QUEUE = fleet_queues.APPLY_QUEUE, fleet_queues.VERIFY_QUEUE

# Modules that provide strategies: each exposes `change_strategies(runtime) -> Iterable[ChangeStrategy]`.
# Listed explicitly (not discovered) so a broken provider fails loudly instead of dropping a kind.
STRATEGY_PROVIDERS: tuple[str, ...] = ("shared.services.fleet_ops", "shared.services.credentials.composition")

# Polling the store while a caller waits (waitSeconds, idempotent replays), in seconds.
POLL_INTERVAL_S = 0.5
# How long a replayed Idempotency-Key waits for the first request to finish creating its operation.
REPLAY_WAIT_S = 10.0
# A lock whose operation row does not exist yet belongs to a creation in progress for this long (s).
CREATION_GRACE_S = 60.0
# Optimistic-concurrency retries on an operation row before giving up (the next message retries).
CAS_ATTEMPTS = 8
# Floating-point slack when comparing a stage's success share with its threshold.
SHARE_EPSILON = 1e-9
# How many recent operations the sweeper looks at.
SWEEP_OPERATIONS = 100
# Bound on a panel's `detail` text: a line, not a log.
DETAIL_LIMIT = 500
MESSAGE_VERSION = 1
# Queue messages sent at once when a stage starts (400 for a 10,000-panel stage).
SEND_CONCURRENCY = 8
IDEMPOTENCY_SCOPE = "fleet-change"
# A reason is for people reading the audit trail: required, and short.
MAX_REASON_CHARS = 500


@runtime_checkable
class ChangeStrategy(Protocol):
    """One kind of fleet-wide change. Implementations are stateless apart from their collaborators."""

    @property
    def kind(self) -> str:
        """The operation kind, e.g. "suspend"; unique among strategies; stored with the operation."""
        ...

    @property
    def lock_group(self) -> str:
        """Operations in one group may not overlap panels while running (409); e.g. suspend and
        resume share "flux-suspend", so a resume cannot race a running suspend on the same panel."""
        ...

    def validate_params(self, params: Params) -> Params:
        """Check and normalise the kind-specific params (raise `InvalidInput` naming the field).
        The result is stored with the operation: JSON-able, never a secret."""
        ...

    def plan(self, panels: Sequence[Panel], params: Params) -> list[Stage]:
        """Split the selected panels into ordered stages, each with a success threshold."""
        ...

    def desired_patch(self, panel: Panel, current: FluxState, params: Params) -> dict[str, Any] | None:
        """The `properties` of the PATCH to send to this panel now, or None if it already is as
        desired (the panel is then `unchanged` and nothing is written)."""
        ...

    def would_change(self, panel: Panel, current: FluxState, params: Params) -> bool:
        """What a dry run shows: whether `desired_patch` would write, without its side effects (a
        credential strategy must not read the secret value just to answer a dry run)."""
        ...

    def check(self, panel: Panel, current: FluxState, applied: AppliedChange, params: Params) -> Convergence:
        """Has the panel's agent reported the change? Compare ARM-clock times from `applied`
        with the agent's report times in `current` (never the app's clock)."""
        ...

    def on_stage_done(self, operation: OperationRecord, stage: int, summary: Mapping[str, int]) -> None:
        """Called once a stage is settled (may be called more than once: make it idempotent)."""
        ...


class ApplyMessage(TypedDict):
    """`ff-fleet-apply`: apply the change to these panels (row keys) of one operation's stage."""

    v: int
    op: str
    stage: int
    panels: list[str]


class VerifyMessage(TypedDict):
    """`ff-fleet-verify`: check convergence of these panels (row keys) of one operation."""

    v: int
    op: str
    panels: list[str]


class ClusterDoc(TypedDict):
    id: str
    name: str
    subscription: str
    resourceGroup: str
    stage: str | None
    state: str
    detail: str
    attempts: int
    acceptedAt: str | None
    updatedAt: str | None


class OperationDoc(TypedDict):
    """`GET /api/operations/{id}`."""

    id: str
    kind: str
    status: str
    reason: str
    requestedBy: str
    createdAt: str
    updatedAt: str
    finishedAt: str | None
    configuration: str
    params: dict[str, Any]
    target: dict[str, Any]
    stages: list[dict[str, Any]]
    currentStage: str | None
    haltedReason: str | None
    summary: dict[str, int]
    clusters: list[ClusterDoc]


class DryRunPanelDoc(TypedDict):
    id: str
    name: str
    subscription: str
    resourceGroup: str
    stage: str
    connectivity: str
    wouldChange: bool
    current: dict[str, Any] | None
    reason: str


class DryRunDoc(TypedDict):
    """What a dry run answers: the plan, each panel with its current state; nothing is written."""

    dryRun: bool
    kind: str
    configuration: str
    total: int
    wouldChange: int
    stages: list[dict[str, Any]]
    clusters: list[DryRunPanelDoc]


@dataclass(frozen=True)
class StartResult:
    """What `FleetChangeEngine.start` returns."""

    operation_id: OperationId | None  # None for a dry run
    document: OperationDoc | DryRunDoc
    created: bool  # False for a dry run, and when an Idempotency-Key replay found the existing operation


class BaseStrategy:
    """Defaults for the optional parts of `ChangeStrategy`; subclass it and override what you need."""

    kind: str = ""
    lock_group: str = ""

    def validate_params(self, params: Params) -> Params:
        return dict(params)

    def on_stage_done(self, operation: OperationRecord, stage: int, summary: Mapping[str, int]) -> None:
        return None

    def would_change(self, panel: Panel, current: FluxState, params: Params) -> bool:
        """Default: ask `desired_patch`; strategies whose patch has side effects override this."""
        return getattr(self, "desired_patch")(panel, current, params) is not None  # noqa: B009

    def reapply_patch(self, panel: Panel, current: FluxState, params: Params) -> dict[str, Any] | None:
        """The PATCH that re-sends a change ARM already holds (Arc dropped it after 48 hours offline).
        Default: `desired_patch`, which is right for changes that always write (e.g. a credential)."""
        patch: dict[str, Any] | None = getattr(self, "desired_patch")(panel, current, params)  # noqa: B009
        return patch


@dataclass(frozen=True)
class EngineSettings:
    """Tuning of the engine; every figure here is a default chosen for Azure, overridable per app."""

    configuration: str
    subscriptions: tuple[str, ...]
    # Panels per queue message: small enough that a message finishes well inside the 10-minute function
    # timeout even when it must wait for write tokens, big enough that 10,000 panels are 400 messages.
    batch_size: int = 25
    # First convergence check after a write, then the interval between checks (s). Arc agents report
    # every few minutes at most; 30 s keeps a pipeline's wait short without wasting reads.
    verify_delay_s: float = 30.0
    # Checks of an online panel before it is `failed` ("agent never reported"): 20 × 30 s = 10 minutes,
    # two of the fleet's 5-minute sync intervals.
    verify_max_checks: int = 20
    # How often an offline panel is looked at again (s).
    offline_recheck_s: float = 600.0
    # Arc drops a configuration change an offline cluster has not received within 48 hours.
    delivery_window: timedelta = timedelta(hours=48)
    # ARM writes tried per panel (transient faults, failed LROs) before it is `failed`.
    max_attempts: int = 5
    # How long a worker owns a claimed panel (s) before another may take it over (a crashed worker).
    lease_s: float = 300.0
    # Delay (s) before retrying a panel after a transient fault when ARM gave no Retry-After.
    retry_delay_s: float = 10.0
    # Concurrent ARM reads for dry runs (still paced by the shared read bucket).
    read_concurrency: int = 8
    # A row untouched for this long (s) in a running operation is re-enqueued by the sweeper.
    stale_after_s: float = 900.0


@dataclass(frozen=True)
class _Next:
    """What one panel needs after a worker step."""

    queue: str  # APPLY_QUEUE or VERIFY_QUEUE
    delay_s: float


class FleetChangeEngine:
    """Drives every fleet-wide change; see the module docstring for the life of an operation.

    Built once per worker by `from_runtime(runtime)`; tests build it with in-memory fakes.
    """

    def __init__(
        self,
        *,
        reader: FleetReader,
        writer: FluxWriter,
        store: OperationStore,
        queue: WorkQueue,
        pacer: Pacer,
        clock: Clock,
        strategies: Iterable[ChangeStrategy],
        settings: EngineSettings,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._store = store
        self._queue = queue
        self._pacer = pacer
        self._clock = clock
        self._settings = settings
        self._strategies: dict[str, ChangeStrategy] = {}
        for strategy in strategies:
            if strategy.kind in self._strategies:
                raise ValueError(f"two strategies for kind {strategy.kind!r}")
            self._strategies[strategy.kind] = strategy

    @property
    def settings(self) -> EngineSettings:
        return self._settings

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._strategies)

    def strategy(self, kind: str) -> ChangeStrategy:
        try:
            return self._strategies[kind]
        except KeyError:
            raise InvalidInput("kind", f"unknown operation kind {kind!r}") from None

    # ---------------------------------------------------------------------------------------------
    # start
    # ---------------------------------------------------------------------------------------------

    def start(
        self,
        *,
        kind: str,
        params: Params,
        reason: str,
        requested_by: str,
        selection: Selector | None = None,
        panels: Sequence[Panel] | None = None,
        configuration: str | None = None,
        idempotency_key: str | None = None,
        dry_run: bool = False,
    ) -> StartResult:
        """Start an operation of `kind` on `selection` (resolved against ARM) or on `panels` (given).

        Raises `InvalidInput` (400: bad params/reason), `Unprocessable` (422: unknown cluster names,
        nothing selected), `Conflict` (409: overlaps a running operation of the same lock group, or
        the same Idempotency-Key with a different request). `configuration` defaults to the setting.
        """
        strategy = self.strategy(kind)
        reason = check_reason(reason)
        params = dict(strategy.validate_params(params))
        configuration = configuration or self._settings.configuration
        chosen, selection = self._choose(selection, panels)
        stages = self._plan(strategy, chosen, params)
        if dry_run:
            return StartResult(
                operation_id=None,
                document=self._dry_run(strategy, stages, params, configuration),
                created=False,
            )
        request_hash = _request_hash(kind, params, selection, configuration, reason)
        now = self._clock.now()
        operation_id = new_operation_id(now)
        if idempotency_key:
            existing = self._store.claim_idempotency(
                scope=IDEMPOTENCY_SCOPE,
                key=idempotency_key,
                request_hash=request_hash,
                operation_id=operation_id,
            )
            if existing is not None:
                return self._replay(existing, request_hash)
        try:
            record = self._create(
                operation_id=operation_id,
                strategy=strategy,
                stages=stages,
                params=params,
                selection=selection,
                configuration=configuration,
                reason=reason,
                requested_by=requested_by,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                now=now,
            )
        except BaseException:
            if idempotency_key:
                self._store.release_idempotency(
                    scope=IDEMPOTENCY_SCOPE, key=idempotency_key, operation_id=operation_id
                )
            raise
        log.info(
            "operation %s (%s) started on %d panels by %s: %s",
            record.id,
            kind,
            record.total,
            requested_by,
            reason,
            extra={"operation_id": record.id, "kind": kind},
        )
        return StartResult(operation_id=record.id, document=self.get_operation(record.id), created=True)

    def _choose(
        self, selection: Selector | None, panels: Sequence[Panel] | None
    ) -> tuple[list[Panel], Selector]:
        if panels is not None:
            chosen = list({p.key: p for p in panels}.values())
            if not chosen:
                raise Unprocessable("target", "matches no panel")
            return chosen, selection or Selector(clusters=tuple(p.id for p in chosen))
        if selection is None:
            raise InvalidInput("target", "is required")
        check_selector(selection)
        check_subscriptions(selection, configured=self._settings.subscriptions)
        return select(self.list_fleet(), selection), selection

    def _plan(self, strategy: ChangeStrategy, panels: list[Panel], params: Params) -> list[Stage]:
        stages = [stage for stage in strategy.plan(panels, params) if stage.panels]
        seen: set[str] = set()
        for stage in stages:
            for panel in stage.panels:
                if panel.key in seen:
                    raise ValueError(f"strategy {strategy.kind} planned panel {panel.name} twice")
                seen.add(panel.key)
        if not stages:
            raise Unprocessable("target", "the selected panels give this change nothing to do")
        return stages

    def _create(
        self,
        *,
        operation_id: OperationId,
        strategy: ChangeStrategy,
        stages: list[Stage],
        params: Params,
        selection: Selector,
        configuration: str,
        reason: str,
        requested_by: str,
        idempotency_key: str | None,
        request_hash: str,
        now: datetime,
    ) -> OperationRecord:
        keys = [panel.key for stage in stages for panel in stage.panels]
        holder = self._store.take_locks(
            group=strategy.lock_group, operation_id=operation_id, keys=keys, is_running=self._holds_panels
        )
        if holder is not None:
            raise Conflict(
                f"target: overlaps panels of running operation {holder}; wait for it to finish",
                field="target",
                operationId=holder,
            )
        rows = [
            PanelRecord(
                operation_id=operation_id,
                key=panel.key,
                panel_id=panel.id,
                name=panel.name,
                subscription=panel.subscription,
                resource_group=panel.resource_group,
                stage=index,
                state=PanelState.QUEUED,
                detail="waiting for its stage" if index else "queued",
                updated_at=now,
                tags=dict(panel.tags),
            )
            for index, stage in enumerate(stages)
            for panel in stage.panels
        ]
        record = OperationRecord(
            id=operation_id,
            kind=strategy.kind,
            status=OperationStatus.RUNNING.value,
            reason=reason,
            requested_by=requested_by,
            created_at=now,
            updated_at=now,
            configuration=configuration,
            params=dict(params),
            selection=selection.to_json(),
            stage_names=tuple(stage.name for stage in stages),
            stage_thresholds=tuple(stage.success_threshold for stage in stages),
            total=len(rows),
            summary=summarize(rows),
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        self._store.create_operation(record, rows)
        self._enqueue(APPLY_QUEUE, record.id, [row.key for row in rows if row.stage == 0], stage=0)
        return record

    def _replay(self, existing: tuple[str, str], request_hash: str) -> StartResult:
        existing_id, existing_hash = existing
        if existing_hash != request_hash:
            raise Conflict(
                "Idempotency-Key: already used for a different request",
                field="Idempotency-Key",
                operationId=existing_id,
            )
        # The first request may still be writing its rows: give it a moment.
        deadline = self._clock.monotonic() + REPLAY_WAIT_S
        while self._store.get_operation(existing_id) is None:
            if self._clock.monotonic() > deadline:
                raise Conflict(
                    "Idempotency-Key: the first request with this key is still being processed",
                    field="Idempotency-Key",
                    operationId=existing_id,
                )
            self._clock.sleep(POLL_INTERVAL_S)
        return StartResult(
            operation_id=OperationId(existing_id), document=self.get_operation(existing_id), created=False
        )

    def _holds_panels(self, operation_id: str) -> bool:
        """Whether a lock holder still owns its panels: a running operation, or one being created."""
        record = self._store.get_operation(operation_id)
        if record is not None:
            return record.status == OperationStatus.RUNNING.value
        created = operation_created_at(operation_id)
        return created is not None and (self._clock.now() - created).total_seconds() < CREATION_GRACE_S

    def _dry_run(
        self, strategy: ChangeStrategy, stages: list[Stage], params: Params, configuration: str
    ) -> DryRunDoc:
        jobs = [(stage.name, panel) for stage in stages for panel in stage.panels]

        def look(job: tuple[str, Panel]) -> DryRunPanelDoc:
            stage_name, panel = job
            current: FluxState | None = None
            reason: str
            would_change = False
            try:
                current = self.read_flux_state(panel, configuration)
                if current is None:
                    reason = f"skipped: no Flux configuration named {configuration}"
                else:
                    would_change = strategy.would_change(panel, current, params)
                    reason = "would change" if would_change else "already as requested"
            except NotFound:
                reason = "skipped: the cluster no longer exists in ARM"
            except FluxfleetError as exc:
                reason = f"could not read its state: {exc.message}"
            return {
                "id": panel.id,
                "name": panel.name,
                "subscription": panel.subscription,
                "resourceGroup": panel.resource_group,
                "stage": stage_name,
                "connectivity": panel.connectivity,
                "wouldChange": would_change,
                "current": flux_state_document(current) if current else None,
                "reason": reason,
            }

        with ThreadPoolExecutor(
            max_workers=self._settings.read_concurrency, thread_name_prefix="dryrun"
        ) as pool:
            clusters = list(pool.map(look, jobs))
        return {
            "dryRun": True,
            "kind": strategy.kind,
            "configuration": configuration,
            "total": len(clusters),
            "wouldChange": sum(1 for c in clusters if c["wouldChange"]),
            "stages": [
                {"name": s.name, "successThreshold": s.success_threshold, "total": len(s.panels)}
                for s in stages
            ],
            "clusters": clusters,
        }

    # ---------------------------------------------------------------------------------------------
    # reads
    # ---------------------------------------------------------------------------------------------

    def list_fleet(self) -> list[Panel]:
        """Every panel of the configured subscriptions (connectedClusters lists, paced)."""
        subscriptions = self._settings.subscriptions
        if not subscriptions:
            raise MissingSetting("FLUXFLEET_SUBSCRIPTION_IDS")
        panels: list[Panel] = []
        for subscription in subscriptions:
            self._pacer.acquire(subscription=subscription, kind="reads")
            panels.extend(self._reader.list_panels(subscriptions=[subscription]))
        return panels

    def get_operation(self, operation_id: str) -> OperationDoc:
        record = self._store.get_operation(operation_id)
        if record is None:
            raise NotFound(f"operation {operation_id} does not exist", operationId=operation_id)
        return cast(OperationDoc, operation_document(record, self._store.get_panels(record.id)))

    def list_operations(self, *, kind: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        return [operation_listing(record) for record in self._store.list_operations(kind=kind, limit=limit)]

    def wait_for_final(self, operation_id: str, *, timeout_s: float) -> OperationDoc:
        deadline = self._clock.monotonic() + timeout_s
        while self._clock.monotonic() < deadline:
            record = self._store.get_operation(operation_id)
            if record is None or record.status != OperationStatus.RUNNING.value:
                break
            self._clock.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - self._clock.monotonic())))
        return self.get_operation(operation_id)

    # ---------------------------------------------------------------------------------------------
    # apply worker
    # ---------------------------------------------------------------------------------------------

    def process_apply(self, message: Mapping[str, Any], *, dequeue_count: int = 1) -> None:
        """The `ff-fleet-apply` queue worker: apply the change to a batch of panels."""
        parsed = _parse_message(message, with_stage=True)
        if parsed is None:
            return
        operation_id, keys = parsed
        record = self._store.get_operation(operation_id)
        if record is None:
            log.error("apply message for unknown operation %s dropped", operation_id)
            return
        strategy = self.strategy(record.kind)
        rows = {row.key: row for row in self._store.get_panels(record.id, keys=keys)}
        later: dict[tuple[str, float], list[str]] = defaultdict(list)
        for key in keys:
            row = rows.get(key)
            if row is None:
                continue
            step = self._apply_one(record, strategy, row)
            if step is not None:
                later[(step.queue, step.delay_s)].append(row.key)
        self._send_later(record.id, later)
        self._advance(record.id)

    def _apply_one(self, record: OperationRecord, strategy: ChangeStrategy, row: PanelRecord) -> _Next | None:
        claim = self._claim(record, row)
        if not isinstance(claim, tuple):
            return claim
        claimed, recovering = claim
        panel = panel_of(claimed)
        try:
            current = self.read_flux_state(panel, record.configuration)
            if current is None:
                self._settle(
                    claimed, PanelState.SKIPPED, f"no Flux configuration named {record.configuration}"
                )
                return None
            patch = self._patch_for(strategy, claimed, panel, current, record.params)
            if patch is None:
                # Written before (a crash, or a failed LRO that left ARM's desired state behind):
                # track it rather than call it unchanged.
                return self._nothing_to_write(
                    claimed, current, written=recovering or claimed.accepted_at is not None
                )
            self._pacer.acquire(subscription=panel.subscription, kind="writes")
            accepted = self._writer.begin_patch(panel=panel, configuration=record.configuration, patch=patch)
        except NotFound as exc:
            self._settle(claimed, PanelState.SKIPPED, f"not found in ARM: {exc.message}")
            return None
        except TransientError as exc:
            return self._retry_or_fail(claimed, exc.message, exc.retry_after)
        except FluxfleetError as exc:
            log.warning(
                "panel %s failed: %s",
                panel.name,
                exc.message,
                extra={"operation_id": record.id, "cluster": panel.name},
            )
            self._settle(claimed, PanelState.FAILED, exc.message)
            return None
        applied = self._cas(
            claimed,
            state=PanelState.VERIFYING,
            lease_until=None,
            accepted_at=accepted.accepted_at,
            accepted_local=self._clock.now(),
            baseline_status_updated_at=current.status_updated_at,
            baseline_commit_id=current.source_synced_commit_id,
            checks=0,
            reapply=False,
            detail="ARM accepted the change; waiting for the panel's agent to report it"
            if accepted.changed
            else "ARM already held this change; waiting for the panel's agent to report it",
        )
        log.info(
            "ARM accepted the change on %s",
            panel.name,
            extra={"operation_id": record.id, "cluster": panel.name, "subscription": panel.subscription},
        )
        return None if applied is None else _Next(VERIFY_QUEUE, self._settings.verify_delay_s)

    def _claim(self, record: OperationRecord, row: PanelRecord) -> tuple[PanelRecord, bool] | _Next | None:
        """Take a panel for this worker: (the claimed row, whether an earlier worker died holding it)."""
        now = self._clock.now()
        if row.state in (PanelState.VERIFYING, PanelState.PENDING_OFFLINE):
            # Applied by an earlier run of this message that died before its verify message was sent.
            return _Next(VERIFY_QUEUE, self._settings.verify_delay_s)
        if row.state == PanelState.APPLYING and row.lease_until and row.lease_until > now:
            return _Next(APPLY_QUEUE, (row.lease_until - now).total_seconds() + 1)
        if row.state not in (PanelState.QUEUED, PanelState.APPLYING):
            return None
        if record.halted_reason:
            self._settle(row, PanelState.SKIPPED, f"not applied: operation halted ({record.halted_reason})")
            return None
        claimed = self._cas(
            row,
            state=PanelState.APPLYING,
            lease_until=now + timedelta(seconds=self._settings.lease_s),
            attempts=row.attempts + 1,
            detail="applying",
        )
        if claimed is None:
            return None  # another worker claimed it; its message carries it on
        return claimed, row.state == PanelState.APPLYING

    @staticmethod
    def _patch_for(
        strategy: ChangeStrategy, row: PanelRecord, panel: Panel, current: FluxState, params: Params
    ) -> dict[str, Any] | None:
        reapply = getattr(strategy, "reapply_patch", None)
        # Re-send when Arc dropped the change (48 h) or ARM's last update of it failed.
        force = row.reapply or current.provisioning_state in ("Failed", "Canceled")
        if force and reapply is not None:
            patch: dict[str, Any] | None = reapply(panel, current, params)
            return patch
        return strategy.desired_patch(panel, current, params)

    def _nothing_to_write(self, claimed: PanelRecord, current: FluxState, *, written: bool) -> _Next | None:
        if not written:
            self._settle(claimed, PanelState.UNCHANGED, "already as requested; nothing written")
            return None
        # Our write may have landed just before a crash: track it rather than call it unchanged. The
        # resource's last modification (ARM's clock) is the latest moment that write can have been accepted.
        verifying = self._cas(
            claimed,
            state=PanelState.VERIFYING,
            lease_until=None,
            accepted_at=current.modified_at or current.observed_at or self._clock.now(),
            accepted_local=self._clock.now(),
            checks=0,
            detail="recovered after an interrupted write; waiting for the panel's agent",
        )
        return _Next(VERIFY_QUEUE, self._settings.verify_delay_s) if verifying else None

    def _retry_or_fail(self, row: PanelRecord, cause: str, retry_after: float | None) -> _Next | None:
        if row.attempts >= self._settings.max_attempts:
            self._settle(row, PanelState.FAILED, f"gave up after {row.attempts} attempts: {cause}")
            return None
        queued = self._cas(row, state=PanelState.QUEUED, lease_until=None, detail=f"will retry: {cause}")
        if queued is None:
            return None
        delay = retry_after if retry_after is not None else self._settings.retry_delay_s * row.attempts
        return _Next(APPLY_QUEUE, delay)

    # ---------------------------------------------------------------------------------------------
    # verify worker
    # ---------------------------------------------------------------------------------------------

    def process_verify(self, message: Mapping[str, Any], *, dequeue_count: int = 1) -> None:
        """The `ff-fleet-verify` queue worker: has each panel's agent reported the change?"""
        parsed = _parse_message(message, with_stage=False)
        if parsed is None:
            return
        operation_id, keys = parsed
        record = self._store.get_operation(operation_id)
        if record is None:
            log.error("verify message for unknown operation %s dropped", operation_id)
            return
        strategy = self.strategy(record.kind)
        later: dict[tuple[str, float], list[str]] = defaultdict(list)
        for row in self._store.get_panels(record.id, keys=keys):
            step = self._verify_one(record, strategy, row)
            if step is not None:
                later[(step.queue, step.delay_s)].append(row.key)
        self._send_later(record.id, later)
        self._advance(record.id)

    def _verify_one(
        self, record: OperationRecord, strategy: ChangeStrategy, row: PanelRecord
    ) -> _Next | None:
        if row.state not in (PanelState.VERIFYING, PanelState.PENDING_OFFLINE):
            return None
        if self._superseded(record, strategy, row):
            return None
        panel = panel_of(row)
        context = {"operation_id": record.id, "cluster": panel.name, "subscription": panel.subscription}
        try:
            current = self.read_flux_state(panel, record.configuration)
            if current is None:
                self._settle(
                    row, PanelState.FAILED, f"the Flux configuration {record.configuration} was deleted"
                )
                return None
            if current.provisioning_state in ("Failed", "Canceled"):
                cause = f"ARM reported the update {current.provisioning_state}: {current.error_message or ''}"
                return self._retry_or_fail(row, cause.rstrip(": "), None)
            if current.provisioning_state not in (None, "Succeeded"):
                # ARM's long-running operation has not finished: nothing to judge yet.
                return self._check_again(row, f"ARM's update is still running ({current.provisioning_state})")
            applied = AppliedChange(
                accepted_at=row.accepted_at or current.observed_at or self._clock.now(),
                attempt=row.attempts,
                baseline_status_updated_at=row.baseline_status_updated_at,
                baseline_commit_id=row.baseline_commit_id,
            )
            verdict = strategy.check(panel, current, applied, record.params)
            if verdict.outcome == "converged":
                self._settle(
                    row, PanelState.SUCCEEDED, verdict.detail or "the panel's agent reported the change"
                )
                log.info("%s converged", panel.name, extra=context)
                return None
            if verdict.outcome == "failed":
                self._settle(row, PanelState.FAILED, verdict.detail)
                log.warning("%s failed: %s", panel.name, verdict.detail, extra=context)
                if verdict.halt_operation:
                    self._halt(record.id, f"{panel.name}: {verdict.detail}")
                return None
            self._pacer.acquire(subscription=panel.subscription, kind="reads")
            arc = self._reader.get_panel(panel_id=panel.id)
        except NotFound as exc:
            self._settle(row, PanelState.SKIPPED, f"not found in ARM: {exc.message}")
            return None
        except TransientError as exc:
            log.info("verify of %s deferred: %s", panel.name, exc.message, extra=context)
            return _Next(VERIFY_QUEUE, exc.retry_after or self._settings.retry_delay_s)
        except FluxfleetError as exc:
            self._settle(row, PanelState.FAILED, exc.message)
            return None
        return self._still_waiting(row, current, arc, applied, verdict)

    def _superseded(self, record: OperationRecord, strategy: ChangeStrategy, row: PanelRecord) -> bool:
        """A newer operation of the same lock group took the panel over: stop tracking it here.

        Only a finished operation (or a pending-offline panel) can have lost its lock, so the lock is
        read only then."""
        if row.state != PanelState.PENDING_OFFLINE and record.status == OperationStatus.RUNNING.value:
            return False
        owner = self._store.lock_owner(group=strategy.lock_group, key=row.key)
        if owner is None or owner == record.id:
            return False
        self._settle(row, PanelState.SKIPPED, f"superseded by operation {owner}")
        return True

    def _still_waiting(
        self, row: PanelRecord, current: FluxState, arc: Panel, applied: AppliedChange, verdict: Convergence
    ) -> _Next | None:
        """The agent has not reported the change yet: offline, lost to Arc's 48-hour window, or slow."""
        settings = self._settings
        now = self._clock.now()
        # ARM's clock, as best known: the read's `Date`, or the panel's last heartbeat if later.
        arm_now = max(filter(None, (current.observed_at, arc.last_connectivity_time)), default=None)
        window_lapsed = (
            arm_now is not None and arm_now - applied.accepted_at >= settings.delivery_window
        ) or (row.accepted_local is not None and now - row.accepted_local >= settings.delivery_window)
        if arc.offline:
            if window_lapsed:
                return self._reapply(
                    row, "offline for longer than Arc's 48-hour delivery window; re-applying"
                )
            seen = iso(arc.last_connectivity_time) or "never"
            self._cas(
                row,
                state=PanelState.PENDING_OFFLINE,
                checks=0,
                detail=f"panel offline ({arc.connectivity}, last connected {seen}); "
                "ARM holds the change and the panel is tracked until it reports it",
            )
            return _Next(VERIFY_QUEUE, settings.offline_recheck_s)
        if row.state == PanelState.PENDING_OFFLINE and window_lapsed:
            return self._reapply(row, "reconnected after Arc's 48-hour delivery window lapsed; re-applying")
        return self._check_again(row, verdict.detail or "waiting for the panel's agent to report the change")

    def _check_again(self, row: PanelRecord, detail: str) -> _Next | None:
        """Look again after `verify_delay_s`, or give the panel up as `failed` after enough looks."""
        settings = self._settings
        checks = 1 if row.state == PanelState.PENDING_OFFLINE else row.checks + 1
        if checks >= settings.verify_max_checks:
            self._settle(
                row,
                PanelState.FAILED,
                f"the panel's agent did not report the change after {checks} checks ({detail})",
            )
            return None
        updated = self._cas(row, state=PanelState.VERIFYING, checks=checks, detail=detail)
        return _Next(VERIFY_QUEUE, settings.verify_delay_s) if updated else None

    def _reapply(self, row: PanelRecord, why: str) -> _Next | None:
        log.info("%s: %s", row.name, why, extra={"operation_id": row.operation_id, "cluster": row.name})
        queued = self._cas(row, state=PanelState.QUEUED, reapply=True, detail=why)
        return _Next(APPLY_QUEUE, 0.0) if queued else None

    # ---------------------------------------------------------------------------------------------
    # stages, halting, final status
    # ---------------------------------------------------------------------------------------------

    def _halt(self, operation_id: str, cause: str) -> None:
        """Stop the operation: every panel not yet applied is `skipped` with the cause."""
        for _ in range(CAS_ATTEMPTS):
            record = self._store.get_operation(operation_id)
            if record is None or record.halted_reason:
                break
            try:
                self._store.replace_operation(
                    replace(record, halted_reason=cause, updated_at=self._clock.now())
                )
                log.warning(
                    "operation %s halted: %s", operation_id, cause, extra={"operation_id": operation_id}
                )
                break
            except ConcurrentUpdate:
                continue
        for row in self._store.get_panels(operation_id):
            if row.state == PanelState.QUEUED:
                self._settle(row, PanelState.SKIPPED, f"not applied: operation halted ({cause})")

    def _advance(self, operation_id: str) -> None:
        """Start the next stage or finish the operation when the rows say so (safe to call any time)."""
        for _ in range(CAS_ATTEMPTS):
            record = self._store.get_operation(operation_id)
            if record is None:
                return
            try:
                if record.status == OperationStatus.RUNNING.value:
                    self._advance_running(record)
                else:
                    self._refresh_final(record)
                return
            except ConcurrentUpdate:
                continue

    def _advance_running(self, record: OperationRecord) -> None:
        strategy = self.strategy(record.kind)
        while True:
            stage = record.current_stage
            if self._store.has_unsettled(record.id, stage=stage):
                return
            rows = self._store.get_panels(record.id)
            stage_rows = [row for row in rows if row.stage == stage]
            strategy.on_stage_done(record, stage, summarize(stage_rows))
            if stage + 1 >= len(record.stage_names) or record.halted_reason:
                break
            share = stage_share_done(stage_rows)
            threshold = record.stage_thresholds[stage]
            if share + SHARE_EPSILON < threshold:
                cause = (
                    f"stage {record.stage_names[stage]} reached {share:.0%} succeeded, "
                    f"below its threshold of {threshold:.0%}"
                )
                self._halt(record.id, cause)
                record = self._store.get_operation(record.id) or record
                break
            self._enqueue(
                APPLY_QUEUE,
                record.id,
                [row.key for row in rows if row.stage == stage + 1 and row.state == PanelState.QUEUED],
                stage=stage + 1,
            )
            record = self._store.replace_operation(
                replace(
                    record, current_stage=stage + 1, summary=summarize(rows), updated_at=self._clock.now()
                )
            )
            log.info(
                "operation %s: stage %s started",
                record.id,
                record.stage_names[stage + 1],
                extra={"operation_id": record.id},
            )
        if self._store.has_unsettled(record.id):
            return
        self._finish(record, self._store.get_panels(record.id))

    def _finish(self, record: OperationRecord, rows: Sequence[PanelRecord]) -> None:
        summary = summarize(rows)
        status = final_status(summary, halted=bool(record.halted_reason))
        now = self._clock.now()
        self._store.replace_operation(
            replace(
                record,
                status=status.value,
                summary=summary,
                finished_at=record.finished_at or now,
                updated_at=now,
            )
        )
        log.info(
            "operation %s %s: %s",
            record.id,
            status.value,
            json.dumps(summary, sort_keys=True),
            extra={"operation_id": record.id},
        )

    def _refresh_final(self, record: OperationRecord) -> None:
        """A finished operation still tracking pending-offline panels: keep its status current."""
        rows = self._store.get_panels(record.id)
        summary = summarize(rows)
        if summary != dict(record.summary) and not any(not row.settled for row in rows):
            self._finish(record, rows)

    # ---------------------------------------------------------------------------------------------
    # sweeper
    # ---------------------------------------------------------------------------------------------

    def sweep(self, *, limit: int = SWEEP_OPERATIONS) -> int:
        """Re-enqueue work for panels nobody touched for `stale_after_s` (a lost or poisoned message).

        Messages normally carry every panel to its end; this is the safety net that makes "no panel is
        silently dropped" hold even when a message was lost. Returns how many panels were re-enqueued.
        """
        now = self._clock.now()
        stale = timedelta(seconds=self._settings.stale_after_s)
        count = 0
        for record in self._store.list_operations(kind=None, limit=limit):
            tracking = record.summary.get("pending-offline", 0) > 0
            if record.status != OperationStatus.RUNNING.value and not tracking:
                continue
            later: dict[tuple[str, float], list[str]] = defaultdict(list)
            for row in self._store.get_panels(record.id):
                idle = now - (row.updated_at or record.created_at)
                if row.state == PanelState.PENDING_OFFLINE:
                    if idle >= stale + timedelta(seconds=self._settings.offline_recheck_s):
                        later[(VERIFY_QUEUE, 0.0)].append(row.key)
                elif row.state == PanelState.VERIFYING and idle >= stale:
                    later[(VERIFY_QUEUE, 0.0)].append(row.key)
                elif (row.state == PanelState.APPLYING and row.lease_until and row.lease_until <= now) or (
                    row.state == PanelState.QUEUED and row.stage <= record.current_stage and idle >= stale
                ):
                    later[(APPLY_QUEUE, 0.0)].append(row.key)
            count += sum(len(keys) for keys in later.values())
            self._send_later(record.id, later, stage=record.current_stage)
            self._advance(record.id)
        return count

    # ---------------------------------------------------------------------------------------------
    # helpers
    # ---------------------------------------------------------------------------------------------

    def read_flux_state(self, panel: Panel, configuration: str) -> FluxState | None:
        """A panel's Flux configuration (a paced ARM read); None when it has none of that name."""
        self._pacer.acquire(subscription=panel.subscription, kind="reads")
        return self._reader.get_flux_state(panel=panel, configuration=configuration)

    def _cas(self, row: PanelRecord, **changes: Any) -> PanelRecord | None:
        """Move a panel row on (ETag-guarded); None when another worker changed it first."""
        try:
            return self._store.replace_panel(replace(row, updated_at=self._clock.now(), **changes))
        except ConcurrentUpdate:
            return None

    def _settle(self, row: PanelRecord, state: PanelState, detail: str) -> PanelRecord | None:
        return self._cas(row, state=state, detail=safe_text(detail, limit=DETAIL_LIMIT), lease_until=None)

    def _reload(self, row: PanelRecord) -> PanelRecord | None:
        rows = self._store.get_panels(row.operation_id, keys=[row.key])
        return rows[0] if rows else None

    def _enqueue(
        self, queue: str, operation_id: str, keys: Sequence[str], *, stage: int = 0, delay_s: float = 0.0
    ) -> None:
        size = self._settings.batch_size
        messages: list[dict[str, Any]] = []
        for start in range(0, len(keys), size):
            message: dict[str, Any] = {
                "v": MESSAGE_VERSION,
                "op": operation_id,
                "panels": list(keys[start : start + size]),
            }
            if queue == APPLY_QUEUE:
                message["stage"] = stage
            messages.append(message)
        if len(messages) <= 1:
            for message in messages:
                self._queue.send(queue=queue, message=message, delay_s=delay_s)
            return
        # Concurrently: the first messages should reach the workers while the rest are still being sent.
        with ThreadPoolExecutor(max_workers=SEND_CONCURRENCY, thread_name_prefix="enqueue") as pool:
            list(pool.map(lambda m: self._queue.send(queue=queue, message=m, delay_s=delay_s), messages))

    def _send_later(
        self, operation_id: str, later: Mapping[tuple[str, float], list[str]], *, stage: int = 0
    ) -> None:
        for (queue, delay), keys in later.items():
            self._enqueue(queue, operation_id, keys, stage=stage, delay_s=max(0.0, delay))


def check_reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("reason", "is required: say why (1-500 characters)")
    text: str = reason.strip()
    if len(text) > MAX_REASON_CHARS:
        raise InvalidInput("reason", f"must be at most {MAX_REASON_CHARS} characters, got {len(text)}")
    return text


def new_operation_id(now: datetime) -> OperationId:
    """Time-ordered and unguessable: `20260820T101530Z-3f9c2a1b7d`."""
    return OperationId(f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(5)}")


def operation_created_at(operation_id: str) -> datetime | None:
    try:
        return datetime.strptime(operation_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def panel_of(row: PanelRecord) -> Panel:
    return Panel(
        id=row.panel_id,
        name=row.name,
        subscription=SubscriptionId(row.subscription),
        resource_group=row.resource_group,
        tags=dict(row.tags),
    )


def flux_state_document(state: FluxState) -> dict[str, Any]:
    """The parts of a FluxState a person or pipeline reads (no secrets exist in it)."""
    git = state.git_repository
    return {
        "suspended": state.suspended,
        "complianceState": state.compliance_state,
        "sourceSyncedCommitId": state.source_synced_commit_id,
        "statusUpdatedAt": iso(state.status_updated_at),
        "provisioningState": state.provisioning_state,
        "source": None
        if git is None
        else {"ready": git.ready, "reason": git.reason, "message": safe_text(git.message or "")},
    }


def _request_hash(kind: str, params: Params, selection: Selector, configuration: str, reason: str) -> str:
    canonical = json.dumps(
        {
            "kind": kind,
            "params": params,
            "target": selection.to_json(),
            "configuration": configuration,
            "reason": reason,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _parse_message(message: Mapping[str, Any], *, with_stage: bool) -> tuple[str, list[str]] | None:
    """A queue message's operation id and panel keys; None (logged) for a message that is not ours."""
    operation_id = message.get("op")
    keys = message.get("panels")
    if (
        message.get("v") != MESSAGE_VERSION
        or not isinstance(operation_id, str)
        or not isinstance(keys, list)
        or not all(isinstance(k, str) for k in keys)
        or (with_stage and not isinstance(message.get("stage"), int))
    ):
        log.error("malformed fleet message dropped: %s", safe_text(json.dumps(message, default=str)))
        return None
    return operation_id, keys


def load_strategies(runtime: Any, providers: Iterable[str] = STRATEGY_PROVIDERS) -> list[ChangeStrategy]:
    """Every strategy of every provider module (import errors propagate: a missing kind is a bug)."""
    strategies: list[ChangeStrategy] = []
    for module_name in providers:
        module = importlib.import_module(module_name)
        strategies.extend(module.change_strategies(runtime))
    return strategies


def from_runtime(runtime: Any) -> FleetChangeEngine:
    """The engine of this worker, wired to Azure (ARM, Tables, Queues) through the runtime's clients."""
    from shared.adapters.arm_fleet import ArmFleet
    from shared.adapters.operation_store import TableBucketStore, TableOperationStore
    from shared.adapters.work_queue import StorageWorkQueue
    from shared.services.pacing import SharedPacer, SystemClock, limits_from_settings

    settings: Settings = runtime.settings
    clock = SystemClock()
    pacer = SharedPacer(
        store=TableBucketStore(runtime.clients.tables), clock=clock, limits=limits_from_settings(settings)
    )
    arm = ArmFleet(runtime.clients, observer=pacer)
    return FleetChangeEngine(
        reader=arm,
        writer=arm,
        store=TableOperationStore(runtime.clients.tables),
        queue=StorageWorkQueue(runtime.clients.queues),
        pacer=pacer,
        clock=clock,
        strategies=load_strategies(runtime),
        settings=engine_settings(settings),
    )


def engine_settings(settings: Settings) -> EngineSettings:
    return EngineSettings(
        configuration=settings.flux_configuration,
        subscriptions=tuple(settings.require("subscription_ids")),
        batch_size=settings.fleet_batch_size,
        verify_delay_s=settings.fleet_verify_delay_seconds,
        verify_max_checks=settings.fleet_verify_max_checks,
        offline_recheck_s=settings.fleet_offline_recheck_seconds,
        lease_s=settings.fleet_lease_seconds,
    )
