"""Expiry warnings: the tightest crossed threshold, once per version."""

from __future__ import annotations

from datetime import timedelta

from shared.models.credentials import WarningLevel
from shared.services.credentials.expiry import due_warning
from tests.unit.credentials.fakes import NOW, version

THRESHOLDS = (30, 14, 7, 3, 1)


def test_nothing_is_due_far_from_expiry() -> None:
    assert due_warning(version("v1", days_left=45), now=NOW, thresholds=THRESHOLDS, already_sent=()) is None


def test_crossing_thirty_days_warns_at_warning_level() -> None:
    warning = due_warning(version("v1", days_left=29.5), now=NOW, thresholds=THRESHOLDS, already_sent=())
    assert warning is not None
    assert warning.threshold_days == 30
    assert warning.level is WarningLevel.WARNING


def test_only_the_tightest_crossed_threshold_is_sent_after_a_gap() -> None:
    warning = due_warning(version("v1", days_left=10), now=NOW, thresholds=THRESHOLDS, already_sent=(30,))
    assert warning is not None
    assert warning.threshold_days == 14


def test_a_threshold_already_sent_is_not_sent_again() -> None:
    assert (
        due_warning(version("v1", days_left=12), now=NOW, thresholds=THRESHOLDS, already_sent=(14,)) is None
    )


def test_three_days_or_less_is_an_error() -> None:
    warning = due_warning(version("v1", days_left=2.5), now=NOW, thresholds=THRESHOLDS, already_sent=())
    assert warning is not None
    assert (warning.threshold_days, warning.level) == (3, WarningLevel.ERROR)


def test_expiry_is_warned_about_even_when_zero_is_not_configured() -> None:
    warning = due_warning(version("v1", days_left=-0.1), now=NOW, thresholds=(30,), already_sent=(30,))
    assert warning is not None
    assert warning.expired
    assert "expired" in warning.text()


def test_a_version_without_expiry_never_warns() -> None:
    assert due_warning(version("v1", days_left=None), now=NOW, thresholds=THRESHOLDS, already_sent=()) is None


def test_the_text_names_the_version_and_the_authorization_id() -> None:
    info = version("v1", days_left=6, authorization_id="auth-123")
    warning = due_warning(info, now=NOW + timedelta(hours=1), thresholds=THRESHOLDS, already_sent=())
    assert warning is not None
    assert "v1" in warning.text()
    assert "auth-123" in warning.text()
    assert "5 days" in warning.text()
