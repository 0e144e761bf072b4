"""The 15-minute health snapshot: `since` survives snapshots, and a condition is notified once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.models.health import PanelView, SnapshotRow
from shared.services.fleet.health_report import FleetHealth, parse_health_query
from shared.services.fleet.health_snapshot import HealthSnapshots
from tests.unit.fleet.test_health import SHA, SUB, URL, FakeGraph, NoArm, source, view


class MemorySnapshots:
    def __init__(self) -> None:
        self.stored: dict[str, SnapshotRow] = {}
        self.active: frozenset[str] = frozenset()
        self.writes = 0

    def rows(self) -> dict[str, SnapshotRow]:
        return dict(self.stored)

    def save(self, *, changed: Sequence[SnapshotRow], removed: Sequence[str]) -> None:
        self.writes += len(changed) + len(removed)
        self.stored.update({row.key: row for row in changed})
        for key in removed:
            self.stored.pop(key, None)

    def alerts(self) -> frozenset[str]:
        return self.active

    def save_alerts(self, alerts: frozenset[str]) -> None:
        self.active = alerts


class Notes:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def notify(self, *, title: str, text: str, level: str, facts: dict[str, str]) -> None:
        self.sent.append({"title": title, "facts": facts})


class Clock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 8, 21, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return self.moment.timestamp()


def world(
    views: list[PanelView],
) -> tuple[HealthSnapshots, FleetHealth, FakeGraph, MemorySnapshots, Notes, Clock]:
    graph, store, notes, clock = FakeGraph(views), MemorySnapshots(), Notes(), Clock()
    health = FleetHealth(
        graph=graph, arm=NoArm(), subscriptions=[SUB], configuration="ipc-platform-config", head=lambda: SHA,
        ledger=NoArm, secret_name="flux-gitops-pat", operations=NoArm,  # type: ignore[arg-type]
        snapshots=lambda: store,
    )  # fmt: skip
    return (
        HealthSnapshots(health=health, store=store, notifier=notes, clock=clock),
        health,
        graph,
        store,
        notes,
        clock,
    )


def healthy(count: int, ring: str) -> list[PanelView]:
    return [view(name=f"{ring}-{i:02d}", ring=ring) for i in range(count)]


AUTH = source(False, "GitOperationFailed", f"unable to clone '{URL}': authentication required")


def test_a_new_cause_is_notified_once_and_again_only_after_it_cleared() -> None:
    fleet = healthy(20, "broad")
    snapshots, _, graph, _, notes, clock = world(fleet)
    snapshots.take()
    assert notes.sent == [], "a healthy fleet says nothing"

    graph.views = [*fleet[1:], view(AUTH, name="broad-00", ring="broad", compliance="Non-Compliant")]
    snapshots.take()
    clock.sleep(900)
    snapshots.take()
    assert len(notes.sent) == 1, "once, not on every snapshot"
    assert notes.sent[0]["facts"]["git-auth-failed"].startswith("1 panels (broad-00): ")
    assert "ring broad" not in notes.sent[0]["facts"], "1 of 20 is not more than 10 %"

    graph.views = fleet
    snapshots.take()
    graph.views = [*fleet[1:], view(AUTH, name="broad-00", ring="broad", compliance="Non-Compliant")]
    snapshots.take()
    assert len(notes.sent) == 2, "cleared, then back: notified again"


def test_a_ring_over_ten_percent_failing_is_notified() -> None:
    canary = healthy(8, "canary")
    snapshots, _, graph, _, notes, _ = world(canary)
    graph.views = [*canary[1:], view(name="canary-00", ring="canary", connectivity="Offline")]

    snapshots.take()

    assert notes.sent[0]["facts"]["ring canary"] == "1 of 8 panels failing"


def test_since_is_when_the_cause_was_first_seen_and_survives_later_snapshots() -> None:
    fleet = healthy(3, "early")
    snapshots, health, graph, store, _, clock = world(fleet)
    offline = view(name="early-00", ring="early", connectivity="Offline")
    graph.views = [offline, *fleet[1:]]
    snapshots.take()
    first_seen = store.stored[offline.panel.key].since
    clock.sleep(3600)
    writes = store.writes

    snapshots.take()
    row = next(r for r in health.report(parse_health_query({}))["panels"] if r["name"] == "early-00")

    assert store.writes == writes, "nothing changed: nothing written"
    assert store.stored[offline.panel.key].since == first_seen
    assert row["cause"] == "offline"
    assert row["since"] == first_seen.isoformat(timespec="milliseconds").replace("+00:00", "Z")
