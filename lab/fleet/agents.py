"""The simulated Arc config agent + Flux on every panel, driven by one scheduler task.

On each sync tick an online panel's agent:

1. takes the pending change of each Flux configuration — unless the change is older than Arc's
   48-hour window, in which case it is dropped for good (the agent keeps its old settings while
   ARM keeps showing the new desired state, as on Arc) until the configuration is applied again;
2. if the configuration is suspended, reports `Suspended` and neither fetches nor applies;
3. otherwise fetches from Git for real with the credential it holds (`git_fetch`), applies the
   revision it holds — builds each kustomization and health checks what it applied on this panel
   (`apply`) — and reports what happened in Flux's own vocabulary (`flux_status`).

An offline panel does nothing and reports nothing; nor does one whose managed-identity certificate
expired or whose `microsoft.flux` extension is missing, failed or being deleted (the agents *are*
that extension). One asyncio task drives every agent from a
schedule keyed by the next tick's lab time (each panel's interval is its configuration's
`syncIntervalInSeconds`, with a deterministic per-panel phase so ticks spread out), instead of one
task per panel: 10,000 sleeping tasks would cost more than the work they schedule.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from lab.core.clock import LabClock
from lab.fleet.apply import Applier
from lab.fleet.flux_status import report_fetch, report_suspended, report_unsupported
from lab.fleet.git_fetch import DEFAULT_BRANCH, Fetcher, FetchRequest, FetchResult, GitCredentials
from lab.fleet.health import ImageRegistry
from lab.fleet.model import (
    DELIVERY_WINDOW,
    ConfigAgentState,
    DeliveredConfig,
    FluxConfig,
    LastFetch,
    Panel,
    PanelIdentity,
)

log = logging.getLogger("lab.fleet.agents")

# Spreads panels' first ticks over their interval: the golden ratio's fractional part gives
# successive panels phases that never bunch up, whatever the fleet size.
_PHASE_STEP = 0.6180339887498949
# The scheduler naps at most this many lab seconds, so a reset (new schedule) or a new panel
# interval is noticed soon even when the next tick is far away.
_MAX_NAP_LAB_S = 1.0
# Concurrent panel syncs at once; fetches are further bounded inside the fetcher.
DEFAULT_SYNC_CONCURRENCY = 32

# A source of Entra tokens for the Azure DevOps audience, standing in for the panel's federated
# workload identity when a configuration says `provider: Azure`.
WorkloadTokenSource = Callable[[PanelIdentity], str]

Delivery = Literal["current", "delivered", "dropped"]


def take_delivery(config: FluxConfig, state: ConfigAgentState, now: datetime) -> Delivery:
    """Hand the agent the configuration's newest generation, unless Arc would no longer deliver it."""
    held = state.delivered
    if held is not None and held.uid == config.uid and config.generation <= held.generation:
        return "current"
    if config.uid == state.dropped_uid and config.generation <= state.dropped_generation:
        return "current"
    if now - config.changed_at > DELIVERY_WINDOW:
        state.dropped_uid, state.dropped_generation = config.uid, config.generation
        return "dropped"
    state.delivered = DeliveredConfig(
        uid=config.uid,
        generation=config.generation,
        spec=config.spec,
        protected_settings=config.protected_settings,
    )
    return "delivered"


@dataclass(frozen=True)
class CredentialProblem:
    """Why the agent could not even build its Git credentials (Flux: `AuthenticationFailed`)."""

    message: str
    reason: str = "AuthenticationFailed"


