"""What each panel reports, for the follow-up: the fleet reader's panels and Flux states, condensed.

The fleet capability already reads connectedClusters and their Flux configurations through ARM
(`shared.ports.FleetReader`, with its pacing and error mapping); the follow-up only needs, per
panel, whether it is online, suspended or failing and which commit it last synced. Flux
configurations are read concurrently (one ARM GET each; the fleet reader's adapter paces them).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor

from shared.config import env_name
from shared.errors import MissingSetting, safe_text
from shared.models import FluxState, Panel
from shared.ports import FleetReader
from shared.services.images.followup import commit_sha
from shared.services.images.model import PanelReport


def panel_report(panel: Panel, state: FluxState | None) -> PanelReport:
    if state is None:
        return PanelReport(name=panel.name, id=panel.id, connectivity=panel.connectivity, configured=False)
    source = state.git_repository
    error = state.error_message or (source.message if source is not None and source.ready is False else None)
    return PanelReport(
        name=panel.name,
        id=panel.id,
        connectivity=panel.connectivity,
        configured=True,
        suspended=state.suspended,
        compliance_state=state.compliance_state,
        synced_commit=commit_sha(state.source_synced_commit_id),
        error=safe_text(error) if error else None,
    )


class FleetPanelReports:
    """A `PanelReports` over the fleet's ARM reader."""

    def __init__(
        self, *, fleet: FleetReader, subscriptions: Sequence[str], configuration: str, executor: Executor
    ) -> None:
        self._fleet = fleet
        self._subscriptions = tuple(subscriptions)
        self._configuration = configuration
        self._executor = executor

    def panel_reports(self) -> Sequence[PanelReport]:
        if not self._subscriptions:
            # Without subscriptions there are no panels to ask, which must not read as "all applied".
            raise MissingSetting(env_name("subscription_ids"))
        panels = self._fleet.list_panels(subscriptions=self._subscriptions)
        futures = [
            self._executor.submit(self._fleet.get_flux_state, panel=panel, configuration=self._configuration)
            for panel in panels
        ]
        return [panel_report(panel, future.result()) for panel, future in zip(panels, futures, strict=True)]
