"""The simulated Arc/Flux agents: the state machine with a fake fetch, then the real thing against the lab.

The first half drives `AgentRuntime` directly over a seeded fleet, with ARM's backend making the
changes and a fake `Fetcher` standing in for Git, to pin down delivery (48-hour window), suspension,
credentials and Flux's status vocabulary. The second half runs a lab of its own and lets agents
fetch from the lab's real Git server with the PATs ARM handed them.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.identity import ManagedIdentityCredential
from azure.mgmt.kubernetesconfiguration.fluxconfigurations import (
    KubernetesConfigurationFluxConfigurationsMgmtClient,
)

from lab.arm.models import ArmBackend
from lab.core.clock import LabClock
from lab.fleet.agents import AgentRuntime
from lab.fleet.git_fetch import FetchRequest, FetchResult, clone_error
from lab.fleet.model import FLUX_CONFIGURATION_NAME, Actor, FluxConfig, Panel, fingerprint
from lab.fleet.seeding import (
    IMAGE_AUTOMATION_KUSTOMIZATION,
    WORKLOADS_KUSTOMIZATION,
    SeedPlan,
    platform_flux_spec,
    seed_fleet,
)
from lab.fleet.truth import cluster_truth
from tests.labkit import LabHandle, LabProcess

CONFIG = FLUX_CONFIGURATION_NAME
GIT_URL = "https://git.example/ipc-org/IPC-Platform-Engineering/_git/IPC-Platform-Engineering"
HEAD = "a" * 40
NEXT = "b" * 40
SEED_DIRS = frozenset(
    {
        "kubernetes",
        "kubernetes/workloads",
        "kubernetes/flux-system",
        "kubernetes/flux-system/image-automation",
    }
)
HOUR_S = 3600.0
TESTER = Actor(name="tester", kind="User")


# --- the state machine, with a fake fetch ---------------------------------------------------------------
@dataclass
class FakeGit:
    """Answers fetches like a Git server holding `revision`, accepting only `valid_pats`."""

    revision: str = HEAD
    valid_pats: set[str] = field(default_factory=lambda: {"pat-1"})
    tree_dirs: frozenset[str] = SEED_DIRS
    requests: list[FetchRequest] = field(default_factory=list)

    async def fetch(self, request: FetchRequest) -> FetchResult:
        self.requests.append(request)
        if request.credentials.password not in self.valid_pats:
            return FetchResult(
                ok=False, auth_failed=True, error=clone_error(request.url, "authentication required")
            )
        return FetchResult(ok=True, revision=self.revision, tree_dirs=self.tree_dirs)


@dataclass
class World:
    clock: LabClock
    backend: ArmBackend
    git: FakeGit
    agents: AgentRuntime
    panel: Panel

    def sync(self) -> None:
        asyncio.run(self.agents.sync_panel(self.panel))

    @property
    def config(self) -> FluxConfig:
        config = self.panel.flux_config(CONFIG)
        assert config is not None
        return config

    def patch(self, *, pat: str | None = None, **spec_changes: Any) -> None:
        ident = self.panel.identity
        protected = {"httpsKey": base64.b64encode(pat.encode()).decode()} if pat is not None else None
        self.backend.flux_configurations_update(
            ident.subscription,
            ident.resource_group,
            ident.name,
            CONFIG,
            spec=replace(self.config.spec, **spec_changes),
            protected_settings=protected,
            actor=TESTER,
        )

    def truth(self) -> dict[str, Any]:
        return cluster_truth(self.panel, self.clock.now())


def make_world(*, online: bool = True, git: FakeGit | None = None) -> World:
    clock = LabClock()
    fleet = seed_fleet(
        SeedPlan(
            clusters=4,
            subscriptions=["sub-1"],
            offline=0,
            git_url=GIT_URL,
            initial_pat="pat-1",
            started_at=clock.now(),
        )
    )
    fake = git or FakeGit()
    world = World(
        clock=clock,
        backend=ArmBackend(clock=clock, fleet=fleet),
        git=fake,
        agents=AgentRuntime(clock=clock, fetcher=fake),
        panel=fleet.panels[0],
    )
    world.sync()  # the seed: fetched HEAD once while online
    world.panel.connectivity.online = online
    return world


def test_an_online_agent_takes_the_new_credential_and_fetches_with_it() -> None:
    world = make_world()
    world.git.valid_pats.add("pat-2")

    world.patch(pat="pat-2")
    world.sync()

    assert world.git.requests[-1].credentials.password == "pat-2"
    assert world.git.requests[-1].credentials.username == "git"
    truth = world.truth()
    assert (truth["config_generation"], truth["delivered_generation"]) == (2, 2)
    assert truth["credential_fingerprint"] == fingerprint("pat-2")
    assert world.config.report.compliance_state == "Compliant"


def test_an_offline_agent_neither_fetches_nor_reports() -> None:
    world = make_world(online=False)
    reported_at = world.config.report.status_updated_at
    fetches = len(world.git.requests)

    world.patch(pat="pat-2")
    world.clock.advance(HOUR_S)
    world.sync()

    assert len(world.git.requests) == fetches
    assert world.config.report.status_updated_at == reported_at
    assert world.truth()["delivered_generation"] == 1


def test_a_change_picked_up_within_48_hours_is_delivered() -> None:
    world = make_world(online=False)
    world.git.valid_pats.add("pat-2")
    world.patch(pat="pat-2")

    world.clock.advance(47 * HOUR_S)
    world.panel.connectivity.online = True
    world.sync()

    assert world.truth()["credential_fingerprint"] == fingerprint("pat-2")


def test_a_change_missed_for_48_hours_is_dropped_until_it_is_applied_again() -> None:
    world = make_world(online=False)
    world.git.valid_pats.add("pat-2")
    world.patch(pat="pat-2")
    world.clock.advance(49 * HOUR_S)
    world.panel.connectivity.online = True

    world.sync()
    dropped = world.truth()
    world.clock.advance(HOUR_S)
    world.sync()
    still_dropped = world.truth()
    world.patch(pat="pat-2")  # the operator re-applies the same setting
    world.sync()
    reapplied = world.truth()

    assert (dropped["config_generation"], dropped["delivered_generation"]) == (2, 1)
    assert dropped["dropped_generation"] == 2
    assert dropped["credential_fingerprint"] == fingerprint("pat-1"), "the panel keeps its old credential"
    assert world.git.requests[-3].credentials.password == "pat-1"
    assert still_dropped["delivered_generation"] == 1, "dropped for good, not merely late"
    assert (reapplied["config_generation"], reapplied["delivered_generation"]) == (3, 3)
    assert reapplied["credential_fingerprint"] == fingerprint("pat-2")


def test_a_suspended_configuration_reports_suspended_and_does_not_fetch() -> None:
    world = make_world()
    fetches = len(world.git.requests)
    world.git.revision = NEXT

    world.patch(suspend=True)
    world.sync()

    assert len(world.git.requests) == fetches
    assert world.config.report.compliance_state == "Suspended"
    assert world.truth()["applied_revision"] == HEAD, "no new revision is applied while suspended"
    world.patch(suspend=False)
    world.sync()
    assert world.truth()["applied_revision"] == NEXT


def test_an_authentication_failure_reads_as_flux_reports_it() -> None:
    world = make_world()
    world.patch(pat="wrong-pat")

    world.sync()

    report = world.config.report
    source = next(status for status in report.statuses if status.kind == "GitRepository")
    kustomizations = [status for status in report.statuses if status.kind == "Kustomization"]
    assert (source.condition.status, source.condition.reason) == ("False", "GitOperationFailed")
    assert source.condition.message == (
        f"failed to checkout and determine revision: unable to clone '{GIT_URL}': authentication required"
    )
    assert report.compliance_state == "Non-Compliant"
    assert report.error_message == source.condition.message
    assert all(k.condition.status == "True" for k in kustomizations), "the last artifact stays applied"
    assert report.source_synced_commit_id == f"main/{HEAD}"
    assert world.truth()["last_fetch"]["ok"] is False


def test_an_https_key_that_is_not_base64_is_an_authentication_failed_condition() -> None:
    world = make_world()
    ident = world.panel.identity
    world.backend.flux_configurations_update(
        ident.subscription,
        ident.resource_group,
        ident.name,
        CONFIG,
        spec=world.config.spec,
        protected_settings={"httpsKey": "%%%"},
        actor=TESTER,
    )
    fetches = len(world.git.requests)

    world.sync()

    source = next(status for status in world.config.report.statuses if status.kind == "GitRepository")
    assert source.condition.reason == "AuthenticationFailed"
    assert "illegal base64" in source.condition.message
    assert len(world.git.requests) == fetches, "no request is made without a credential"


def test_a_missing_kustomization_path_fails_only_that_kustomization() -> None:
    world = make_world(
        git=FakeGit(revision=HEAD, tree_dirs=frozenset({"kubernetes", "kubernetes/workloads"}))
    )
    two = platform_flux_spec(
        git_url=GIT_URL, kustomizations=(WORKLOADS_KUSTOMIZATION, IMAGE_AUTOMATION_KUSTOMIZATION)
    )
    world.patch(kustomizations=two.kustomizations)  # factory panels are seeded with workloads only
    world.git.revision = NEXT  # a new commit deleted the image-automation folder

    world.sync()

    by_name = {status.name: status for status in world.config.report.statuses}
    broken = by_name[f"{CONFIG}-image-automation"].condition
    assert (broken.status, broken.reason) == ("False", "ArtifactFailed")
    assert "kustomization path not found" in broken.message
    assert "kubernetes/flux-system/image-automation" in broken.message
    assert by_name[f"{CONFIG}-workloads"].condition.message == f"Applied revision: main@sha1:{NEXT}"
    assert world.config.report.compliance_state == "Non-Compliant"


def test_a_condition_keeps_its_transition_time_until_its_status_flips() -> None:
    world = make_world()
    first = next(s for s in world.config.report.statuses if s.kind == "GitRepository").condition

    world.clock.advance(HOUR_S)
    world.sync()
    unchanged = next(s for s in world.config.report.statuses if s.kind == "GitRepository").condition
    world.patch(pat="wrong-pat")
    world.clock.advance(HOUR_S)
    world.sync()
    flipped = next(s for s in world.config.report.statuses if s.kind == "GitRepository").condition

    assert unchanged.last_transition_time == first.last_transition_time
    assert world.config.report.status_updated_at is not None
    assert world.config.report.status_updated_at > first.last_transition_time
    assert flipped.last_transition_time > unchanged.last_transition_time


def test_provider_azure_uses_a_bearer_token_only_where_workload_identity_is_ready() -> None:
    world = make_world()
    tokens: list[str] = []

    def token_for(_: object) -> str:
        tokens.append("entra-token")
        return "entra-token"

    world.agents.workload_token = token_for
    git = world.config.spec.git_repository
    assert git is not None
    world.patch(git_repository=replace(git, provider="Azure"))

    world.sync()

    ready = world.panel.supports_workload_identity
    assert ready, "ipc-panel-0001 is seeded workload-identity ready"
    assert world.git.requests[-1].credentials.bearer_token == "entra-token"
    assert world.git.requests[-1].credentials.password is None
    assert world.truth()["credential_fingerprint"] is not None, "the PAT is still held, just not used"


# --- against the lab's real Git server ------------------------------------------------------------------
@pytest.fixture(scope="module")
def agents_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A lab of its own: these tests move its clock forward by days."""
    state_dir: Path = tmp_path_factory.mktemp("agents")
    with (
        LabProcess(state_dir, clusters=12, subscriptions=1, offline=2, azurite=False) as handle,
        handle.applied_env(),
    ):
        yield handle


