"""Value objects shared by every fleet-wide change: panels, their Flux state, selections, operations.

Why one module: suspend/resume (issue 6) and credential rollout (issue 7) are two *kinds* of the same
thing — a change applied to a selected part of the fleet, tracked per panel until each panel's agent
proves it — so they speak one vocabulary. Everything here is an immutable value (frozen dataclass) or
an id (`NewType`); raw wire payloads (ARM JSON, queue messages, API documents) are `TypedDict`s next to
the code that reads or writes them.

Times are timezone-aware UTC `datetime`s. Times that come from ARM (`status_updated_at`,
`last_connectivity_time`, `AppliedChange.accepted_at`) are on ARM's clock and are only ever compared
with each other, never with the app's clock (the lab runs its clock faster than real time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, NewType

# ARM resource id of a connected cluster, as ARM spells it. Compare with `cluster_key`, never raw:
# ARM ids are case-insensitive.
ClusterId = NewType("ClusterId", str)
SubscriptionId = NewType("SubscriptionId", str)
OperationId = NewType("OperationId", str)

# JSON-able parameters of an operation (stored with it; never a secret).
Params = Mapping[str, Any]


def cluster_key(subscription: str, resource_group: str, name: str) -> str:
    """A stable, case-insensitive key of a panel, fit for a Table RowKey (no `/`, `\\`, `#`, `?`)."""
    return f"{subscription}:{resource_group}:{name}".lower()


def parse_cluster_id(cluster_id: str) -> tuple[str, str, str]:
    """(subscription, resource group, name) of a connectedClusters ARM id; ValueError when it is not one."""
    parts = cluster_id.strip("/").split("/")
    # subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Kubernetes/connectedClusters/{name}
    expected_segments = 8
    if (
        len(parts) != expected_segments
        or parts[0].lower() != "subscriptions"
        or parts[2].lower() != "resourcegroups"
        or parts[4].lower() != "providers"
        or parts[5].lower() != "microsoft.kubernetes"
        or parts[6].lower() != "connectedclusters"
        or not all(parts[i] for i in (1, 3, 7))
    ):
        raise ValueError(f"not a connectedClusters resource id: {cluster_id!r}")
    return parts[1], parts[3], parts[7]


# Arc's connectivity values (connectedClusters `connectivityStatus`). A panel is "offline" for the
# engine when Arc itself says it cannot deliver: no heartbeat for 15 minutes, or an expired identity.
OFFLINE_CONNECTIVITY = frozenset({"Offline", "Expired", "AgentNotInstalled"})


@dataclass(frozen=True)
class Panel:
    """One Arc-connected cluster, as ARM lists it."""

    id: ClusterId
    name: str
    subscription: SubscriptionId
    resource_group: str
    location: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    connectivity: str = "Unknown"
    last_connectivity_time: datetime | None = None  # ARM's clock

    @property
    def key(self) -> str:
        return cluster_key(self.subscription, self.resource_group, self.name)

    @property
    def offline(self) -> bool:
        return self.connectivity in OFFLINE_CONNECTIVITY

    def tag(self, name: str) -> str | None:
        """A tag's value; tag *names* are case-insensitive in ARM, values are not."""
        lowered = name.lower()
        for key, value in self.tags.items():
            if key.lower() == lowered:
                return value
        return None


@dataclass(frozen=True)
class ObjectStatus:
    """One entry of a Flux configuration's `statuses[]`: a Flux object and its Ready condition."""

    kind: str  # GitRepository, Kustomization, HelmRelease, ...
    name: str
    namespace: str
    compliance_state: str
    ready: bool | None  # the Ready condition's status; None when the agent reported no Ready condition
    reason: str | None
    message: str | None
    last_transition_time: datetime | None  # ARM's (the agent's) clock


@dataclass(frozen=True)
class FluxState:
    """What ARM says about one panel's Flux configuration: desired fields and what the agent reported.

    `suspended`, `https_user` and `provider` are the *desired* state (they change the moment ARM accepts
    a PATCH); `compliance_state`, `statuses`, `source_synced_commit_id` and `status_updated_at` are the
    agent's last report — the only proof that a panel actually received a change.
    """

    configuration: str
    suspended: bool
    compliance_state: str  # Compliant | Non-Compliant | Pending | Suspended | Unknown
    statuses: tuple[ObjectStatus, ...] = ()
    source_synced_commit_id: str | None = None
    source_updated_at: datetime | None = None
    status_updated_at: datetime | None = None
    https_user: str | None = None
    provisioning_state: str | None = None
    provider: str | None = None  # gitRepository.provider: Azure | GitHub | Generic | None
    error_message: str | None = None
    modified_at: datetime | None = None  # systemData.lastModifiedAt, when ARM reports it
    observed_at: datetime | None = None  # ARM's `Date` when this was read (ARM's clock)

    @property
    def git_repository(self) -> ObjectStatus | None:
        """The GitRepository source's status: its Ready condition says whether the last fetch worked."""
        return next((s for s in self.statuses if s.kind == "GitRepository"), None)


