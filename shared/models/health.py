"""Fleet health values: one panel as Resource Graph shows it, and the cause vocabulary (issue 13).

`PanelView` is one row of the app's panels query (connectedClusters left-joined with the panel's Flux
configuration and its `microsoft.flux` extension), parsed into the same `Panel` and `FluxState` values
the ARM boundary gives, so every service that reads the fleet reads one vocabulary whichever way the
fleet was read (one ARM GET per panel, or one Resource Graph page per 1,000 panels).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.models import FluxState, Panel


@dataclass(frozen=True)
class PanelView:
    """A panel with its Flux configuration (None when it has none) and its Flux extension."""

    panel: Panel
    flux: FluxState | None
    extension_version: str | None = None  # the microsoft.flux extension's currentVersion
    extension_state: str | None = None  # its provisioningState (Succeeded | Failed | Creating | ...)
    source_url: str | None = None  # gitRepository.url
    source_branch: str | None = None  # gitRepository.repositoryRef.branch


class Cause(StrEnum):
    """Why a panel is (not) converged: one per panel. The priority is `CAUSE_PRIORITY` (first wins)."""

    READY = "ready"
    RECONCILING = "reconciling"
    SUSPENDED = "suspended"
    OFFLINE = "offline"
    AGENT_EXPIRED = "agent-expired"
    NOT_ONBOARDED = "not-onboarded"
    EXTENSION_FAILED = "extension-failed"
    GIT_AUTH_FAILED = "git-auth-failed"
    GIT_SOURCE_NOT_FOUND = "git-source-not-found"
    GIT_FETCH_FAILED = "git-fetch-failed"
    KUSTOMIZATION_PATH_NOT_FOUND = "kustomization-path-not-found"
    KUSTOMIZE_BUILD_FAILED = "kustomize-build-failed"
    HEALTH_CHECK_FAILED = "health-check-failed"
    UNKNOWN = "unknown"


# The order the classifier asks in (first match wins), and why: what the panel cannot do at all comes
# before what its Flux objects report, because an offline or expired agent's last report is stale and an
# extension that failed runs no controllers. Then the operator's own choice (suspended), then the source
# before what is built from it (a failed fetch leaves the kustomizations reconciling an old artifact),
# then the build before its health check; `reconciling` (nothing failed, something not yet Ready) and
# `ready` last; `unknown` when Arc says Non-Compliant and no object says why.
CAUSE_PRIORITY: tuple[Cause, ...] = (
    Cause.NOT_ONBOARDED,
    Cause.AGENT_EXPIRED,
    Cause.OFFLINE,
    Cause.EXTENSION_FAILED,
    Cause.SUSPENDED,
    Cause.GIT_AUTH_FAILED,
    Cause.GIT_SOURCE_NOT_FOUND,
    Cause.GIT_FETCH_FAILED,
    Cause.KUSTOMIZATION_PATH_NOT_FOUND,
    Cause.KUSTOMIZE_BUILD_FAILED,
    Cause.HEALTH_CHECK_FAILED,
    Cause.RECONCILING,
    Cause.READY,
    Cause.UNKNOWN,
)


@dataclass(frozen=True)
class SnapshotRow:
    """One panel in the last health snapshot (Table `ffhealth`): its cause and since when it holds."""

    key: str  # the panel key
    name: str
    ring: str
    cause: str  # a Cause value
    since: datetime  # the condition's transition time when Flux gave one, else the snapshot's (app clock)