@pytest.fixture
def fleet(agents_lab: LabHandle) -> LabHandle:
    agents_lab.control("POST", "/_lab/reset")
    return agents_lab


def truth(lab: LabHandle, name: str) -> dict[str, Any]:
    return dict(lab.control("GET", f"/_lab/clusters/{name}"))


def patch_config(lab: LabHandle, name: str, properties: dict[str, Any]) -> None:
    """PATCH through the real client; ARM stores the change when it accepts it (the LRO is not awaited)."""
    client = KubernetesConfigurationFluxConfigurationsMgmtClient(
        ManagedIdentityCredential(), lab.doc["subscriptions"][0], base_url=lab.endpoint("arm")
    )
    client.flux_configurations.begin_update(
        truth(lab, name)["resourceGroup"],
        "Microsoft.Kubernetes",
        "connectedClusters",
        name,
        CONFIG,
        {"properties": properties},
        polling=False,
    ).result()


def https_key(pat: str) -> dict[str, Any]:
    return {"configurationProtectedSettings": {"httpsKey": base64.b64encode(pat.encode()).decode()}}


def mint_pat(lab: LabHandle) -> dict[str, Any]:
    return dict(lab.control("POST", "/_lab/devops/pats", {"scope": "vso.code", "days": 90}, expect=201))


