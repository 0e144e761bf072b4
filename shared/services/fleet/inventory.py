"""The fleet as ARM lists it: every panel of the configured subscriptions, and `GET /api/fleet`.

`FleetInventory.panels()` is the one place the app lists the fleet — the engine resolves selections
against it, the credential report counts it, the image follow-up walks it — so the way it reads ARM
(pages of connectedClusters, paced at the ARM boundary) can change in one place.

`GET /api/fleet` reads every panel's Flux state from Azure Resource Graph when the container gives a
`FleetGraph` (one query per 1,000 panels instead of one ARM GET per panel: issue 13); Resource Graph
lags ARM by seconds, which an inventory may show and a write's verification may not.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.config import env_name
from shared.errors import FluxfleetError, MissingSetting, NotFound, Unprocessable
from shared.models import Panel, Selector
from shared.models.health import PanelView
from shared.ports import FleetGraph, FleetReader
from shared.services.fleet.documents import flux_state_document
from shared.services.fleet.selection import check_subscriptions, filter_panels, select
from shared.timestamps import format_optional

# Concurrent ARM reads while building the inventory (each one still paced at the ARM boundary).
INVENTORY_READ_CONCURRENCY = 8


class FleetInventory:
    """A `PanelDirectory` over the fleet reader, and the inventory document."""

    def __init__(
        self,
        *,
        reader: FleetReader,
        subscriptions: Sequence[str],
        configuration: str,
        graph: FleetGraph | None = None,
    ) -> None:
        self._reader = reader
        self._subscriptions = tuple(subscriptions)
        self._configuration = configuration
        self._graph = graph

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
        if self._graph is not None:
            if not self._subscriptions:
                raise MissingSetting(env_name("subscription_ids"))
            views = {
                view.panel.key: view for view in self._graph.panel_views(subscriptions=self._subscriptions)
            }
            chosen = _chosen([view.panel for view in views.values()], selector)
            clusters = [_entry(views[panel.key], self._configuration) for panel in chosen]
        else:
            chosen = _chosen(self.panels(), selector)
            with ThreadPoolExecutor(
                max_workers=INVENTORY_READ_CONCURRENCY, thread_name_prefix="inventory"
            ) as pool:
                clusters = list(pool.map(self._describe_panel, chosen))
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


def _chosen(fleet: list[Panel], selector: Selector) -> list[Panel]:
    return (
        filter_panels(fleet, selector)
        if selector.all or not selector.clusters
        else _select_known(fleet, selector)
    )


def _entry(view: PanelView, configuration: str) -> dict[str, Any]:
    """One inventory row from Resource Graph's view of the panel (the same fields as from ARM)."""
    panel, state = view.panel, view.flux
    entry: dict[str, Any] = {
        "id": panel.id,
        "name": panel.name,
        "subscription": panel.subscription,
        "resourceGroup": panel.resource_group,
        "location": panel.location,
        "tags": dict(panel.tags),
        "connectivity": panel.connectivity,
        "lastConnectivityTime": format_optional(panel.last_connectivity_time),
        "configuration": configuration,
        "configurationExists": state is not None,
        "suspended": state.suspended if state is not None else None,
        "complianceState": state.compliance_state if state is not None else None,
        "sourceSyncedCommitId": state.source_synced_commit_id if state is not None else None,
        "statusUpdatedAt": flux_state_document(state)["statusUpdatedAt"] if state is not None else None,
    }
    if state is not None:
        entry["provisioningState"] = state.provisioning_state
    return entry


def _select_known(fleet: list[Panel], selector: Selector) -> list[Panel]:
    """Names must exist (422 listing unknown ones); an empty match is an empty answer, not an error."""
    try:
        return select(fleet, selector, field="query")
    except Unprocessable as exc:
        if exc.field == "query":  # "matches no panel"
            return []
        raise
