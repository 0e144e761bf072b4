"""The fleet-change engine's state machine, driven end to end through in-memory fakes of its ports."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from shared.errors import Busy, Conflict, InvalidInput, Throttled, TransientError, Unprocessable
from shared.models import AppliedChange, Convergence, FluxState, Panel, PanelState, Params, Selector, Stage
from shared.ports import AcceptedWrite
from shared.queues import FLEET_APPLY_QUEUE as APPLY_QUEUE
from shared.services.fleet.intake import CREATION_GRACE_S, IDEMPOTENCY_SCOPE, new_operation_id
from shared.services.fleet.messages import batch_messages
from shared.services.fleet.strategy import BaseStrategy
from tests.unit.fleet.fakes import SUB_A, SUB_B, CrashError, FakeArm, World, make_panel, make_world


def fleet(count: int = 6, *, canary: int = 2) -> list[Panel]:
    return [
        make_panel(i, ring="canary" if i <= canary else "broad", subscription=SUB_A if i % 2 else SUB_B)
        for i in range(1, count + 1)
    ]


def start(world: World, kind: str = "suspend", **kwargs: Any) -> str:
    arguments: dict[str, Any] = {
        "kind": kind,
        "params": {},
        "reason": "release 2026.08 freeze",
        "requested_by": "pipeline@contoso.com",
        "selection": Selector(tags={"ring": "canary"}),
    }
    arguments.update(kwargs)
    result = world.engine.start(**arguments)
    assert result.operation_id is not None
    return result.operation_id


def run_to_end(world: World, *, ticks: bool = True) -> None:
    world.queue.run(world.engine, between=world.arm.tick if ticks else None)


def test_suspending_the_canary_ring_suspends_exactly_those_panels_and_succeeds() -> None:
    world = make_world(fleet())
    operation_id = start(world)
    run_to_end(world)

    doc = world.engine.get_operation(operation_id)
    assert doc["status"] == "succeeded"
    assert doc["summary"]["succeeded"] == 2
    assert doc["summary"]["total"] == 2
    suspended = sorted(s.panel.name for s in world.arm.sims.values() if s.agent_suspended)
    assert suspended == ["ipc-panel-0001", "ipc-panel-0002"]
    assert all(c["state"] == "succeeded" and c["attempts"] == 1 for c in doc["clusters"])
    assert doc["requestedBy"] == "pipeline@contoso.com"
    assert doc["reason"] == "release 2026.08 freeze"


def test_a_panel_already_suspended_is_unchanged_and_not_written() -> None:
    world = make_world(fleet())
    world.arm.sim("ipc-panel-0001").suspended = True
    operation_id = start(world)
    run_to_end(world)

    assert world.store.states(operation_id)["ipc-panel-0001"] == "unchanged"
    assert ("patch", "ipc-panel-0001") not in world.arm.calls
    assert world.engine.get_operation(operation_id)["status"] == "succeeded"


def test_a_panel_without_the_flux_configuration_is_skipped_with_why() -> None:
    world = make_world(fleet())
    world.arm.sim("ipc-panel-0002").has_config = False
    operation_id = start(world)
    run_to_end(world)

    doc = world.engine.get_operation(operation_id)
    skipped = next(c for c in doc["clusters"] if c["name"] == "ipc-panel-0002")
    assert skipped["state"] == "skipped"
    assert "no Flux configuration named ipc-platform-config" in skipped["detail"]
    assert doc["status"] == "partially-succeeded"


def _until_final(world: World, operation_id: str) -> bool:
    record = world.store.get_operation(operation_id)
    return record is not None and record.status != "running"


def test_offline_panel_is_tracked_as_pending_offline_and_converges_after_reconnect() -> None:
    world = make_world(fleet())
    world.arm.set_online("ipc-panel-0001", False)
    world.clock.advance(20 * 60)
    operation_id = start(world)
    world.queue.run(world.engine, between=world.arm.tick, until=lambda: _until_final(world, operation_id))

    doc = world.engine.get_operation(operation_id)
    assert doc["status"] == "partially-succeeded"
    offline = next(c for c in doc["clusters"] if c["name"] == "ipc-panel-0001")
    assert offline["state"] == "pending-offline"
    assert "offline" in offline["detail"]
    assert ("patch", "ipc-panel-0001") in world.arm.calls  # ARM accepted the change while it was offline

    world.arm.set_online("ipc-panel-0001", True)
    world.queue.run(world.engine, between=world.arm.tick, max_messages=5)

    doc = world.engine.get_operation(operation_id)
    assert world.store.states(operation_id)["ipc-panel-0001"] == "succeeded"
    assert doc["status"] == "succeeded"
    assert world.arm.sim("ipc-panel-0001").agent_suspended


def test_a_change_older_than_the_48_hour_window_is_reapplied_when_the_panel_reconnects() -> None:
    world = make_world(fleet(), offline_recheck_s=6 * 3600)
    world.arm.set_online("ipc-panel-0001", False)
    world.clock.advance(20 * 60)
    operation_id = start(world)
    world.queue.run(world.engine, between=world.arm.tick, until=lambda: _until_final(world, operation_id))
    first_patches = len(world.arm.sim("ipc-panel-0001").patches)

    # ARM's clock moves on 49 hours (the app slept through it); the panel then reconnects.
    world.arm.arm_offset = timedelta(hours=49)
    world.arm.set_online("ipc-panel-0001", True)
    world.arm.tick()
    assert not world.arm.sim("ipc-panel-0001").agent_suspended  # Arc dropped the stale change
    world.queue.run(world.engine, between=world.arm.tick, max_messages=10)

    assert len(world.arm.sim("ipc-panel-0001").patches) == first_patches + 1
    assert world.store.states(operation_id)["ipc-panel-0001"] == "succeeded"
    assert world.arm.sim("ipc-panel-0001").agent_suspended


def test_an_offline_panel_is_reapplied_once_the_window_lapses_while_it_is_still_offline() -> None:
    world = make_world(fleet(), offline_recheck_s=12 * 3600)
    world.arm.set_online("ipc-panel-0001", False)
    world.clock.advance(20 * 60)
    operation_id = start(world)
    world.queue.run(world.engine, between=world.arm.tick, max_messages=12)
    sim = world.arm.sim("ipc-panel-0001")
    assert len(sim.patches) >= 2  # re-sent after 48 h offline so a later reconnect still receives it
    assert world.store.states(operation_id)["ipc-panel-0001"] in ("pending-offline", "queued", "verifying")


def test_transient_faults_are_retried_and_the_panel_still_succeeds() -> None:
    world = make_world(fleet())
    world.arm.faults["patch"] = [Throttled("429", retry_after=3), TransientError("503 from ARM")]
    operation_id = start(world)
    run_to_end(world)

    doc = world.engine.get_operation(operation_id)
    assert doc["status"] == "succeeded"
    # One fault each, then success; the 429 gives its attempt back (issue 12, finding 8), the 503 does not.
    assert sorted(c["attempts"] for c in doc["clusters"]) == [1, 2]
    retry_delays = [delay for queue, _, delay in world.queue.sent if queue == APPLY_QUEUE and delay > 0]
    assert 3 in retry_delays  # Retry-After honoured


def test_persistent_faults_end_failed_after_a_bounded_number_of_attempts() -> None:
    world = make_world(fleet(), max_attempts=3)
    world.arm.faults["patch"] = [TransientError("connection reset") for _ in range(10)]
    operation_id = start(world, selection=Selector(clusters=("ipc-panel-0001",)))
    run_to_end(world)

    doc = world.engine.get_operation(operation_id)
    assert doc["status"] == "failed"
    assert doc["clusters"][0]["state"] == "failed"
    assert "gave up after 3 attempts" in doc["clusters"][0]["detail"]
    assert world.arm.patch_count() == 3


def test_an_agent_that_never_reports_ends_failed_after_bounded_checks() -> None:
    world = make_world(fleet(), verify_max_checks=4)
    operation_id = start(world)
    run_to_end(world, ticks=False)

    doc = world.engine.get_operation(operation_id)
    assert doc["status"] == "failed"
    assert all("did not report the change after 4 checks" in c["detail"] for c in doc["clusters"])


def test_a_message_processed_twice_changes_nothing_twice() -> None:
    world = make_world(fleet())
    operation_id = start(world)
    apply_message = next(m for q, m, _ in world.queue.sent if q == APPLY_QUEUE)
    world.engine.process_apply(apply_message)
    world.engine.process_apply(apply_message)  # the host delivered it again
    run_to_end(world)

    assert world.arm.patch_count() == 2
    doc = world.engine.get_operation(operation_id)
    assert doc["summary"]["succeeded"] == 2
    assert doc["summary"]["total"] == 2


def test_a_worker_dying_mid_batch_loses_no_panel_and_patches_none_twice() -> None:
    world = make_world(fleet(), batch_size=10, lease_s=60)
    world.store.fail_panel_writes_after = 3  # claim 1, applied 1, claim 2 → dies before recording 2
    operation_id = start(world)
    with pytest.raises(CrashError):
        world.queue.run(world.engine, between=world.arm.tick)
    world.store.fail_panel_writes_after = None
    world.clock.advance(120)  # the lease of the dead worker lapses; the message becomes visible again
    run_to_end(world)

    doc = world.engine.get_operation(operation_id)
    assert doc["status"] == "succeeded"
    assert doc["summary"]["succeeded"] == 2
    # The dead worker PATCHed panel 2; the survivor saw ARM already suspended and tracked it.
    assert world.arm.patch_count() == 2


def test_dry_run_reports_what_would_change_and_writes_nothing() -> None:
    world = make_world(fleet())
    world.arm.sim("ipc-panel-0002").suspended = True
    result = world.engine.start(
        kind="suspend",
        params={},
        reason="what would a freeze do?",
        requested_by="me",
        selection=Selector(tags={"ring": "canary"}),
        dry_run=True,
    )
    assert result.operation_id is None
    doc: Mapping[str, Any] = result.document
    assert doc["wouldChange"] == 1
    assert {c["name"]: c["wouldChange"] for c in doc["clusters"]} == {
        "ipc-panel-0001": True,
        "ipc-panel-0002": False,
    }
    assert world.arm.patch_count() == 0
    assert world.store.operations == {}
    assert len(world.queue) == 0


def test_the_same_idempotency_key_returns_the_same_operation_and_a_different_body_conflicts() -> None:
    world = make_world(fleet())
    first = start(world, idempotency_key="run-42")
    again = start(world, idempotency_key="run-42")
    assert again == first
    assert len(world.store.operations) == 1
    with pytest.raises(Conflict) as refused:
        start(world, idempotency_key="run-42", reason="another reason")
    assert refused.value.context["operationId"] == first


def test_an_operation_overlapping_a_running_one_is_refused_naming_it() -> None:
    world = make_world(fleet())
    running = start(world)
    with pytest.raises(Conflict) as refused:
        start(world, kind="resume", selection=Selector(clusters=("ipc-panel-0002", "ipc-panel-0005")))
    assert running in refused.value.message
    assert len(world.store.operations) == 1

    run_to_end(world)  # once it has finished, the same panels can be resumed
    resumed = start(world, kind="resume", selection=Selector(clusters=("ipc-panel-0002",)))
    run_to_end(world)
    assert world.engine.get_operation(resumed)["status"] == "succeeded"
    assert not world.arm.sim("ipc-panel-0002").agent_suspended


def test_bad_requests_are_refused_before_anything_is_written() -> None:
    world = make_world(fleet())
    with pytest.raises(InvalidInput, match="reason"):
        start(world, reason="  ")
    with pytest.raises(Unprocessable, match="unknown clusters: ipc-panel-9999"):
        start(world, selection=Selector(clusters=("ipc-panel-9999",)))
    with pytest.raises(Unprocessable, match="matches no panel"):
        start(world, selection=Selector(tags={"ring": "nonexistent"}))
    with pytest.raises(InvalidInput, match=r"target\.all"):
        start(world, selection=Selector(all=True, tags={"ring": "canary"}))
    assert world.store.operations == {}
    assert world.arm.patch_count() == 0


def test_resume_after_suspend_is_superseding_a_pending_offline_panel() -> None:
    world = make_world(fleet())
    world.arm.set_online("ipc-panel-0001", False)
    world.clock.advance(20 * 60)
    suspend = start(world)
    world.queue.run(world.engine, between=world.arm.tick, until=lambda: _until_final(world, suspend))
    assert world.store.states(suspend)["ipc-panel-0001"] == "pending-offline"

    resume = start(world, kind="resume")  # allowed: the suspend is final, only tracking
    world.arm.set_online("ipc-panel-0001", True)
    run_to_end(world)

    assert world.store.states(suspend)["ipc-panel-0001"] == "skipped"
    assert "superseded by operation" in world.engine.get_operation(suspend)["clusters"][0]["detail"]
    assert world.store.states(resume)["ipc-panel-0001"] == "succeeded"
    assert not world.arm.sim("ipc-panel-0001").agent_suspended


class RingStrategy(BaseStrategy):
    """A two-stage change (canary, then broad) that fails on a chosen panel, like a bad credential."""

    kind = "ring-test"
    lock_group = "ring-test"

    def __init__(self, *, bad: str | None = None, halt: bool = True, threshold: float = 1.0) -> None:
        self.bad = bad
        self.halt = halt
        self.threshold = threshold
        self.stages_done: list[int] = []

    def plan(self, panels: Sequence[Panel], params: Params) -> list[Stage]:
        canary = tuple(p for p in panels if p.tag("ring") == "canary")
        broad = tuple(p for p in panels if p.tag("ring") != "canary")
        return [Stage("canary", canary, self.threshold), Stage("broad", broad, 0.0)]

    def desired_patch(self, panel: Panel, current: FluxState, params: Params) -> dict[str, Any] | None:
        return None if current.suspended else {"suspend": True}

    def check(self, panel: Panel, current: FluxState, applied: AppliedChange, params: Params) -> Convergence:
        if panel.name == self.bad:
            return Convergence.failed("authentication failed after the change", halt_operation=self.halt)
        if current.status_updated_at and current.status_updated_at >= applied.accepted_at:
            return Convergence.converged()
        return Convergence.waiting()

    def on_stage_done(self, operation: Any, stage: int, summary: Mapping[str, int]) -> None:
        self.stages_done.append(stage)


def test_stages_run_in_order_and_the_next_starts_only_when_the_previous_settled() -> None:
    strategy = RingStrategy()
    world = make_world(fleet(), strategies=[strategy])
    operation_id = start(world, kind="ring-test", selection=Selector(all=True))
    order: list[str] = []
    original = world.arm.begin_patch

    def recording(**kwargs: Any) -> Any:
        order.append(kwargs["panel"].tag("ring"))
        return original(**kwargs)

    world.arm.begin_patch = recording  # type: ignore[method-assign]
    run_to_end(world)

    assert order == ["canary", "canary", "broad", "broad", "broad", "broad"]
    assert world.engine.get_operation(operation_id)["status"] == "succeeded"
    assert 0 in strategy.stages_done
    assert 1 in strategy.stages_done


def test_a_halting_failure_on_a_canary_leaves_later_stages_untouched() -> None:
    world = make_world(fleet(), strategies=[RingStrategy(bad="ipc-panel-0001")])
    operation_id = start(world, kind="ring-test", selection=Selector(all=True))
    run_to_end(world)

    doc = world.engine.get_operation(operation_id)
    assert doc["status"] == "failed"
    assert "ipc-panel-0001: authentication failed" in (doc["haltedReason"] or "")
    states = world.store.states(operation_id)
    assert states["ipc-panel-0001"] == "failed"
    assert all(states[f"ipc-panel-{i:04d}"] == "skipped" for i in range(3, 7))
    assert [name for call, name in world.arm.calls if call == "patch"] == ["ipc-panel-0001", "ipc-panel-0002"]


def test_a_stage_below_its_threshold_halts_the_operation() -> None:
    world = make_world(fleet(), strategies=[RingStrategy(bad="ipc-panel-0002", halt=False, threshold=1.0)])
    operation_id = start(world, kind="ring-test", selection=Selector(all=True))
    run_to_end(world)

    doc = world.engine.get_operation(operation_id)
    assert doc["status"] == "failed"
    assert "below its threshold of 100%" in (doc["haltedReason"] or "")
    assert world.arm.patch_count() == 2


def test_a_failed_lro_is_retried_and_reported_when_it_keeps_failing() -> None:
    world = make_world(fleet(), max_attempts=2)
    world.arm.lro_outcome = "Failed"
    operation_id = start(world, selection=Selector(clusters=("ipc-panel-0001",)))
    run_to_end(world)

    doc = world.engine.get_operation(operation_id)
    assert doc["clusters"][0]["state"] == "failed"
    assert "ARM reported the update Failed" in doc["clusters"][0]["detail"]
    assert world.arm.patch_count() == 2


def test_the_sweeper_re_enqueues_panels_whose_message_was_lost() -> None:
    world = make_world(fleet(), stale_after_s=600)
    operation_id = start(world)
    world.queue._heap.clear()  # the apply message is lost
    world.clock.advance(601)
    assert world.engine.sweep() == 2
    run_to_end(world)
    assert world.engine.get_operation(operation_id)["status"] == "succeeded"


def test_a_panel_is_not_judged_while_arms_update_is_still_running() -> None:
    world = make_world(fleet())
    world.arm.lro_outcome = "Updating"
    operation_id = start(world, selection=Selector(clusters=("ipc-panel-0001",)))
    world.queue.run(world.engine, between=world.arm.tick, max_messages=3)
    row = world.engine.get_operation(operation_id)["clusters"][0]
    assert row["state"] == "verifying"
    assert "still running (Updating)" in row["detail"]

    world.arm.sim("ipc-panel-0001").provisioning = "Succeeded"
    run_to_end(world)
    assert world.store.states(operation_id)["ipc-panel-0001"] == "succeeded"
    assert world.arm.patch_count() == 1


# --- no success without proof (issue 12: findings 7, 8, 10) -------------------------------------------
class LostAnswerArm(FakeArm):
    """ARM accepts the first PATCH of each panel, but its answer never reaches the client."""

    lost: set[str]

    def begin_patch(self, *, panel: Panel, configuration: str, patch: Mapping[str, Any]) -> AcceptedWrite:
        accepted = super().begin_patch(panel=panel, configuration=configuration, patch=patch)
        if not hasattr(self, "lost"):
            self.lost = set()
        if panel.key not in self.lost:
            self.lost.add(panel.key)
            raise TransientError(f"PATCH {panel.name}: read timed out")
        return accepted


def test_a_write_whose_answer_was_lost_is_verified_not_called_unchanged() -> None:
    # Agents that never report: before, the retry saw "nothing to write" and called the panels
    # `unchanged` (and the operation `succeeded`) with no proof at all.
    silent = make_world(fleet(), arm_class=LostAnswerArm)
    operation_id = start(silent)
    silent.queue.run(silent.engine, between=None)
    doc = silent.engine.get_operation(operation_id)
    assert doc["status"] == "failed", doc["clusters"]
    assert all(c["state"] == "failed" for c in doc["clusters"])
    assert all("did not report the change" in c["detail"] for c in doc["clusters"])

    # Agents that report: the same lost answers end `succeeded`, proven, with one PATCH per panel.
    world = make_world(fleet(), arm_class=LostAnswerArm)
    operation_id = start(world)
    run_to_end(world)
    doc = world.engine.get_operation(operation_id)
    assert doc["status"] == "succeeded"
    assert all(c["state"] == "succeeded" for c in doc["clusters"])
    assert world.arm.patch_count() == 2, "the retry found ARM already holding the change"


def test_arm_busy_with_another_operation_is_retried_without_spending_attempts() -> None:
    world = make_world(fleet(), max_attempts=2)
    world.arm.faults["patch"] = [
        Busy("409: another operation is in progress", retry_after=4) for _ in range(4)
    ]
    operation_id = start(world, selection=Selector(clusters=("ipc-panel-0001",)))
    run_to_end(world)
    doc = world.engine.get_operation(operation_id)
    assert doc["status"] == "succeeded", doc["clusters"]
    assert doc["clusters"][0]["attempts"] == 1
    retry_delays = [delay for queue, _, delay in world.queue.sent if queue == APPLY_QUEUE and delay > 0]
    assert retry_delays.count(4) == 4, "ARM's Retry-After is honoured on every busy answer"


def test_a_delayed_re_apply_of_an_old_change_yields_to_a_newer_operation_on_the_panel() -> None:
    world = make_world(fleet())
    selection = Selector(clusters=("ipc-panel-0001",))
    old = start(world, selection=selection)
    rows = world.store.panels[old]
    key = next(iter(rows))
    # The old suspend finished; its re-apply of this panel (Arc dropped it) is queued but not yet run.
    world.store.operations[old] = replace(world.store.operations[old], status="partially-succeeded")
    rows[key] = replace(rows[key], state=PanelState.QUEUED, reapply=True, accepted_at=world.clock.now())
    newer = start(world, "resume", selection=selection)
    # The re-apply message of the old operation arrives now.
    world.engine.process_apply(batch_messages(APPLY_QUEUE, old, [key], stage=0, batch_size=10)[0])
    row = world.store.panels[old][key]
    assert row.state == PanelState.SKIPPED
    assert row.detail.startswith(f"superseded by operation {newer}")
    assert world.arm.sim("ipc-panel-0001").patches == [], "the old suspend was not sent again"


def test_an_idempotency_key_whose_request_died_before_creating_its_operation_is_taken_over() -> None:
    """Issue 12, finding 9: the claim is written before the operation; a process dying in between
    must not burn the key (every retry would wait 10 s and get 409 for ever)."""
    world = make_world(fleet())
    dead = new_operation_id(world.clock.now())
    world.store.idempotency[(IDEMPOTENCY_SCOPE, "kv-event-v7")] = (dead, "hash-of-the-dead-request")
    with pytest.raises(Conflict):
        start(world, idempotency_key="kv-event-v7")  # within the grace period: it may still be creating
    world.clock.advance(CREATION_GRACE_S + 1)
    operation_id = start(world, idempotency_key="kv-event-v7")
    assert operation_id != dead
    assert world.engine.get_operation(operation_id)["status"] == "running"
    assert start(world, idempotency_key="kv-event-v7") == operation_id, "and the key now maps to it"


def test_a_panel_whose_worker_always_dies_ends_failed_after_bounded_attempts_and_frees_its_lock() -> None:
    """Issue 12, finding 11: work that always fails must not keep its operation `running` (and its
    locks held), retried every lease for ever."""
    world = make_world(fleet(), max_attempts=3)
    selection = Selector(clusters=("ipc-panel-0001",))
    operation_id = start(world, selection=selection)
    world.arm.faults["get_flux"] = [CrashError("the worker dies on this panel") for _ in range(100)]
    for _ in range(200):
        if not len(world.queue):
            break
        with contextlib.suppress(CrashError):
            world.queue.run(world.engine, max_messages=1)
    doc = world.engine.get_operation(operation_id)
    assert doc["status"] == "failed"
    [panel] = doc["clusters"]
    assert panel["state"] == "failed"
    assert panel["detail"].startswith("gave up after 3 attempts: the worker handling it never finished")
    assert len(world.arm.faults["get_flux"]) == 97, "three tries, no more"
    world.arm.faults.clear()
    assert start(world, "resume", selection=selection), "its lock is free for the next change"


def test_a_panel_whose_message_is_lost_every_time_ends_failed_after_bounded_sweeps() -> None:
    """The sweeper re-sends lost work, but not for ever: a message that always ends in the poison queue
    fails its panel with the cause after `max_sweeps` re-deliveries."""
    world = make_world(fleet(), stale_after_s=900, max_sweeps=3)
    operation_id = start(world, selection=Selector(clusters=("ipc-panel-0001",)))
    resent = []
    for _ in range(6):
        world.queue._heap.clear()  # poisoned: the host gave up on it
        world.clock.advance(901)
        resent.append(world.engine.sweep())
    assert resent == [1, 1, 1, 0, 0, 0]
    doc = world.engine.get_operation(operation_id)
    assert doc["status"] == "failed"
    assert doc["clusters"][0]["detail"].startswith("gave up: its work did not complete in 4 deliveries")
