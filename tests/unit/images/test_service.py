"""The image checks service over in-memory ports: pushes, duplicates, preflights and follow-ups."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from shared.errors import NotFound, TransientError
from shared.models.images import CheckId, CheckRecord, CommitId, ImageRef, PanelReport, PushedImage
from shared.services.images.ports import StoredCheck
from shared.services.images.service import ImageCheckConfig, ImageChecks
from tests.unit.images.fakes import (
    AUTOMATION,
    GATEWAY_DEPLOYMENT,
    GATEWAY_IMAGE,
    LOGIN_SERVER,
    T0,
    FakePanels,
    FakeQueue,
    FakeRegistry,
    FakeRepo,
    FakeStore,
    RecordingNotifier,
    seed_files,
)

REPOSITORY = "ipc/opcua-gateway"
CONFIG = ImageCheckConfig(
    branch="main",
    login_server=LOGIN_SERVER,
    sync_interval_s=300.0,
    follow_up_margin_s=120.0,
    follow_up_max_checks=3,
    follow_up_recheck_s=300.0,
)


@dataclass
class World:
    repo: FakeRepo
    registry: FakeRegistry
    store: FakeStore
    queue: FakeQueue
    panels: FakePanels
    notifier: RecordingNotifier
    service: ImageChecks
    now: list[datetime]

    def push(self, tag: str, event_id: str = "evt-1") -> CheckRecord:
        self.registry.tags.setdefault(REPOSITORY, []).append(tag)
        outcome = self.service.handle_push(
            PushedImage(event_id, ImageRef(GATEWAY_IMAGE, tag), T0, "EventGridSchema")
        )
        return outcome.record

    def automation_commits(self, old: str, new: str) -> CommitId:
        text = self.repo.tree(self.repo.head)[GATEWAY_DEPLOYMENT]
        assert f"{GATEWAY_IMAGE}:{old}" in text
        return self.repo.commit(
            {GATEWAY_DEPLOYMENT: text.replace(f"{GATEWAY_IMAGE}:{old}", f"{GATEWAY_IMAGE}:{new}")}
        )

    def panels_report(self, commit: str, *names: str, **overrides: object) -> None:
        for name in names:
            self.panels.reports = [report for report in self.panels.reports if report.name != name]
            fields = {"connectivity": "Connected", "configured": True, "synced_commit": commit, **overrides}
            self.panels.reports.append(PanelReport(name=name, id=f"/x/{name}", **fields))  # type: ignore[arg-type]

    def follow_up(self, record: CheckRecord, attempt: int) -> CheckRecord | None:
        return self.service.follow_up(check_id=record.id, attempt=attempt)


@pytest.fixture
def world() -> Iterator[World]:
    repo = FakeRepo()
    repo.commit(dict(seed_files()))
    registry = FakeRegistry({REPOSITORY: ["v1.0.0", "v1.2.0", "v1.4.0", "v1.4.2", "latest"]})
    now = [T0]
    with ThreadPoolExecutor(max_workers=4) as executor:
        store, queue, panels, notifier = FakeStore(), FakeQueue(), FakePanels(), RecordingNotifier()
        service = ImageChecks(
            reader=repo,
            registry=registry,
            store=store,
            follow_ups=queue,
            panels=panels,
            notifier=notifier,
            config=CONFIG,
            executor=executor,
            clock=lambda: now[0],
        )
        yield World(repo, registry, store, queue, panels, notifier, service, now)


def test_a_winning_push_is_stored_and_followed_up_after_the_eta_plus_margin(world: World) -> None:
    record = world.push("v1.5.0")
    assert record.verdict.verdict == "will-roll-out"
    assert world.store.get_check(check_id=record.id) is not None
    # ETA: 5m scan + 5m automation + 300 s sync = 900 s after the push, plus the 120 s margin.
    assert world.queue.messages == [(record.id, 1, 1020.0)]
    assert record.follow_up is not None
    assert record.follow_up.status == "scheduled"
    assert world.notifier.messages == []


def test_a_duplicate_delivery_gives_the_same_record_and_does_no_work_twice(world: World) -> None:
    first = world.push("v1.5.0")
    again = world.service.handle_push(
        PushedImage("evt-1", ImageRef(GATEWAY_IMAGE, "v1.5.0"), T0, "CloudEventSchemaV1_0")
    )
    assert again.duplicate
    assert again.record.id == first.id
    assert len(world.store.checks) == 1
    assert len(world.queue.messages) == 1


def test_a_delivery_losing_the_race_to_store_returns_the_winners_check(world: World) -> None:
    winner = world.push("v1.5.0")
    original_get = world.store.get_check
    calls = []

    def unseen_at_first(*, check_id: CheckId) -> StoredCheck | None:
        calls.append(check_id)
        return None if len(calls) == 1 else original_get(check_id=check_id)

    world.store.get_check = unseen_at_first  # type: ignore[method-assign]
    again = world.service.handle_push(
        PushedImage("evt-1", ImageRef(GATEWAY_IMAGE, "v1.5.0"), T0, "EventGridSchema")
    )
    assert again.duplicate
    assert again.record == winner
    assert len(world.store.checks) == 1


def test_a_failed_judgement_stores_nothing_so_the_redelivery_is_processed(world: World) -> None:
    def down(*, repository: str) -> list[str]:
        raise TransientError("registry unavailable")

    world.registry.list_tags = down  # type: ignore[method-assign]
    with pytest.raises(TransientError):
        world.push("v1.5.0")
    assert world.store.checks == {}
    del world.registry.list_tags
    assert world.push("v1.5.0").verdict.verdict == "will-roll-out"


def test_a_check_whose_follow_up_cannot_be_queued_is_withdrawn(world: World) -> None:
    def refused(*, check_id: CheckId, attempt: int, delay_s: float) -> None:
        raise TransientError("queue unavailable")

    world.queue.schedule = refused  # type: ignore[method-assign]
    with pytest.raises(TransientError):
        world.push("v1.5.0")
    assert world.store.checks == {}


def test_a_push_verdict_reuses_a_branch_head_read_within_the_second(world: World) -> None:
    calls = []
    original = world.repo.head_commit

    def counted(*, branch: str) -> CommitId:
        calls.append(branch)
        return original(branch=branch)

    world.repo.head_commit = counted  # type: ignore[method-assign]
    world.push("v1.5.0", "evt-1")
    world.push("v1.5.1", "evt-2")
    assert len(calls) == 1
    world.service.preflight(ref=ImageRef(GATEWAY_IMAGE, "v1.6.0"), requested_by="p")
    assert len(calls) == 2  # preflights and follow-ups always read the branch afresh


def test_a_push_that_will_not_roll_out_is_announced_once(world: World) -> None:
    record = world.push("v1.3.0")
    world.push("v1.3.0")  # the same event again
    assert record.verdict.verdict == "not-latest"
    [message] = world.notifier.messages
    title, text, facts = message["title"], message["text"], message["facts"]
    assert "not-latest" in title
    assert "v1.4.2" in text
    assert facts["check"] == record.id
    assert world.queue.messages == []


def test_preflight_judges_an_unpushed_tag_and_records_it_without_follow_up(world: World) -> None:
    record = world.service.preflight(ref=ImageRef(GATEWAY_IMAGE, "v2.0.0"), requested_by="pipeline")
    assert record.verdict.verdict == "will-roll-out"
    assert record.trigger == "preflight"
    assert record.requested_by == "pipeline"
    assert world.store.get_check(check_id=record.id) is not None
    assert world.queue.messages == []
    assert world.notifier.messages == []


def test_preflight_for_a_repository_the_registry_does_not_have_yet_still_judges(world: World) -> None:
    record = world.service.preflight(
        ref=ImageRef(f"{LOGIN_SERVER}/ipc/brand-new", "v1.0.0"), requested_by="p"
    )
    assert record.verdict.verdict == "no-image-repository"


def test_follow_up_before_the_commit_checks_again_later(world: World) -> None:
    record = world.push("v1.5.0")
    world.now[0] = T0 + timedelta(minutes=17)
    updated = world.follow_up(record, 1)
    assert updated is not None
    assert updated.follow_up is not None
    assert (updated.follow_up.status, updated.follow_up.attempts) == ("scheduled", 1)
    assert world.queue.messages[-1] == (record.id, 2, 300.0)


def test_follow_up_reports_rolled_out_when_every_panel_has_the_commit_or_later(world: World) -> None:
    record = world.push("v1.5.0")
    landing = world.automation_commits("v1.4.2", "v1.5.0")
    later = world.repo.commit({"README.md": "later change\n"})
    world.panels_report(landing, "ipc-panel-0001")
    world.panels_report(later, "ipc-panel-0002")
    updated = world.follow_up(record, 1)
    assert updated is not None
    assert updated.follow_up is not None
    follow_up = updated.follow_up
    assert (follow_up.status, follow_up.outcome) == ("done", "rolled-out")
    assert follow_up.commit == landing
    assert (follow_up.panels_applied, follow_up.panels_total) == (2, 2)


def test_follow_up_names_the_suspended_and_offline_panels_that_did_not_apply_it(world: World) -> None:
    record = world.push("v1.5.0")
    before = world.repo.head
    landing = world.automation_commits("v1.4.2", "v1.5.0")
    world.panels_report(landing, "ipc-panel-0001")
    world.panels_report(before, "ipc-panel-0002", suspended=True)
    world.panels_report(before, "ipc-panel-0003", connectivity="Offline")
    world.panels_report(
        before, "ipc-panel-0004", compliance_state="Non-Compliant", error="authentication required"
    )
    updated = world.follow_up(record, 1)
    assert updated is not None
    assert updated.follow_up is not None
    follow_up = updated.follow_up
    assert follow_up.outcome == "committed-not-applied"
    assert {(panel.name, panel.state) for panel in follow_up.not_applied} == {
        ("ipc-panel-0002", "suspended"),
        ("ipc-panel-0003", "offline"),
        ("ipc-panel-0004", "failing"),
    }
    assert "1 suspended (ipc-panel-0002)" in follow_up.reason
    assert follow_up.panel_states == {"applied": 1, "suspended": 1, "offline": 1, "failing": 1}


def test_healthy_panels_that_are_behind_are_waited_for_a_bounded_number_of_times(world: World) -> None:
    record = world.push("v1.5.0")
    before = world.repo.head
    landing = world.automation_commits("v1.4.2", "v1.5.0")
    world.panels_report(landing, "ipc-panel-0001")
    world.panels_report(before, "ipc-panel-0002")
    first = world.follow_up(record, 1)
    assert first is not None
    assert first.follow_up is not None
    assert not first.follow_up.done
    assert world.follow_up(record, 2) is not None
    last = world.follow_up(record, 3)
    assert last is not None
    assert last.follow_up is not None
    assert (last.follow_up.outcome, last.follow_up.attempts) == ("committed-not-applied", 3)
    assert [message[1] for message in world.queue.messages] == [1, 2, 3]


def test_no_commit_after_the_last_check_is_stuck_and_announced(world: World) -> None:
    record = world.push("v1.5.0")
    for attempt in (1, 2):
        world.follow_up(record, attempt)
    last = world.follow_up(record, 3)
    assert last is not None
    assert last.follow_up is not None
    assert last.follow_up.outcome == "stuck"
    assert "image-automation-controller" in last.follow_up.reason
    [message] = world.notifier.messages
    title, level = message["title"], message["level"]
    assert "stuck" in title
    assert level == "error"


def test_an_automation_suspended_after_the_verdict_is_stuck_at_once_with_that_cause(world: World) -> None:
    record = world.push("v1.5.0")
    text = world.repo.tree(world.repo.head)[AUTOMATION]
    world.repo.commit({AUTOMATION: text.replace("  interval: 5m\n", "  interval: 5m\n  suspend: true\n", 1)})
    updated = world.follow_up(record, 1)
    assert updated is not None
    assert updated.follow_up is not None
    assert updated.follow_up.outcome == "stuck"
    assert "suspended" in updated.follow_up.reason


def test_a_higher_tag_committed_instead_is_superseded(world: World) -> None:
    record = world.push("v1.5.0")
    world.push("v1.6.0", "evt-2")
    world.automation_commits("v1.4.2", "v1.6.0")
    updated = world.follow_up(record, 1)
    assert updated is not None
    assert updated.follow_up is not None
    assert updated.follow_up.outcome == "superseded"
    assert "v1.6.0" in updated.follow_up.reason


def test_a_stale_or_repeated_follow_up_message_changes_nothing(world: World) -> None:
    record = world.push("v1.5.0")
    world.follow_up(record, 1)
    stored = world.store.get_check(check_id=record.id)
    assert stored is not None
    world.follow_up(record, 1)
    again = world.store.get_check(check_id=record.id)
    assert again is not None
    assert again.etag == stored.etag
    assert len(world.queue.messages) == 2


def test_reading_an_unknown_check_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        world.service.get_check(check_id=CheckId("nope"))


def test_current_latest_shows_each_policys_selection_and_what_git_holds(world: World) -> None:
    world.registry.tags[REPOSITORY].append("v1.5.0")
    statuses = {status.policy: status for status in world.service.current_latest()}
    gateway = statuses["flux-system/opcua-gateway"]
    assert gateway.selected == "v1.5.0"
    assert gateway.in_git == (f"{GATEWAY_IMAGE}:v1.4.2",)
    assert gateway.up_to_date is False
    assert statuses["flux-system/health-monitor"].failure is not None  # the fake registry has no such repo


def test_a_warm_snapshot_is_not_read_again(world: World) -> None:
    world.push("v1.5.0")
    reads = world.repo.reads
    world.push("v1.5.1", "evt-2")
    assert world.repo.reads == reads
