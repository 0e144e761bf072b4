"""The per-panel state machine's moves, and the fan-out of work as queue messages.

Every move of a panel row is an ETag compare-and-swap (`cas`): of two workers holding the same row, one
wins and the other sees `None` and lets go, so a duplicate message never does a panel's work twice. The
workers and the stage logic share these moves, so "settle", "retry" and "look again" mean one thing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from shared.errors import safe_text
from shared.models import Panel, PanelState, SubscriptionId
from shared.ports import Clock, ConcurrentUpdate, OperationStore, PanelRecord, WorkQueue
from shared.queues import FLEET_APPLY_QUEUE, FLEET_VERIFY_QUEUE
from shared.services.fleet.messages import batch_messages

if TYPE_CHECKING:
    from shared.services.fleet.engine import EngineSettings

log = logging.getLogger("fluxfleet.fleet")

# Bound on a panel's `detail` text: a line, not a log.
DETAIL_LIMIT = 500
# Queue messages sent at once when a stage starts (400 for a 10,000-panel stage).
SEND_CONCURRENCY = 8

# (queue, delay in seconds) → panel keys to send there.
Later = Mapping[tuple[str, float], list[str]]


@dataclass(frozen=True)
class Next:
    """What one panel needs after a worker step: another look by a worker of `queue` after `delay_s`."""

    queue: str  # FLEET_APPLY_QUEUE or FLEET_VERIFY_QUEUE
    delay_s: float


def panel_of(row: PanelRecord) -> Panel:
    """The panel a row stands for, as the row recorded it when the operation started."""
    return Panel(
        id=row.panel_id,
        name=row.name,
        subscription=SubscriptionId(row.subscription),
        resource_group=row.resource_group,
        tags=dict(row.tags),
    )


class PanelRows:
    """Moves of panel rows in the store, and the messages that carry panels to the next worker."""

    def __init__(
        self, *, store: OperationStore, queue: WorkQueue, clock: Clock, settings: EngineSettings
    ) -> None:
        self._store = store
        self._queue = queue
        self._clock = clock
        self._settings = settings

    # --- moves ----------------------------------------------------------------------------------------
    def cas(self, row: PanelRecord, **changes: Any) -> PanelRecord | None:
        """Move a panel row on (ETag-guarded); None when another worker changed it first."""
        try:
            return self._store.replace_panel(replace(row, updated_at=self._clock.now(), **changes))
        except ConcurrentUpdate:
            return None

    def settle(self, row: PanelRecord, state: PanelState, detail: str) -> PanelRecord | None:
        """End a panel's part in the operation (or park it `pending-offline`) with a scrubbed detail."""
        return self.cas(row, state=state, detail=safe_text(detail, limit=DETAIL_LIMIT), lease_until=None)

    def reload(self, row: PanelRecord) -> PanelRecord | None:
        rows = self._store.get_panels(row.operation_id, keys=[row.key])
        return rows[0] if rows else None

    def retry_or_fail(
        self, row: PanelRecord, cause: str, retry_after: float | None, *, counts_as_attempt: bool = True
    ) -> Next | None:
        """Queue the panel for another write after a transient fault, or fail it after `max_attempts`.

        A fault that says nothing about the change (ARM throttling, or the resource busy with another
        operation) gives the attempt back; the sweeper's delivery bound still ends a panel that never
        gets through."""
        attempts = row.attempts if counts_as_attempt else max(0, row.attempts - 1)
        if counts_as_attempt and attempts >= self._settings.max_attempts:
            self.settle(row, PanelState.FAILED, f"gave up after {attempts} attempts: {cause}")
            return None
        queued = self.cas(
            row, state=PanelState.QUEUED, lease_until=None, attempts=attempts, detail=f"will retry: {cause}"
        )
        if queued is None:
            return None
        delay = retry_after if retry_after is not None else self._settings.retry_delay_s * max(1, attempts)
        return Next(FLEET_APPLY_QUEUE, delay)

    def check_again(self, row: PanelRecord, detail: str) -> Next | None:
        """Look again after `verify_delay_s`, or give the panel up as `failed` after enough looks."""
        settings = self._settings
        checks = 1 if row.state == PanelState.PENDING_OFFLINE else row.checks + 1
        if checks >= settings.verify_max_checks:
            self.settle(
                row,
                PanelState.FAILED,
                f"the panel's agent did not report the change after {checks} checks ({detail})",
            )
            return None
        updated = self.cas(row, state=PanelState.VERIFYING, checks=checks, detail=detail)
        return Next(FLEET_VERIFY_QUEUE, settings.verify_delay_s) if updated else None

    def reapply(self, row: PanelRecord, why: str) -> Next | None:
        """Send the change again (Arc dropped it, or ARM's update of it failed)."""
        log.info("%s: %s", row.name, why, extra={"operation_id": row.operation_id, "cluster": row.name})
        queued = self.cas(row, state=PanelState.QUEUED, reapply=True, detail=why)
        return Next(FLEET_APPLY_QUEUE, 0.0) if queued else None

    # --- fan-out --------------------------------------------------------------------------------------
    def enqueue(
        self, queue: str, operation_id: str, keys: Sequence[str], *, stage: int = 0, delay_s: float = 0.0
    ) -> None:
        messages = batch_messages(
            queue, operation_id, keys, stage=stage, batch_size=self._settings.batch_size
        )
        if len(messages) <= 1:
            for message in messages:
                self._queue.send(queue=queue, message=message, delay_s=delay_s)
            return
        # Concurrently: the first messages should reach the workers while the rest are still being sent.
        with ThreadPoolExecutor(max_workers=SEND_CONCURRENCY, thread_name_prefix="enqueue") as pool:
            list(pool.map(lambda m: self._queue.send(queue=queue, message=m, delay_s=delay_s), messages))

    def send_later(self, operation_id: str, later: Later, *, stage: int = 0) -> None:
        for (queue, delay), keys in later.items():
            self.enqueue(queue, operation_id, keys, stage=stage, delay_s=max(0.0, delay))
