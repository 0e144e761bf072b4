"""The emulated Azure Resource Graph: `POST /providers/Microsoft.ResourceGraph/resources` on ARM's listener.

In Azure, ARG is a resource provider behind `management.azure.com`; the SDK
(`ResourceGraphClient(credential, base_url=...)`) is given ARM's endpoint. So this service answers on ARM's
listener (ARM's `add_routes` lets it register its route first) and its own listener serves nothing;
`lab.json`'s `endpoints.resourcegraph` is ARM's endpoint. ARG reads the fleet through the ARM service
(`lab.service("arm")`), lagging it (`lab.resourcegraph.index`), and answers the lab's KQL subset
(`kql`, `engine`) with ARG's paging (`models`), quota (`quota`) and errors (`errors`). See
`lab/docs/resourcegraph.md`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lab.core.service import LabService
from lab.core.tokens import Principal
from lab.fleet.model import Panel
from lab.resourcegraph.control import add_graph_control_routes, describe_throttling
from lab.resourcegraph.index import GraphIndex
from lab.resourcegraph.models import ResourceGraphBackend
from lab.resourcegraph.quota import DEFAULT_QUERIES, DEFAULT_WINDOW_S, QuotaSettings, UserQuota
from lab.resourcegraph.responses import GraphResponses
from lab.resourcegraph.routes import add_graph_routes

if TYPE_CHECKING:
    from lab.server import Lab

log = logging.getLogger("lab.resourcegraph")

# How long ARG lags ARM by default (lab seconds): Azure publishes no figure beyond changes showing up
# "within seconds"; one second keeps the lag real (a write is never visible at once) and cheap for tests to
# wait out. `--resource-graph-lag` (lab/__main__.py, lab/server.py use the same default) changes it.
DEFAULT_LAG_S = 1.0
# Background scans run while ARG was queried within this many real seconds, and not more often than every
# MIN_SCAN_PERIOD_S; a scan's period is at least SCAN_PERIOD_PER_COST times what the last one cost, so
# background scanning never takes more than a tenth of a core, whatever the fleet size.
ACTIVE_FOR_S = 120.0
MIN_SCAN_PERIOD_S = 0.25
SCAN_PERIOD_PER_COST = 10.0


def _freeze_long_lived_heap() -> None:
    """Keep CPython's cyclic GC off the fleet and the index, which live until the next reset.

    At 10,000 panels the lab holds millions of container objects; every full collection walks them all,
    and a query that allocates a 10,000-row result triggers one (measured: evaluation 0.4 s with the heap
    frozen, 0.7-1.3 s without). `gc.freeze()` moves everything alive now into the permanent generation;
    objects made later (new reports, new rows, results) are collected as usual. A reset unfreezes first, so
    the replaced fleet is collected normally.
    """
    gc.collect()
    gc.freeze()


class ResourceGraphService(LabService):
    name = "resourcegraph"

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.default_lag_s = lab.resource_graph_lag
        self.index = GraphIndex(
            panels=self._panels, now=lab.clock.now, tenant_id=lab.tenant_id, lag_s=self.default_lag_s
        )
        self.quota = UserQuota()
        self.backend = ResourceGraphBackend(
            index=self.index,
            subscriptions=lambda: lab.subscriptions,
            tenant_id=lab.tenant_id,
            now=lab.clock.now,
        )
        self.responses = GraphResponses(
            backend=self.backend, quota=self.quota, clock=lab.clock, authenticate=self._authenticate
        )
        self._scanner: asyncio.Task[None] | None = None

    # --- wiring -----------------------------------------------------------------------------------
    def add_arm_routes(self, app: web.Application) -> None:
        """Called by the ARM service for its own listener: ARG lives under management.azure.com."""
        add_graph_routes(app, self.responses)

    def add_control_routes(self, app: web.Application) -> None:
        add_graph_control_routes(app, self)

    async def start(self) -> None:
        self.index.rebuild()  # ARM seeded the fleet in its own start(), which runs first
        _freeze_long_lived_heap()
        self._scanner = asyncio.create_task(self._scan_while_in_use(), name="lab-resourcegraph-scan")

    async def stop(self) -> None:
        if self._scanner is not None:
            self._scanner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scanner
            self._scanner = None

    def reset(self) -> None:
        """Defaults back (quota, lag), caches and logs cleared, the index caught up with the new fleet."""
        self.quota.configure(QuotaSettings())
        self.index.set_lag(self.default_lag_s)
        self.backend.reset()
        if self._scanner is not None:  # started: ARM has a fleet to index
            gc.unfreeze()  # the old fleet and rows become ordinary garbage, cycles included
            self.index.rebuild()
            _freeze_long_lived_heap()

    # --- ARM --------------------------------------------------------------------------------------
    def _panels(self) -> list[Panel]:
        arm: Any = self.lab.service("arm")
        arm.backend.settle()  # finish due long-running operations first, as any ARM read does
        panels: list[Panel] = arm.fleet.panels
        return panels

    def _authenticate(self, authorization: str | None) -> Principal:
        """ARM authenticates every request to management.azure.com: ARM's own checks, in ARM's order."""
        arm: Any = self.lab.service("arm")
        principal: Principal = arm.responses._authenticate(authorization)
        return principal

    async def _scan_while_in_use(self) -> None:
        period = MIN_SCAN_PERIOD_S
        while True:
            await asyncio.sleep(period)
            if time.monotonic() - self.backend.last_used_at > ACTIVE_FOR_S:
                continue
            started = time.perf_counter()
            try:
                self.index.scan()
                self.index.publish()
            except Exception:
                # The one broad catch here: a bug in one scan must not stop ARG for the rest of the run; it is
                # logged, and the next query's own scan raises it to the client as a 500.
                log.exception("resource graph background scan failed")
            period = max(MIN_SCAN_PERIOD_S, (time.perf_counter() - started) * SCAN_PERIOD_PER_COST)

    # --- lab.json and ground truth ----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        scale = self.lab.clock.time_scale
        return {
            "endpoints": {"resourcegraph": self.lab.endpoint("arm")},
            "env": {
                # ARG's documented per-user quota; the window runs on the lab clock, the app paces on real
                # time, so the window is scaled by --time-scale like ARM's rates.
                "FLUXFLEET_RESOURCE_GRAPH_QUERIES": str(DEFAULT_QUERIES),
                "FLUXFLEET_RESOURCE_GRAPH_WINDOW_SECONDS": f"{DEFAULT_WINDOW_S / scale:g}",
            },
        }

    def ground_truth(self) -> dict[str, Any]:
        return {
            "resourcegraph": {
                "lag_seconds": self.index.lag.total_seconds(),
                "pending_changes": self.index.stats()["pending_changes"],
                "queries": sum(self.backend.queries_by_principal.values()),
            }
        }

    def truth(self) -> dict[str, Any]:
        """`GET /_lab/resourcegraph`."""
        return {
            "settings": {
                "lag_seconds": self.index.lag.total_seconds(),
                "throttling": describe_throttling(self.quota.settings),
            },
            "index": self.index.stats(),
            "queries_by_principal": dict(self.backend.queries_by_principal),
            "recent_queries": [entry.describe() for entry in reversed(self.backend.log)],
        }
