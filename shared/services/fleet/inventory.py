"""The fleet as ARM lists it: every panel of the configured subscriptions, and `GET /api/fleet`.

`FleetInventory.panels()` is the one place the app lists the fleet — the engine resolves selections
against it, the credential report counts it, the image follow-up walks it — so the way it reads ARM
(pages of connectedClusters, paced at the ARM boundary) can change in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.config import env_name
from shared.errors import FluxfleetError, MissingSetting, NotFound, Unprocessable
from shared.models import Panel, Selector
from shared.ports import FleetReader
from shared.services.fleet.documents import flux_state_document
from shared.services.fleet.selection import check_subscriptions, filter_panels, select
from shared.timestamps import format_optional

# Concurrent ARM reads while building the inventory (each one still paced at the ARM boundary).
INVENTORY_READ_CONCURRENCY = 8


class FleetInventory:
    """A `PanelDirectory` over the fleet reader, and the inventory document."""

    def __init__(self, *, reader: FleetReader, subscriptions: Sequence[str], configuration: str) -> None:
        self._reader = reader
        self._subscriptions = tuple(subscriptions)
        self._configuration = configuration

    def panels(self) -> list[Panel]:
        """Every panel of the configured subscriptions (MissingSetting when none is configured: an
        empty fleet must never read as "every panel is fine")."""
        if not self._subscriptions:
            raise MissingSetting(env_name("subscription_ids"))
        panels: list[Panel] = []
        for subscription in self._subscriptions:
            panels.extend(self._reader.list_panels(subscriptions=[subscription]))
        return panels

    def describe(self, *, selector: Selector) -> dict[str, Any]:
        """`GET /api/fleet`: every selected panel with its connectivity and Flux state."""
        check_subscriptions(selector, configured=self._subscriptions, field="query")
        fleet = self.panels()
        panels = (
            filter_panels(fleet, selector)
            if selector.all or not selector.clusters
            else _select_known(fleet, selector)
        )
        with ThreadPoolExecutor(
            max_workers=INVENTORY_READ_CONCURRENCY, thread_name_prefix="inventory"
        ) as pool:
            clusters = list(pool.map(self._describe_panel, panels))
        return {
            "configuration": self._configuration,
            "total": len(clusters),
            "suspended": sum(1 for c in clusters if c["suspended"]),
            "offline": sum(1 for c in clusters if c["connectivity"] in ("Offline", "Expired")),
            "clusters": clusters,
        }

    def _describe_panel(self, panel: Panel) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": panel.id,
            "name": panel.name,
            "subscription": panel.subscription,
            "resourceGroup": panel.resource_group,
            "location": panel.location,
            "tags": dict(panel.tags),
            "connectivity": panel.connectivity,
            "lastConnectivityTime": format_optional(panel.last_connectivity_time),
            "configuration": self._configuration,
            "configurationExists": False,
            "suspended": None,
            "complianceState": None,
            "sourceSyncedCommitId": None,
            "statusUpdatedAt": None,
        }
        try:
            state = self._reader.get_flux_state(panel=panel, configuration=self._configuration)
        except NotFound:
            return entry
        except FluxfleetError as exc:
            entry["error"] = exc.message
            return entry
        if state is not None:
            doc = flux_state_document(state)
            entry.update(
                configurationExists=True,
                suspended=state.suspended,
                complianceState=state.compliance_state,
                sourceSyncedCommitId=state.source_synced_commit_id,
                statusUpdatedAt=doc["statusUpdatedAt"],
                provisioningState=state.provisioning_state,
            )
        return entry


def _select_known(fleet: list[Panel], selector: Selector) -> list[Panel]:
    """Names must exist (422 listing unknown ones); an empty match is an empty answer, not an error."""
    try:
        return select(fleet, selector, field="query")
    except Unprocessable as exc:
        if exc.field == "query":  # "matches no panel"
            return []
        raise
