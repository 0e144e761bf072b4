"""The rollout strategy driven by the real fleet-change engine over the fleet's in-memory fakes.

`CredentialArm` extends the fleet's `FakeArm` with what a credential needs: the agent holds the PAT
it was last *delivered* (base64 `httpsKey`), and its fetch succeeds only when the Git server accepts
that PAT. That is enough to check the behaviours users rely on: ring order, proof, offline panels,
halting on an authentication failure with every later panel left on its working PAT, and re-runs that
write nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest

from shared.models import FluxState, ObjectStatus, Panel, Selector
from shared.models.credentials import (
    CheckOutcome,
    PanelCredentialState,
    PreflightCheck,
    PreflightReport,
    SecretVersionId,
)
from shared.services.credentials.rollout import ROLLOUT_KIND, CredentialRolloutStrategy, RolloutParams
from tests.unit.credentials.fakes import GOOD_PAT, FakeSecretStore, MemoryLedger, RecordingNotifier, version
from tests.unit.fleet.fakes import FakeArm, FakeClock, World, make_panel, make_world

OLD_PAT = "oldpat0" + "c3" * 22 + "xx3"
SECRET = "flux-gitops-pat"


class CredentialArm(FakeArm):
    """FakeArm whose agents fetch with the PAT they were delivered."""

    def __init__(self, clock: FakeClock, panels: Sequence[Panel]) -> None:
        super().__init__(clock, panels)
        self.accepted = {OLD_PAT}
        self.desired = dict.fromkeys(self.sims, OLD_PAT)
        self.held = dict.fromkeys(self.sims, OLD_PAT)
        self.desired_generation = dict.fromkeys(self.sims, 0)

    def begin_patch(self, *, panel: Panel, configuration: str, patch: Mapping[str, Any]) -> Any:
        write = super().begin_patch(panel=panel, configuration=configuration, patch=patch)
        encoded = patch.get("configurationProtectedSettings", {}).get("httpsKey")
        if encoded is not None:
            self.desired[panel.key] = base64.b64decode(encoded).decode()
        return write

    def tick(self) -> None:
        before = {key: sim.delivered_generation for key, sim in self.sims.items()}
        super().tick()
        for key, sim in self.sims.items():
            if sim.delivered_generation != before[key]:
                self.held[key] = self.desired[key]

    def get_flux_state(self, *, panel: Panel, configuration: str) -> FluxState | None:
        state = super().get_flux_state(panel=panel, configuration=configuration)
        if state is None or state.status_updated_at is None:
            return state
        ok = self.held[panel.key] in self.accepted
        source = ObjectStatus(
            kind="GitRepository",
            name=configuration,
            namespace="flux-system",
            compliance_state="Compliant" if ok else "Non-Compliant",
            ready=ok,
            reason="Succeeded" if ok else "GitOperationFailed",
            message="stored artifact for revision 'main@sha1:abc'"
            if ok
            else "failed to checkout and determine revision: unable to clone: authentication required",
            last_transition_time=state.status_updated_at,
        )
        return replace(state, statuses=(source,), https_user="git")


def fleet() -> list[Panel]:
    rings = ["canary", "canary", "early", "early", "broad", "broad"]
    return [make_panel(i + 1, ring=ring) for i, ring in enumerate(rings)]


def world_with(strategy: CredentialRolloutStrategy) -> tuple[World, CredentialArm]:
    world = make_world(fleet(), strategies=[strategy], arm_class=CredentialArm)
    assert isinstance(world.arm, CredentialArm)
    return world, world.arm


@pytest.fixture
def ledger() -> MemoryLedger:
    ledger = MemoryLedger()
    ledger.save_preflight(
        PreflightReport(
            secret=SECRET,
            version=SecretVersionId("v2"),
            checked_at=make_world([]).clock.now(),
            checks=(PreflightCheck("authenticates", CheckOutcome.PASSED, "ok"),),
        )
    )
    return ledger


def params() -> dict[str, Any]:
    return RolloutParams(
        secret=SECRET,
        version=SecretVersionId("v2"),
        https_user="git",
        rings=("canary", "early", "broad"),
        ring_threshold=0.8,
        trigger="test",
    ).to_json()


def run(world: World, arm: CredentialArm) -> None:
    world.queue.run(world.engine, between=arm.tick)


def strategy_for(ledger: MemoryLedger) -> CredentialRolloutStrategy:
    secrets = FakeSecretStore((version("v2", days_left=90), GOOD_PAT), (version("v1"), OLD_PAT))
    return CredentialRolloutStrategy(secrets=secrets, ledger=ledger, notifier=RecordingNotifier())


def start(world: World) -> str:
    result = world.engine.start(
        kind=ROLLOUT_KIND, params=params(), reason="rotate", requested_by="test", selection=Selector(all=True)
    )
    assert result.operation_id is not None
    return result.operation_id


def test_every_online_panel_gets_and_proves_the_new_pat_and_the_offline_one_follows(
    ledger: MemoryLedger,
) -> None:
    world, arm = world_with(strategy_for(ledger))
    arm.accepted = {OLD_PAT, GOOD_PAT}
    arm.set_online("ipc-panel-0006", False)
    world.clock.advance(20 * 60)  # long enough for Arc to call it Offline
    operation = start(world)
    run(world, arm)
    states = world.store.states(operation)
    assert states.pop("ipc-panel-0006") == "pending-offline"
    assert set(states.values()) == {"succeeded"}
    assert [arm.held[p.key] for p in fleet()[:5]] == [GOOD_PAT] * 5
    arm.set_online("ipc-panel-0006", True)
    world.engine.sweep()
    run(world, arm)
    assert world.store.states(operation)["ipc-panel-0006"] == "succeeded"
    assert all(r.holds_proven("v2") for r in ledger.panel_credentials(SECRET))
    assert len(ledger.panel_credentials(SECRET)) == 6


def test_rolling_out_the_same_version_again_writes_nothing(ledger: MemoryLedger) -> None:
    world, arm = world_with(strategy_for(ledger))
    arm.accepted = {OLD_PAT, GOOD_PAT}
    start(world)
    run(world, arm)
    patches = arm.patch_count()
    again = start(world)
    run(world, arm)
    assert arm.patch_count() == patches
    assert set(world.store.states(again).values()) == {"unchanged"}


def test_a_pat_revoked_after_preflight_halts_in_the_canary_ring(ledger: MemoryLedger) -> None:
    world, arm = world_with(strategy_for(ledger))
    arm.accepted = {OLD_PAT}  # the new PAT was revoked between preflight and the rollout
    operation = start(world)
    run(world, arm)
    document = world.engine.get_operation(operation)
    assert document["haltedReason"]
    assert "authentication" in document["haltedReason"]
    states = world.store.states(operation)
    assert {states[f"ipc-panel-000{i}"] for i in (1, 2)} <= {"failed", "skipped"}
    assert "failed" in {states["ipc-panel-0001"], states["ipc-panel-0002"]}
    assert {states[f"ipc-panel-000{i}"] for i in (3, 4, 5, 6)} == {"skipped"}
    later_rings = [p for p in fleet() if p.tag("ring") != "canary"]
    assert all(arm.held[p.key] == OLD_PAT for p in later_rings)
    assert all(
        not any("configurationProtectedSettings" in patch for patch in arm.sims[p.key].patches)
        for p in later_rings
    )
    failed = [r for r in ledger.panel_credentials(SECRET) if r.state is PanelCredentialState.FAILED]
    assert failed


def test_the_stored_rows_and_messages_never_hold_the_pat(ledger: MemoryLedger) -> None:
    world, arm = world_with(strategy_for(ledger))
    arm.accepted = {OLD_PAT, GOOD_PAT}
    operation = start(world)
    run(world, arm)
    stored = repr(world.store.operations) + repr(world.store.panels) + repr(world.queue.sent)
    stored += repr(world.engine.get_operation(operation)) + repr(ledger.map) + repr(ledger.rollouts)
    encoded = base64.b64encode(GOOD_PAT.encode()).decode()
    assert GOOD_PAT not in stored
    assert encoded not in stored


def test_a_dry_run_plans_every_panel_without_reading_the_pat(ledger: MemoryLedger) -> None:
    strategy = strategy_for(ledger)
    world, _ = world_with(strategy)
    result = world.engine.start(
        kind=ROLLOUT_KIND,
        params=params(),
        reason="rotate",
        requested_by="test",
        selection=Selector(all=True),
        dry_run=True,
    )
    assert result.operation_id is None
    assert result.document["total"] == len(fleet())
    assert all(panel["wouldChange"] for panel in result.document["clusters"] if panel["current"])
    assert all(store.value_reads == [] for store in strategy._stores.values())  # type: ignore[attr-defined]
