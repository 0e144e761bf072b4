"""Proof that a panel works with a changed credential: a fetch its agent reported *after* the change.

ARM accepts a PATCH of the protected settings at once, but only the panel's own report says whether
its Flux source-controller can fetch with it. The verdict compares ARM-clock times only (ARM accepted
the write at `accepted_at`; the agent reported at `status_updated_at`), never the app's clock.

A report that arrives within `PROOF_MARGIN` of the write may come from a sync that had read its
configuration just before the write and fetched with the old credential; it is not taken as proof.
The cost is at most one more sync interval for that panel (5 minutes by default, ten minutes at most
in the Arc defaults), against the risk of calling an untested PAT proven and the old one revocable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.models import AppliedChange, FluxState

# ARM's timestamps have whole seconds; a sync's fetch takes well under this. See the module docstring.
PROOF_MARGIN = timedelta(seconds=5)

# How Flux and Arc word an authentication failure of a Git source (go-git's errors for HTTP 401/403 over
# smart HTTP, and the reason for credentials that cannot even be built). Bare status numbers are not
# matched: messages carry URLs whose port may well contain "401".
AUTH_FAILURE_REASONS = frozenset({"AuthenticationFailed"})
AUTH_FAILURE_PHRASES = (
    "authentication required",
    "authentication failed",
    "authorization failed",
    "unauthorized",
    "failed to get credential",
)


class FetchVerdict(StrEnum):
    PROVEN = "proven"
    AUTH_FAILED = "auth-failed"
    OTHER_FAILURE = "other-failure"
    NO_REPORT_YET = "no-report-yet"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class FetchJudgement:
    verdict: FetchVerdict
    detail: str
    reported_at: datetime | None = None


def judge_fetch(current: FluxState, applied: AppliedChange) -> FetchJudgement:
    """What the agent's latest report says about the change in `applied`."""
    if current.suspended or current.compliance_state == "Suspended":
        return FetchJudgement(
            FetchVerdict.SUSPENDED, "Flux is suspended on this panel: it does not fetch until resumed"
        )
    reported_at = current.status_updated_at
    not_before = applied.accepted_at + PROOF_MARGIN
    if applied.baseline_status_updated_at is not None:
        not_before = max(not_before, applied.baseline_status_updated_at + timedelta(microseconds=1))
    if reported_at is None or reported_at < not_before:
        return FetchJudgement(
            FetchVerdict.NO_REPORT_YET, "waiting for the agent's first report after the change"
        )
    source = current.git_repository
    if source is None or source.ready is None:
        return FetchJudgement(
            FetchVerdict.NO_REPORT_YET, "the agent's report has no GitRepository condition yet", reported_at
        )
    message = (source.message or current.error_message or "").strip()
    if source.ready:
        return FetchJudgement(
            FetchVerdict.PROVEN, f"fetched at {reported_at:%Y-%m-%dT%H:%M:%SZ}", reported_at
        )
    if is_auth_failure(source.reason, message):
        return FetchJudgement(FetchVerdict.AUTH_FAILED, f"{source.reason}: {message}", reported_at)
    return FetchJudgement(FetchVerdict.OTHER_FAILURE, f"{source.reason}: {message}", reported_at)


def is_auth_failure(reason: str | None, message: str) -> bool:
    if reason in AUTH_FAILURE_REASONS:
        return True
    lowered = message.lower()
    return any(phrase in lowered for phrase in AUTH_FAILURE_PHRASES)
