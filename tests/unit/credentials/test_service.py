"""The service's entry points over fakes: preflight gates, events, the daily check, warnings, reports."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import Conflict, TransientError, Unprocessable
from shared.models import Selector
from shared.models.credentials import (
    PanelCredential,
    PanelCredentialState,
    SecretVersionId,
    WorkloadIdentityFacts,
)
from shared.services.credentials.keyvault_events import SecretEvent, SecretEventKind
from shared.services.credentials.service import (
    CredentialService,
    CredentialSettings,
    MigrationRequest,
    PreflightRefused,
    RolloutRequest,
)
from tests.unit.credentials.fakes import (
    BAD_PAT,
    GOOD_PAT,
    NOW,
    FakeDirectory,
    FakeEngine,
    FakeProbe,
    FakeReadiness,
    FakeSecretStore,
    MemoryLedger,
    RecordingNotifier,
    panel,
    transient,
    version,
)

SETTINGS = CredentialSettings(
    secret_name="flux-gitops-pat",
    git_url="https://dev.azure.com/ipc-org/p/_git/r",
    https_user="git",
    rings=("canary", "early", "broad"),
    ring_threshold=0.8,
    warning_days=(30, 14, 7, 3, 1),
)
PANELS = [
    panel("p1", ring="canary"),
    panel("p2", ring="early"),
    panel("p3", ring="broad", connectivity="Offline"),
]


def build(
    *entries: tuple[object, str],
    notifier: RecordingNotifier | None = None,
    engine: FakeEngine | None = None,
    readiness: FakeReadiness | None = None,
) -> tuple[CredentialService, FakeSecretStore, MemoryLedger, RecordingNotifier, FakeEngine]:
    secrets = FakeSecretStore(*entries)  # type: ignore[arg-type]
    ledger = MemoryLedger()
    notifier = notifier or RecordingNotifier()
    engine = engine or FakeEngine(panels=list(PANELS))
    service = CredentialService(
        settings=SETTINGS,
        secrets=secrets,
        probe=FakeProbe(),
        ledger=ledger,
        notifier=notifier,
        engine=engine,
        directory=FakeDirectory(engine.panels),
        readiness=readiness,
    )
    return service, secrets, ledger, notifier, engine


def prove_all(ledger: MemoryLedger, vid: str, panels: list = PANELS) -> None:  # type: ignore[type-arg]
    for p in panels:
        ledger.save_panel_credential(
            "flux-gitops-pat",
            PanelCredential(p.id, p.name, SecretVersionId(vid), PanelCredentialState.PROVEN, NOW),
        )


def new_version_event(vid: str, name: str = "flux-gitops-pat") -> SecretEvent:
    return SecretEvent("e1", SecretEventKind.NEW_VERSION, "kv", name, SecretVersionId(vid), NOW, None, None)


# --- preflight gate ----------------------------------------------------------------------------------
def test_a_refused_version_starts_nothing_and_says_why_without_the_value() -> None:
    service, _, _, notifier, engine = build((version("v2", created=NOW), BAD_PAT), (version("v1"), GOOD_PAT))
    with pytest.raises(PreflightRefused) as raised:
        service.start_rollout(RolloutRequest(reason="rotate", requested_by="me", trigger="api"))
    assert engine.started == []
    problem = raised.value.problem()
    assert problem["status"] == 422
    assert problem["preflight"]["passed"] is False
    assert len(notifier.messages) == 1
    assert BAD_PAT not in str(problem) + str(notifier.messages)


def test_a_dry_run_refusal_does_not_notify() -> None:
    service, _, _, notifier, _ = build((version("v2"), BAD_PAT))
    with pytest.raises(PreflightRefused):
        service.start_rollout(RolloutRequest(reason="r", requested_by="me", trigger="api", dry_run=True))
    assert notifier.messages == []


def test_an_untestable_version_is_a_transient_error() -> None:
    service, _secrets, _, _, engine = build((version("v2"), GOOD_PAT))
    service.probe = FakeProbe(unreachable=True)
    with pytest.raises(TransientError):
        service.start_rollout(RolloutRequest(reason="r", requested_by="me", trigger="api"))
    assert engine.started == []


def test_a_good_version_is_handed_to_the_engine_by_version_only() -> None:
    service, _, ledger, _, engine = build((version("v2", created=NOW), GOOD_PAT), (version("v1"), "old"))
    started = service.start_rollout(RolloutRequest(reason="rotate", requested_by="me", trigger="api"))
    call = engine.started[0]
    assert call["kind"] == "credential-rollout"
    assert call["params"]["version"] == "v2"
    assert call["selection"] == Selector(all=True)
    assert GOOD_PAT not in str(call)
    assert started.preflight.passed
    assert ledger.rollout("flux-gitops-pat", SecretVersionId("v2"))["operationId"] == "op-1"  # type: ignore[index]


def test_an_older_version_than_the_current_one_is_refused() -> None:
    service, _, _, _, engine = build((version("v2", created=NOW), GOOD_PAT), (version("v1"), GOOD_PAT))
    with pytest.raises(Unprocessable) as raised:
        service.start_rollout(
            RolloutRequest(reason="r", requested_by="me", trigger="api", version=SecretVersionId("v1"))
        )
    assert "not the current version" in raised.value.message
    assert engine.started == []


def test_a_newest_version_that_is_disabled_leaves_the_previous_one_current() -> None:
    service, _, _, _, engine = build(
        (version("v2", enabled=False, created=NOW), GOOD_PAT), (version("v1"), GOOD_PAT)
    )
    service.start_rollout(RolloutRequest(reason="r", requested_by="me", trigger="api"))
    assert engine.started[0]["params"]["version"] == "v1"


# --- Key Vault events --------------------------------------------------------------------------------
def test_a_duplicate_new_version_event_maps_to_the_same_operation() -> None:
    service, _, _, _, engine = build((version("v2", created=NOW), GOOD_PAT), (version("v1"), "old"))
    first = service.on_secret_event(new_version_event("v2"))
    second = service.on_secret_event(new_version_event("v2"))
    assert first == second == "rollout op-1 of version v2"
    keys = {call["idempotency_key"] for call in engine.started}
    assert keys == {"credential-rollout:flux-gitops-pat:v2"}


def test_events_about_other_secrets_are_ignored() -> None:
    service, _, _, _, engine = build((version("v2"), GOOD_PAT))
    assert service.on_secret_event(new_version_event("v2", name="other")).startswith("ignored")
    assert engine.started == []


def test_a_rollout_blocked_by_a_running_one_is_retried_by_event_grid() -> None:
    engine = FakeEngine(panels=list(PANELS), conflict=Conflict("target: overlaps op-0", field="target"))
    service, *_ = build((version("v2"), GOOD_PAT), engine=engine)
    with pytest.raises(TransientError):
        service.on_secret_event(new_version_event("v2"))


def test_a_refused_new_version_event_is_recorded_not_retried() -> None:
    service, _, ledger, notifier, engine = build((version("v2"), BAD_PAT))
    assert "refused" in service.on_secret_event(new_version_event("v2"))
    assert ledger.preflight("flux-gitops-pat", SecretVersionId("v2")) is not None
    assert engine.started == []
    assert len(notifier.messages) == 1


def test_near_expiry_warns_once_per_threshold() -> None:
    service, _, ledger, notifier, _ = build((version("v1", days_left=29), GOOD_PAT))
    near = SecretEvent(
        "e2", SecretEventKind.NEAR_EXPIRY, "kv", "flux-gitops-pat", SecretVersionId("v1"), NOW, None, None
    )
    assert service.on_secret_event(near) == "1 expiry warning(s) sent"
    assert service.on_secret_event(near) == "0 expiry warning(s) sent"
    assert [m["level"] for m in notifier.messages] == ["warning"]
    assert ledger.sent_warnings("flux-gitops-pat", SecretVersionId("v1")) == [30]


def test_the_event_time_counts_when_the_vault_clock_lags() -> None:
    service, _secrets, _, notifier, _ = build((version("v1", days_left=40), GOOD_PAT))
    late = NOW + timedelta(days=27)  # 13 days left by the event's clock
    near = SecretEvent(
        "e3", SecretEventKind.NEAR_EXPIRY, "kv", "flux-gitops-pat", SecretVersionId("v1"), late, None, None
    )
    service.on_secret_event(near)
    assert notifier.messages[0]["title"] == "Flux PAT expires in 13 days"


def test_an_undelivered_warning_is_sent_again_at_the_next_check() -> None:
    notifier = RecordingNotifier(fail_with=transient())
    service, secrets, ledger, _, _ = build((version("v1", days_left=6), GOOD_PAT), notifier=notifier)
    with pytest.raises(TransientError):
        service.check_expiry(secrets.list_versions(), now=NOW)
    assert ledger.sent_warnings("flux-gitops-pat", SecretVersionId("v1")) == []
    notifier.fail_with = None
    assert [w.threshold_days for w in service.check_expiry(secrets.list_versions(), now=NOW)] == [7]


def test_an_older_version_panels_still_depend_on_is_warned_about() -> None:
    service, secrets, ledger, notifier, _ = build(
        (version("v2", days_left=80, created=NOW), GOOD_PAT), (version("v1", days_left=2), "old")
    )
    prove_all(ledger, "v1", PANELS[:1])
    sent = service.check_expiry(secrets.list_versions(), now=NOW)
    assert [(w.version, w.threshold_days) for w in sent] == [("v1", 3)]
    assert "1 panel(s) still depend" in notifier.messages[0]["text"]


# --- the daily check ---------------------------------------------------------------------------------
def test_the_first_check_rolls_the_current_version_out_to_every_unknown_panel() -> None:
    service, _, _, _, engine = build((version("v1"), GOOD_PAT))
    outcome = service.run_scheduled_check()
    assert outcome["rollout"].startswith("started op-1 for 3 panel(s)")
    assert [p.name for p in engine.started[0]["panels"]] == ["p1", "p2", "p3"]


def test_a_fully_proven_fleet_needs_no_rollout() -> None:
    service, _, ledger, _, engine = build((version("v1"), GOOD_PAT))
    prove_all(ledger, "v1")
    assert service.run_scheduled_check()["rollout"] == "every panel is proven on version v1"
    assert engine.started == []


def test_a_running_or_halted_rollout_is_not_started_again() -> None:
    service, _, _ledger, _, engine = build((version("v1"), GOOD_PAT))
    service.run_scheduled_check()
    assert "running or halted" in service.run_scheduled_check()["rollout"]
    engine.operations["op-1"].update(status="failed", haltedReason="p1: authentication required")
    assert "running or halted" in service.run_scheduled_check()["rollout"]
    assert len(engine.started) == 1


def test_panels_the_last_rollout_still_tracks_offline_are_left_to_it() -> None:
    service, _, ledger, _, engine = build((version("v1"), GOOD_PAT))
    service.run_scheduled_check()
    prove_all(ledger, "v1", PANELS[:2])
    p3 = PANELS[2]
    engine.operations["op-1"].update(
        status="succeeded",
        clusters=[
            {
                "name": p3.name,
                "subscription": p3.subscription,
                "resourceGroup": p3.resource_group,
                "state": "pending-offline",
            }
        ],
    )
    assert "still tracks" in service.run_scheduled_check()["rollout"]
    assert len(engine.started) == 1


# --- reports -----------------------------------------------------------------------------------------
def test_revocation_is_safe_only_when_every_panel_is_proven() -> None:
    service, _, ledger, _, _ = build(
        (version("v2", created=NOW, authorization_id="auth-2"), GOOD_PAT),
        (version("v1", authorization_id="auth-1"), "old"),
    )
    prove_all(ledger, "v2", PANELS[:2])
    report = service.report()
    assert report["revocation"]["safe"] is False
    assert report["revocation"]["revocable"] == []
    assert report["stragglers"][0]["name"] == "p3"
    assert report["stragglers"][0]["connectivity"] == "Offline"
    prove_all(ledger, "v2")
    report = service.report()
    assert report["revocation"]["safe"] is True
    assert [r["authorizationId"] for r in report["revocation"]["revocable"]] == ["auth-1"]
    assert report["current"]["daysLeft"] == 60.0
    assert report["versions"][0]["proven"] == 3


def test_the_report_counts_panels_per_version_and_never_shows_a_value() -> None:
    service, _, ledger, _, _ = build((version("v2", created=NOW), GOOD_PAT), (version("v1"), "old"))
    prove_all(ledger, "v1", PANELS[:1])
    report = service.report()
    assert report["panels"] == {
        "total": 3,
        "proven": 0,
        "workloadIdentity": 0,
        "applying": 0,
        "migrating": 0,
        "failed": 0,
        "behind": 1,
        "unknown": 2,
    }
    assert {v["version"]: v["panels"] for v in report["versions"]} == {"v2": 0, "v1": 1}
    assert GOOD_PAT not in str(report)


# --- workload identity -------------------------------------------------------------------------------
READINESS = FakeReadiness(
    {
        "p1": WorkloadIdentityFacts("1.16.3", True, True),
        "p2": WorkloadIdentityFacts("1.13.2", True, True),
        "p3": WorkloadIdentityFacts("1.16.3", False, True),
    }
)


def test_the_readiness_report_says_why_a_panel_cannot_move() -> None:
    service, *_ = build((version("v1"), GOOD_PAT), readiness=READINESS)
    report = service.workload_identity_report(None)
    by_name = {row["name"]: row for row in report["clusters"]}
    assert by_name["p1"]["ready"] is True
    assert "older than 1.15.1" in by_name["p2"]["reasons"][0]
    assert "workloadIdentity" in by_name["p3"]["reasons"][0]
    assert report["summary"] == {"total": 3, "ready": 1, "notReady": 2, "onWorkloadIdentity": 0}


def test_migration_only_plans_ready_panels() -> None:
    service, _, _, _, engine = build((version("v1"), GOOD_PAT), readiness=READINESS)
    started = service.start_migration(
        MigrationRequest(reason="off PATs", requested_by="me", selection=Selector(all=True))
    )
    assert [p.name for p in engine.started[0]["panels"]] == ["p1"]
    assert {row["name"] for row in started.not_ready} == {"p2", "p3"}


def test_migration_with_no_ready_panel_starts_nothing() -> None:
    service, _, _, _, engine = build((version("v1"), GOOD_PAT), readiness=READINESS)
    started = service.start_migration(
        MigrationRequest(reason="r", requested_by="me", selection=Selector(clusters=("p2",)))
    )
    assert started.result is None
    assert engine.started == []


def test_a_non_ascii_pat_is_refused_recorded_and_notified_with_nothing_changed() -> None:
    pasted = GOOD_PAT[:-1] + "€"
    service, _, ledger, notifier, engine = build(
        (version("v2", created=NOW), pasted), (version("v1"), GOOD_PAT)
    )
    with pytest.raises(PreflightRefused) as raised:
        service.start_rollout(RolloutRequest(reason="rotate", requested_by="me", trigger="api"))
    assert engine.started == []
    assert raised.value.problem()["status"] == 422
    assert [c["name"] for c in raised.value.problem()["preflight"]["checks"]][-1] == "wellFormed"
    assert len(notifier.messages) == 1
    assert ledger.preflight("flux-gitops-pat", SecretVersionId("v2")) is not None
    assert pasted not in str(raised.value.problem()) + str(notifier.messages) + repr(ledger.__dict__)


# --- the same version already rolling out (issue 12: finding 12) ---------------------------------------
def running_rollout(op_id: str, version_id: str) -> dict[str, object]:
    params = {"secret": "flux-gitops-pat", "version": version_id}
    return {"id": op_id, "kind": "credential-rollout", "status": "running", "params": params}


def test_a_rollout_of_the_version_already_rolling_out_answers_with_that_operation() -> None:
    conflict = Conflict("target: overlaps op-kv", field="target", operationId="op-kv")
    engine = FakeEngine(panels=list(PANELS), conflict=conflict)
    engine.operations["op-kv"] = running_rollout("op-kv", "v2")
    service, *_ = build((version("v2", created=NOW), GOOD_PAT), (version("v1"), "old"), engine=engine)
    started = service.start_rollout(RolloutRequest(reason="rotate", requested_by="me", trigger="api"))
    assert started.result.operation_id == "op-kv"
    assert started.result.created is False
    assert started.result.status == "running"


def test_a_rollout_conflicting_with_another_versions_rollout_still_conflicts() -> None:
    conflict = Conflict("target: overlaps op-kv", field="target", operationId="op-kv")
    engine = FakeEngine(panels=list(PANELS), conflict=conflict)
    engine.operations["op-kv"] = running_rollout("op-kv", "v1")
    service, *_ = build((version("v2", created=NOW), GOOD_PAT), (version("v1"), "old"), engine=engine)
    with pytest.raises(Conflict):
        service.start_rollout(RolloutRequest(reason="rotate", requested_by="me", trigger="api"))
