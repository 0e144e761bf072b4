"""`DevOpsRepoReader` against the lab's Azure DevOps, with the real `azure-devops` SDK and a real
managed-identity token; the lab's ground truth (`/_lab/devops/commits`) is the reference."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared.adapters.repo_reader import DevOpsRepoReader
from shared.errors import NotFound, Unauthorized
from shared.models.images import CommitId
from shared.services.images.snapshot import RepoSnapshots
from tests.labkit import LabHandle

pytestmark = pytest.mark.lab

DEPLOYMENT = "kubernetes/workloads/opcua-gateway/deployment.yaml"


class CountingCredential:
    """ManagedIdentityCredential, counting token requests; optionally claiming short-lived tokens."""

    def __init__(self, *, lifetime_s: float | None = None) -> None:
        from azure.identity import ManagedIdentityCredential

        self._inner = ManagedIdentityCredential()
        self._lifetime_s = lifetime_s
        self.requests: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        import time

        from azure.core.credentials import AccessToken

        self.requests.append(scopes)
        token = self._inner.get_token(*scopes, **kwargs)
        if self._lifetime_s is None:
            return token
        return AccessToken(token.token, int(time.time() + self._lifetime_s))


def make_reader(lab: LabHandle, credential: Any, **overrides: str) -> DevOpsRepoReader:
    devops = lab.doc["devops"]
    return DevOpsRepoReader(
        org_url=overrides.get("org_url", devops["org_url"]),
        project=devops["project"],
        repository=overrides.get("repository", devops["repository"]),
        credential=credential,
        **({"scope": overrides["scope"]} if "scope" in overrides else {}),
    )


@pytest.fixture
def reader(lab_clean: LabHandle) -> Iterator[DevOpsRepoReader]:
    with lab_clean.applied_env():
        yield make_reader(lab_clean, CountingCredential())


def commit_file(lab: LabHandle, path: str) -> str:
    return str(lab.control("POST", "/_lab/devops/files", {"files": {path: path + "\n"}}, expect=201)["sha"])


def ground_truth_commits(lab: LabHandle, top: int = 20) -> list[dict[str, Any]]:
    return list(lab.control("GET", f"/_lab/devops/commits?branch=main&top={top}")["commits"])


def test_head_commit_is_the_branch_head_the_lab_reports(
    lab_clean: LabHandle, reader: DevOpsRepoReader
) -> None:
    assert reader.head_commit(branch="main") == ground_truth_commits(lab_clean)[0]["sha"]


def test_list_files_and_read_file_see_the_seeded_repository(
    lab_clean: LabHandle, reader: DevOpsRepoReader
) -> None:
    head = reader.head_commit(branch="main")
    files = {item.path: item.object_id for item in reader.list_files(commit=head)}
    assert DEPLOYMENT in files
    assert len(files[DEPLOYMENT]) == 40  # a Git object id (SHA-1 hex)
    text = reader.read_file(path=DEPLOYMENT, commit=head)
    assert f"{lab_clean.doc['acr_login_server']}/ipc/opcua-gateway:" in text


def test_reads_at_an_old_commit_do_not_see_later_changes(
    lab_clean: LabHandle, reader: DevOpsRepoReader
) -> None:
    before = reader.head_commit(branch="main")
    old_text = reader.read_file(path=DEPLOYMENT, commit=before)
    lab_clean.control(
        "POST",
        "/_lab/devops/files",
        {"files": {DEPLOYMENT: old_text + "# changed\n"}, "message": "edit"},
        expect=201,
    )
    after = reader.head_commit(branch="main")
    assert after != before
    assert reader.read_file(path=DEPLOYMENT, commit=before) == old_text
    assert reader.read_file(path=DEPLOYMENT, commit=after).endswith("# changed\n")


def test_recent_commits_are_newest_first_and_filter_by_path(
    lab_clean: LabHandle, reader: DevOpsRepoReader
) -> None:
    first = commit_file(lab_clean, "notes/a.txt")
    second = commit_file(lab_clean, "notes/b.txt")
    history = reader.recent_commits(branch="main", top=10)
    assert list(history[:2]) == [second, first]
    assert [commit["sha"] for commit in ground_truth_commits(lab_clean, 10)] == list(history)
    assert list(reader.recent_commits(branch="main", top=10, path="notes/a.txt")) == [first]


def test_a_missing_branch_or_file_is_not_found(reader: DevOpsRepoReader) -> None:
    head = reader.head_commit(branch="main")
    with pytest.raises(NotFound):
        reader.head_commit(branch="no-such-branch")
    with pytest.raises(NotFound):
        reader.read_file(path="kubernetes/nope.yaml", commit=head)


def test_a_token_for_another_audience_is_unauthorized(lab_clean: LabHandle) -> None:
    with lab_clean.applied_env():
        reader = make_reader(lab_clean, CountingCredential(), scope="https://management.azure.com/.default")
        with pytest.raises(Unauthorized):
            reader.head_commit(branch="main")


def test_the_connection_is_rebuilt_before_the_token_expires(lab_clean: LabHandle) -> None:
    with lab_clean.applied_env():
        long_lived = CountingCredential()
        reader = make_reader(lab_clean, long_lived)
        for _ in range(3):
            reader.head_commit(branch="main")
        assert len(long_lived.requests) == 1
        # Tokens "expiring" within the refresh margin are replaced before every use.
        short_lived = CountingCredential(lifetime_s=60)
        reader = make_reader(lab_clean, short_lived)
        for _ in range(3):
            reader.head_commit(branch="main")
        assert len(short_lived.requests) == 3


def test_a_snapshot_through_the_real_api_finds_every_policy_and_marker(reader: DevOpsRepoReader) -> None:
    with ThreadPoolExecutor(max_workers=8) as executor:
        snapshots = RepoSnapshots(reader=reader, executor=executor)
        snapshot = snapshots.at(CommitId(reader.head_commit(branch="main")))
    assert len(snapshot.objects.policies) == 10
    assert len(snapshot.objects.automations) == 1
    assert {marker.policy_name for marker in snapshot.scan.markers} >= {"opcua-gateway", "health-monitor"}
