"""In-memory fakes of conformance's own ports, for handler tests and fuzzing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.models import Panel
from shared.models.images import CommitId, RepoFile
from shared.ports import PanelDirectory
from shared.services.conformance.service import ConformanceService, DeclarationStore
from shared.services.fleet.engine import FleetChangeEngine
from shared.services.fleet.service import FleetService
from tests.unit.conformance.arm_shapes import GIT_URL, extension, flux_configuration

REPO_FILE = Path(__file__).resolve().parents[3] / "kubernetes" / "fleet" / "flux.yaml"


class OneCommitRepo:
    """A `RepoReader` whose branch holds the repository's own declaration at one commit."""

    def __init__(self, text: str | None = None) -> None:
        self.text = text if text is not None else REPO_FILE.read_text()

    def head_commit(self, *, branch: str) -> CommitId:
        return CommitId("d" * 40)

    def list_files(self, *, commit: CommitId) -> Sequence[RepoFile]:
        return []

    def read_file(self, *, path: str, commit: CommitId) -> str:
        return self.text

    def recent_commits(self, *, branch: str, top: int, path: str | None = None) -> Sequence[CommitId]:
        return [CommitId("d" * 40)]


class ConformantArm:
    """A `ConformanceReader` where every panel runs exactly what the operator set up."""

    def __init__(self, directory: PanelDirectory) -> None:
        self._directory = directory

    def list_panels(self, *, subscriptions: Sequence[str]) -> list[Panel]:
        return self._directory.panels()

    def get_extension(self, *, panel: Panel, name: str) -> dict[str, Any] | None:
        return extension()

    def get_flux_resource(self, *, panel: Panel, configuration: str) -> dict[str, Any] | None:
        return flux_configuration()


def conformance_over_fakes(
    *, directory: PanelDirectory, engine: FleetChangeEngine, fleet: FleetService
) -> ConformanceService:
    return ConformanceService(
        reader=ConformantArm(directory),
        directory=directory,
        declarations=DeclarationStore(reader=OneCommitRepo(), branch="main"),
        engine=engine,
        fleet=fleet,
        configuration="ipc-platform-config",
        git_url=GIT_URL,
    )
