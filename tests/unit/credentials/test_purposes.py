"""Two credentials, least privilege (issue 15): the fleet PAT for factory panels only, the automation PAT
for the one image-automation runner only; preflight proves what each can do with the Git protocol."""

from __future__ import annotations

import dataclasses

import pytest

from shared.errors import Unprocessable
from shared.models import ClusterId, Panel, Selector, SubscriptionId
from shared.models.credentials import CredentialPurpose, SecretVersionId
from shared.models.runner import RunnerSelector
from shared.services.credentials.keyvault_events import SecretEvent, SecretEventKind
from shared.services.credentials.preflight import run_preflight
from shared.services.credentials.router import CredentialRouter
from shared.services.credentials.service import (
    CredentialService,
    CredentialSettings,
    PreflightRefused,
    RolloutRequest,
)
from tests.unit.credentials.fakes import (
    GOOD_PAT,
    NOW,
    FakeDirectory,
    FakeEngine,
    FakeProbe,
    FakeSecretStore,
    MemoryLedger,
    RecordingNotifier,
    panel,
    version,
)

WRITE_PAT = "w" * 52
GIT_URL = "https://dev.azure.com/ipc-org/p/_git/r"
FLEET = CredentialSettings(
    secret_name="flux-gitops-pat",
    git_url=GIT_URL,
    https_user="git",
    rings=("canary", "early", "broad"),
    ring_threshold=0.8,
    warning_days=(30, 14, 7, 3, 1),
)
AUTOMATION = dataclasses.replace(
    FLEET, secret_name="flux-gitops-automation-pat", purpose=CredentialPurpose.AUTOMATION
)


def runner(name: str = "ipc-automation-hub") -> Panel:
    return Panel(
        id=ClusterId(
            f"/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/{name}"
        ),
        name=name,
        subscription=SubscriptionId("sub-1"),
        resource_group="rg",
        tags={"fluxfleet-role": "image-automation"},
        connectivity="Connected",
    )


FACTORY = [panel("p1", ring="canary"), panel("p2", ring="early"), panel("p3", ring="broad")]


def service(
    settings: CredentialSettings, value: str, *, panels: list[Panel], probe: FakeProbe | None = None
) -> tuple[CredentialService, FakeEngine]:
    engine = FakeEngine(panels=list(panels))
    built = CredentialService(
        settings=settings,
        secrets=FakeSecretStore((version("v2", created=NOW), value)),
        probe=probe or FakeProbe(writers=(WRITE_PAT,)),
        ledger=MemoryLedger(),
        notifier=RecordingNotifier(),
        engine=engine,  # type: ignore[arg-type]
        directory=FakeDirectory(engine.panels),
    )
    return built, engine


def started_names(engine: FakeEngine) -> list[str]:
    return sorted(p.name for p in engine.started[-1]["panels"])


# --- preflight: the Git protocol says what a credential can do ----------------------------------------
def test_a_write_pat_offered_as_the_fleet_credential_is_refused_and_nothing_starts() -> None:
    fleet, engine = service(FLEET, WRITE_PAT, panels=[*FACTORY, runner()])
    with pytest.raises(PreflightRefused) as refused:
        fleet.start_rollout(RolloutRequest(reason="rotate", requested_by="me", trigger="api"))
    checks = {c["name"]: c for c in refused.value.problem()["preflight"]["checks"]}
    assert checks["authenticates"]["outcome"] == "passed"
    assert checks["readOnly"]["outcome"] == "failed"
    assert "can push" in checks["readOnly"]["detail"]
    assert engine.started == []


def test_a_read_only_pat_offered_as_the_automation_credential_is_refused() -> None:
    automation, engine = service(AUTOMATION, GOOD_PAT, panels=[*FACTORY, runner()])
    with pytest.raises(PreflightRefused) as refused:
        automation.start_rollout(RolloutRequest(reason="rotate", requested_by="me", trigger="api"))
    checks = {c["name"]: c for c in refused.value.problem()["preflight"]["checks"]}
    assert checks["canPush"]["outcome"] == "failed"
    assert "automation-credential-refused" in checks["canPush"]["detail"]
    assert engine.started == []


