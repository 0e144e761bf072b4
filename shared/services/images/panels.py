"""What each panel reports, for the follow-up: the fleet reader's panels and Flux states, condensed.

The fleet capability already lists the panels (`shared.ports.PanelDirectory`) and reads their Flux
configurations through ARM (`shared.ports.FleetReader`, paced and error-mapped at the ARM boundary);
the follow-up only needs, per panel, whether it is online, suspended or failing and which commit it
last synced. Flux configurations are read concurrently (one ARM GET each, paced by the adapter).

Only factory panels count (issue 15): the image-automation runner (by its tag) makes the commits and is
named as their author, not counted among the panels the workloads roll out to.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor

from shared.errors import safe_text
from shared.models import FluxState, Panel
from shared.models.images import PanelReport
from shared.models.runner import RunnerSelector
from shared.ports import FleetReader, PanelDirectory
from shared.services.images.followup import commit_sha


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
    """A `PanelReports` over the fleet's directory and ARM reader."""

    def __init__(
        self,
        *,
        directory: PanelDirectory,
        reader: FleetReader,
        configuration: str,
        executor: Executor,
        runner: RunnerSelector | None = None,
    ) -> None:
        self._runner = runner or RunnerSelector()
        self._directory = directory
        self._reader = reader
        self._configuration = configuration
        self._executor = executor

    def panel_reports(self) -> Sequence[PanelReport]:
        # The directory refuses an app without subscriptions: no panels must not read as "all applied".
        panels = self._runner.factory_panels(self._directory.panels())
        futures = [
            self._executor.submit(self._reader.get_flux_state, panel=panel, configuration=self._configuration)
            for panel in panels
        ]
        return [panel_report(panel, future.result()) for panel, future in zip(panels, futures, strict=True)]

    def runner_names(self) -> Sequence[str]:
        return [panel.name for panel in self._runner.runners(self._directory.panels())]
