"""The `ff-fleet-apply` worker: write the change to a batch of panels.

Per panel: claim the row (`queued` → `applying` with a lease), read its Flux configuration, ask the
strategy for the patch, PATCH it, and record `verifying` with the time ARM accepted it (ARM's clock).
A worker that dies holding a panel leaves a lease that expires; the next worker takes the panel over and
— because the write may have landed — tracks it rather than calling it unchanged.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.errors import FluxfleetError, NotFound, TransientError
from shared.models import FluxState, Panel, PanelState, Params
from shared.ports import Clock, FleetReader, FluxWriter, OperationRecord, OperationStore, PanelRecord
from shared.queues import FLEET_APPLY_QUEUE, FLEET_VERIFY_QUEUE
from shared.services.fleet.messages import parse_message
from shared.services.fleet.rows import Next, PanelRows, panel_of
from shared.services.fleet.strategy import ChangeStrategy, SelfWritingStrategy

if TYPE_CHECKING:
    from shared.services.fleet.engine import EngineSettings

log = logging.getLogger("fluxfleet.fleet")

# provisioningState values of an ARM update that did not take: the change must be sent again.
FAILED_PROVISIONING = ("Failed", "Canceled")


class ApplyWorker:
    def __init__(
        self,
        *,
        reader: FleetReader,
        writer: FluxWriter,
        store: OperationStore,
        clock: Clock,
        rows: PanelRows,
        settings: EngineSettings,
        strategy_of: Callable[[str], ChangeStrategy],
        advance: Callable[[str], None],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._store = store
        self._clock = clock
        self._rows = rows
        self._settings = settings
        self._strategy_of = strategy_of
        self._advance = advance

    def process(self, message: Mapping[str, Any]) -> None:
        parsed = parse_message(message, with_stage=True)
        if parsed is None:
            return
        operation_id, keys = parsed
        record = self._store.get_operation(operation_id)
        if record is None:
            log.error("apply message for unknown operation %s dropped", operation_id)
            return
        strategy = self._strategy_of(record.kind)
        rows = {row.key: row for row in self._store.get_panels(record.id, keys=keys)}
        later: dict[tuple[str, float], list[str]] = defaultdict(list)
        for key in keys:
            row = rows.get(key)
            if row is None:
                continue
            step = self._apply_one(record, strategy, row)
            if step is not None:
                later[(step.queue, step.delay_s)].append(row.key)
        self._rows.send_later(record.id, later)
        self._advance(record.id)

    def _apply_one(self, record: OperationRecord, strategy: ChangeStrategy, row: PanelRecord) -> Next | None:
        claim = self._claim(record, row)
        if not isinstance(claim, tuple):
            return claim
        claimed, recovering = claim
        if claimed.reapply and (owner := self._newer_owner(record, strategy, claimed)) is not None:
            # A delayed re-apply of an old change must not undo a newer one (an old suspend after a
            # later resume): the panel belongs to the newer operation now.
            self._rows.settle(
                claimed,
                PanelState.SKIPPED,
                f"superseded by operation {owner}; the old change was not re-applied",
            )
            return None
        panel = panel_of(claimed)
        if isinstance(strategy, SelfWritingStrategy):
            return self._write_step(record, strategy, claimed, panel, recovering=recovering)
        try:
            current = self._reader.get_flux_state(panel=panel, configuration=record.configuration)
            if current is None:
                self._rows.settle(
                    claimed, PanelState.SKIPPED, f"no Flux configuration named {record.configuration}"
                )
                return None
            patch = _patch_for(strategy, claimed, panel, current, record.params)
            if patch is None:
                # Written before (a crash, a lost answer, or a failed LRO that left ARM's desired state
                # behind): track it rather than call it unchanged.
                written = recovering or claimed.write_attempted or claimed.accepted_at is not None
                return self._nothing_to_write(claimed, current, written=written)
            if not claimed.write_attempted:
                # Durable before the PATCH leaves: if its answer is lost, the retry must verify.
                marked = self._rows.cas(claimed, write_attempted=True, detail="writing")
                if marked is None:
                    return None  # another worker took the panel over; its message carries it on
                claimed = marked
            accepted = self._writer.begin_patch(panel=panel, configuration=record.configuration, patch=patch)
        except NotFound as exc:
            self._rows.settle(claimed, PanelState.SKIPPED, f"not found in ARM: {exc.message}")
            return None
        except TransientError as exc:
            # Throttling (429) and "another operation is in progress" (409) say nothing about this
            # change: back off as ARM asks, without spending one of the panel's attempts.
            return self._rows.retry_or_fail(
                claimed, exc.message, exc.retry_after, counts_as_attempt=exc.counts_as_attempt
            )
        except FluxfleetError as exc:
            log.warning(
                "panel %s failed: %s",
                panel.name,
                exc.message,
                extra={"operation_id": record.id, "cluster": panel.name},
            )
            self._rows.settle(claimed, PanelState.FAILED, exc.message)
            return None
        applied = self._rows.cas(
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
        return None if applied is None else Next(FLEET_VERIFY_QUEUE, self._settings.verify_delay_s)

    def _write_step(
        self,
        record: OperationRecord,
        strategy: SelfWritingStrategy,
        claimed: PanelRecord,
        panel: Panel,
        *,
        recovering: bool,
    ) -> Next | None:
        """A `SelfWritingStrategy`'s step: it reads and writes; the row moves exactly as for a PATCH."""
        # Whether an earlier try of this panel may have written (its answer lost): then "nothing to write"
        # is that write having landed, verified like any other — never `unchanged` (issue 12, finding 7).
        written_before = (
            recovering or claimed.write_attempted or claimed.reapply or claimed.accepted_at is not None
        )
        try:
            if not claimed.write_attempted:
                marked = self._rows.cas(claimed, write_attempted=True, detail="writing")
                if marked is None:
                    return None
                claimed = marked
            accepted = strategy.write_step(
                panel, record.params, configuration=record.configuration, reapply=claimed.reapply
            )
        except NotFound as exc:
            self._rows.settle(claimed, PanelState.SKIPPED, f"not found in ARM: {exc.message}")
            return None
        except TransientError as exc:
            return self._rows.retry_or_fail(
                claimed, exc.message, exc.retry_after, counts_as_attempt=exc.counts_as_attempt
            )
        except FluxfleetError as exc:
            self._rows.settle(claimed, PanelState.FAILED, exc.message)
            return None
        if accepted is None:
            if not written_before:
                self._rows.settle(claimed, PanelState.UNCHANGED, "already as declared; nothing written")
                return None
            accepted_at = claimed.accepted_at or self._clock.now()
            detail = "nothing left to write; waiting for the panel's agent"
        else:
            accepted_at = accepted.accepted_at
            detail = "ARM accepted the change; waiting for it to complete and the panel's agent to report it"
        applied = self._rows.cas(
            claimed,
            state=PanelState.VERIFYING,
            lease_until=None,
            accepted_at=accepted_at,
            accepted_local=self._clock.now(),
            checks=0,
            reapply=False,
            detail=detail,
        )
        return None if applied is None else Next(FLEET_VERIFY_QUEUE, self._settings.verify_delay_s)

    def _newer_owner(self, record: OperationRecord, strategy: ChangeStrategy, row: PanelRecord) -> str | None:
        """The operation that holds this panel's lock now, when it is not `record`."""
        owner = self._store.lock_owner(group=strategy.lock_group, key=row.key)
        return owner if owner is not None and owner != record.id else None

    def _claim(self, record: OperationRecord, row: PanelRecord) -> tuple[PanelRecord, bool] | Next | None:
        """Take a panel for this worker: (the claimed row, whether an earlier worker died holding it)."""
        now = self._clock.now()
        if row.state in (PanelState.VERIFYING, PanelState.PENDING_OFFLINE):
            # Applied by an earlier run of this message that died before its verify message was sent.
            return Next(FLEET_VERIFY_QUEUE, self._settings.verify_delay_s)
        if row.state == PanelState.APPLYING and row.lease_until and row.lease_until > now:
            return Next(FLEET_APPLY_QUEUE, (row.lease_until - now).total_seconds() + 1)
        if row.state not in (PanelState.QUEUED, PanelState.APPLYING):
            return None
        if row.state == PanelState.APPLYING and row.attempts >= self._settings.max_attempts:
            # Its lease expired again: every worker that took this panel died on it (a poisoned
            # message). Bounded like any fault, or the panel would be retried every lease for ever.
            self._rows.settle(
                row,
                PanelState.FAILED,
                f"gave up after {row.attempts} attempts: the worker handling it never finished "
                f"(last: {row.detail or 'applying'})",
            )
            return None
        if record.halted_reason:
            self._rows.settle(
                row, PanelState.SKIPPED, f"not applied: operation halted ({record.halted_reason})"
            )
            return None
        claimed = self._rows.cas(
            row,
            state=PanelState.APPLYING,
            lease_until=now + timedelta(seconds=self._settings.lease_s),
            attempts=row.attempts + 1,
            detail="applying",
        )
        if claimed is None:
            return None  # another worker claimed it; its message carries it on
        return claimed, row.state == PanelState.APPLYING

    def _nothing_to_write(self, claimed: PanelRecord, current: FluxState, *, written: bool) -> Next | None:
        if not written:
            self._rows.settle(claimed, PanelState.UNCHANGED, "already as requested; nothing written")
            return None
        # Our write may have landed just before a crash: track it rather than call it unchanged. The
        # resource's last modification (ARM's clock) is the latest moment that write can have been accepted.
        verifying = self._rows.cas(
            claimed,
            state=PanelState.VERIFYING,
            lease_until=None,
            accepted_at=current.modified_at or current.observed_at or self._clock.now(),
            accepted_local=self._clock.now(),
            checks=0,
            detail="recovered after an interrupted write; waiting for the panel's agent",
        )
        return Next(FLEET_VERIFY_QUEUE, self._settings.verify_delay_s) if verifying else None


def _patch_for(
    strategy: ChangeStrategy, row: PanelRecord, panel: Panel, current: FluxState, params: Params
) -> dict[str, Any] | None:
    # Re-send when Arc dropped the change (48 h) or ARM's last update of it failed.
    if row.reapply or current.provisioning_state in FAILED_PROVISIONING:
        return strategy.reapply_patch(panel, current, params)
    return strategy.desired_patch(panel, current, params)
