"""What `GET /api/credentials` shows: the fleet's credential map, and whether revoking is safe.

Every panel in the fleet is classified against the *current* Key Vault version (the newest enabled):
proven on it, on workload identity (holds no PAT), or a straggler — applying, failed, on an older
version, or unknown (the app has no record, e.g. before its first rollout). Only when no straggler is
left can the PATs of older versions be revoked without breaking a panel; the report then lists them
with their `authorizationId` for `python -m shared.cli pat revoke-superseded`. The app never revokes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.models import Panel
from shared.models.credentials import (
    PanelCredential,
    PanelCredentialState,
    SecretVersionId,
    SecretVersionInfo,
    SecretVersions,
)
from shared.timestamps import format_optional

# Enough stragglers to act on in one response; the counts are always complete.
MAX_STRAGGLERS_LISTED = 200


def classify(record: PanelCredential | None, current: str | None) -> str:
    """A panel's standing against the current version (the `state` of a straggler)."""
    if record is None:
        return "unknown"
    if record.state is PanelCredentialState.WORKLOAD_IDENTITY:
        return "workload-identity"
    if record.version is None:  # a move to workload identity, under way or failed
        return "failed" if record.state is PanelCredentialState.FAILED else "migrating"
    if record.version != current:
        return "behind"
    return {
        PanelCredentialState.PROVEN: "proven",
        PanelCredentialState.APPLYING: "applying",
        PanelCredentialState.FAILED: "failed",
    }[record.state]


def held_version(record: PanelCredential | None) -> SecretVersionId | None:
    """The version a panel can be relied on to work with (proven), or the one it was last given."""
    if record is None:
        return None
    if record.state is PanelCredentialState.PROVEN:
        return record.version
    return record.previous_version or record.version


def version_doc(version: SecretVersionInfo, now: datetime) -> dict[str, Any]:
    days = version.days_left(now)
    return {
        "version": version.version,
        "enabled": version.enabled,
        "createdOn": format_optional(version.created_on),
        "expiresOn": format_optional(version.expires_on),
        "daysLeft": None if days is None else round(days, 2),
        "authorizationId": version.authorization_id,
    }


def build_report(
    *,
    versions: SecretVersions,
    panels: Sequence[Panel],
    records: Sequence[PanelCredential],
    rollout: Mapping[str, Any] | None,
    warnings_sent: Sequence[int],
) -> dict[str, Any]:
    now = versions.observed_at
    current = versions.current
    current_id = current.version if current else None
    by_key = {_key(record): record for record in records}
    states: Counter[str] = Counter()
    per_version: dict[str, Counter[str]] = {}
    stragglers: list[dict[str, Any]] = []
    for panel in sorted(panels, key=lambda p: p.key):
        record = by_key.get(panel.key)
        state = classify(record, current_id)
        states[state] += 1
        if record is not None and record.version:
            counts = per_version.setdefault(record.version, Counter())
            counts["panels"] += 1
            counts["proven"] += record.state is PanelCredentialState.PROVEN
        if state in ("proven", "workload-identity"):
            continue
        stragglers.append(
            {
                "id": panel.id,
                "name": panel.name,
                "state": state,
                "version": record.version if record else None,
                "workingVersion": held_version(record),
                "connectivity": panel.connectivity,
                "lastConnectivityTime": format_optional(panel.last_connectivity_time),
                "ring": panel.tag("ring"),
                "detail": record.detail if record else "no record yet: proven by the next rollout",
            }
        )
    safe = current is not None and not stragglers
    older = versions.older_than(current.version) if current else ()
    revocation: dict[str, Any] = {
        "safe": safe,
        "reason": (
            "every panel is proven on the current version or uses workload identity"
            if safe
            else (
                "no enabled version in Key Vault"
                if current is None
                else f"{len(stragglers)} panel(s) are not proven on the current version"
            )
        ),
        "revocable": [
            {
                "version": v.version,
                "authorizationId": v.authorization_id,
                "expiresOn": format_optional(v.expires_on),
            }
            for v in older
        ]
        if safe
        else [],
        "pendingAfterRollout": []
        if safe
        else [{"version": v.version, "authorizationId": v.authorization_id} for v in older],
    }
    return {
        "secret": versions.name,
        "asOf": format_optional(now),
        "current": {**version_doc(current, now), "warningsSent": sorted(warnings_sent)} if current else None,
        "versions": [
            {
                **version_doc(v, now),
                "panels": per_version.get(v.version, Counter())["panels"],
                "proven": per_version.get(v.version, Counter())["proven"],
            }
            for v in versions.versions
        ],
        "panels": {
            "total": len(panels),
            "proven": states["proven"],
            "workloadIdentity": states["workload-identity"],
            "applying": states["applying"],
            "migrating": states["migrating"],
            "failed": states["failed"],
            "behind": states["behind"],
            "unknown": states["unknown"],
        },
        "stragglers": stragglers[:MAX_STRAGGLERS_LISTED],
        "stragglersTotal": len(stragglers),
        "rollout": dict(rollout) if rollout else None,
        "revocation": revocation,
    }


def _key(record: PanelCredential) -> str:
    from shared.models import cluster_key, parse_cluster_id

    try:
        return cluster_key(*parse_cluster_id(record.panel_id))
    except ValueError:
        return record.panel_id.lower()