def head(lab: LabHandle) -> str:
    return str(lab.control("GET", "/_lab/devops/commits?branch=main&top=1")["commits"][0]["sha"])


def tick(lab: LabHandle) -> dict[str, Any]:
    return dict(lab.control("POST", "/_lab/agents/tick", expect=200))


@pytest.mark.lab
def test_a_fresh_lab_is_a_healthy_fleet(fleet: LabHandle) -> None:
    state = fleet.state()
    initial = next(pat for pat in state["pats"] if pat["displayName"] == "flux-gitops (fleet)")
    clusters = [c for c in state["clusters"] if not c["runner"]]  # the factory panels
    online = [c for c in clusters if c["online"]]

    assert len(clusters) == 12
    assert [c["name"] for c in clusters if not c["online"]] == ["ipc-panel-0011", "ipc-panel-0012"]
    assert {c["credential_fingerprint"] for c in clusters} == {initial["fingerprint"]}
    assert all(c["last_fetch"]["ok"] and c["applied_revision"] == head(fleet) for c in online)
    assert {c["compliance_state"] for c in online} == {"Compliant"}
    assert {c["connectivity_status"] for c in clusters if not c["online"]} == {"Offline"}


@pytest.mark.lab
def test_a_rotated_pat_is_delivered_and_used_for_a_real_fetch(fleet: LabHandle) -> None:
    new = mint_pat(fleet)
    patch_config(fleet, "ipc-panel-0001", https_key(new["token"]))

    summary = tick(fleet)

    after = truth(fleet, "ipc-panel-0001")
    assert summary == {"synced": 11, "fetched": 11, "failed": 0}, "10 online panels and the runner"
    new_fingerprint = next(
        p["fingerprint"] for p in fleet.state()["pats"] if p["authorizationId"] == new["authorizationId"]
    )
    assert after["credential_fingerprint"] == new_fingerprint
    assert after["last_fetch"]["ok"] is True
    assert (after["config_generation"], after["delivered_generation"]) == (2, 2)


