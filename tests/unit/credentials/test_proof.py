"""A panel is proven by a successful fetch reported after the change, judged on ARM's clock."""

from __future__ import annotations

from datetime import timedelta

from shared.services.credentials.proof import PROOF_MARGIN, FetchVerdict, judge_fetch
from tests.unit.credentials.fakes import NOW, applied, flux_state


def test_a_successful_report_well_after_the_change_proves_it() -> None:
    judgement = judge_fetch(flux_state(reported_at=NOW + timedelta(minutes=5)), applied(NOW))
    assert judgement.verdict is FetchVerdict.PROVEN


def test_a_report_from_before_the_change_proves_nothing() -> None:
    judgement = judge_fetch(flux_state(reported_at=NOW - timedelta(minutes=1)), applied(NOW))
    assert judgement.verdict is FetchVerdict.NO_REPORT_YET


def test_a_report_within_the_margin_may_be_the_old_credential_and_is_not_proof() -> None:
    judgement = judge_fetch(flux_state(reported_at=NOW + timedelta(seconds=2)), applied(NOW))
    assert judgement.verdict is FetchVerdict.NO_REPORT_YET
    assert timedelta(seconds=2) < PROOF_MARGIN


def test_a_report_not_newer_than_the_baseline_is_not_proof() -> None:
    baseline = NOW + timedelta(minutes=10)
    judgement = judge_fetch(flux_state(reported_at=baseline), applied(NOW, baseline=baseline))
    assert judgement.verdict is FetchVerdict.NO_REPORT_YET


def test_an_authentication_failure_after_the_change_is_recognised() -> None:
    state = flux_state(
        reported_at=NOW + timedelta(minutes=5),
        ready=False,
        reason="GitOperationFailed",
        message="failed to checkout and determine revision: unable to clone 'https://127.0.0.1:40123/x': "
        "authentication required",
    )
    assert judge_fetch(state, applied(NOW)).verdict is FetchVerdict.AUTH_FAILED


def test_a_network_failure_with_a_port_containing_401_is_not_an_auth_failure() -> None:
    state = flux_state(
        reported_at=NOW + timedelta(minutes=5),
        ready=False,
        reason="GitOperationFailed",
        message="unable to clone 'https://127.0.0.1:40123/x': dial tcp: connection refused",
    )
    assert judge_fetch(state, applied(NOW)).verdict is FetchVerdict.OTHER_FAILURE


def test_a_suspended_configuration_cannot_prove_anything() -> None:
    state = flux_state(reported_at=NOW + timedelta(minutes=5), suspended=True)
    assert judge_fetch(state, applied(NOW)).verdict is FetchVerdict.SUSPENDED
