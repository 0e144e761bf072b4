"""The credential-rollout strategy: rings, the patch, proof, halting, and never an unvalidated PAT."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from shared.models import PanelState
from shared.models.credentials import (
    CheckOutcome,
    PanelCredential,
    PanelCredentialState,
    PreflightCheck,
    PreflightReport,
    SecretVersionId,
)
from shared.services.credentials.rollout import (
    CredentialRolloutStrategy,
    NotValidated,
    RolloutParams,
    Superseded,
)
from tests.unit.credentials.fakes import (
    GOOD_PAT,
    NOW,
    FakeSecretStore,
    MemoryLedger,
    RecordingNotifier,
    applied,
    flux_state,
    panel,
    version,
)

PARAMS = RolloutParams(
    secret="flux-gitops-pat",
    version=SecretVersionId("v2"),
    https_user="git",
    rings=("canary", "early", "broad"),
    ring_threshold=0.8,
    trigger="api",
).to_json()


def passed(vid: str = "v2") -> PreflightReport:
    return PreflightReport(
        secret="flux-gitops-pat",
        version=SecretVersionId(vid),
        checked_at=NOW,
        checks=(PreflightCheck("authenticates", CheckOutcome.PASSED, "ok"),),
    )


@pytest.fixture
def ledger() -> MemoryLedger:
    store = MemoryLedger()
    store.save_preflight(passed())
    return store


@pytest.fixture
def secrets() -> FakeSecretStore:
    return FakeSecretStore((version("v2", days_left=90), GOOD_PAT), (version("v1", days_left=10), "old"))


def strategy(secrets: FakeSecretStore, ledger: MemoryLedger) -> CredentialRolloutStrategy:
    return CredentialRolloutStrategy(secrets=secrets, ledger=ledger, notifier=RecordingNotifier())


def test_plan_orders_rings_and_puts_untagged_panels_last(
    secrets: FakeSecretStore, ledger: MemoryLedger
) -> None:
    panels = [
        panel("p1", ring="broad"),
        panel("p2", ring=None),
        panel("p3", ring="canary"),
        panel("p4", ring="early"),
    ]
    stages = strategy(secrets, ledger).plan(panels, PARAMS)
    assert [(s.name, [p.name for p in s.panels]) for s in stages] == [
        ("canary", ["p3"]),
        ("early", ["p4"]),
        ("broad", ["p1", "p2"]),
    ]
    assert all(s.success_threshold == 0.8 for s in stages)


def test_the_patch_carries_the_complete_protected_settings_and_user(
    secrets: FakeSecretStore, ledger: MemoryLedger
) -> None:
    patch = strategy(secrets, ledger).desired_patch(panel("p1"), flux_state(), PARAMS)
    assert patch == {
        "gitRepository": {"httpsUser": "git"},
        "configurationProtectedSettings": {"httpsKey": base64.b64encode(GOOD_PAT.encode()).decode()},
    }


def test_the_params_never_hold_the_value(secrets: FakeSecretStore, ledger: MemoryLedger) -> None:
    validated = strategy(secrets, ledger).validate_params(PARAMS)
    assert GOOD_PAT not in str(validated)
    assert validated["version"] == "v2"


def test_a_panel_proven_on_the_version_is_unchanged_and_the_value_is_not_read(
    secrets: FakeSecretStore, ledger: MemoryLedger
) -> None:
    p = panel("p1")
    ledger.save_panel_credential(
        "flux-gitops-pat",
        PanelCredential(p.id, p.name, SecretVersionId("v2"), PanelCredentialState.PROVEN, NOW),
    )
    assert strategy(secrets, ledger).desired_patch(p, flux_state(), PARAMS) is None
    assert secrets.value_reads == []


def test_a_version_without_a_passed_preflight_never_reaches_a_panel(secrets: FakeSecretStore) -> None:
    with pytest.raises(NotValidated):
        strategy(secrets, MemoryLedger()).desired_patch(panel("p1"), flux_state(), PARAMS)
    assert secrets.value_reads == []


def test_a_superseded_version_is_not_applied(secrets: FakeSecretStore, ledger: MemoryLedger) -> None:
    secrets.add(version("v3", days_left=90, created=NOW), "newer")
    with pytest.raises(Superseded):
        strategy(secrets, ledger).desired_patch(panel("p1"), flux_state(), PARAMS)
    assert secrets.value_reads == []


def test_would_change_reads_no_secret(secrets: FakeSecretStore, ledger: MemoryLedger) -> None:
    assert strategy(secrets, ledger).would_change(panel("p1"), flux_state(), PARAMS)
    assert secrets.value_reads == []


def test_a_fetch_after_the_change_proves_the_panel_and_records_it(
    secrets: FakeSecretStore, ledger: MemoryLedger
) -> None:
    p = panel("p1")
    verdict = strategy(secrets, ledger).check(
        p, flux_state(reported_at=NOW + timedelta(minutes=5)), applied(NOW), PARAMS
    )
    assert verdict.outcome == "converged"
    record = ledger.panel_credential("flux-gitops-pat", p.key)
    assert record is not None
    assert record.holds_proven("v2")


def test_waiting_records_the_panel_as_applying_once(secrets: FakeSecretStore, ledger: MemoryLedger) -> None:
    p = panel("p1")
    s = strategy(secrets, ledger)
    for _ in range(3):
        assert (
            s.check(p, flux_state(reported_at=NOW - timedelta(minutes=1)), applied(NOW), PARAMS).outcome
            == "waiting"
        )
    record = ledger.panel_credential("flux-gitops-pat", p.key)
    assert record is not None
    assert record.state is PanelCredentialState.APPLYING
    assert ledger.writes == 1


def test_an_authentication_failure_halts_the_operation(
    secrets: FakeSecretStore, ledger: MemoryLedger
) -> None:
    p = panel("p1")
    state = flux_state(
        reported_at=NOW + timedelta(minutes=5),
        ready=False,
        reason="GitOperationFailed",
        message="authentication required",
    )
    verdict = strategy(secrets, ledger).check(p, state, applied(NOW), PARAMS)
    assert verdict.outcome == "failed"
    assert verdict.halt_operation
    record = ledger.panel_credential("flux-gitops-pat", p.key)
    assert record is not None
    assert record.state is PanelCredentialState.FAILED


def test_a_panel_whose_move_to_workload_identity_failed_goes_back_to_the_pat(
    secrets: FakeSecretStore, ledger: MemoryLedger
) -> None:
    patch = strategy(secrets, ledger).desired_patch(
        panel("p1"), flux_state(provider="Azure", https_user=None), PARAMS
    )
    assert patch is not None
    assert patch["gitRepository"] == {"httpsUser": "git", "provider": "Generic"}


def test_a_panel_on_workload_identity_is_left_alone(secrets: FakeSecretStore, ledger: MemoryLedger) -> None:
    p = panel("p1")
    ledger.save_panel_credential(
        "flux-gitops-pat", PanelCredential(p.id, p.name, None, PanelCredentialState.WORKLOAD_IDENTITY, NOW)
    )
    assert (
        strategy(secrets, ledger).desired_patch(p, flux_state(provider="Azure", https_user=None), PARAMS)
        is None
    )


def test_halting_notifies_once(secrets: FakeSecretStore, ledger: MemoryLedger) -> None:
    from shared.models import OperationId
    from shared.ports import OperationRecord

    notifier = RecordingNotifier()
    s = CredentialRolloutStrategy(secrets=secrets, ledger=ledger, notifier=notifier)
    record = OperationRecord(
        id=OperationId("op-1"),
        kind="credential-rollout",
        status="running",
        reason="r",
        requested_by="me",
        created_at=NOW,
        updated_at=NOW,
        configuration="ipc-platform-config",
        params=PARAMS,
        selection={},
        stage_names=("canary",),
        stage_thresholds=(0.8,),
        halted_reason="p1: authentication required",
    )
    s.on_stage_done(record, 0, {PanelState.FAILED.value: 1})
    s.on_stage_done(record, 0, {PanelState.FAILED.value: 1})
    assert len(notifier.messages) == 1
    assert notifier.messages[0]["level"] == "error"


def test_a_version_newer_than_the_cached_list_is_not_mistaken_for_superseded(
    secrets: FakeSecretStore, ledger: MemoryLedger
) -> None:
    s = strategy(secrets, ledger)
    assert s.desired_patch(panel("p1"), flux_state(), PARAMS) is not None  # caches [v2, v1]
    secrets.add(version("v3", days_left=90, created=NOW), "newest")
    ledger.save_preflight(passed("v3"))
    newer = {**PARAMS, "version": "v3"}
    patch = s.desired_patch(panel("p2"), flux_state(), newer)
    assert patch is not None
    assert patch["configurationProtectedSettings"]["httpsKey"] == base64.b64encode(b"newest").decode()
