"""The workload-identity migration strategy: only ready panels change, and the move is proven."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.models.credentials import PanelCredentialState, WorkloadIdentityFacts
from shared.services.credentials.migration import NotReady, WorkloadIdentityMigrationStrategy
from tests.unit.credentials.fakes import (
    NOW,
    FakeReadiness,
    MemoryLedger,
    RecordingNotifier,
    applied,
    flux_state,
    panel,
)

PARAMS = {"secret": "flux-gitops-pat", "rings": ["canary", "early", "broad"], "ringThreshold": 0.8}
READINESS = FakeReadiness(
    {"ready": WorkloadIdentityFacts("1.15.1", True, True), "old": WorkloadIdentityFacts("1.14.9", True, True)}
)


def strategy(ledger: MemoryLedger) -> WorkloadIdentityMigrationStrategy:
    return WorkloadIdentityMigrationStrategy(readiness=READINESS, ledger=ledger, notifier=RecordingNotifier())


def test_a_ready_panel_gets_provider_azure_and_loses_its_https_credentials() -> None:
    patch = strategy(MemoryLedger()).desired_patch(panel("ready"), flux_state(), PARAMS)
    assert patch == {
        "gitRepository": {"provider": "Azure", "httpsUser": None},
        "configurationProtectedSettings": {"httpsKey": None},  # removed explicitly: ARM merges the map
    }


def test_a_panel_with_an_old_extension_is_never_changed() -> None:
    with pytest.raises(NotReady, match=r"older than 1\.15\.1"):
        strategy(MemoryLedger()).desired_patch(panel("old"), flux_state(), PARAMS)


def test_a_panel_already_on_provider_azure_is_unchanged() -> None:
    assert (
        strategy(MemoryLedger()).desired_patch(panel("ready"), flux_state(provider="Azure"), PARAMS) is None
    )


def test_a_fetch_after_the_move_records_the_panel_on_workload_identity() -> None:
    ledger = MemoryLedger()
    p = panel("ready")
    verdict = strategy(ledger).check(
        p, flux_state(reported_at=NOW + timedelta(minutes=5)), applied(NOW), PARAMS
    )
    assert verdict.outcome == "converged"
    record = ledger.panel_credential("flux-gitops-pat", p.key)
    assert record is not None
    assert record.state is PanelCredentialState.WORKLOAD_IDENTITY


def test_a_failed_move_halts_and_is_recorded() -> None:
    ledger = MemoryLedger()
    state = flux_state(
        reported_at=NOW + timedelta(minutes=5),
        ready=False,
        reason="AuthenticationFailed",
        message="failed to get credential from azure provider: workload identity is not enabled",
    )
    verdict = strategy(ledger).check(panel("ready"), state, applied(NOW), PARAMS)
    assert verdict.outcome == "failed"
    assert verdict.halt_operation
    assert "POST /api/credentials/rollout" in verdict.detail