@pytest.mark.lab
def test_a_revoked_pat_fails_the_real_fetch_and_arm_shows_it(fleet: LabHandle) -> None:
    new = mint_pat(fleet)
    patch_config(fleet, "ipc-panel-0002", https_key(new["token"]))
    fleet.control("POST", f"/_lab/devops/pats/{new['authorizationId']}/revoke", expect=200)

    tick(fleet)

    after = truth(fleet, "ipc-panel-0002")
    assert after["last_fetch"]["ok"] is False
    assert after["last_fetch"]["error"].endswith("authentication required")
    assert after["compliance_state"] == "Non-Compliant"
    assert new["token"] not in str(fleet.state()), "ground truth never shows a PAT"


@pytest.mark.lab
def test_a_new_commit_is_fetched_and_applied_but_not_on_a_suspended_panel(fleet: LabHandle) -> None:
    patch_config(fleet, "ipc-panel-0003", {"suspend": True})
    commit = fleet.control(
        "POST",
        "/_lab/devops/files",
        {"files": {"kubernetes/workloads/NOTES.md": "lab test\n"}, "message": "test"},
        expect=201,
    )

    tick(fleet)

    applied = truth(fleet, "ipc-panel-0001")
    suspended = truth(fleet, "ipc-panel-0003")
    assert applied["applied_revision"] == commit["sha"]
    assert suspended["applied_revision"] != commit["sha"]
    assert (suspended["suspended"], suspended["compliance_state"]) == (True, "Suspended")


