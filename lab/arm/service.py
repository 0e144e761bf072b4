"""The emulated Azure Resource Manager and the simulated fleet behind it.

One listener answers the ARM routes the app uses (`connectedClusters`, `fluxConfigurations` and
`extensions` with their operations); one background task drives every panel's Flux agent. On start
(and reset) the fleet is seeded healthy: every factory panel holds the devops service's read-only
fleet PAT, the automation runner its write PAT, and every online panel has fetched HEAD once — at
start with one real fetch through the Git server per credential (panels sharing a credential and URL
share the answer), at reset from the Git server's own state (a reset cannot wait on an HTTP round
trip to a server on the same loop). Every later sync is a real fetch per panel. Panels connected at
runtime (`POST /_lab/clusters`) publish ARM's ResourceWriteSuccess on their subscription's topic.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from aiohttp import web

from lab.arm.control import add_arm_control_routes
from lab.arm.events import DELETE_SUCCESS, WRITE_SUCCESS, connected_cluster_event
from lab.arm.models import ArmBackend
from lab.arm.responses import ArmResponses
from lab.arm.throttling import Throttle, ThrottleSettings
from lab.arm.wire import render_flux_config
from lab.core.service import LabService
from lab.core.tokens import DEVOPS_AUDIENCE
from lab.fleet.agents import AgentRuntime, held_password
from lab.fleet.git_fetch import (
    DulwichFetcher,
    Fetcher,
    FetchRequest,
    FetchResult,
    GitCredentials,
    clone_error,
)
from lab.fleet.model import (
    ARC_RESOURCE_GROUP,
    FLUX_CONFIGURATION_NAME,
    LOCATION,
    RUNNER_NAME,
    Connectivity,
    Fleet,
    Panel,
    PanelIdentity,
    fleet_resource_groups,
)
from lab.fleet.registry import lab_registry_images
from lab.fleet.secrets_control import add_panel_routes
from lab.fleet.seeding import SeedPlan, seed_fleet
from lab.fleet.truth import cluster_truth

log = logging.getLogger("lab.arm")

# Where agents point when the lab runs without its Git server (nothing listens on port 9, "discard").
_NO_GIT_URL = "https://127.0.0.1:9/ipc-org/IPC-Platform-Engineering/_git/IPC-Platform-Engineering"
# A workload-identity token is reused until this many seconds before it expires (as azure-identity does).
_TOKEN_REFRESH_MARGIN_S = 300
# Base of the object ids of panels connected at runtime (stable per name, apart from seeded ones).
_CONNECTED_PRINCIPAL_NAMESPACE = uuid.UUID("c1a5c0de-0000-4000-8000-00000000c0de")


class ArmService(LabService):
    name = "arm"

    def __init__(self, lab: Any) -> None:
        super().__init__(lab)
        self.throttle = Throttle()
        self.fleet = Fleet([], subscriptions=lab.subscriptions)
        self.backend = ArmBackend(clock=lab.clock, fleet=self.fleet)
        self.responses = ArmResponses(
            backend=self.backend,
            clock=lab.clock,
            tokens=lab.tokens,
            throttle=self.throttle,
            tenant_id=lab.tenant_id,
            endpoint=lambda: self.endpoint,
        )
        self.fetcher: Fetcher | None = None
        self.agents: AgentRuntime | None = None
        self._workload_token: tuple[str, float] | None = None
        self._seed_results: dict[str | None, FetchResult] = {}  # by the PAT fetched with

    # --- wiring -----------------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        # Resource Graph is a provider behind management.azure.com too: it adds its route first.
        graph: Any = self.lab.services.get("resourcegraph")
        if graph is not None:
            graph.add_arm_routes(app)
        app.router.add_route("*", "/{tail:.*}", self.responses.handle)

    def add_control_routes(self, app: web.Application) -> None:
        add_arm_control_routes(app, self)
        add_panel_routes(app, self)  # panels' secrets and workloads (lab.fleet.secrets_control)

    async def start(self) -> None:
        assert self.lab.tls is not None
        fetcher = DulwichFetcher(ca_bundle=self.lab.tls.ca_bundle)
        self.fetcher = fetcher
        self.agents = AgentRuntime(
            clock=self.lab.clock,
            fetcher=fetcher,
            workload_token=self._token_for,
            registry=lab_registry_images(self.lab.service("acr")) if "acr" in self.lab.services else None,
        )
        plan = self._plan()
        seed_started = time.monotonic()
        self._seed_results = {}
        for pat in {plan.initial_pat, plan.automation_pat}:
            self._seed_results[pat] = (
                await fetcher.fetch(
                    FetchRequest(
                        url=plan.git_url,
                        credentials=GitCredentials(username=plan.https_user, password=pat),
                        branch=plan.branch,
                    )
                )
                if pat is not None
                else FetchResult(ok=False, error=clone_error(plan.git_url, "authentication required"))
            )
        self._load(seed_fleet(plan), self._seed_results)
        log.info(
            "seeded %d panels in %.2fs (initial fetches ok=%s)",
            len(self.fleet.panels),
            time.monotonic() - seed_started,
            all(result.ok for result in self._seed_results.values()),
        )
        self.agents.start()

    async def stop(self) -> None:
        if self.agents is not None:
            await self.agents.stop()
        if isinstance(self.fetcher, DulwichFetcher):
            self.fetcher.close()

    def reset(self) -> None:
        self.throttle.configure(ThrottleSettings())  # ARM's defaults, buckets full
        self._workload_token = None
        if self.agents is None:
            return  # not started yet
        plan = self._plan()
        self._load(
            seed_fleet(plan),
            {pat: self._reset_fetch_result(plan, pat) for pat in {plan.initial_pat, plan.automation_pat}},
        )

    def _load(self, fleet: Fleet, seed_results: dict[str | None, FetchResult]) -> None:
        """Make `fleet` current and record the seed fetch on every panel (before offline ones dropped off)."""
        assert self.agents is not None
        self.fleet = fleet
        self.backend.load(fleet)
        now = self.lab.clock.now()
        for panel in fleet.panels:
            config = panel.flux_config(FLUX_CONFIGURATION_NAME)
            if config is None:
                continue  # an unconfigured panel: nothing was ever synced
            state = panel.agent(FLUX_CONFIGURATION_NAME)
            if state.delivered is None:
                continue
            at = now if panel.connectivity.online else panel.connectivity.changed_at
            result = seed_results[held_password(state.delivered)]
            self.agents.record_fetch(config, state, state.delivered, result, at=at)
        self.agents.attach(fleet.panels)

    def _plan(self) -> SeedPlan:
        devops: Any = self.lab.services.get("devops")
        return SeedPlan(
            clusters=self.lab.cluster_count,
            subscriptions=self.lab.subscriptions,
            offline=self.lab.offline_count,
            git_url=devops.git_url if devops is not None else _NO_GIT_URL,
            initial_pat=devops.initial_fleet_pat if devops is not None else None,
            started_at=self.lab.clock.now(),
            unconfigured=self.lab.unconfigured_count,
            runner=self.lab.runner,
            automation_pat=devops.automation_pat if devops is not None else None,
        )

    def _reset_fetch_result(self, plan: SeedPlan, pat: str | None) -> FetchResult:
        """The seed fetch after a reset, from the Git server's own state (same answer a fetch would give)."""
        devops: Any = self.lab.services.get("devops")
        if devops is None or pat is None:
            return FetchResult(ok=False, error=clone_error(plan.git_url, "connection refused"))
        if devops.pats.check(pat, "vso.code", devops.org) is None:
            return FetchResult(
                ok=False, auth_failed=True, error=clone_error(plan.git_url, "authentication required")
            )
        head = devops.head_commit(plan.branch)
        known = next((r for r in self._seed_results.values() if r.ok and r.revision == head), None)
        return FetchResult(ok=True, revision=head, tree_dirs=known.tree_dirs if known is not None else None)

    def _token_for(self, _: PanelIdentity) -> str:
        """An Azure DevOps token for the federated workload identity (the lab uses the app's identity)."""
        cached = self._workload_token
        if cached is not None and cached[1] - _TOKEN_REFRESH_MARGIN_S > time.time():
            return cached[0]
        identity = self.lab.service("identity").app_identity
        token, expires_on = self.lab.tokens.issue(identity, DEVOPS_AUDIENCE)
        self._workload_token = (token, float(expires_on))
        return str(token)

    # --- lab.json and ground truth ----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        runner = self.fleet.by_name(RUNNER_NAME) if self.lab.runner else None
        return {
            "endpoints": {"arm": self.endpoint},
            "env": {
                "FLUXFLEET_ARM_ENDPOINT": self.endpoint,
                "FLUXFLEET_FLUX_CONFIGURATION": FLUX_CONFIGURATION_NAME,
            },
            "resource_groups": fleet_resource_groups(),
            "flux_configuration": FLUX_CONFIGURATION_NAME,
            "runner": None if runner is None else {"name": runner.name, "id": runner.identity.id},
        }

    def ground_truth(self) -> dict[str, Any]:
        self.backend.settle()
        now = self.lab.clock.now()
        return {"clusters": [self.cluster_truth(panel, now) for panel in self.fleet.panels]}

    def cluster_truth(self, panel: Panel, now: Any = None) -> dict[str, Any]:
        """One panel's ground truth, with whether its credential can push (asked of the devops service)
        and the secrets it holds (the agents' store)."""
        devops: Any = self.lab.services.get("devops")
        return cluster_truth(
            panel,
            self.lab.clock.now() if now is None else now,
            can_push=devops.can_push if devops is not None else None,
            secrets=self.agents.applier.secrets if self.agents is not None else None,
        )

    def flux_config(self, cluster_id: str, name: str = FLUX_CONFIGURATION_NAME) -> dict[str, Any] | None:
        """The Flux configuration of a cluster as `GET` (api 2025-04-01) shows it, or None."""
        self.backend.settle()
        panel = self.fleet.by_id(cluster_id)
        config = panel.flux_config(name) if panel is not None else None
        if panel is None or config is None:
            return None
        return dict(render_flux_config(panel, config, "2025-04-01"))

    # --- panels joining and leaving Arc (control API) ---------------------------------------------
    def connect_cluster(
        self,
        *,
        name: str,
        subscription: str | None = None,
        resource_group: str = ARC_RESOURCE_GROUP,
        tags: dict[str, str] | None = None,
        location: str = LOCATION,
        online: bool = True,
    ) -> Panel:
        """A newly shipped panel connects to Arc: no extension, no configuration; ARM raises its event.

        Raises ValueError (a name that exists, an unknown subscription or resource group).
        """
        assert self.agents is not None
        sub = subscription or self.lab.subscriptions[0]
        now = self.lab.clock.now()
        known = {s.lower(): s for s in self.fleet.subscriptions}
        if sub.lower() not in known:
            raise ValueError(f"subscription {sub} is not one of the lab's")
        sub = known[sub.lower()]
        if not self.fleet.has_resource_group(sub, resource_group):
            raise ValueError(f"no resource group {resource_group!r} in subscription {sub}")
        identity = PanelIdentity(
            index=max((p.identity.index for p in self.fleet.panels), default=-1) + 1,
            name=name,
            subscription=sub,
            resource_group=self.fleet.resource_group_name(sub, resource_group),
            tag_items=tuple(sorted((tags or {}).items())),
            workload_identity_enabled=True,  # `az connectedk8s connect --enable-workload-identity` (2025+)
            oidc_issuer_enabled=True,
            principal_id=str(uuid.uuid5(_CONNECTED_PRINCIPAL_NAMESPACE, name.lower())),
            created_at=now,
            location=location,
        )
        panel = Panel(
            identity=identity,
            # Not online: ARM has the resource but no agent heartbeat yet (`Connecting`).
            connectivity=Connectivity(
                online=online, changed_at=now, certificate_issued_at=now, heartbeat_seen=online
            ),
        )
        self.fleet.add(panel)  # ValueError for a name that exists
        self.agents.attach(self.fleet.panels)
        self._publish(WRITE_SUCCESS, panel)
        return panel

    def disconnect_cluster(self, panel: Panel) -> None:
        """The panel is deleted from Arc (`az connectedk8s delete`): gone from ARM, its agents with it."""
        assert self.agents is not None
        self.fleet.remove(panel)
        self.agents.attach(self.fleet.panels)
        self._publish(DELETE_SUCCESS, panel)

    def _publish(self, event_type: str, panel: Panel) -> None:
        self.lab.events.publish(
            connected_cluster_event(
                event_type=event_type,
                resource_id=panel.identity.id,
                subscription=panel.identity.subscription,
                tenant_id=self.lab.tenant_id,
                at=self.lab.clock.now(),
                arm_endpoint=self.endpoint,
            )
        )

    # --- for other simulators ---------------------------------------------------------------------
    def runner_credentials(self, name: str = FLUX_CONFIGURATION_NAME) -> list[tuple[Panel, tuple[str, str]]]:
        """Each image-automation runner (found by its tag) with the (httpsUser, PAT) its agent holds for
        `name`: what Flux's image-automation controller on that cluster pushes with. Never log the PAT.
        A runner that holds no credential (not onboarded, or offline before delivery) is left out."""
        found: list[tuple[Panel, tuple[str, str]]] = []
        for panel in self.fleet.runners():
            delivered = panel.delivered(name)
            credentials = delivered.https_credentials() if delivered is not None else None
            if credentials is not None:
                found.append((panel, credentials))
        return found
