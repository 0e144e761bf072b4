"""The last valid declaration stays in use when HEAD's is invalid, and health can say so; the requests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from shared.errors import InvalidInput
from shared.models.images import CommitId, RepoFile
from shared.services.conformance.declaration import InvalidDeclaration
from shared.services.conformance.requests import parse_cluster_event, parse_conform_request
from shared.services.conformance.service import DeclarationStore

REPO_FILE = Path(__file__).resolve().parents[3] / "kubernetes" / "fleet" / "flux.yaml"
CLUSTER = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/ipc-panel-0051"


class Repo:
    """A `RepoReader` over in-memory commits of the one file."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.head = ""
        self.reads = 0

    def commit(self, sha: str, text: str) -> None:
        self.files[sha] = text
        self.head = sha

    def head_commit(self, *, branch: str) -> CommitId:
        return CommitId(self.head)

    def list_files(self, *, commit: CommitId) -> Sequence[RepoFile]:
        return []

    def read_file(self, *, path: str, commit: CommitId) -> str:
        self.reads += 1
        return self.files[commit]

    def recent_commits(self, *, branch: str, top: int, path: str | None = None) -> Sequence[CommitId]:
        return [CommitId(self.head)]


def test_an_invalid_head_keeps_the_last_valid_declaration_and_says_why() -> None:
    repo = Repo()
    repo.commit("a" * 40, REPO_FILE.read_text())
    store = DeclarationStore(reader=repo, branch="main")
    assert store.current().revision == "a" * 40
    repo.commit("b" * 40, REPO_FILE.read_text().replace("syncInterval: 5m", "syncInterval: 5 minutes", 1))
    assert store.current().revision == "a" * 40
    status = store.status()
    assert status.revision == "a" * 40
    assert status.error_revision == "b" * 40
    assert status.error is not None
    assert "configuration.gitRepository.syncInterval" in status.error
    # Fixed by the next commit: the error clears.
    repo.commit("c" * 40, REPO_FILE.read_text())
    assert store.current().revision == "c" * 40
    assert store.status().error is None


def test_without_any_valid_declaration_the_error_reaches_the_caller() -> None:
    repo = Repo()
    repo.commit("a" * 40, "apiVersion: fluxfleet.io/v1\nkind: FleetFluxDeclaration\n")
    with pytest.raises(InvalidDeclaration) as caught:
        DeclarationStore(reader=repo, branch="main").current()
    assert caught.value.field == "target"


def test_the_file_is_read_once_per_commit() -> None:
    repo = Repo()
    repo.commit("a" * 40, REPO_FILE.read_text())
    store = DeclarationStore(reader=repo, branch="main")
    for _ in range(3):
        store.current()
    assert repo.reads == 1


def test_conform_bodies_are_strict_and_reset_takes_confirm() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_conform_request({"reason": "x", "target": {"all": True}, "confirm": True}, with_confirm=False)
    assert caught.value.field == "confirm"
    with pytest.raises(InvalidInput) as caught:
        parse_conform_request(
            {"reason": "x", "target": {"all": True}, "configuration": "c"}, with_confirm=False
        )
    assert caught.value.field == "configuration"
    with pytest.raises(InvalidInput) as caught:
        parse_conform_request({"reason": "x", "target": {"all": True}, "confirm": "yes"}, with_confirm=True)
    assert caught.value.field == "confirm"
    request, confirm = parse_conform_request(
        {"reason": "9.4", "target": {"clusters": ["p"]}, "confirm": True}, with_confirm=True
    )
    assert confirm is True
    assert request.target.clusters == ("p",)


def _data(operation: str) -> dict[str, object]:
    return {
        "operationName": operation,
        "status": "Succeeded",
        "resourceUri": CLUSTER,
        "resourceProvider": "Microsoft.Kubernetes",
    }


def test_a_connected_cluster_write_is_read_from_either_schema() -> None:
    grid = {
        "id": "e1",
        "eventType": "Microsoft.Resources.ResourceWriteSuccess",
        "subject": CLUSTER,
        "data": _data("Microsoft.Kubernetes/connectedClusters/write"),
    }
    cloud = {
        "id": "e2",
        "type": "Microsoft.Resources.ResourceWriteSuccess",
        "subject": CLUSTER,
        "data": _data("Microsoft.Kubernetes/connectedClusters/write"),
    }
    first, second = parse_cluster_event(grid), parse_cluster_event(cloud)
    assert first is not None
    assert second is not None
    assert (first.event_id, first.cluster_id) == ("e1", CLUSTER)
    assert second.event_id == "e2"


def test_other_writes_are_not_onboarding() -> None:
    other = {
        "id": "e3",
        "eventType": "Microsoft.Resources.ResourceWriteSuccess",
        "data": _data("Microsoft.KubernetesConfiguration/fluxConfigurations/write"),
    }
    deleted = {"id": "e4", "eventType": "Microsoft.Resources.ResourceDeleteSuccess", "data": _data("x")}
    assert parse_cluster_event(other) is None
    assert parse_cluster_event(deleted) is None