@pytest.mark.lab
def test_a_change_an_offline_panel_misses_for_48_hours_waits_for_a_reapply(fleet: LabHandle) -> None:
    offline = "ipc-panel-0011"
    new = mint_pat(fleet)
    patch_config(fleet, offline, https_key(new["token"]))
    fleet.control("POST", "/_lab/clock/advance", {"seconds": 49 * HOUR_S})
    fleet.control("POST", f"/_lab/clusters/{offline}/connectivity", {"online": True}, expect=200)

    tick(fleet)
    missed = truth(fleet, offline)
    patch_config(fleet, offline, https_key(new["token"]))
    tick(fleet)
    reapplied = truth(fleet, offline)

    assert (missed["config_generation"], missed["delivered_generation"]) == (2, 1)
    assert missed["last_fetch"]["ok"] is True, "it still fetches, with the credential it has"
    assert missed["credential_fingerprint"] != reapplied["credential_fingerprint"]
    assert (reapplied["config_generation"], reapplied["delivered_generation"]) == (3, 3)


@pytest.mark.lab
def test_provider_azure_fetches_with_workload_identity_on_ready_panels(fleet: LabHandle) -> None:
    ready = next(c for c in fleet.state()["clusters"] if c["online"] and c["workload_identity_ready"])
    patch_config(fleet, ready["name"], {"gitRepository": {"provider": "Azure"}})

    tick(fleet)

    after = truth(fleet, ready["name"])
    assert after["provider"] == "Azure"
    assert after["last_fetch"]["ok"] is True, "the Git server accepted the Entra token"


@pytest.mark.lab
def test_the_background_agents_sync_every_online_panel_on_its_interval(fleet: LabHandle) -> None:
    before = {c["name"]: c["last_fetch"]["at"] for c in fleet.state()["clusters"] if c["online"]}

    fleet.control("POST", "/_lab/clock/advance", {"seconds": 301})

    def synced() -> bool:
        now = {c["name"]: c["last_fetch"]["at"] for c in fleet.state()["clusters"] if c["online"]}
        return all(now[name] > at for name, at in before.items())

    assert wait_until(synced, timeout_s=15.0)


def wait_until(condition: Callable[[], bool], *, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_seeding_is_deterministic_and_fast_for_ten_thousand_panels() -> None:
    subscriptions = [f"sub-{i}" for i in range(3)]
    plan = SeedPlan(
        clusters=10_000,
        subscriptions=subscriptions,
        offline=500,
        git_url=GIT_URL,
        initial_pat="pat-1",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
    )

    started = time.monotonic()
    first = seed_fleet(plan)
    took = time.monotonic() - started
    second = seed_fleet(plan)

    assert took < 5.0
    assert [p.identity for p in first.panels] == [p.identity for p in second.panels]
    rings = [p.identity.ring for p in first.panels]
    assert (rings.count("canary"), rings.count("early"), rings.count("broad")) == (1000, 3000, 6000)
    offline = [p for p in first.panels if not p.connectivity.online]
    assert len(offline) == 500
    assert {p.identity.ring for p in offline} == {"broad"}
    assert first.by_name("ipc-panel-10000") is not None
    assert first.panels[0].connectivity.changed_at == plan.started_at - timedelta(days=1)
