"""The `ff-fleet-verify` worker: has each panel's agent reported the change?

A panel is `succeeded` only when its strategy sees the agent's own report of the new state, after the
write (ARM-clock times only). Until then it waits — a bounded number of looks while online, on a slow
cadence while offline (`pending-offline`), with a re-apply when Arc's 48-hour delivery window lapsed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from shared.errors import FluxfleetError, NotFound, TransientError
from shared.models import AppliedChange, Convergence, FluxState, OperationStatus, Panel, PanelState
from shared.ports import Clock, FleetReader, OperationRecord, OperationStore, PanelRecord
from shared.queues import FLEET_VERIFY_QUEUE
from shared.services.fleet.apply import FAILED_PROVISIONING
from shared.services.fleet.messages import parse_message
from shared.services.fleet.rows import Next, PanelRows, panel_of
from shared.services.fleet.strategy import ChangeStrategy, SelfWritingStrategy
from shared.timestamps import format_optional

if TYPE_CHECKING:
    from shared.services.fleet.engine import EngineSettings

log = logging.getLogger("fluxfleet.fleet")


class VerifyWorker:
    def __init__(
        self,
        *,
        reader: FleetReader,
        store: OperationStore,
        clock: Clock,
        rows: PanelRows,
        settings: EngineSettings,
        strategy_of: Callable[[str], ChangeStrategy],
        advance: Callable[[str], None],
        halt: Callable[[str, str], None],
    ) -> None:
        self._reader = reader
        self._store = store
        self._clock = clock
        self._rows = rows
        self._settings = settings
        self._strategy_of = strategy_of
        self._advance = advance
        self._halt = halt

    def process(self, message: Mapping[str, Any]) -> None:
        parsed = parse_message(message, with_stage=False)
        if parsed is None:
            return
        operation_id, keys = parsed
        record = self._store.get_operation(operation_id)
        if record is None:
            log.error("verify message for unknown operation %s dropped", operation_id)
            return
        strategy = self._strategy_of(record.kind)
        later: dict[tuple[str, float], list[str]] = defaultdict(list)
        for row in self._store.get_panels(record.id, keys=keys):
            step = self._verify_one(record, strategy, row)
            if step is not None:
                later[(step.queue, step.delay_s)].append(row.key)
        self._rows.send_later(record.id, later)
        self._advance(record.id)

    def _verify_one(self, record: OperationRecord, strategy: ChangeStrategy, row: PanelRecord) -> Next | None:
        if row.state not in (PanelState.VERIFYING, PanelState.PENDING_OFFLINE):
            return None
        if self._superseded(record, strategy, row):
            return None
        panel = panel_of(row)
        context = {"operation_id": record.id, "cluster": panel.name, "subscription": panel.subscription}
        if isinstance(strategy, SelfWritingStrategy):
            return self._check_step(record, strategy, row, panel, context)
        try:
            current = self._reader.get_flux_state(panel=panel, configuration=record.configuration)
            if current is None:
                self._rows.settle(
                    row, PanelState.FAILED, f"the Flux configuration {record.configuration} was deleted"
                )
                return None
            if current.provisioning_state in FAILED_PROVISIONING:
                cause = f"ARM reported the update {current.provisioning_state}: {current.error_message or ''}"
                return self._rows.retry_or_fail(row, cause.rstrip(": "), None)
            if current.provisioning_state not in (None, "Succeeded"):
                # ARM's long-running operation has not finished: nothing to judge yet.
                return self._rows.check_again(
                    row, f"ARM's update is still running ({current.provisioning_state})"
                )
            applied = AppliedChange(
                accepted_at=row.accepted_at or current.observed_at or self._clock.now(),
                attempt=row.attempts,
                baseline_status_updated_at=row.baseline_status_updated_at,
                baseline_commit_id=row.baseline_commit_id,
            )
            verdict = strategy.check(panel, current, applied, record.params)
            if verdict.outcome == "converged":
                self._rows.settle(
                    row, PanelState.SUCCEEDED, verdict.detail or "the panel's agent reported the change"
                )
                log.info("%s converged", panel.name, extra=context)
                return None
            if verdict.outcome == "failed":
                self._rows.settle(row, PanelState.FAILED, verdict.detail)
                log.warning("%s failed: %s", panel.name, verdict.detail, extra=context)
                if verdict.halt_operation:
                    self._halt(record.id, f"{panel.name}: {verdict.detail}")
                return None
            arc = self._reader.get_panel(panel_id=panel.id)
        except NotFound as exc:
            self._rows.settle(row, PanelState.SKIPPED, f"not found in ARM: {exc.message}")
            return None
        except TransientError as exc:
            log.info("verify of %s deferred: %s", panel.name, exc.message, extra=context)
            return Next(FLEET_VERIFY_QUEUE, exc.retry_after or self._settings.retry_delay_s)
        except FluxfleetError as exc:
            self._rows.settle(row, PanelState.FAILED, exc.message)
            return None
        return self._still_waiting(row, current, arc, applied, verdict)

    def _check_step(
        self,
        record: OperationRecord,
        strategy: SelfWritingStrategy,
        row: PanelRecord,
        panel: Panel,
        context: dict[str, str],
    ) -> Next | None:
        applied = AppliedChange(
            accepted_at=row.accepted_at or self._clock.now(),
            attempt=row.attempts,
            baseline_status_updated_at=row.baseline_status_updated_at,
            baseline_commit_id=row.baseline_commit_id,
        )
        try:
            verdict = strategy.check_step(panel, applied, record.params, configuration=record.configuration)
            if verdict.outcome == "again":
                return self._rows.reapply(row, verdict.detail or "next step")
            if verdict.outcome == "converged":
                self._rows.settle(row, PanelState.SUCCEEDED, verdict.detail or "the panel's agent applied it")
                log.info("%s converged", panel.name, extra=context)
                return None
            if verdict.outcome == "failed":
                self._rows.settle(row, PanelState.FAILED, verdict.detail)
                if verdict.halt_operation:
                    self._halt(record.id, f"{panel.name}: {verdict.detail}")
                return None
            arc = self._reader.get_panel(panel_id=panel.id)
        except NotFound as exc:
            self._rows.settle(row, PanelState.SKIPPED, f"not found in ARM: {exc.message}")
            return None
        except TransientError as exc:
            return Next(FLEET_VERIFY_QUEUE, exc.retry_after or self._settings.retry_delay_s)
        except FluxfleetError as exc:
            self._rows.settle(row, PanelState.FAILED, exc.message)
            return None
        if arc.offline:
            seen = format_optional(arc.last_connectivity_time) or "never"
            self._rows.cas(
                row,
                state=PanelState.PENDING_OFFLINE,
                checks=0,
                detail=f"panel offline ({arc.connectivity}, last connected {seen}); {verdict.detail}",
            )
            return Next(FLEET_VERIFY_QUEUE, self._settings.offline_recheck_s)
        return self._rows.check_again(row, verdict.detail or "waiting for the panel's agent")

    def _superseded(self, record: OperationRecord, strategy: ChangeStrategy, row: PanelRecord) -> bool:
        """A newer operation of the same lock group took the panel over: stop tracking it here.

        Only a finished operation (or a pending-offline panel) can have lost its lock, so the lock is
        read only then."""
        if row.state != PanelState.PENDING_OFFLINE and record.status == OperationStatus.RUNNING.value:
            return False
        owner = self._store.lock_owner(group=strategy.lock_group, key=row.key)
        if owner is None or owner == record.id:
            return False
        self._rows.settle(row, PanelState.SKIPPED, f"superseded by operation {owner}")
        return True

    def _still_waiting(
        self, row: PanelRecord, current: FluxState, arc: Panel, applied: AppliedChange, verdict: Convergence
    ) -> Next | None:
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
                return self._rows.reapply(
                    row, "offline for longer than Arc's 48-hour delivery window; re-applying"
                )
            seen = format_optional(arc.last_connectivity_time) or "never"
            self._rows.cas(
                row,
                state=PanelState.PENDING_OFFLINE,
                checks=0,
                detail=f"panel offline ({arc.connectivity}, last connected {seen}); "
                "ARM holds the change and the panel is tracked until it reports it",
            )
            return Next(FLEET_VERIFY_QUEUE, settings.offline_recheck_s)
        if row.state == PanelState.PENDING_OFFLINE and window_lapsed:
            return self._rows.reapply(
                row, "reconnected after Arc's 48-hour delivery window lapsed; re-applying"
            )
        return self._rows.check_again(
            row, verdict.detail or "waiting for the panel's agent to report the change"
        )
