"""The fleet's state: panels, the Flux configurations ARM stores for them, and what each agent holds.

Three kinds of state live side by side on a `Panel`, and keeping them apart is the point of the lab:

- *desired* — the `FluxConfig` ARM stores (`spec`, the write-only `protected_settings`, a
  `generation` bumped on every accepted change); what `GET fluxConfigurations` shows;
- *delivered* — the `DeliveredConfig` the panel's agent actually holds, which lags behind the
  desired state while the panel is offline and never catches up with a change that was not
  picked up within Arc's 48-hour window;
- *reported* — the `FluxReport` the agent last sent (statuses, compliance, synced commit), which
  is all ARM knows of what happened on the panel.

Values that never change after seeding (`PanelIdentity`) and values handed around (`FluxSpec`,
`DeliveredConfig`, `Condition`) are frozen; the per-panel records that the agents and ARM update
in place (`FluxConfig`, `FluxReport`, `ConfigAgentState`, `Connectivity`) are plain dataclasses,
touched only from the lab's event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

# --- fleet layout ---------------------------------------------------------------------------------
LOCATION = "westeurope"
SITES = ("munich", "lyon", "austin", "pune")
RINGS = ("canary", "early", "broad")
ARC_RESOURCE_GROUP = "rg-ipc-platform-arc"
# Holds the Key Vault and the registry (in the first subscription); it exists but holds no panels.
PLATFORM_RESOURCE_GROUP = "rg-ipc-platform"
FLUX_CONFIGURATION_NAME = "ipc-platform-config"
FLUX_NAMESPACE = "flux-system"
FLUX_EXTENSION_NAME = "flux"
FLUX_EXTENSION_TYPE = "microsoft.flux"

CONNECTED_CLUSTER_TYPE = "Microsoft.Kubernetes/connectedClusters"
FLUX_CONFIGURATION_TYPE = "Microsoft.KubernetesConfiguration/fluxConfigurations"
EXTENSION_TYPE = "Microsoft.KubernetesConfiguration/extensions"

# Arc shows a cluster `Offline` once no heartbeat arrived for 15 minutes (conceptual-connectivity-modes).
OFFLINE_AFTER = timedelta(minutes=15)
# Arc delivers a configuration change (protected settings included) to a cluster that comes back
# within 48 hours; a change older than that is never delivered until it is applied again.
DELIVERY_WINDOW = timedelta(hours=48)

ComplianceState = Literal["Compliant", "Non-Compliant", "Pending", "Suspended", "Unknown"]
ProvisioningState = Literal["Succeeded", "Failed", "Canceled", "Creating", "Updating", "Deleting"]
ConditionStatus = Literal["True", "False", "Unknown"]


def resource_group_for_site(site: str) -> str:
    return f"rg-ipc-site-{site}"


def fleet_resource_groups() -> list[str]:
    """Every resource group that holds panels, in every subscription."""
    return [ARC_RESOURCE_GROUP, *(resource_group_for_site(site) for site in SITES)]


def fingerprint(secret: str) -> str:
    """First 16 hex chars of SHA-256: enough to tell credentials apart, useless to recover one."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


# --- the Flux configuration as ARM stores it --------------------------------------------------------
@dataclass(frozen=True)
class RepositoryRef:
    branch: str | None = None
    tag: str | None = None
    semver: str | None = None
    commit: str | None = None


@dataclass(frozen=True)
class GitRepositorySpec:
    url: str | None
    timeout_in_seconds: int
    sync_interval_in_seconds: int
    repository_ref: RepositoryRef | None = None
    ssh_known_hosts: str | None = None
    https_user: str | None = None
    https_ca_cert: str | None = None
    local_auth_ref: str | None = None
    provider: str | None = None  # Azure | GitHub | Generic, api >= 2024-11-01


@dataclass(frozen=True)
class KustomizationSpec:
    name: str
    path: str
    depends_on: tuple[str, ...]
    timeout_in_seconds: int
    sync_interval_in_seconds: int
    retry_interval_in_seconds: int | None
    prune: bool
    force: bool
    wait: bool
    post_build: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class FluxSpec:
    """The writable properties of a `fluxConfigurations` resource, defaults applied."""

    scope: str
    namespace: str
    source_kind: str
    suspend: bool
    git_repository: GitRepositorySpec | None
    kustomizations: tuple[KustomizationSpec, ...]
    # Source kinds the lab stores and echoes but whose sources its agents do not sync.
    bucket: Mapping[str, Any] | None = None
    azure_blob: Mapping[str, Any] | None = None
    oci_repository: Mapping[str, Any] | None = None
    wait_for_reconciliation: bool | None = None
    reconciliation_wait_duration: str | None = None

    @property
    def sync_interval_s(self) -> int:
        if self.git_repository is not None:
            return self.git_repository.sync_interval_in_seconds
        return DEFAULT_SYNC_INTERVAL_S


