"""Fleet health snapshots (every 15 minutes): when each panel's cause began, and notifications once.

Why: Flux's `lastTransitionTime` moves only when a condition's status flips, and offline, expired or
unconfigured panels have no condition at all, so "since when" needs fluxfleet's own memory. The timer
stores each panel's cause and since when it holds (Table `ffhealth`, docs/storage.md); a panel whose
cause is new starts from the condition's transition time when Flux gives one, else the snapshot's time.

Notifications fire when a condition *appears*, not on every snapshot: a cause other than `ready`,
`reconciling` or `suspended` present on at least one panel (`cause:<cause>`), or a ring with more than
`RING_THRESHOLD` of its panels failing (`ring:<ring>`; suspended and reconciling panels do not count: a
freeze is deliberate and a roll-out passes). The set of active conditions is stored; a condition that
clears re-arms, so the next time it appears it is notified again.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from shared.models.health import Cause, SnapshotRow
from shared.ports import Clock, Notifier
from shared.services.fleet.health import classify
from shared.services.fleet.health_report import FleetHealth

# More than this share of a ring failing is worth waking someone for (issue 13: "> 10 % of a ring").
RING_THRESHOLD = 0.10
# Causes that are not failures: never notified, never counted against a ring.
QUIET = frozenset({Cause.READY, Cause.RECONCILING, Cause.SUSPENDED})
# Panels named in one notification's facts (the API has the full list).
NAMED_PANELS = 5


class HealthSnapshotStore(Protocol):
    def rows(self) -> dict[str, SnapshotRow]: ...

    def save(self, *, changed: Sequence[SnapshotRow], removed: Sequence[str]) -> None: ...

    def alerts(self) -> frozenset[str]: ...

    def save_alerts(self, alerts: frozenset[str]) -> None: ...


class HealthSnapshots:
    def __init__(
        self, *, health: FleetHealth, store: HealthSnapshotStore, notifier: Notifier, clock: Clock
    ) -> None:
        self._health = health
        self._store = store
        self._notifier = notifier
        self._clock = clock

    def take(self) -> dict[str, Any]:
        """One snapshot: store what changed, notify what appeared. Returns a summary for the log."""
        now = self._clock.now()
        previous = self._store.rows()
        current: dict[str, SnapshotRow] = {}
        messages: dict[str, str] = {}
        for view in self._health.views():
            diagnosis = classify(view)
            key, cause = view.panel.key, diagnosis.cause.value
            before = previous.get(key)
            since = before.since if before is not None and before.cause == cause else (diagnosis.since or now)
            current[key] = SnapshotRow(key, view.panel.name, view.panel.tag("ring") or "", cause, since)
            messages.setdefault(cause, diagnosis.message)
        changed = [row for key, row in current.items() if previous.get(key) != row]
        removed = sorted(set(previous) - set(current))
        self._store.save(changed=changed, removed=removed)
        active = conditions(current.values())
        appeared = sorted(active - self._store.alerts())
        if appeared:
            self._notify(appeared, current, messages)
        self._store.save_alerts(frozenset(active))
        return {
            "panels": len(current),
            "changed": len(changed),
            "removed": len(removed),
            "notified": appeared,
        }

    def _notify(
        self, appeared: list[str], rows: Mapping[str, SnapshotRow], messages: Mapping[str, str]
    ) -> None:
        facts: dict[str, str] = {}
        for condition in appeared:
            kind, _, value = condition.partition(":")
            if kind == "cause":
                names = sorted(r.name for r in rows.values() if r.cause == value)
                facts[value] = f"{len(names)} panels ({', '.join(names[:NAMED_PANELS])}): {messages[value]}"
            else:
                ring = [r for r in rows.values() if r.ring == value]
                failing = [r for r in ring if Cause(r.cause) not in QUIET]
                facts[f"ring {value}"] = f"{len(failing)} of {len(ring)} panels failing"
        self._notifier.notify(
            title="fluxfleet: panels not converged",
            text="New since the last health snapshot; details: GET /api/fleet/health",
            level="warning",
            facts=facts,
        )


def conditions(rows: Any) -> set[str]:
    """The notifiable conditions of a snapshot (see the module docstring)."""
    listed = list(rows)
    active = {f"cause:{r.cause}" for r in listed if Cause(r.cause) not in QUIET}
    per_ring: dict[str, Counter[bool]] = defaultdict(Counter)
    for row in listed:
        if row.ring:
            per_ring[row.ring][Cause(row.cause) not in QUIET] += 1
    for ring, counts in per_ring.items():
        total = counts[True] + counts[False]
        if total and counts[True] / total > RING_THRESHOLD:
            active.add(f"ring:{ring}")
    return active
