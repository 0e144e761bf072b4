"""The emulated Azure Resource Manager and the simulated fleet behind it.

One listener answers the ARM routes the app uses (`connectedClusters`, `fluxConfigurations` with
their operations, `extensions`); one background task drives every panel's Flux agent. On start
(and reset) the fleet is seeded healthy: every panel holds the devops service's initial fleet PAT,
and every online panel has fetched HEAD once — at start with one real fetch through the Git server
(all panels share that credential and URL, so one fetch answers for all), at reset from the Git
server's own state (a reset cannot wait on an HTTP round trip to a server on the same loop).
Every later sync is a real fetch per panel.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from lab.arm.control import add_arm_control_routes
from lab.arm.models import ArmBackend
from lab.arm.responses import ArmResponses
from lab.arm.throttling import Throttle, ThrottleSettings
from lab.arm.wire import render_flux_config
from lab.core.service import LabService
from lab.core.tokens import DEVOPS_AUDIENCE
from lab.fleet.agents import AgentRuntime
from lab.fleet.git_fetch import (
    DulwichFetcher,
    Fetcher,
    FetchRequest,
    FetchResult,
    GitCredentials,
    clone_error,
)
from lab.fleet.model import FLUX_CONFIGURATION_NAME, Fleet, PanelIdentity, fleet_resource_groups
from lab.fleet.seeding import SeedPlan, seed_fleet
from lab.fleet.truth import cluster_truth

log = logging.getLogger("lab.arm")

# Where agents point when the lab runs without its Git server (nothing listens on port 9, "discard").
_NO_GIT_URL = "https://127.0.0.1:9/ipc-org/IPC-Platform-Engineering/_git/IPC-Platform-Engineering"
# A workload-identity token is reused until this many seconds before it expires (as azure-identity does).
_TOKEN_REFRESH_MARGIN_S = 300


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
        self._seed_result: FetchResult | None = None

    # --- wiring -----------------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self.responses.handle)

    def add_control_routes(self, app: web.Application) -> None:
        add_arm_control_routes(app, self)

    async def start(self) -> None:
        assert self.lab.tls is not None
        fetcher = DulwichFetcher(ca_bundle=self.lab.tls.ca_bundle)
        self.fetcher = fetcher
        self.agents = AgentRuntime(clock=self.lab.clock, fetcher=fetcher, workload_token=self._token_for)
        plan = self._plan()
        seed_started = time.monotonic()
        self._seed_result = (
            await fetcher.fetch(
                FetchRequest(
                    url=plan.git_url,
                    credentials=GitCredentials(username=plan.https_user, password=plan.initial_pat),
                    branch=plan.branch,
                )
            )
            if plan.initial_pat is not None
            else FetchResult(ok=False, error=clone_error(plan.git_url, "authentication required"))
        )
        self._load(seed_fleet(plan), self._seed_result)
        log.info(
            "seeded %d panels in %.2fs (initial fetch ok=%s)",
            len(self.fleet.panels),
            time.monotonic() - seed_started,
            self._seed_result.ok,
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
        self._load(seed_fleet(plan), self._reset_fetch_result(plan))

    def _load(self, fleet: Fleet, seed_result: FetchResult) -> None:
        """Make `fleet` current and record the seed fetch on every panel (before offline ones dropped off)."""
        assert self.agents is not None
        self.fleet = fleet
        self.backend.load(fleet)
        now = self.lab.clock.now()
        for panel in fleet.panels:
            config = panel.flux_config(FLUX_CONFIGURATION_NAME)
            state = panel.agent(FLUX_CONFIGURATION_NAME)
            if config is None or state.delivered is None:
                continue
            at = now if panel.connectivity.online else panel.connectivity.changed_at
            self.agents.record_fetch(config, state, state.delivered, seed_result, at=at)
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
        )

    def _reset_fetch_result(self, plan: SeedPlan) -> FetchResult:
        """The seed fetch after a reset, from the Git server's own state (same answer a fetch would give)."""
        devops: Any = self.lab.services.get("devops")
        if devops is None or plan.initial_pat is None:
            return FetchResult(ok=False, error=clone_error(plan.git_url, "connection refused"))
        if devops.pats.check(plan.initial_pat, "vso.code", devops.org) is None:
            return FetchResult(
                ok=False, auth_failed=True, error=clone_error(plan.git_url, "authentication required")
            )
        head = devops.head_commit(plan.branch)
        known = self._seed_result
        tree_dirs = known.tree_dirs if known is not None and known.revision == head else None
        return FetchResult(ok=True, revision=head, tree_dirs=tree_dirs)

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
        return {
            "endpoints": {"arm": self.endpoint},
            "env": {
                "FLUXFLEET_ARM_ENDPOINT": self.endpoint,
                "FLUXFLEET_FLUX_CONFIGURATION": FLUX_CONFIGURATION_NAME,
            },
            "resource_groups": fleet_resource_groups(),
            "flux_configuration": FLUX_CONFIGURATION_NAME,
        }

    def ground_truth(self) -> dict[str, Any]:
        self.backend.settle()
        now = self.lab.clock.now()
        return {"clusters": [cluster_truth(panel, now) for panel in self.fleet.panels]}

    def flux_config(self, cluster_id: str, name: str = FLUX_CONFIGURATION_NAME) -> dict[str, Any] | None:
        """The Flux configuration of a cluster as `GET` (api 2025-04-01) shows it, or None."""
        self.backend.settle()
        panel = self.fleet.by_id(cluster_id)
        config = panel.flux_config(name) if panel is not None else None
        if panel is None or config is None:
            return None
        return dict(render_flux_config(panel, config, "2025-04-01"))
