"""Expiry warnings: which threshold a version has crossed, and how loud to say it.

A PAT that expires unnoticed stops every panel from syncing, so the app warns at each configured
threshold (30, 14, 7, 3 and 1 days by default) and once more when it has expired. Each threshold is
warned about once per version: the ledger claims it before anything is sent, so the daily timer, a
`SecretNearExpiry` event and a second instance never repeat a warning. When several thresholds were
crossed since the last look (the app was down, or the clock jumped), only the tightest is sent: a
"30 days left" message would be wrong once 10 days are left.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from shared.services.credentials.model import ExpiryWarning, SecretVersionInfo, WarningLevel

# Threshold 0 is "expired"; it is always warned about, whatever the configuration.
EXPIRED_THRESHOLD = 0
# From this many days left, a warning is an ERROR: there is little time left to mint, validate and
# roll a PAT out to a fleet whose offline panels may need days to come back.
ERROR_AT_OR_BELOW_DAYS = 3


def due_warning(
    version: SecretVersionInfo,
    *,
    now: datetime,
    thresholds: Sequence[int],
    already_sent: Collection[int],
) -> ExpiryWarning | None:
    """The warning to send now for `version`, or None (no expiry, nothing crossed, or already sent)."""
    days_left = version.days_left(now)
    if days_left is None or version.expires_on is None:
        return None
    candidates = {*thresholds, EXPIRED_THRESHOLD}
    crossed = [threshold for threshold in candidates if days_left <= threshold]
    if not crossed:
        return None
    tightest = min(crossed)
    if tightest in already_sent:
        return None
    return ExpiryWarning(
        secret=version.name,
        version=version.version,
        threshold_days=tightest,
        days_left=days_left,
        expires_on=version.expires_on,
        level=WarningLevel.ERROR if tightest <= ERROR_AT_OR_BELOW_DAYS else WarningLevel.WARNING,
        authorization_id=version.authorization_id,
    )
