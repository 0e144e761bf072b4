"""`python -m lab serve`: start every emulated service on 127.0.0.1 and write `lab.json`.

One process, one asyncio loop, one listener per service (each SDK gets its own base URL, as in
Azure), plus the control API and an Azurite child process for Storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import secrets
import signal
import uuid
from pathlib import Path
from typing import Any

import certifi
from aiohttp import web

from lab.azurite import Azurite
from lab.core.clock import LabClock, date_header_middleware
from lab.core.events import EventBus
from lab.core.faults import Faults, RequestLog, make_middleware
from lab.core.service import LabService
from lab.core.tls import LabTls, create_tls
from lab.core.tokens import TokenStore

log = logging.getLogger("lab")

# The emulated services, in start order (agents need ARM and Git; Event Grid needs the publishers).
# Plain imports: a service that fails to import stops the lab loudly rather than vanishing.
# Services also start and reset in this order, so a later one may read what an earlier one seeded
# (the fleet's initial PAT is minted by devops, then handed to ARM's panels and to Key Vault).
SERVICE_MODULES = (
    "lab.identity",
    "lab.devops",
    "lab.vssps",
    "lab.acr",
    "lab.arm",
    "lab.resourcegraph",  # reads the fleet ARM seeded; serves on ARM's listener
    "lab.keyvault",
    "lab.eventgrid",
    "lab.imageautomation",
)

# The lab's fixed tenant: ids in lab.json are stable across runs so documentation can show them.
TENANT_ID = "72f988bf-0000-4000-8000-00000000f1ee"

# ARM's per-subscription, per-principal write bucket (reference/azure-apis.md §5).
ARM_WRITE_BURST = 200
ARM_WRITE_RATE_PER_S = 10.0
ARM_READ_BURST = 250
ARM_READ_RATE_PER_S = 25.0
# The app's defaults (shared/config.py) for the same settings, in lab seconds.
FLEET_VERIFY_DELAY_S = 30.0
OFFLINE_RECHECK_S = 600.0


class Lab:
    """Everything the services share; services reach each other through `lab.service(name)`."""

    def __init__(
        self,
        *,
        state_dir: Path,
        clusters: int = 50,
        subscriptions: int = 1,
        time_scale: float = 1.0,
        offline: int = 0,
        unconfigured: int = 0,
        runner: bool = True,
        azurite: bool = True,
        resource_graph_lag: float = 1.0,  # lab.resourcegraph.service.DEFAULT_LAG_S
        repo_root: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.cluster_count = clusters
        self.subscription_count = subscriptions
        self.offline_count = offline
        # Panels connected to Arc with nothing on them yet, and whether the automation runner exists
        # (lab/docs/arm.md, "Unconfigured and new panels", "The runner").
        self.unconfigured_count = unconfigured
        self.runner = runner
        # Lab seconds Resource Graph lags ARM (lab/docs/resourcegraph.md, "Lag").
        self.resource_graph_lag = resource_graph_lag
        self.repo_root = repo_root or Path(__file__).resolve().parent.parent
        self.clock = LabClock(time_scale=time_scale)
        self.tokens = TokenStore()
        self.events = EventBus()
        self.faults = Faults()
        self.requests = RequestLog()
        self.tenant_id = TENANT_ID
        self.subscriptions = [
            str(uuid.UUID(int=0x5B5C_0000_0000_4000_8000_0000_0000_0000 + i))
            for i in range(1, subscriptions + 1)
        ]
        self.identity_header = secrets.token_hex(16)
        self.tls: LabTls | None = None
        self.services: dict[str, LabService] = {}
        self._endpoints: dict[str, str] = {}
        self._runners: list[web.AppRunner] = []
        self.azurite = Azurite(state_dir / "azurite") if azurite else None
        for module_name in SERVICE_MODULES:
            service_cls: type[LabService] = importlib.import_module(module_name).SERVICE
            self.services[service_cls.name] = service_cls(self)

    # --- lookups ------------------------------------------------------------------------------------
    def service(self, name: str) -> Any:
        return self.services[name]

    def endpoint(self, name: str) -> str:
        return self._endpoints[name]

    # --- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.tls = create_tls(self.state_dir)
        if self.azurite is not None:
            await self.azurite.start()
        for name, service in self.services.items():
            app = web.Application(
                middlewares=[
                    make_middleware(name, self.faults, self.requests),
                    date_header_middleware(self.clock),
                ],
                client_max_size=64 * 1024 * 1024,
            )
            service.add_routes(app)
            self._endpoints[name] = await self._listen(app, https=service.scheme == "https")
        control = web.Application()
        from lab.control import add_core_control_routes

        add_core_control_routes(control, self)
        for service in self.services.values():
            service.add_control_routes(control)
        self._endpoints["control"] = await self._listen(control, https=True)
        for service in self.services.values():
            await service.start()
        self.write_lab_json()

    async def _listen(self, app: web.Application, *, https: bool) -> str:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        assert self.tls is not None
        site = web.TCPSite(
            runner, "127.0.0.1", 0, ssl_context=self.tls.server_context if https else None, backlog=1024
        )
        await site.start()
        self._runners.append(runner)
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return f"{'https' if https else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            with contextlib.suppress(Exception):
                await service.stop()
        for runner in reversed(self._runners):
            await runner.cleanup()
        if self.azurite is not None:
            await self.azurite.stop()

    def reset(self) -> None:
        self.faults.clear()
        self.requests.reset()
        self.events.reset()
        for service in self.services.values():
            service.reset()

    # --- lab.json -----------------------------------------------------------------------------------
    def ca_bundle_with_system_roots(self) -> Path:
        """certifi's roots plus the lab CA: clients trust the lab without distrusting everything else."""
        assert self.tls is not None
        combined = self.state_dir / "ca-bundle.pem"
        combined.write_text(Path(certifi.where()).read_text() + "\n" + self.tls.ca_bundle.read_text())
        return combined

    def describe(self) -> dict[str, Any]:
        assert self.tls is not None
        bundle = str(self.ca_bundle_with_system_roots())
        scale = self.clock.time_scale
        doc: dict[str, Any] = {
            "ca_bundle": str(self.tls.ca_bundle),
            "tenant_id": self.tenant_id,
            "subscriptions": self.subscriptions,
            "endpoints": dict(self._endpoints),
            "time_scale": self.clock.time_scale,
            "env": {
                "REQUESTS_CA_BUNDLE": bundle,
                "SSL_CERT_FILE": bundle,
                "GIT_SSL_CAINFO": bundle,
                "AZURE_TENANT_ID": self.tenant_id,
                "FLUXFLEET_SUBSCRIPTION_IDS": ",".join(self.subscriptions),
                # ARM's write budget (200 burst, 10/s) refills on the lab clock; the app's pacer runs on
                # real time, so its refill rate is scaled by the same factor to stay in step.
                "FLUXFLEET_ARM_WRITE_BURST": str(ARM_WRITE_BURST),
                "FLUXFLEET_ARM_WRITE_RATE": str(ARM_WRITE_RATE_PER_S * self.clock.time_scale),
                "FLUXFLEET_ARM_READ_BURST": str(ARM_READ_BURST),
                "FLUXFLEET_ARM_READ_RATE": str(ARM_READ_RATE_PER_S * self.clock.time_scale),
                # How long the app waits before looking whether a panel's agent reported a change: a
                # fraction of an agent's sync interval, which runs on the lab clock too.
                "FLUXFLEET_FLEET_VERIFY_DELAY_SECONDS": f"{max(FLEET_VERIFY_DELAY_S / scale, 0.5):g}",
                "FLUXFLEET_FLEET_OFFLINE_RECHECK_SECONDS": f"{max(OFFLINE_RECHECK_S / scale, 1):g}",
                # A timer's `%SETTING%` schedule must resolve or the host will not run it (as in Azure).
                "FLUXFLEET_ROTATION_SCHEDULE": "0 0 6 * * *",
            },
        }
        if self.azurite is not None:
            doc["endpoints"].update(self.azurite.endpoints())
            doc["env"]["AzureWebJobsStorage"] = self.azurite.connection_string()
        for service in self.services.values():
            extra = service.describe()
            doc["endpoints"].update(extra.pop("endpoints", {}))
            doc["env"].update(extra.pop("env", {}))
            doc.update(extra)
        return doc

    def write_lab_json(self) -> Path:
        path = self.state_dir / "lab.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.describe(), indent=2))
        tmp.replace(path)  # readers never see a half-written file
        return path


async def serve(lab: Lab) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await lab.start()
        log.info("lab ready: %s", lab.state_dir / "lab.json")
        print(f"lab ready: {lab.state_dir / 'lab.json'}", flush=True)
        await stopping.wait()
    finally:
        await lab.stop()
        with contextlib.suppress(FileNotFoundError):
            os.remove(lab.state_dir / "lab.json")
