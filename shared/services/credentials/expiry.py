"""Expiry warnings: which threshold a version has crossed, and how loud to say it.

A PAT that expires unnoticed stops every panel from syncing, so the app warns at each configured
threshold (30, 14, 7, 3 and 1 days by default) and once more when it has expired. Each threshold is
warned about once per version: the ledger claims it before anything is sent, so the daily timer, a
`SecretNearExpiry` event and a second instance never repeat a warning. When several thresholds were
crossed since the last look (the app was down, or the clock jumped), only the tightest is sent: a
"30 days left" message would be wrong once 10 days are left.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import datetime

from shared.errors import PermanentError, TransientError
from shared.models.credentials import (
    ExpiryWarning,
    PanelCredential,
    SecretVersionInfo,
    SecretVersions,
    WarningLevel,
)
from shared.ports import Notifier
from shared.services.credentials.ports import CredentialLedger
from shared.services.credentials.report import held_version
from shared.timestamps import format_time

log = logging.getLogger("fluxfleet.credentials")

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


def send_expiry_warnings(
    versions: SecretVersions,
    *,
    now: datetime,
    records: Sequence[PanelCredential],
    thresholds: Sequence[int],
    ledger: CredentialLedger,
    notifier: Notifier,
    extra_versions: Sequence[str] = (),
) -> list[ExpiryWarning]:
    """Warn (log + webhook) about the current version and every older one a panel still depends on;
    each threshold once per version, claimed in the ledger before it is sent."""
    wanted = _versions_in_use(versions, records) | {v.lower() for v in extra_versions}
    sent: list[ExpiryWarning] = []
    for version in versions.versions:
        if version.version.lower() not in wanted:
            continue
        warning = due_warning(
            version,
            now=now,
            thresholds=thresholds,
            already_sent=ledger.sent_warnings(versions.name, version.version),
        )
        if warning is None or not ledger.claim_warning(warning, at=now):
            continue
        dependants = sum(1 for r in records if held_version(r) == version.version)
        _emit(
            warning,
            current=version is versions.current,
            dependants=dependants,
            ledger=ledger,
            notifier=notifier,
        )
        sent.append(warning)
    return sent


def _versions_in_use(versions: SecretVersions, records: Sequence[PanelCredential]) -> set[str]:
    current = versions.current
    in_use = {current.version.lower()} if current else set()
    for record in records:
        held = held_version(record)
        if held is not None:
            in_use.add(held.lower())
    return in_use


def _emit(
    warning: ExpiryWarning, *, current: bool, dependants: int, ledger: CredentialLedger, notifier: Notifier
) -> None:
    level = logging.ERROR if warning.level is WarningLevel.ERROR else logging.WARNING
    text = warning.text()
    if not current:
        text += f" {dependants} panel(s) still depend on this older version."
    log.log(
        level,
        text,
        extra={
            "event": "credential-expiry-warning",
            "secret": warning.secret,
            "version": warning.version,
            "threshold_days": warning.threshold_days,
            "days_left": round(warning.days_left, 2),
            "expires_on": format_time(warning.expires_on),
            "authorization_id": warning.authorization_id,
            "current_version": current,
        },
    )
    facts = {
        "secret": warning.secret,
        "version": warning.version,
        "expires": f"{warning.expires_on:%Y-%m-%d %H:%M} UTC",
        "days left": str(max(0, int(warning.days_left))),
    }
    if warning.authorization_id:
        facts["authorizationId"] = warning.authorization_id
    title = (
        "Flux PAT expired"
        if warning.expired
        else f"Flux PAT expires in {max(0, int(warning.days_left))} days"
    )
    try:
        notifier.notify(title=title, text=text, level=warning.level.value, facts=facts)
    except TransientError:
        ledger.release_warning(warning)  # the next check sends it again
        raise
    except PermanentError as exc:
        log.warning("the webhook refused the expiry warning: %s", exc.message)
