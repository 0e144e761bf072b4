"""`FleetChangeEngine`: the one entry point of fleet-wide changes (see the package docstring).

The engine is a facade over its parts — `Intake` (start), `ApplyWorker` and `VerifyWorker` (the queue
workers), `Progress` (stages, final status, sweeper) and `PanelRows` (the per-panel moves) — wired here
once, so callers see one object and each part can be read on its own. It is built once per worker by the
composition root (`shared.container`); tests build it over in-memory fakes of its ports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.config import Settings
from shared.errors import InvalidInput, NotFound
from shared.models import OperationStatus, Panel, Params, Selector
from shared.ports import Clock, FleetReader, FluxWriter, OperationStore, PanelDirectory, WorkQueue
from shared.services.fleet.apply import ApplyWorker
from shared.services.fleet.documents import OperationDoc, operation_document, operation_listing
from shared.services.fleet.intake import POLL_INTERVAL_S, Intake, StartResult, check_reason
from shared.services.fleet.progress import SWEEP_OPERATIONS, Progress
from shared.services.fleet.rows import PanelRows
from shared.services.fleet.strategy import ChangeStrategy
from shared.services.fleet.verify import VerifyWorker


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
    # Concurrent ARM reads for dry runs (each still paced at the ARM boundary).
    read_concurrency: int = 8
    # A row untouched for this long (s) in a running operation is re-enqueued by the sweeper.
    stale_after_s: float = 900.0
    # Re-deliveries by the sweeper before a panel whose work never completes is `failed` with the cause:
    # a message that fails every time (poisoned) would otherwise cycle between the poison queue and the
    # sweeper for ever, its operation `running` and holding its locks. 3 × 15 min after the host's own
    # five dequeues.
    max_sweeps: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineSettings:
        return cls(
            configuration=settings.flux_configuration,
            subscriptions=tuple(settings.require("subscription_ids")),
            batch_size=settings.fleet_batch_size,
            verify_delay_s=settings.fleet_verify_delay_seconds,
            verify_max_checks=settings.fleet_verify_max_checks,
            offline_recheck_s=settings.fleet_offline_recheck_seconds,
            lease_s=settings.fleet_lease_seconds,
        )


class FleetChangeEngine:
    """Drives every fleet-wide change; see `shared.services.fleet` for the life of an operation."""

    def __init__(
        self,
        *,
        reader: FleetReader,
        writer: FluxWriter,
        directory: PanelDirectory,
        store: OperationStore,
        queue: WorkQueue,
        clock: Clock,
        strategies: Iterable[ChangeStrategy],
        settings: EngineSettings,
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._strategies: dict[str, ChangeStrategy] = {}
        for strategy in strategies:
            if strategy.kind in self._strategies:
                raise ValueError(f"two strategies for kind {strategy.kind!r}")
            self._strategies[strategy.kind] = strategy
        rows = PanelRows(store=store, queue=queue, clock=clock, settings=settings)
        self._progress = Progress(
            store=store, clock=clock, rows=rows, settings=settings, strategy_of=self.strategy
        )
        self._intake = Intake(
            reader=reader,
            directory=directory,
            store=store,
            clock=clock,
            rows=rows,
            settings=settings,
            get_operation=self.get_operation,
        )
        self._apply = ApplyWorker(
            reader=reader,
            writer=writer,
            store=store,
            clock=clock,
            rows=rows,
            settings=settings,
            strategy_of=self.strategy,
            advance=self._progress.advance,
        )
        self._verify = VerifyWorker(
            reader=reader,
            store=store,
            clock=clock,
            rows=rows,
            settings=settings,
            strategy_of=self.strategy,
            advance=self._progress.advance,
            halt=self._progress.halt,
        )

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

    # --- start ----------------------------------------------------------------------------------------
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
        """Start an operation of `kind` on `selection` (resolved against the fleet) or on `panels` (given).

        Raises `InvalidInput` (400: bad params/reason), `Unprocessable` (422: unknown cluster names,
        nothing selected), `Conflict` (409: overlaps a running operation of the same lock group, or
        the same Idempotency-Key with a different request). `configuration` defaults to the setting.
        """
        return self._intake.start(
            self.strategy(kind),
            params=params,
            reason=reason,
            requested_by=requested_by,
            selection=selection,
            panels=panels,
            configuration=configuration,
            idempotency_key=idempotency_key,
            dry_run=dry_run,
        )

    # --- reads ----------------------------------------------------------------------------------------
    def get_operation(self, operation_id: str) -> OperationDoc:
        record = self._store.get_operation(operation_id)
        if record is None:
            raise NotFound(f"operation {operation_id} does not exist", operationId=operation_id)
        return operation_document(record, self._store.get_panels(record.id))

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

    # --- workers --------------------------------------------------------------------------------------
    def process_apply(self, message: Mapping[str, Any], *, dequeue_count: int = 1) -> None:
        """The `ff-fleet-apply` queue worker: apply the change to a batch of panels."""
        self._apply.process(message)

    def process_verify(self, message: Mapping[str, Any], *, dequeue_count: int = 1) -> None:
        """The `ff-fleet-verify` queue worker: has each panel's agent reported the change?"""
        self._verify.process(message)

    def cancel(self, operation_id: str, *, reason: object, requested_by: str) -> OperationDoc:
        """`POST /api/operations/{id}/cancel`: stop a running operation (see `Progress.cancel`)."""
        self._progress.cancel(operation_id, reason=check_reason(reason), requested_by=requested_by)
        return self.get_operation(operation_id)

    def sweep(self, *, limit: int = SWEEP_OPERATIONS) -> int:
        """Re-enqueue panels of running operations nobody touched for a while (lost messages)."""
        return self._progress.sweep(limit=limit)
