"""Seed a deterministic fleet: N panels over K subscriptions, 4 sites, 3 rings, some offline.

Panels are laid out round-robin over the (site, subscription) strata, so any contiguous block of
panel numbers is spread evenly over subscriptions and sites. Rings are then contiguous blocks in
that order — exactly round(10 %) `canary` (ipc-panel-0001…), round(30 %) `early`, the rest `broad`
— which makes every ring as spread as the fleet allows and keeps "who is canary" easy to read.
Panels that start offline are the *last* ones (broad first, then early; never canary).

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
    FLUX_NAMESPACE,
    SITES,
    Actor,
    Connectivity,
    DeliveredConfig,
    Fleet,
    FluxConfig,
    FluxSpec,
    GitRepositorySpec,
    KustomizationSpec,
    Panel,
    PanelIdentity,
    RepositoryRef,
    resource_group_for_site,
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
# site — gets its share instead of the rule lining up with the round-robin.
OLD_EXTENSION_EVERY = 10
CURRENT_FLUX_EXTENSION = "1.16.3"
OLD_FLUX_EXTENSION = "1.13.4"
# One panel in five was connected without `--enable-workload-identity`.
NO_WORKLOAD_IDENTITY_EVERY = 5
# Panels that start online have been connected for a day; those that start offline dropped off an
# hour before the lab started (so their connectedCluster already shows `Offline`).
ONLINE_SINCE = timedelta(days=1)
OFFLINE_SINCE = timedelta(hours=1)
# The fleet was onboarded a month before the lab started (systemData.createdAt).
ONBOARDED_BEFORE = timedelta(days=30)
# The operator who onboarded the fleet (the devops lab's user identity).
OPERATOR = Actor(name="operator@contoso.example", kind="User")
# Base of the panels' system-assigned identity object ids (stable across runs).
_PRINCIPAL_BASE = 0xC1A5_0000_0000_4000_8000_0000_0000_0000


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


def ring_counts(clusters: int) -> tuple[int, int]:
    """(canary, early) counts: exactly round(10 %) and round(30 %), rounding halves up."""
    return int(clusters * CANARY_SHARE + 0.5), int(clusters * EARLY_SHARE + 0.5)


def panel_name(index: int, clusters: int) -> str:
    width = max(4, len(str(clusters)))
    return f"ipc-panel-{index + 1:0{width}d}"


def platform_flux_spec(*, git_url: str, https_user: str = "git", branch: str = "main") -> FluxSpec:
    """`ipc-platform-config` as the operator created it on every panel."""

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
        kustomizations=(
            kustomization("workloads", "./kubernetes/workloads"),
            kustomization("image-automation", "./kubernetes/flux-system/image-automation"),
        ),
    )


def seed_fleet(plan: SeedPlan) -> Fleet:
    subs = plan.subscriptions
    strata = len(SITES) * len(subs)
    canary, early = ring_counts(plan.clusters)
    offline = min(plan.offline, plan.clusters - canary)
    spec = platform_flux_spec(git_url=plan.git_url, https_user=plan.https_user, branch=plan.branch)
    protected = (
        {"httpsKey": base64.b64encode(plan.initial_pat.encode()).decode()}
        if plan.initial_pat is not None
        else {}
    )
    onboarded = plan.started_at - ONBOARDED_BEFORE
    panels: list[Panel] = []
    for index in range(plan.clusters):
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
        identity = PanelIdentity(
            index=index,
            name=panel_name(index, plan.clusters),
            subscription=subscription,
            resource_group=group,
            ring=ring,
            site=site,
            flux_extension_version=(
                OLD_FLUX_EXTENSION
                if diagonal % OLD_EXTENSION_EVERY == OLD_EXTENSION_EVERY - 1
                else CURRENT_FLUX_EXTENSION
            ),
            workload_identity_enabled=workload_identity,
            oidc_issuer_enabled=workload_identity or round_ % 2 == 0,
            principal_id=str(uuid.UUID(int=_PRINCIPAL_BASE + index)),
            created_at=onboarded,
        )
        online = index < plan.clusters - offline
        connectivity = Connectivity(
            online=online,
            changed_at=plan.started_at - (ONLINE_SINCE if online else OFFLINE_SINCE),
        )
        config = FluxConfig(
            name=FLUX_CONFIGURATION_NAME,
            uid=str(uuid.uuid4()),
            spec=spec,
            protected_settings=protected,
            generation=1,
            changed_at=onboarded,
            provisioning_state="Succeeded",
            created_at=onboarded,
            created_by=OPERATOR,
            last_modified_at=onboarded,
            last_modified_by=OPERATOR,
        )
        panel = Panel(
            identity=identity, connectivity=connectivity, flux_configs={FLUX_CONFIGURATION_NAME: config}
        )
        panel.agent(FLUX_CONFIGURATION_NAME).delivered = DeliveredConfig(
            uid=config.uid,
            generation=1,
            spec=spec,
            protected_settings=protected,
        )
        panels.append(panel)
    return Fleet(panels, subscriptions=subs)
