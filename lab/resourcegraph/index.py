"""Resource Graph's copy of ARM, `lag` lab seconds behind it: a change log, cheap at 10,000 panels.

ARG is fed by ARM's change notifications and lags it (overview.md: changes reach ARG "within seconds";
how long exactly is not published). The lab models that as a change log:

- **observe**: a scan walks the fleet and compares each resource's *version* (`sources.observe`: a small
  tuple) with the one last seen. Only a resource whose version changed is rendered (with ARM's own wire
  renderers) and queued as a change, stamped with *when it happened*: the newest change time the model
  gives for it that falls after the previous scan (a PATCH's `lastModifiedAt`, an agent report's
  `statusUpdatedAt`, a connectivity change), else the scan's own time. A change is therefore never stamped
  earlier than it happened, and, with a model time, not later either. A resource that disappeared is queued
  as a deletion.
- **publish**: a queued change becomes visible once it is `lag` lab seconds old, in order; a query reads
  only visible rows. So a change accepted by ARM at *t* is visible from *t + lag* on and not before (changes
  without a model time: from their scan + `lag`).
- Scans run at every first-page query and, while ARG is in use, in the background (every few tenths of a
  second, backing off to keep each scan under a tenth of the time), so a change is seen soon after it
  happens even when nobody queries. A scan at 10,000 panels costs a few tens of milliseconds and renders
  only what changed (the agents' reports: ~33 a second at time-scale 1).
- Once a lab hour every row is re-rendered (`FULL_REFRESH_LAB_S`): fields that move without a change
  event (`lastConnectivityTime` of an online cluster) are ARG's as of its last refresh, as in Azure,
  where ARG shows what it was last notified of.

`catch_up()` (control API) publishes everything now; start and reset begin caught up (the seeded fleet has
existed for a month). Two changes of one resource within `lag` are both queued; the second replaces the
first when it is published.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lab.fleet.model import Panel
from lab.resourcegraph.engine import Row
from lab.resourcegraph.fragments import JsonFragments
from lab.resourcegraph.sources import TABLES, Observation, Observer, change_times, render

# Every row is re-rendered this often (lab seconds): fields without change events catch up hourly.
FULL_REFRESH_LAB_S = 3600.0


@dataclass(frozen=True, slots=True)
class Change:
    happened_at: datetime
    table: str
    key: str
    subscription: str
    row: Row | None  # None: the resource was deleted


@dataclass
class _Seen:
    version: tuple[Any, ...]
    table: str
    subscription: str


class GraphIndex:
    """The visible rows per table and subscription, and the queue of changes not yet visible."""

    def __init__(
        self,
        *,
        panels: Callable[[], list[Panel]],
        now: Callable[[], datetime],
        tenant_id: str,
        lag_s: float,
    ) -> None:
        self._panels = panels
        self._now = now
        self.tenant_id = tenant_id
        self.lag = timedelta(seconds=lag_s)
        self._visible: dict[str, dict[str, dict[str, Row]]] = {table: {} for table in TABLES}
        self._pending: deque[Change] = deque()
        self._seen: dict[str, _Seen] = {}
        self._observer = Observer()
        self.fragments = JsonFragments()  # the encoded `properties` of every queued or visible row
        self.last_scan_at: datetime | None = None
        self._last_full_refresh_at: datetime | None = None
        self.scans = 0
        self.rendered = 0

    # --- lifecycle ----------------------------------------------------------------------------------
    def rebuild(self) -> None:
        """Forget everything and index the fleet as it is, visible at once (start, reset)."""
        for table in TABLES:
            self._visible[table] = {}
        self._pending.clear()
        self._seen.clear()
        self._observer.forget()
        self.fragments.clear()
        self.last_scan_at = None
        self._last_full_refresh_at = None
        self.catch_up()

    def set_lag(self, seconds: float) -> None:
        """Queued changes keep when they happened; the new lag decides when they become visible."""
        self.lag = timedelta(seconds=seconds)

    # --- observe and publish ------------------------------------------------------------------------
    def scan(self) -> int:
        """Queue every change since the last scan; returns how many resources were rendered."""
        now = self._now()
        previous = self.last_scan_at
        full = self._last_full_refresh_at is None or (
            now - self._last_full_refresh_at >= timedelta(seconds=FULL_REFRESH_LAB_S)
        )
        batch: list[Change] = []
        known_count, observed, added = len(self._seen), 0, 0
        for observation in self._observer.observe(self._panels(), now):
            observed += 1
            known = self._seen.get(observation.key)
            if known is None:
                added += 1
            elif not full and known.version == observation.version:
                continue
            row = render(observation, now, self.tenant_id)
            self.fragments.add(row["properties"])
            batch.append(
                Change(
                    self._happened_at(observation, previous, now),
                    observation.table,
                    observation.key,
                    observation.subscription,
                    row,
                )
            )
            self._seen[observation.key] = _Seen(
                observation.version, observation.table, observation.subscription
            )
        if observed - added != known_count:
            # Something disappeared: find what (rare; every resource seen again needs no pass at all).
            present = {o.key for o in self._observer.observe(self._panels(), now)}
            for key in [key for key in self._seen if key not in present]:
                gone = self._seen.pop(key)
                batch.append(Change(now, gone.table, key, gone.subscription, None))
        batch.sort(key=lambda change: change.happened_at)
        self._pending.extend(batch)
        self.last_scan_at = now
        if full:
            self._last_full_refresh_at = now
        self.scans += 1
        self.rendered += len(batch)
        return len(batch)

    @staticmethod
    def _happened_at(observation: Observation, previous: datetime | None, now: datetime) -> datetime:
        """The newest model change time after the previous scan (that is the change seen now), else now."""
        candidates = [
            moment
            for moment in change_times(observation, now)
            if moment <= now and (previous is None or moment > previous)
        ]
        return max(candidates, default=now)

    def publish(self, *, everything: bool = False) -> int:
        """Make every change at least `lag` old visible (or every queued change); returns how many."""
        horizon = self._now() - self.lag
        published = 0
        while self._pending and (everything or self._pending[0].happened_at <= horizon):
            change = self._pending.popleft()
            rows = self._visible[change.table].setdefault(change.subscription, {})
            replaced = rows.get(change.key)
            if replaced is not None:
                self.fragments.discard(replaced["properties"])
            if change.row is None:
                rows.pop(change.key, None)
            else:
                rows[change.key] = change.row  # an update keeps the row's place
            published += 1
        return published

    def catch_up(self) -> int:
        """ARG catches up with ARM now: scan, then publish every queued change whatever its age."""
        self.scan()
        return self.publish(everything=True)

    # --- reading ------------------------------------------------------------------------------------
    def rows(self, table: str, subscriptions: Iterable[str]) -> list[Row]:
        """The visible rows of `table` in these (lower-case) subscriptions: a snapshot list."""
        by_subscription = self._visible[table]
        return list(
            itertools.chain.from_iterable(
                by_subscription[sub].values() for sub in subscriptions if sub in by_subscription
            )
        )

    def stats(self) -> dict[str, Any]:
        return {
            "lag_seconds": self.lag.total_seconds(),
            "rows": {table: sum(len(rows) for rows in self._visible[table].values()) for table in TABLES},
            "pending_changes": len(self._pending),
            "encoded_properties": len(self.fragments),
            "oldest_pending_at": self._pending[0].happened_at.isoformat() if self._pending else None,
            "last_scan_at": self.last_scan_at.isoformat() if self.last_scan_at else None,
            "scans": self.scans,
            "rendered": self.rendered,
        }