# The spec's default for `syncIntervalInSeconds` and `timeoutInSeconds` (fluxconfiguration.json).
DEFAULT_SYNC_INTERVAL_S = 600
DEFAULT_TIMEOUT_S = 600


# --- what the agent reports -------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """A Flux object's `Ready` condition, as Arc copies it into `statuses[].statusConditions`."""

    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: datetime
    type: str = "Ready"


@dataclass(frozen=True)
class ObjectStatus:
    name: str
    namespace: str
    kind: Literal["GitRepository", "Kustomization"]
    compliance_state: ComplianceState
    condition: Condition


@dataclass
class FluxReport:
    """The read-only fields of a `fluxConfigurations` resource: the last report of the panel's agent."""

    statuses: tuple[ObjectStatus, ...] = ()
    compliance_state: ComplianceState = "Pending"
    source_synced_commit_id: str | None = None
    source_updated_at: datetime | None = None
    status_updated_at: datetime | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Actor:
    """Who created or last changed a resource (`systemData`)."""

    name: str
    kind: Literal["User", "Application", "ManagedIdentity", "Key"]


@dataclass
class FluxConfig:
    """One `fluxConfigurations` resource: desired state, ARM bookkeeping, and the last report."""

    name: str
    uid: str  # tells a re-created configuration from the one it replaced
    spec: FluxSpec
    # Write-only: never rendered, never in ground truth, never in a repr.
    protected_settings: Mapping[str, str] = field(repr=False)
    generation: int
    changed_at: datetime
    provisioning_state: ProvisioningState
    created_at: datetime
    created_by: Actor
    last_modified_at: datetime
    last_modified_by: Actor
    report: FluxReport = field(default_factory=FluxReport)
    pending_operations: int = 0
    deleting: bool = False


@dataclass(frozen=True)
class DeliveredConfig:
    """What the agent on the panel holds: one generation of the desired state, secrets included."""

    uid: str
    generation: int
    spec: FluxSpec
    protected_settings: Mapping[str, str]

    def __repr__(self) -> str:  # the protected settings hold a PAT: never in a repr
        return f"DeliveredConfig(uid={self.uid!r}, generation={self.generation})"


@dataclass(frozen=True)
class LastFetch:
    ok: bool
    revision: str | None
    error: str | None
    at: datetime


@dataclass
class ConfigAgentState:
    """The agent's side of one Flux configuration on one panel."""

    delivered: DeliveredConfig | None = None
    # The newest generation (of configuration `dropped_uid`) that expired before the panel picked it up.
    dropped_uid: str | None = None
    dropped_generation: int = 0
    last_fetch: LastFetch | None = None
    applied_revision: str | None = None
    source_updated_at: datetime | None = None
    tree_dirs: frozenset[str] | None = None  # directories at `applied_revision`; None: not known
    conditions: dict[str, Condition] = field(default_factory=dict)  # by object name


# --- panels -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PanelIdentity:
    index: int
    name: str
    subscription: str
    resource_group: str
    ring: str
    site: str
    flux_extension_version: str
    workload_identity_enabled: bool
    oidc_issuer_enabled: bool
    principal_id: str  # the cluster's system-assigned identity
    created_at: datetime
    location: str = LOCATION

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{CONNECTED_CLUSTER_TYPE}/{self.name}"
        )

    @property
    def tags(self) -> dict[str, str]:
        return {"ring": self.ring, "site": self.site}

    @property
    def supports_workload_identity(self) -> bool:
        """Whether Flux on this panel can use `provider: Azure` (extension >= 1.15.1 on Arc, WI + OIDC)."""
        return (
            self.workload_identity_enabled
            and self.oidc_issuer_enabled
            and version_tuple(self.flux_extension_version) >= WORKLOAD_IDENTITY_MIN_EXTENSION
        )