@dataclass(frozen=True)
class Selector:
    """Which panels a fleet change targets (the `target` of a request).

    A panel is selected when it matches *every* criterion given; `all=True` selects the whole fleet
    and must come alone (a guard against an accidental fleet-wide change by an empty filter).
    """

    clusters: tuple[str, ...] = ()  # names or connectedClusters ARM ids
    tags: Mapping[str, str] = field(default_factory=dict)
    resource_groups: tuple[str, ...] = ()
    subscriptions: tuple[str, ...] = ()
    all: bool = False

    @property
    def empty(self) -> bool:
        return not (self.clusters or self.tags or self.resource_groups or self.subscriptions)

    def to_json(self) -> dict[str, Any]:
        return {
            "clusters": list(self.clusters),
            "tags": dict(self.tags),
            "resourceGroups": list(self.resource_groups),
            "subscriptions": list(self.subscriptions),
            "all": self.all,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Selector:
        return cls(
            clusters=tuple(raw.get("clusters") or ()),
            tags=dict(raw.get("tags") or {}),
            resource_groups=tuple(raw.get("resourceGroups") or ()),
            subscriptions=tuple(raw.get("subscriptions") or ()),
            all=bool(raw.get("all", False)),
        )


@dataclass(frozen=True)
class Stage:
    """Panels changed together; the next stage starts when this one is settled and has reached
    `success_threshold` (share of its panels `succeeded` or `unchanged`, 0.0-1.0)."""

    name: str
    panels: tuple[Panel, ...]
    success_threshold: float = 0.0


class PanelState(StrEnum):
    """A panel's place in an operation. The last five are what the API promises every panel ends in."""

    QUEUED = "queued"  # recorded, waiting for its stage's apply batch
    APPLYING = "applying"  # claimed by a worker (lease), ARM write may be in flight
    VERIFYING = "verifying"  # ARM accepted the change; waiting for the panel's agent to report it
    SUCCEEDED = "succeeded"
    UNCHANGED = "unchanged"
    PENDING_OFFLINE = "pending-offline"
    FAILED = "failed"
    SKIPPED = "skipped"


TERMINAL_STATES = frozenset(
    {PanelState.SUCCEEDED, PanelState.UNCHANGED, PanelState.FAILED, PanelState.SKIPPED}
)
# A settled panel no longer holds up its stage or the operation's final status.
SETTLED_STATES = TERMINAL_STATES | {PanelState.PENDING_OFFLINE}
DONE_STATES = frozenset({PanelState.SUCCEEDED, PanelState.UNCHANGED})


class OperationStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially-succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped by `POST /api/operations/{id}/cancel`


@dataclass(frozen=True)
class AppliedChange:
    """What the worker did to one panel, handed to `ChangeStrategy.check`.

    `accepted_at` is when ARM accepted the write *on ARM's clock* (the resource's
    `systemData.lastModifiedAt` when present, else the response's `Date`), so a strategy compares it
    with `FluxState.status_updated_at` / a condition's `last_transition_time` to know whether the
    agent reported *after* the change. `baseline_status_updated_at` is the agent's last report time
    read just before the write.
    """

    accepted_at: datetime
    attempt: int
    baseline_status_updated_at: datetime | None = None
    baseline_commit_id: str | None = None


@dataclass(frozen=True)
class Convergence:
    """A strategy's verdict on one panel after its change: converged, waiting, or failed."""

    outcome: Literal["converged", "waiting", "failed", "again"]
    detail: str = ""
    halt_operation: bool = False

    @classmethod
    def converged(cls, detail: str = "") -> Convergence:
        return cls("converged", detail)

    @classmethod
    def waiting(cls, detail: str = "") -> Convergence:
        return cls("waiting", detail)

    @classmethod
    def again(cls, detail: str = "") -> Convergence:
        """The step is done and the next one must be written (`SelfWritingStrategy` only)."""
        return cls("again", detail)

    @classmethod
    def failed(cls, cause: str, *, halt_operation: bool = False) -> Convergence:
        """The change did not work on this panel. `halt_operation=True` stops the whole operation:
        panels not yet applied are marked `skipped` with `cause`, later stages never start."""
        return cls("failed", cause, halt_operation)
