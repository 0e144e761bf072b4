"""Preflight refuses a version before any panel depends on it, and says why."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import TransientError
from shared.models.credentials import CheckOutcome
from shared.services.credentials.preflight import run_preflight
from tests.unit.credentials.fakes import BAD_PAT, GOOD_PAT, NOW, FakeProbe, FakeSecretStore, version

GIT_URL = "https://dev.azure.com/ipc-org/IPC-Platform-Engineering/_git/IPC-Platform-Engineering"


def preflight(
    info, value: str = GOOD_PAT, probe: FakeProbe | None = None, store: FakeSecretStore | None = None
):  # type: ignore[no-untyped-def]
    store = store or FakeSecretStore((info, value))
    return run_preflight(
        version=info,
        now=NOW,
        read_value=store.read_value,
        probe=probe or FakeProbe(),
        git_url=GIT_URL,
        https_user="git",
        warn_below_days=1,
    )


def test_a_valid_version_that_authenticates_passes() -> None:
    report = preflight(version("v2"))
    assert report.passed
    assert [c.name for c in report.checks] == ["enabled", "expiry", "authenticates", "readOnly"]


def test_a_pat_the_repository_refuses_fails_with_the_reason() -> None:
    report = preflight(version("v2"), BAD_PAT)
    assert not report.passed
    assert any("refused" in reason for reason in report.reasons)
    assert not report.retryable


def test_a_disabled_version_is_refused_without_reading_its_value() -> None:
    store = FakeSecretStore((version("v2", enabled=False), GOOD_PAT))
    probe = FakeProbe()
    report = preflight(version("v2", enabled=False), store=store, probe=probe)
    assert not report.passed
    assert store.value_reads == []
    assert probe.calls == []


def test_an_expired_version_is_refused() -> None:
    report = preflight(version("v2", days_left=-1))
    assert not report.passed
    assert report.reasons == ("expiry: the version has expired",)


def test_a_version_not_yet_valid_is_refused() -> None:
    report = preflight(version("v2", not_before=NOW + timedelta(hours=2)))
    assert not report.passed
    assert report.reasons[0].startswith("notBefore:")


def test_a_version_without_exp_passes_with_a_warning() -> None:
    report = preflight(version("v2", days_left=None))
    assert report.passed
    assert any("no `exp`" in warning for warning in report.warnings)


def test_a_value_with_a_trailing_newline_is_refused_before_probing() -> None:
    probe = FakeProbe(accepted=[GOOD_PAT + "\n"])
    report = preflight(version("v2"), GOOD_PAT + "\n", probe=probe)
    assert not report.passed
    assert report.checks[-1].name == "wellFormed"
    assert probe.calls == []


def test_an_unreachable_repository_fails_but_is_retryable() -> None:
    report = preflight(version("v2"), probe=FakeProbe(unreachable=True))
    assert not report.passed
    assert report.retryable


def test_a_transient_key_vault_error_propagates_for_the_trigger_to_retry() -> None:
    store = FakeSecretStore((version("v2"), GOOD_PAT))
    store.fail_reads_with = TransientError("Key Vault 503")
    with pytest.raises(TransientError):
        preflight(version("v2"), store=store)


def test_the_report_never_contains_the_value() -> None:
    for value in (GOOD_PAT, BAD_PAT):
        report = preflight(version("v2"), value)
        assert value not in repr(report)
        assert value not in str(report.to_json())
        assert all(c.outcome in CheckOutcome for c in report.checks)


@pytest.mark.parametrize("value", [GOOD_PAT[:-1] + "é", GOOD_PAT[:-1] + "€", "\u200b" + GOOD_PAT])
def test_a_value_with_a_non_ascii_character_is_refused_as_malformed_before_probing(value: str) -> None:
    probe = FakeProbe(accepted=[value])
    report = preflight(version("v2"), value, probe=probe)
    assert not report.passed
    assert report.checks[-1].name == "wellFormed"
    assert probe.calls == []
    assert not report.retryable
