"""The fleet's state: panels, the Flux configurations ARM stores for them, and what each agent holds.

Three kinds of state live side by side on a `Panel`, and keeping them apart is the point of the lab:

- *desired* — the `FluxConfig` ARM stores (`spec`, the write-only `protected_settings`, a
  `generation` bumped on every accepted change); what `GET fluxConfigurations` shows;
- *delivered* — the `DeliveredConfig` the panel's agent actually holds, which lags behind the
  desired state while the panel is offline and never catches up with a change that was not
  picked up within Arc's 48-hour window;
- *reported* — the `FluxReport` the agent last sent (statuses, compliance, synced commit), which
  is all ARM knows of what happened on the panel.

Beside them, each panel has its cluster extensions (`Extension`, the `microsoft.flux` one above all:
while it is missing, failed or being deleted no agent runs on the panel) and its Arc connectivity,
including the managed-identity certificate whose expiry stops the agents for good.

Values that never change after seeding (`PanelIdentity`) and values handed around (`FluxSpec`,
`DeliveredConfig`, `Condition`, `ExtensionSpec`) are frozen; the per-panel records that the agents and
ARM update in place (`FluxConfig`, `FluxReport`, `ConfigAgentState`, `Connectivity`, `Extension`) are
plain dataclasses, touched only from the lab's event loop.

(Over 500 lines on purpose: the three kinds of state and the records they are made of are read
together; split, a reader would chase one panel's state through several files.)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
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
# The name `az k8s-configuration flux create` and the docs give the microsoft.flux extension instance.
FLUX_EXTENSION_NAME = "flux"
FLUX_EXTENSION_TYPE = "microsoft.flux"
# The microsoft.flux settings that switch the image controllers on (both default to false on Arc;
# tutorial-use-gitops-flux2.md, "--config image-automation-controller.enabled=<true/false> (default false)").
IMAGE_AUTOMATION_SETTING = "image-automation-controller.enabled"
IMAGE_REFLECTOR_SETTING = "image-reflector-controller.enabled"
IMAGE_CONTROLLER_SETTINGS = (IMAGE_AUTOMATION_SETTING, IMAGE_REFLECTOR_SETTING)
# The automation runner: the one cluster that runs the image controllers and pushes to Git (issue 15).
ROLE_TAG = "fluxfleet-role"
RUNNER_ROLE = "image-automation"
RUNNER_NAME = "ipc-automation-hub"

CONNECTED_CLUSTER_TYPE = "Microsoft.Kubernetes/connectedClusters"
FLUX_CONFIGURATION_TYPE = "Microsoft.KubernetesConfiguration/fluxConfigurations"
EXTENSION_TYPE = "Microsoft.KubernetesConfiguration/extensions"

# Arc shows a cluster `Offline` once no heartbeat arrived for 15 minutes (conceptual-connectivity-modes).
OFFLINE_AFTER = timedelta(minutes=15)
# Arc delivers a configuration change (protected settings included) to a cluster that comes back
# within 48 hours; a change older than that is never delivered until it is applied again.
DELIVERY_WINDOW = timedelta(hours=48)
# "The managed identity certificate pulled down by the clusteridentityoperator is valid for up to 90 days
# before it expires" (conceptual-connectivity-modes.md).
MSI_CERTIFICATE_VALIDITY = timedelta(days=90)
# The agents renew it while connected; Arc does not publish when. The lab renews once half of its
# validity is gone, so an always-online panel never expires and one offline for 90 days always does.
MSI_CERTIFICATE_RENEW_AFTER = MSI_CERTIFICATE_VALIDITY / 2

ComplianceState = Literal["Compliant", "Non-Compliant", "Pending", "Suspended", "Unknown"]
ProvisioningState = Literal["Succeeded", "Failed", "Canceled", "Creating", "Updating", "Deleting"]
ConditionStatus = Literal["True", "False", "Unknown"]
ConnectivityStatus = Literal["Connecting", "Connected", "Offline", "Expired"]


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

    def https_credentials(self) -> tuple[str, str] | None:
        """(httpsUser, PAT) as Flux builds its Basic credential from this configuration, or None.

        None when there is no decodable `httpsKey`. For simulators that act with the credential a
        panel holds (the image automation on the runner); never log or return the password.
        """
        encoded = self.protected_settings.get("httpsKey")
        if encoded is None:
            return None
        try:
            password = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        git = self.spec.git_repository
        return (git.https_user if git is not None and git.https_user else "git"), password


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


# --- cluster extensions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExtensionSpec:
    """The writable properties of an `extensions` resource, defaults applied (extensions.json 2025-03-01)."""

    extension_type: str
    auto_upgrade_minor_version: bool
    release_train: str
    version: str | None  # pinned by the user; null while auto-upgrade chooses
    scope_kind: Literal["cluster", "namespace"]
    scope_namespace: str  # releaseNamespace (cluster) or targetNamespace (namespace)
    configuration_settings: Mapping[str, str] = field(default_factory=dict)
    identity_type: str | None = None  # "SystemAssigned" when asked for (the CLI asks on Arc)
    auto_upgrade_mode: str | None = None  # 2025-03-01
    aks_assigned_identity: Mapping[str, Any] | None = None
    plan: Mapping[str, Any] | None = None
    managed_by: str | None = None  # 2025-03-01, create-only

    def setting_enabled(self, key: str) -> bool:
        """A boolean configuration setting as the extension reads it: the string "true", else off."""
        return self.configuration_settings.get(key, "false").strip().lower() == "true"


@dataclass(frozen=True)
class ExtensionError:
    """`errorInfo` (ARM's ErrorDetail) of a failed extension operation."""

    code: str
    message: str


@dataclass
class Extension:
    """One `extensions` resource on a panel: desired spec, what is installed, and ARM's bookkeeping."""

    name: str
    uid: str
    spec: ExtensionSpec
    # Write-only: never rendered, never in ground truth, never in a repr.
    protected_settings: Mapping[str, str] = field(repr=False)
    current_version: str | None  # what runs on the cluster; None until a first install succeeded
    provisioning_state: ProvisioningState
    created_at: datetime
    created_by: Actor
    last_modified_at: datetime
    last_modified_by: Actor
    principal_id: str | None = None  # the extension's system-assigned identity, when it has one
    error_info: ExtensionError | None = None
    pending_operations: int = 0
    deleting: bool = False

    @property
    def is_flux(self) -> bool:
        return self.spec.extension_type.lower() == FLUX_EXTENSION_TYPE

    @property
    def running(self) -> bool:
        """Whether the extension's agents run: installed and neither failed nor being removed.

        `Updating` counts (Helm upgrades a running release in place); `Creating`, `Failed` and
        `Deleting` do not.
        """
        return (
            not self.deleting
            and self.current_version is not None
            and self.provisioning_state in ("Succeeded", "Updating")
        )


# --- panels -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PanelIdentity:
    index: int
    name: str
    subscription: str
    resource_group: str
    tag_items: tuple[tuple[str, str], ...]  # the resource's tags, as ARM shows them (frozen: a tuple)
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
        return dict(self.tag_items)

    @property
    def ring(self) -> str | None:
        return self.tags.get("ring")

    @property
    def site(self) -> str | None:
        return self.tags.get("site")

    @property
    def is_runner(self) -> bool:
        """The image-automation runner is found by its tag, as the app and the simulator find it."""
        return self.tags.get(ROLE_TAG) == RUNNER_ROLE


# microsoft.flux 1.15.1 (Feb 2025) brought workload identity to Arc-enabled clusters.
WORKLOAD_IDENTITY_MIN_EXTENSION = (1, 15, 1)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@dataclass
class Connectivity:
    """Arc's view of a panel's agents: heartbeats and the managed-identity certificate.

    The certificate is renewed lazily (`settle`): a panel that was online when half of its validity
    had gone renews then; one offline past the certificate's expiry stays `Expired` even when it comes
    back, because "you'll need to delete and then recreate the Azure Arc-enabled Kubernetes resource".
    """

    online: bool
    changed_at: datetime  # when the panel last came online or went offline
    certificate_issued_at: datetime
    heartbeat_seen: bool = True  # False: connected to ARM but no agent heartbeat yet (`Connecting`)

    @property
    def certificate_expires_at(self) -> datetime:
        return self.certificate_issued_at + MSI_CERTIFICATE_VALIDITY

    def settle(self, now: datetime) -> None:
        """Apply every renewal the agents would have made while online, up to `now`."""
        if not self.online:
            return
        while True:
            due = max(self.certificate_issued_at + MSI_CERTIFICATE_RENEW_AFTER, self.changed_at)
            if due > now or due >= self.certificate_expires_at:
                return
            self.certificate_issued_at = due

    def expired(self, now: datetime) -> bool:
        self.settle(now)
        return now >= self.certificate_expires_at

    def set_online(self, online: bool, now: datetime) -> None:
        self.settle(now)  # renewals made while it was online happened before the change
        if self.online != online:
            self.online = online
            self.changed_at = now
        if online:
            self.heartbeat_seen = True

    def agents_can_reach_azure(self, now: datetime) -> bool:
        return self.online and not self.expired(now)

    def status(self, now: datetime) -> ConnectivityStatus:
        """Arc's `connectivityStatus` (conceptual-connectivity-modes.md)."""
        if self.expired(now):
            return "Expired"
        if not self.heartbeat_seen:
            return "Connecting"
        if self.online or now - self.changed_at < OFFLINE_AFTER:
            return "Connected"
        return "Offline"

    def last_connectivity_time(self, now: datetime) -> datetime:
        last = now if self.online else self.changed_at
        return min(last, self.certificate_expires_at)  # no heartbeat authenticates after expiry


@dataclass
class Panel:
    identity: PanelIdentity
    connectivity: Connectivity
    flux_configs: dict[str, FluxConfig] = field(default_factory=dict)  # by lower-case name
    agents: dict[str, ConfigAgentState] = field(default_factory=dict)  # by lower-case config name
    extensions: dict[str, Extension] = field(default_factory=dict)  # by lower-case name
    sync_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.identity.name

    def flux_config(self, name: str) -> FluxConfig | None:
        return self.flux_configs.get(name.lower())

    def agent(self, config_name: str) -> ConfigAgentState:
        return self.agents.setdefault(config_name.lower(), ConfigAgentState())

    def delivered(self, config_name: str) -> DeliveredConfig | None:
        """What the panel's agent holds of a configuration (secrets included; never show them)."""
        state = self.agents.get(config_name.lower())
        config = self.flux_config(config_name)
        if state is None or state.delivered is None or config is None or state.delivered.uid != config.uid:
            return None
        return state.delivered

    def extension(self, name: str) -> Extension | None:
        return self.extensions.get(name.lower())

    def flux_extension(self) -> Extension | None:
        """The microsoft.flux extension instance, whatever its name (a cluster has at most one)."""
        return next((ext for ext in self.extensions.values() if ext.is_flux), None)

    @property
    def flux_running(self) -> bool:
        extension = self.flux_extension()
        return extension is not None and extension.running

    def agents_can_run(self, now: datetime) -> bool:
        """Whether Flux on the panel does anything: online, certificate valid, microsoft.flux running."""
        return self.connectivity.agents_can_reach_azure(now) and self.flux_running

    @property
    def flux_extension_version(self) -> str | None:
        extension = self.flux_extension()
        return extension.current_version if extension is not None else None

    @property
    def workload_identity_enabled(self) -> bool:
        return self.identity.workload_identity_enabled

    @property
    def oidc_issuer_enabled(self) -> bool:
        return self.identity.oidc_issuer_enabled

    @property
    def supports_workload_identity(self) -> bool:
        """Whether Flux on this panel can use `provider: Azure` (extension >= 1.15.1 on Arc, WI + OIDC)."""
        version = self.flux_extension_version
        return (
            self.identity.workload_identity_enabled
            and self.identity.oidc_issuer_enabled
            and version is not None
            and version_tuple(version) >= WORKLOAD_IDENTITY_MIN_EXTENSION
        )

    def image_controllers(self) -> dict[str, bool]:
        """Which image controllers microsoft.flux runs here (off without a running extension)."""
        extension = self.flux_extension()
        running = extension is not None and extension.running
        return {
            key.removesuffix(".enabled"): running
            and extension is not None
            and extension.spec.setting_enabled(key)
            for key in IMAGE_CONTROLLER_SETTINGS
        }

    def sync_interval_s(self) -> int:
        """How often the agent syncs: the shortest interval among the configurations it holds."""
        intervals = [
            state.delivered.spec.sync_interval_s
            for state in self.agents.values()
            if state.delivered is not None
        ]
        return min(intervals, default=DEFAULT_SYNC_INTERVAL_S)


class Fleet:
    """The panels, indexed so that every ARM lookup is a dictionary hit, never a scan.

    `panels` keeps the order panels were seeded or connected in (the agents schedule by position);
    the per-subscription and per-group lists that ARM pages through are kept sorted by name, so a
    panel connected at runtime lands where a list by name expects it.
    """

    def __init__(self, panels: Iterable[Panel], *, subscriptions: list[str]) -> None:
        self.panels: list[Panel] = []
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
        for panel in panels:
            self.add(panel)

    def _add_group(self, subscription: str, group: str) -> None:
        key = (subscription.lower(), group.lower())
        self._by_group.setdefault(key, [])
        self._group_names[key] = group

    # --- changes (a panel connected to or disconnected from Arc) ----------------------------------
    def add(self, panel: Panel) -> None:
        """Index a panel; its subscription and resource group must exist, its name must be new."""
        ident = panel.identity
        sub, group = ident.subscription.lower(), ident.resource_group.lower()
        if ident.name.lower() in self._by_name:
            raise ValueError(f"a cluster named {ident.name!r} already exists")
        if sub not in self._by_subscription or (sub, group) not in self._by_group:
            raise ValueError(
                f"no resource group {ident.resource_group!r} in subscription {ident.subscription}"
            )
        self.panels.append(panel)
        self._by_name[ident.name.lower()] = panel
        self._by_key[(sub, group, ident.name.lower())] = panel
        for members in (self._by_subscription[sub], self._by_group[(sub, group)]):
            bisect.insort(members, panel, key=lambda member: member.name.lower())

    def remove(self, panel: Panel) -> None:
        ident = panel.identity
        sub, group = ident.subscription.lower(), ident.resource_group.lower()
        del self._by_name[ident.name.lower()]
        del self._by_key[(sub, group, ident.name.lower())]
        for members in (self.panels, self._by_subscription[sub], self._by_group[(sub, group)]):
            # By identity: dataclass equality would compare every field of every panel on the way.
            members.pop(next(i for i, member in enumerate(members) if member is panel))

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

    def runners(self) -> list[Panel]:
        """The image-automation runners (tag `fluxfleet-role: image-automation`), as the app finds them."""
        return [panel for panel in self.panels if panel.identity.is_runner]

    def factory_panels(self) -> list[Panel]:
        return [panel for panel in self.panels if not panel.identity.is_runner]
