"""An operation's progress: stages in order, halting, the final status, and the sweeper.

`advance` is safe to call at any time and from any worker: it reads the rows and does whatever they say
is due (start the next stage, halt below a threshold, finish), with compare-and-swap on the operation
row, so concurrent workers finishing the last panels of a stage start the next stage once.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.errors import Conflict, NotFound
from shared.models import OperationStatus, PanelState
from shared.ports import Clock, ConcurrentUpdate, OperationRecord, OperationStore, PanelRecord
from shared.queues import FLEET_APPLY_QUEUE, FLEET_VERIFY_QUEUE
from shared.services.fleet.documents import final_status, stage_share_done, summarize
from shared.services.fleet.rows import PanelRows

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.services.fleet.engine import EngineSettings
    from shared.services.fleet.strategy import ChangeStrategy

log = logging.getLogger("fluxfleet.fleet")

# Optimistic-concurrency retries on an operation row before giving up (the next message retries).
CAS_ATTEMPTS = 8
# Floating-point slack when comparing a stage's success share with its threshold.
SHARE_EPSILON = 1e-9
# How many recent operations the sweeper looks at.
SWEEP_OPERATIONS = 100


class Progress:
    def __init__(
        self,
        *,
        store: OperationStore,
        clock: Clock,
        rows: PanelRows,
        settings: EngineSettings,
        strategy_of: Callable[[str], ChangeStrategy],
    ) -> None:
        self._store = store
        self._clock = clock
        self._rows = rows
        self._settings = settings
        self._strategy_of = strategy_of

    def halt(self, operation_id: str, cause: str) -> None:
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
                self._rows.settle(row, PanelState.SKIPPED, f"not applied: operation halted ({cause})")

    def cancel(self, operation_id: str, *, reason: str, requested_by: str) -> None:
        """Stop a running operation for good: status `cancelled` (which frees its panel locks), every
        unsettled panel `skipped` saying who cancelled it and why. A panel already written keeps what
        ARM holds; its detail says so. Cancelling a cancelled operation again changes nothing."""
        cause = f"cancelled by {requested_by}: {reason}"
        for _ in range(CAS_ATTEMPTS):
            record = self._store.get_operation(operation_id)
            if record is None:
                raise NotFound(f"operation {operation_id} does not exist", operationId=operation_id)
            if record.status == OperationStatus.CANCELLED.value:
                return
            if record.status != OperationStatus.RUNNING.value:
                raise Conflict(
                    f"operation {operation_id} already ended ({record.status}); nothing to cancel",
                    operationId=operation_id,
                )
            now = self._clock.now()
            try:
                self._store.replace_operation(
                    replace(
                        record,
                        status=OperationStatus.CANCELLED.value,
                        halted_reason=cause,
                        cancelled_by=requested_by,
                        finished_at=now,
                        updated_at=now,
                    )
                )
                break
            except ConcurrentUpdate:
                continue
        else:
            raise ConcurrentUpdate(f"operation {operation_id} kept changing; cancel again")
        log.warning("operation %s %s", operation_id, cause, extra={"operation_id": operation_id})
        for row in self._store.get_panels(operation_id):
            if row.settled:
                continue
            written = row.write_attempted or row.accepted_at is not None
            detail = cause + (
                "; the change was already sent to ARM and may still reach the panel" if written else ""
            )
            self._rows.settle(row, PanelState.SKIPPED, detail)
        record = self._store.get_operation(operation_id)
        if record is not None:
            rows = self._store.get_panels(operation_id)
            self._store.replace_operation(
                replace(record, summary=summarize(rows), updated_at=self._clock.now())
            )

    def advance(self, operation_id: str) -> None:
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
        strategy = self._strategy_of(record.kind)
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
                self.halt(record.id, cause)
                record = self._store.get_operation(record.id) or record
                break
            self._rows.enqueue(
                FLEET_APPLY_QUEUE,
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
        if record.status == OperationStatus.CANCELLED.value:
            return  # a cancelled operation stays cancelled
        rows = self._store.get_panels(record.id)
        summary = summarize(rows)
        if summary != dict(record.summary) and not any(not row.settled for row in rows):
            self._finish(record, rows)

    def _stale_queue(
        self, record: OperationRecord, row: PanelRecord, *, now: datetime, stale: timedelta
    ) -> str | None:
        """The queue a row's lost work belongs on, or None while the row is not stale."""
        idle = now - (row.updated_at or record.created_at)
        if row.state == PanelState.PENDING_OFFLINE:
            due = idle >= stale + timedelta(seconds=self._settings.offline_recheck_s)
            return FLEET_VERIFY_QUEUE if due else None
        if row.state == PanelState.VERIFYING:
            return FLEET_VERIFY_QUEUE if idle >= stale else None
        if row.state == PanelState.APPLYING and row.lease_until and row.lease_until <= now:
            return FLEET_APPLY_QUEUE
        if row.state == PanelState.QUEUED and row.stage <= record.current_stage and idle >= stale:
            return FLEET_APPLY_QUEUE
        return None

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
                queue = self._stale_queue(record, row, now=now, stale=stale)
                if queue is None:
                    continue
                if row.sweeps >= self._settings.max_sweeps:
                    self._rows.settle(
                        row,
                        PanelState.FAILED,
                        f"gave up: its work did not complete in {row.sweeps + 1} deliveries "
                        f"(last: {row.detail or row.state.value})",
                    )
                    continue
                if self._rows.cas(row, sweeps=row.sweeps + 1) is not None:
                    later[(queue, 0.0)].append(row.key)
            count += sum(len(keys) for keys in later.values())
            self._rows.send_later(record.id, later, stage=record.current_stage)
            self.advance(record.id)
        return count