def test_the_push_probe_asks_for_git_receive_pack_and_an_unreachable_server_is_retryable() -> None:
    probe = FakeProbe(writers=(WRITE_PAT,))
    store = FakeSecretStore((version("v2"), WRITE_PAT))
    report = run_preflight(
        version=version("v2"),
        now=NOW,
        read_value=store.read_value,
        probe=probe,
        git_url=GIT_URL,
        https_user="git",
        warn_below_days=1,
        purpose=CredentialPurpose.AUTOMATION,
    )
    assert report.passed
    assert probe.services == ["git-upload-pack", "git-receive-pack"]
    assert [c.name for c in report.checks][-2:] == ["authenticates", "canPush"]


# --- scope: which clusters each credential reaches ----------------------------------------------------
def test_a_fleet_rollout_targets_factory_panels_only() -> None:
    fleet, engine = service(FLEET, GOOD_PAT, panels=[*FACTORY, runner()])
    fleet.start_rollout(RolloutRequest(reason="rotate", requested_by="me", trigger="api"))
    assert started_names(engine) == ["p1", "p2", "p3"]
    assert fleet.report()["panels"]["total"] == len(FACTORY)


def test_a_fleet_rollout_that_names_the_runner_is_refused_naming_the_target() -> None:
    fleet, engine = service(FLEET, GOOD_PAT, panels=[*FACTORY, runner()])
    with pytest.raises(Unprocessable) as refused:
        fleet.start_rollout(
            RolloutRequest(
                reason="r",
                requested_by="me",
                trigger="api",
                selection=Selector(clusters=("p1", "ipc-automation-hub")),
            )
        )
    assert refused.value.problem()["field"] == "target"
    assert "ipc-automation-hub" in refused.value.message
    assert engine.started == []


def test_an_automation_rollout_targets_the_runner_only() -> None:
    automation, engine = service(AUTOMATION, WRITE_PAT, panels=[*FACTORY, runner()])
    automation.start_rollout(RolloutRequest(reason="rotate", requested_by="me", trigger="api"))
    assert started_names(engine) == ["ipc-automation-hub"]


@pytest.mark.parametrize(
    ("runners", "words"), [([], "runner-not-configured"), ([runner("hub-a"), runner("hub-b")], "exactly one")]
)
def test_an_automation_rollout_needs_exactly_one_runner(runners: list[Panel], words: str) -> None:
    automation, engine = service(AUTOMATION, WRITE_PAT, panels=[*FACTORY, *runners])
    with pytest.raises(Unprocessable, match=words):
        automation.start_rollout(RolloutRequest(reason="rotate", requested_by="me", trigger="api"))
    assert engine.started == []


def test_the_runner_selector_reads_its_setting_and_matches_tag_names_case_insensitively() -> None:
    selector = RunnerSelector.parse("Role = hub")
    assert (selector.name, selector.value) == ("Role", "hub")
    hub = dataclasses.replace(runner(), tags={"role": "hub"})
    assert selector.runners([hub, *FACTORY]) == [hub]
    with pytest.raises(ValueError, match="expected <tag name>=<tag value>"):
        RunnerSelector.parse("no-value=")


# --- the router: Key Vault events by secret, both maps -----------------------------------------------
def test_key_vault_events_go_to_the_credential_whose_secret_they_name() -> None:
    fleet, fleet_engine = service(FLEET, GOOD_PAT, panels=[*FACTORY, runner()])
    automation, automation_engine = service(AUTOMATION, WRITE_PAT, panels=[*FACTORY, runner()])
    router = CredentialRouter(
        services={CredentialPurpose.FLEET: fleet, CredentialPurpose.AUTOMATION: automation}
    )
    event = SecretEvent(
        "e1",
        SecretEventKind.NEW_VERSION,
        "kv",
        "flux-gitops-automation-pat",
        SecretVersionId("v2"),
        NOW,
        None,
        None,
    )
    outcome = router.on_secret_event(event)
    assert outcome.startswith("automation: rollout")
    assert fleet_engine.started == []
    assert started_names(automation_engine) == ["ipc-automation-hub"]
    other = dataclasses.replace(event, secret_name="something-else")
    assert router.on_secret_event(other).startswith("ignored")
    body = router.report()
    assert body["purpose"] == "fleet"
    assert body["panels"]["total"] == len(FACTORY)
    assert body["automation"]["purpose"] == "automation"
    assert body["automation"]["panels"]["total"] == 1
