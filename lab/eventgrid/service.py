"""Event Grid push delivery for the lab's system topics (the vault's, the registry's, each subscription's).

Key Vault and ACR publish their events on the lab's event bus, as their Azure system topics would, and
ARM publishes resource events (`Microsoft.Resources.ResourceWriteSuccess`, ...) on the system topic of
each lab subscription (`/subscriptions/{id}`); this service fans each one out to the webhook
subscriptions that match it, with Event Grid's handshake, headers, retries and dead-lettering.
Subscriptions are made through the control API (in Azure: ARM). Its own listener serves only the
validationUrl that Event Grid offers for manual subscription validation.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lab.arm.events import subscription_topic
from lab.core.service import LabService
from lab.eventgrid.delivery import Deliverer
from lab.eventgrid.models import EventGridBackend
from lab.eventgrid.responses import ControlResponses
from lab.eventgrid.routes import add_control_routes, add_validation_routes

if TYPE_CHECKING:
    from lab.server import Lab

# lab.json `eventgrid.topics` alias for the system topics of all the lab's subscriptions (a list).
SUBSCRIPTIONS_ALIAS = "subscriptions"


class EventGridService(LabService):
    name = "eventgrid"

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.backend = EventGridBackend()
        self.deliverer = Deliverer(backend=self.backend, clock=lab.clock)
        self.responses = ControlResponses(self)

    def topics(self) -> dict[str, str]:
        """Topic aliases the control API accepts, to the ARM ids of the resources that publish them."""
        aliases: dict[str, str] = {}
        if "keyvault" in self.lab.services:
            aliases["keyvault"] = self.lab.service("keyvault").vault_id
        if "acr" in self.lab.services:
            aliases["acr"] = self.lab.service("acr").registry_id
        return aliases

    def topic_groups(self) -> dict[str, list[str]]:
        """Aliases that name several system topics at once: `subscriptions` -> every lab subscription's.

        An Azure event subscription listens to one topic, so a subscriber creates one per member (the
        local host does, from one declaration); the control API refuses the group alias itself.
        """
        return {SUBSCRIPTIONS_ALIAS: [subscription_topic(sub) for sub in self.lab.subscriptions]}

    @staticmethod
    def new_event_id() -> str:
        return str(uuid.uuid4())

    # --- wiring -----------------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        add_validation_routes(app, self.responses)

    def add_control_routes(self, app: web.Application) -> None:
        add_control_routes(app, self.responses)

    async def start(self) -> None:
        assert self.lab.tls is not None
        await self.deliverer.start(
            client_ssl=self.lab.tls.client_context(), validation_base_url=self.endpoint
        )
        self.lab.events.subscribe(self.deliverer.publish)

    async def stop(self) -> None:
        await self.deliverer.stop()

    def reset(self) -> None:
        self.deliverer.cancel_all()
        self.backend.reset()

    # --- lab.json and ground truth -----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        topics: dict[str, str | list[str]] = {**self.topics(), **self.topic_groups()}
        return {
            "eventgrid": {"topics": topics, "validation_endpoint": self.endpoint},
            "endpoints": {"eventgrid": self.endpoint},
        }

    def ground_truth(self) -> dict[str, Any]:
        return {
            "eventgrid": {
                "subscriptions": [s.describe() for s in self.backend.list_subscriptions()],
                "deliveries": len(self.backend.deliveries),
                "deadletters": len(self.backend.dead_letters),
            }
        }