# microsoft.flux 1.15.1 (Feb 2025) brought workload identity to Arc-enabled clusters.
WORKLOAD_IDENTITY_MIN_EXTENSION = (1, 15, 1)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@dataclass
class Connectivity:
    online: bool
    changed_at: datetime  # when the panel last came online or went offline

    def status(self, now: datetime) -> Literal["Connected", "Offline"]:
        """Arc's `connectivityStatus`: still `Connected` until 15 minutes without a heartbeat."""
        if self.online or now - self.changed_at < OFFLINE_AFTER:
            return "Connected"
        return "Offline"

    def last_connectivity_time(self, now: datetime) -> datetime:
        return now if self.online else self.changed_at


@dataclass
class Panel:
    identity: PanelIdentity
    connectivity: Connectivity
    flux_configs: dict[str, FluxConfig] = field(default_factory=dict)  # by lower-case name
    agents: dict[str, ConfigAgentState] = field(default_factory=dict)  # by lower-case config name
    sync_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.identity.name

    def flux_config(self, name: str) -> FluxConfig | None:
        return self.flux_configs.get(name.lower())

    def agent(self, config_name: str) -> ConfigAgentState:
        return self.agents.setdefault(config_name.lower(), ConfigAgentState())

    def sync_interval_s(self) -> int:
        """How often the agent syncs: the shortest interval among the configurations it holds."""
        intervals = [
            state.delivered.spec.sync_interval_s
            for state in self.agents.values()
            if state.delivered is not None
        ]
        return min(intervals, default=DEFAULT_SYNC_INTERVAL_S)


class Fleet:
    """The panels, indexed so that every ARM lookup is a dictionary hit, never a scan."""

    def __init__(self, panels: Iterable[Panel], *, subscriptions: list[str]) -> None:
        self.panels: list[Panel] = list(panels)
        self.subscriptions = list(subscriptions)
        self._by_name: dict[str, Panel] = {}
        self._by_key: dict[tuple[str, str, str], Panel] = {}
        self._by_subscription: dict[str, list[Panel]] = {sub.lower(): [] for sub in subscriptions}
        self._by_group: dict[tuple[str, str], list[Panel]] = {}
        self._group_names: dict[tuple[str, str], str] = {}
        for sub in subscriptions:
            for group in fleet_resource_groups():
                self._add_group(sub, group)
        if subscriptions:
            self._add_group(subscriptions[0], PLATFORM_RESOURCE_GROUP)
        for panel in self.panels:
            ident = panel.identity
            sub, group = ident.subscription.lower(), ident.resource_group.lower()
            self._by_name[ident.name.lower()] = panel
            self._by_key[(sub, group, ident.name.lower())] = panel
            self._by_subscription[sub].append(panel)
            self._by_group[(sub, group)].append(panel)

    def _add_group(self, subscription: str, group: str) -> None:
        key = (subscription.lower(), group.lower())
        self._by_group.setdefault(key, [])
        self._group_names[key] = group

    # --- lookups (ARM names are case-insensitive) ---------------------------------------------------
    def has_subscription(self, subscription: str) -> bool:
        return subscription.lower() in self._by_subscription

    def has_resource_group(self, subscription: str, group: str) -> bool:
        return (subscription.lower(), group.lower()) in self._by_group

    def resource_group_name(self, subscription: str, group: str) -> str:
        return self._group_names[(subscription.lower(), group.lower())]

    def in_subscription(self, subscription: str) -> list[Panel]:
        return self._by_subscription.get(subscription.lower(), [])

    def in_resource_group(self, subscription: str, group: str) -> list[Panel]:
        return self._by_group.get((subscription.lower(), group.lower()), [])

    def find(self, subscription: str, group: str, name: str) -> Panel | None:
        return self._by_key.get((subscription.lower(), group.lower(), name.lower()))

    def by_name(self, name: str) -> Panel | None:
        return self._by_name.get(name.lower())

    def by_id(self, cluster_id: str) -> Panel | None:
        """The panel behind a connectedClusters resource id (any case), or None."""
        parts = cluster_id.strip("/").split("/")
        if len(parts) != 8 or parts[0].lower() != "subscriptions" or parts[2].lower() != "resourcegroups":
            return None
        if f"{parts[5]}/{parts[6]}".lower() != CONNECTED_CLUSTER_TYPE.lower():
            return None
        return self.find(parts[1], parts[3], parts[7])
