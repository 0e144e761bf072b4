"""Seed a deterministic fleet: N panels over K subscriptions, 4 sites, 3 rings, some offline, plus the runner.

Panels are laid out round-robin over the (site, subscription) strata, so any contiguous block of
panel numbers is spread evenly over subscriptions and sites. Rings are then contiguous blocks in
that order — exactly round(10 %) `canary` (ipc-panel-0001…), round(30 %) `early`, the rest `broad`
— which makes every ring as spread as the fleet allows and keeps "who is canary" easy to read.
Panels that start offline are the *last* configured ones (broad first, then early; never canary).

`unconfigured` more panels follow the N configured ones under the same layout rules (numbered after
them, rings and strata counted over all N + M): connected to Arc, but with no `microsoft.flux`
extension and no Flux configuration, as a newly shipped panel is. Last comes the automation runner
`ipc-automation-hub` (unless `runner=False`): the one cluster whose microsoft.flux runs the image
controllers, whose `ipc-platform-config` applies `./kubernetes/workloads` like every panel *and*
`./kubernetes/flux-system/image-automation`, and which holds the write PAT (Code Read & Write, Key Vault
`flux-gitops-automation-pat`); every factory panel applies only `./kubernetes/workloads` with the
fleet's read-only PAT (DESIGN.md, "Least privilege for image automation").

Everything derives from the panel's index: the same arguments give the same fleet, run after run,
so tests and benchmarks can name panels.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from lab.fleet.model import (
    ARC_RESOURCE_GROUP,
    DEFAULT_TIMEOUT_S,
    FLUX_CONFIGURATION_NAME,
    FLUX_EXTENSION_NAME,
    FLUX_EXTENSION_TYPE,
    FLUX_NAMESPACE,
    IMAGE_AUTOMATION_SETTING,
    IMAGE_REFLECTOR_SETTING,
    ROLE_TAG,
    RUNNER_NAME,
    RUNNER_ROLE,
    SITES,
    WORKLOAD_IDENTITY_MIN_EXTENSION,
    Actor,
    Connectivity,
    DeliveredConfig,
    Extension,
    ExtensionSpec,
    Fleet,
    FluxConfig,
    FluxSpec,
    GitRepositorySpec,
    KustomizationSpec,
    Panel,
    PanelIdentity,
    RepositoryRef,
    resource_group_for_site,
    version_tuple,
)

CANARY_SHARE = 0.10
EARLY_SHARE = 0.30
# Flux syncs the platform repo every 5 minutes on every panel (DESIGN.md).
PLATFORM_SYNC_INTERVAL_S = 300
# Every 4th panel of a (site, subscription) stratum lives in the shared Arc resource group rather
# than its site's, so selectors by resource group and by `site` tag pick different sets.
SHARED_GROUP_EVERY = 4
# One panel in ten still runs microsoft.flux 1.13 (no workload identity on Arc before 1.15.1). This and
# the next rule count along (round + stratum) diagonals, so every stratum — every subscription and
# site — gets its share instead of the rule lining up with the round-robin. Both versions are
# released ones (lab/arm/flux_releases.py): 1.16.3 of May 2025 and 1.13.1 of October 2024.
OLD_EXTENSION_EVERY = 10
CURRENT_FLUX_EXTENSION = "1.16.3"
OLD_FLUX_EXTENSION = "1.13.1"
# The runner was set up for the repository's image objects (`image.toolkit.fluxcd.io/v1`), which only
# microsoft.flux 1.23.0 and later serve (Flux 2.7's image controllers; July 2026's 1.23.3).
RUNNER_FLUX_EXTENSION = "1.23.3"
# One panel in five was connected without `--enable-workload-identity`.
NO_WORKLOAD_IDENTITY_EVERY = 5
# Panels that start online have been connected for a day; those that start offline dropped off an
# hour before the lab started (so their connectedCluster already shows `Offline`).
ONLINE_SINCE = timedelta(days=1)
OFFLINE_SINCE = timedelta(hours=1)
# The fleet was onboarded a month before the lab started (systemData.createdAt); the runner too.
ONBOARDED_BEFORE = timedelta(days=30)
# The operator who onboarded the fleet (the devops lab's user identity).
OPERATOR = Actor(name="operator@contoso.example", kind="User")
# Base of the panels' system-assigned identity object ids, and of their flux extensions' (stable).
_PRINCIPAL_BASE = 0xC1A5_0000_0000_4000_8000_0000_0000_0000
_EXTENSION_PRINCIPAL_BASE = 0xE7E5_0000_0000_4000_8000_0000_0000_0000
# The kustomizations of `ipc-platform-config`: factory panels apply workloads; the runner applies them too
# (it is a cluster of the fleet) and, on top, the image-automation objects only it may act on.
WORKLOADS_KUSTOMIZATION = ("workloads", "./kubernetes/workloads")
IMAGE_AUTOMATION_KUSTOMIZATION = ("image-automation", "./kubernetes/flux-system/image-automation")


@dataclass(frozen=True)
class SeedPlan:
    clusters: int
    subscriptions: list[str]
    offline: int
    git_url: str
    initial_pat: str | None
    started_at: datetime
    https_user: str = "git"
    branch: str = "main"
    unconfigured: int = 0
    runner: bool = True
    automation_pat: str | None = None


def ring_counts(clusters: int) -> tuple[int, int]:
    """(canary, early) counts: exactly round(10 %) and round(30 %), rounding halves up."""
    return int(clusters * CANARY_SHARE + 0.5), int(clusters * EARLY_SHARE + 0.5)


def panel_name(index: int, clusters: int) -> str:
    width = max(4, len(str(clusters)))
    return f"ipc-panel-{index + 1:0{width}d}"


def platform_flux_spec(
    *,
    git_url: str,
    https_user: str = "git",
    branch: str = "main",
    kustomizations: tuple[tuple[str, str], ...] = (WORKLOADS_KUSTOMIZATION,),
) -> FluxSpec:
    """`ipc-platform-config` as the operator created it (factory panels; the runner with its own)."""

    def kustomization(name: str, path: str) -> KustomizationSpec:
        return KustomizationSpec(
            name=name,
            path=path,
            depends_on=(),
            timeout_in_seconds=DEFAULT_TIMEOUT_S,
            sync_interval_in_seconds=PLATFORM_SYNC_INTERVAL_S,
            retry_interval_in_seconds=None,
            prune=True,
            force=False,
            wait=True,
        )

    return FluxSpec(
        scope="cluster",
        namespace=FLUX_NAMESPACE,
        source_kind="GitRepository",
        suspend=False,
        git_repository=GitRepositorySpec(
            url=git_url,
            timeout_in_seconds=DEFAULT_TIMEOUT_S,
            sync_interval_in_seconds=PLATFORM_SYNC_INTERVAL_S,
            repository_ref=RepositoryRef(branch=branch),
            https_user=https_user,
        ),
        kustomizations=tuple(kustomization(name, path) for name, path in kustomizations),
    )


def flux_extension_spec(
    version: str, *, workload_identity: bool, image_controllers: bool = False
) -> ExtensionSpec:
    """microsoft.flux as the operator installed it: pinned, in `flux-system`, image controllers as asked."""
    settings = {"multiTenancy.enforce": "false"}
    if workload_identity:
        settings["workloadIdentity.enable"] = "true"
    if image_controllers:
        settings[IMAGE_AUTOMATION_SETTING] = "true"
        settings[IMAGE_REFLECTOR_SETTING] = "true"
    return ExtensionSpec(
        extension_type=FLUX_EXTENSION_TYPE,
        auto_upgrade_minor_version=False,
        release_train="Stable",
        version=version,
        scope_kind="cluster",
        scope_namespace=FLUX_NAMESPACE,
        configuration_settings=settings,
        identity_type="SystemAssigned",
    )


def _https_key(pat: str | None) -> dict[str, str]:
    return {"httpsKey": base64.b64encode(pat.encode()).decode()} if pat is not None else {}


def _installed(index: int, spec: ExtensionSpec, at: datetime) -> Extension:
    return Extension(
        name=FLUX_EXTENSION_NAME,
        uid=str(uuid.uuid4()),
        spec=spec,
        protected_settings={},
        current_version=spec.version,
        provisioning_state="Succeeded",
        created_at=at,
        created_by=OPERATOR,
        last_modified_at=at,
        last_modified_by=OPERATOR,
        principal_id=str(uuid.UUID(int=_EXTENSION_PRINCIPAL_BASE + index)),
    )


def _configure(panel: Panel, spec: FluxSpec, protected: dict[str, str], at: datetime) -> None:
    """Give a panel `ipc-platform-config`, already delivered to its agent (the seed: synced before)."""
    config = FluxConfig(
        name=FLUX_CONFIGURATION_NAME,
        uid=str(uuid.uuid4()),
        spec=spec,
        protected_settings=protected,
        generation=1,
        changed_at=at,
        provisioning_state="Succeeded",
        created_at=at,
        created_by=OPERATOR,
        last_modified_at=at,
        last_modified_by=OPERATOR,
    )
    panel.flux_configs[FLUX_CONFIGURATION_NAME] = config
    panel.agent(FLUX_CONFIGURATION_NAME).delivered = DeliveredConfig(
        uid=config.uid, generation=1, spec=spec, protected_settings=protected
    )


def seed_fleet(plan: SeedPlan) -> Fleet:
    subs = plan.subscriptions
    strata = len(SITES) * len(subs)
    total = plan.clusters + plan.unconfigured
    canary, early = ring_counts(total)
    offline = max(0, min(plan.offline, plan.clusters - canary))
    factory_spec = platform_flux_spec(git_url=plan.git_url, https_user=plan.https_user, branch=plan.branch)
    fleet_key = _https_key(plan.initial_pat)
    onboarded = plan.started_at - ONBOARDED_BEFORE
    panels: list[Panel] = []
    for index in range(total):
        stratum, round_ = index % strata, index // strata
        site, subscription = SITES[stratum // len(subs)], subs[stratum % len(subs)]
        ring = "canary" if index < canary else "early" if index < canary + early else "broad"
        group = (
            ARC_RESOURCE_GROUP
            if round_ % SHARED_GROUP_EVERY == SHARED_GROUP_EVERY - 1
            else resource_group_for_site(site)
        )
        diagonal = round_ + stratum
        workload_identity = (
            diagonal + stratum
        ) % NO_WORKLOAD_IDENTITY_EVERY != NO_WORKLOAD_IDENTITY_EVERY - 1
        configured = index < plan.clusters
        connected_at = onboarded if configured else plan.started_at  # a new panel has just connected
        identity = PanelIdentity(
            index=index,
            name=panel_name(index, total),
            subscription=subscription,
            resource_group=group,
            tag_items=(("ring", ring), ("site", site)),
            workload_identity_enabled=workload_identity,
            oidc_issuer_enabled=workload_identity or round_ % 2 == 0,
            principal_id=str(uuid.UUID(int=_PRINCIPAL_BASE + index)),
            created_at=connected_at,
        )
        online = not configured or index < plan.clusters - offline
        since = plan.started_at - (ONLINE_SINCE if online else OFFLINE_SINCE) if configured else connected_at
        panel = Panel(
            identity=identity,
            connectivity=Connectivity(online=online, changed_at=since, certificate_issued_at=connected_at),
        )
        if configured:
            version = (
                OLD_FLUX_EXTENSION
                if diagonal % OLD_EXTENSION_EVERY == OLD_EXTENSION_EVERY - 1
                else CURRENT_FLUX_EXTENSION
            )
            wi_ready = (
                identity.workload_identity_enabled
                and identity.oidc_issuer_enabled
                and version_tuple(version) >= WORKLOAD_IDENTITY_MIN_EXTENSION
            )
            extension = _installed(index, flux_extension_spec(version, workload_identity=wi_ready), onboarded)
            panel.extensions[FLUX_EXTENSION_NAME] = extension
            _configure(panel, factory_spec, fleet_key, onboarded)
        panels.append(panel)
    if plan.runner:
        panels.append(_runner(plan, index=total, onboarded=onboarded))
    return Fleet(panels, subscriptions=subs)


def _runner(plan: SeedPlan, *, index: int, onboarded: datetime) -> Panel:
    """`ipc-automation-hub`: the image-automation runner in the shared Arc group of the first subscription.

    Tagged only `fluxfleet-role: image-automation`: it belongs to no ring and to no factory site, so ring
    and site selectors never pick it.
    """
    identity = PanelIdentity(
        index=index,
        name=RUNNER_NAME,
        subscription=plan.subscriptions[0],
        resource_group=ARC_RESOURCE_GROUP,
        tag_items=((ROLE_TAG, RUNNER_ROLE),),
        workload_identity_enabled=True,
        oidc_issuer_enabled=True,
        principal_id=str(uuid.UUID(int=_PRINCIPAL_BASE + index)),
        created_at=onboarded,
    )
    panel = Panel(
        identity=identity,
        connectivity=Connectivity(
            online=True, changed_at=plan.started_at - ONLINE_SINCE, certificate_issued_at=onboarded
        ),
    )
    spec = flux_extension_spec(RUNNER_FLUX_EXTENSION, workload_identity=True, image_controllers=True)
    panel.extensions[FLUX_EXTENSION_NAME] = _installed(index, spec, onboarded)
    runner_spec = platform_flux_spec(
        git_url=plan.git_url,
        https_user=plan.https_user,
        branch=plan.branch,
        kustomizations=(WORKLOADS_KUSTOMIZATION, IMAGE_AUTOMATION_KUSTOMIZATION),
    )
    _configure(panel, runner_spec, _https_key(plan.automation_pat), onboarded)
    return panel