def credentials_for(
    delivered: DeliveredConfig, panel: Panel, workload_token: WorkloadTokenSource | None
) -> GitCredentials | CredentialProblem:
    """The credentials Flux would use for this configuration on this panel.

    source-controller wraps a provider's failure in "failed to configure authentication options: %w"
    (gitrepository_controller.go line 816; the provider's own words after it are the lab's), and
    refuses `provider: github` without GitHub App data in the secret (line 750-752).
    """
    git = delivered.spec.git_repository
    assert git is not None
    if git.provider is not None and git.provider.lower() == "azure":
        if not panel.supports_workload_identity:
            if not panel.workload_identity_enabled or not panel.oidc_issuer_enabled:
                return CredentialProblem(
                    "failed to configure authentication options: failed to get credential from azure "
                    "provider: workload identity is not enabled on this cluster (no OIDC issuer / webhook)"
                )
            # An extension older than 1.15.1 ignores `provider` and clones anonymously.
            return GitCredentials()
        if workload_token is None:
            return CredentialProblem(
                "failed to configure authentication options: failed to get credential from azure provider: "
                "no token source"
            )
        return GitCredentials(bearer_token=workload_token(panel.identity))
    if git.provider is not None and git.provider.lower() == "github":
        return CredentialProblem(
            "secretRef with github app data must be specified when provider is set to github",
            reason="InvalidProviderConfiguration",
        )
    if git.local_auth_ref:
        name = git.local_auth_ref
        return CredentialProblem(
            f"failed to get secret '{delivered.spec.namespace}/{name}': secrets \"{name}\" not found"
        )
    encoded = delivered.protected_settings.get("httpsKey")
    password: str | None = None
    if encoded is not None:
        try:
            password = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return CredentialProblem("failed to decode the 'httpsKey' protected setting: illegal base64 data")
    if git.https_user is None and password is None:
        return GitCredentials()
    return GitCredentials(username=git.https_user or "git", password=password or "")


def held_password(delivered: DeliveredConfig | None) -> str | None:
    """The PAT the agent holds for a configuration (decoded httpsKey), or None."""
    if delivered is None or "httpsKey" not in delivered.protected_settings:
        return None
    try:
        return base64.b64decode(delivered.protected_settings["httpsKey"], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class SyncOutcome:
    panel: str
    synced: bool  # False: offline (nothing happens, nothing is reported)
    fetched: int = 0
    failed: int = 0


class AgentRuntime:
    """Every panel's agent; `run()` is the one background task, `tick_all()` syncs all online now."""

    def __init__(
        self,
        *,
        clock: LabClock,
        fetcher: Fetcher,
        workload_token: WorkloadTokenSource | None = None,
        concurrency: int = DEFAULT_SYNC_CONCURRENCY,
        registry: ImageRegistry | None = None,
    ) -> None:
        self.clock = clock
        self.fetcher = fetcher
        self.workload_token = workload_token
        # Builds, health checks and the panels' secrets (`registry` None: images are not checked).
        self.applier = Applier(registry=registry)
        self._slots = asyncio.Semaphore(concurrency)
        self._panels: list[Panel] = []
        self._schedule: list[tuple[float, int]] = []  # (lab elapsed seconds due, panel index)
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[SyncOutcome]] = set()

    # --- fleet and schedule -----------------------------------------------------------------------
    def attach(self, panels: list[Panel]) -> None:
        """Take over a (new) fleet: every panel's first tick lands at its phase within its interval.

        A new fleet (start or reset) also means every panel holds the seed's secrets again.
        """
        self._panels = panels
        self.applier.reset()
        now = self.clock.elapsed()
        self._schedule = [
            (now + ((index * _PHASE_STEP) % 1.0) * panel.sync_interval_s(), index)
            for index, panel in enumerate(panels)
        ]
        heapq.heapify(self._schedule)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="lab-agents")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._in_flight):
            task.cancel()

    async def run(self) -> None:
        while True:
            now = self.clock.elapsed()
            if not self._schedule or self._schedule[0][0] > now:
                nap = self._schedule[0][0] - now if self._schedule else _MAX_NAP_LAB_S
                await self.clock.sleep(min(nap, _MAX_NAP_LAB_S))
                continue
            due, index = heapq.heappop(self._schedule)
            if index >= len(self._panels):
                continue  # left over from a fleet that was replaced by a reset
            panel = self._panels[index]
            interval = panel.sync_interval_s()
            next_due = due + interval if due + interval > now else now + interval  # skip missed ticks
            heapq.heappush(self._schedule, (next_due, index))
            if panel.agents_can_run(self.clock.now()):  # online, certificate valid, microsoft.flux running
                await self._slots.acquire()
                task = asyncio.create_task(self._sync_in_slot(panel))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    async def _sync_in_slot(self, panel: Panel) -> SyncOutcome:
        try:
            return await self.sync_panel(panel)
        finally:
            self._slots.release()

    async def tick_all(self) -> list[SyncOutcome]:
        """Every online panel syncs once, now; returns when all are done."""

        async def one(panel: Panel) -> SyncOutcome:
            await self._slots.acquire()
            return await self._sync_in_slot(panel)

        now = self.clock.now()
        online = [panel for panel in self._panels if panel.agents_can_run(now)]
        return list(await asyncio.gather(*(one(panel) for panel in online)))

    # --- one panel --------------------------------------------------------------------------------
    async def sync_panel(self, panel: Panel) -> SyncOutcome:
        async with panel.sync_lock:
            if not panel.agents_can_run(self.clock.now()):  # offline, expired, or no running microsoft.flux
                return SyncOutcome(panel.name, synced=False)
            for key in list(panel.agents):  # ARM deleted the configuration: Flux objects go away
                config = panel.flux_configs.get(key)
                if config is None or config.deleting:
                    del panel.agents[key]
            fetched = failed = 0
            for config in list(panel.flux_configs.values()):
                if config.deleting:
                    continue
                state = panel.agent(config.name)
                take_delivery(config, state, self.clock.now())
                if state.delivered is None:
                    continue
                result = await self._reconcile(panel, config, state, state.delivered)
                if result is not None:
                    fetched += 1
                    failed += 0 if result.ok else 1
            return SyncOutcome(panel.name, synced=True, fetched=fetched, failed=failed)

    async def _reconcile(
        self, panel: Panel, config: FluxConfig, state: ConfigAgentState, delivered: DeliveredConfig
    ) -> FetchResult | None:
        spec = delivered.spec
        if spec.suspend:
            report_suspended(config, state, delivered, self.clock.now())
            return None
        if spec.source_kind != "GitRepository" or spec.git_repository is None or not spec.git_repository.url:
            report_unsupported(
                config,
                state,
                delivered,
                self.clock.now(),
                f"the lab's agents only sync GitRepository sources, not {spec.source_kind}",
            )
            return None
        credentials = credentials_for(delivered, panel, self.workload_token)
        if isinstance(credentials, CredentialProblem):
            result = FetchResult(ok=False, error=credentials.message)
            self.record_fetch(
                config,
                state,
                delivered,
                result,
                credential_problem=True,
                source_reason=credentials.reason,
                panel=panel,
            )
            return result
        ref = spec.git_repository.repository_ref
        if ref is not None and not ref.branch and not ref.tag and (ref.semver or ref.commit):
            report_unsupported(
                config,
                state,
                delivered,
                self.clock.now(),
                "the lab's agents follow branch and tag refs only, not semver or commit refs",
            )
            return None
        request = FetchRequest(
            url=spec.git_repository.url,
            credentials=credentials,
            branch=ref.branch
            if ref is not None and ref.branch
            else None
            if ref and ref.tag
            else DEFAULT_BRANCH,
            tag=ref.tag if ref is not None else None,
            have_revision=state.applied_revision,
        )
        try:
            result = await self.fetcher.fetch(request)
        except Exception as exc:
            # The one broad catch in the agents: a bug in one fetch must not silence the whole fleet's
            # agents. The failure is not swallowed: it is logged and reported on the panel.
            log.exception("agent fetch crashed", extra={"cluster": panel.name})
            result = FetchResult(ok=False, error=f"lab agent error: {type(exc).__name__}")
        self.record_fetch(config, state, delivered, result, panel=panel)
        return result

    def record_fetch(
        self,
        config: FluxConfig,
        state: ConfigAgentState,
        delivered: DeliveredConfig,
        result: FetchResult,
        *,
        credential_problem: bool = False,
        source_reason: str | None = None,
        at: datetime | None = None,
        panel: Panel | None = None,
    ) -> None:
        """Remember a fetch's outcome, apply the revision held, and report it through ARM's read-only fields.

        Applying builds every kustomization from the revision's files and, given the `panel`, checks
        the health of what it applied (`lab.fleet.apply`); the seed sync passes no panel.
        """
        now = at or self.clock.now()
        state.last_fetch = LastFetch(ok=result.ok, revision=result.revision, error=result.error, at=now)
        if result.ok and result.revision is not None:
            if result.revision != state.applied_revision:
                state.applied_revision = result.revision
                state.source_updated_at = now
                state.tree_dirs = result.tree_dirs
            elif result.tree_dirs is not None:
                state.tree_dirs = result.tree_dirs
            if result.tree is not None and result.revision == state.applied_revision:
                self.applier.remember(result.tree)
        # kustomize-controller reconciles the last artifact it has even when a new fetch failed.
        applied = self.applier.outcomes(config, state, delivered, panel, now)
        report_fetch(
            config,
            state,
            delivered,
            now,
            result,
            credential_problem=credential_problem,
            source_reason=source_reason,
            applied=applied,
        )
