"""The Git REST API through the real `azure-devops` 7.1 SDK, authenticated as the app authenticates.

The app reads manifests at a branch, lists a folder's YAML files and follows the commits touching a
path, with a bearer token of its managed identity (`BasicTokenAuthentication`). The SDK discovers
the Git area (`ResourceAreas`) and its routes (`OPTIONS _apis`) itself, so these tests also prove
the lab's discovery documents. Errors must reach the SDK as Azure DevOps' typed errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.devops.connection import Connection
from azure.devops.exceptions import AzureDevOpsAuthenticationError, AzureDevOpsServiceError
from azure.devops.v7_1.git.git_client import GitClient
from azure.devops.v7_1.git.models import GitQueryCommitsCriteria, GitVersionDescriptor
from azure.identity import ManagedIdentityCredential
from msrest.authentication import BasicAuthentication, BasicTokenAuthentication

from tests.labkit import LabHandle, LabProcess

pytestmark = pytest.mark.lab

DEVOPS_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
KUBERNETES = Path(__file__).resolve().parents[2] / "kubernetes"
PLACEHOLDER_REGISTRY = "ipcplatformacr.azurecr.io"
MAIN = GitVersionDescriptor(version="main", version_type="branch")


@pytest.fixture(scope="module")
def devops_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    with LabProcess(
        tmp_path_factory.mktemp("rest-lab"), clusters=1, subscriptions=1, azurite=False
    ) as handle:
        yield handle


@pytest.fixture(scope="module")
def git_client(devops_lab: LabHandle) -> Iterator[GitClient]:
    """What the app builds: a Connection with the managed identity's Entra token as bearer."""
    with devops_lab.applied_env():
        token = ManagedIdentityCredential().get_token(DEVOPS_SCOPE).token
        connection = Connection(
            base_url=devops_lab.env["FLUXFLEET_DEVOPS_ORG_URL"],
            creds=BasicTokenAuthentication({"access_token": token}),
        )
        yield connection.clients_v7_1.get_git_client()


@pytest.fixture
def repo(devops_lab: LabHandle) -> tuple[str, str]:
    return devops_lab.env["FLUXFLEET_DEVOPS_REPOSITORY"], devops_lab.env["FLUXFLEET_DEVOPS_PROJECT"]


def seeded_text(devops_lab: LabHandle, relative: str) -> str:
    """A file of kubernetes/ as the lab seeds it (registry placeholder replaced)."""
    text = (KUBERNETES.parent / relative).read_text()
    return text.replace(
        PLACEHOLDER_REGISTRY, devops_lab.env.get("FLUXFLEET_ACR_LOGIN_SERVER", PLACEHOLDER_REGISTRY)
    )


def head(devops_lab: LabHandle) -> str:
    return str(devops_lab.state()["devops"]["head_commit"])


def test_get_repository_describes_the_repository_the_app_is_configured_with(
    devops_lab: LabHandle, git_client: GitClient, repo: tuple[str, str]
) -> None:
    repository = git_client.get_repository(repo[0], project=repo[1])
    assert repository.name == devops_lab.doc["devops"]["repository"]
    assert repository.project.name == devops_lab.doc["devops"]["project"]
    assert repository.default_branch == "refs/heads/main"
    assert repository.remote_url == devops_lab.doc["git_url"]
    by_id = git_client.get_repository(repository.id)
    assert by_id.name == repository.name


def test_item_text_and_content_at_main_are_the_seeded_manifest(
    devops_lab: LabHandle, git_client: GitClient, repo: tuple[str, str]
) -> None:
    path = "kubernetes/workloads/kustomization.yaml"
    text = b"".join(git_client.get_item_text(repo[0], "/" + path, project=repo[1], version_descriptor=MAIN))
    content = b"".join(
        git_client.get_item_content(repo[0], "/" + path, project=repo[1], version_descriptor=MAIN)
    )
    assert text.decode() == seeded_text(devops_lab, path)
    assert content == text


def test_get_item_returns_git_object_ids_and_the_resolved_commit(
    devops_lab: LabHandle, git_client: GitClient, repo: tuple[str, str]
) -> None:
    path = "kubernetes/workloads/namespace.yaml"
    item = git_client.get_item(
        repo[0], "/" + path, project=repo[1], version_descriptor=MAIN, include_content=True
    )
    data = seeded_text(devops_lab, path).encode()
    assert item.content == data.decode()
    assert item.object_id == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's id
    assert item.git_object_type == "blob"
    assert item.commit_id == head(devops_lab)
    folder = git_client.get_item(repo[0], "/kubernetes/workloads", project=repo[1], version_descriptor=MAIN)
    assert folder.is_folder
    assert folder.git_object_type == "tree"


def test_get_items_lists_every_yaml_file_under_a_folder_at_full_recursion(
    git_client: GitClient, repo: tuple[str, str]
) -> None:
    items = git_client.get_items(
        repo[0],
        project=repo[1],
        scope_path="/kubernetes/workloads",
        recursion_level="Full",
        version_descriptor=MAIN,
    )
    files = {i.path for i in items if not i.is_folder}
    expected = {
        "/" + p.relative_to(KUBERNETES.parent).as_posix()
        for p in (KUBERNETES / "workloads").rglob("*")
        if p.is_file()
    }
    assert files == expected
    folders = {i.path for i in items if i.is_folder}
    assert "/kubernetes/workloads" in folders
    assert "/kubernetes/workloads/opcua-gateway" in folders
    one_level = git_client.get_items(
        repo[0],
        project=repo[1],
        scope_path="/kubernetes",
        recursion_level="OneLevel",
        version_descriptor=MAIN,
    )
    assert {i.path for i in one_level} == {"/kubernetes"} | {
        f"/kubernetes/{p.name}" for p in KUBERNETES.iterdir()
    }


def test_reading_at_an_older_commit_returns_the_older_content(
    devops_lab: LabHandle, git_client: GitClient, repo: tuple[str, str]
) -> None:
    before = head(devops_lab)
    devops_lab.control(
        "POST",
        "/_lab/devops/files",
        {"files": {"kubernetes/workloads/notes.txt": "second\n"}, "message": "edit notes"},
        expect=201,
    )
    devops_lab.control(
        "POST",
        "/_lab/devops/files",
        {"files": {"kubernetes/workloads/notes.txt": "third\n"}, "message": "edit notes again"},
        expect=201,
    )
    at_main = b"".join(
        git_client.get_item_text(
            repo[0], "/kubernetes/workloads/notes.txt", project=repo[1], version_descriptor=MAIN
        )
    )
    previous = b"".join(
        git_client.get_item_text(
            repo[0],
            "/kubernetes/workloads/notes.txt",
            project=repo[1],
            version_descriptor=GitVersionDescriptor(
                version="main", version_type="branch", version_options="firstParent"
            ),
        )
    )
    assert at_main == b"third\n"
    assert previous == b"second\n"
    with pytest.raises(AzureDevOpsServiceError) as missing:
        git_client.get_item_text(
            repo[0],
            "/kubernetes/workloads/notes.txt",
            project=repo[1],
            version_descriptor=GitVersionDescriptor(version=before, version_type="commit"),
        )
    assert missing.value.type_key == "GitItemNotFoundException"


def test_get_commits_on_a_path_lists_only_commits_touching_it_newest_first(
    devops_lab: LabHandle, git_client: GitClient, repo: tuple[str, str]
) -> None:
    first = devops_lab.control(
        "POST",
        "/_lab/devops/files",
        {"files": {"kubernetes/workloads/history/a.yaml": "a: 1\n"}, "message": "add a"},
        expect=201,
    )["sha"]
    devops_lab.control(
        "POST",
        "/_lab/devops/files",
        {"files": {"README.md": "unrelated\n"}, "message": "unrelated"},
        expect=201,
    )
    second = devops_lab.control(
        "POST",
        "/_lab/devops/files",
        {
            "files": {"kubernetes/workloads/history/a.yaml": "a: 2\n"},
            "message": "bump a",
            "author": "Image Automation <flux@contoso.example>",
        },
        expect=201,
    )["sha"]
    criteria = GitQueryCommitsCriteria(
        item_path="/kubernetes/workloads/history/a.yaml", item_version=MAIN, top=10
    )
    commits = git_client.get_commits(repo[0], criteria, project=repo[1])
    assert [c.commit_id for c in commits] == [second, first]
    assert commits[0].comment == "bump a"
    assert commits[0].author.name == "Image Automation"
    assert commits[0].author.email == "flux@contoso.example"
    assert commits[0].change_counts == {"Add": 0, "Edit": 1, "Delete": 0}
    latest = git_client.get_commits(
        repo[0], GitQueryCommitsCriteria(item_version=MAIN, top=1), project=repo[1]
    )
    assert [c.commit_id for c in latest] == [head(devops_lab)]


def test_get_refs_filters_branches_by_prefix(
    devops_lab: LabHandle, git_client: GitClient, repo: tuple[str, str]
) -> None:
    refs = git_client.get_refs(repo[0], project=repo[1], filter="heads/")
    assert [(r.name, r.object_id) for r in refs] == [("refs/heads/main", head(devops_lab))]
    assert git_client.get_refs(repo[0], project=repo[1], filter="tags/") == []


def test_missing_items_branches_and_repositories_are_azure_devops_typed_errors(
    git_client: GitClient, repo: tuple[str, str]
) -> None:
    with pytest.raises(AzureDevOpsServiceError) as item:
        git_client.get_item(repo[0], "/kubernetes/nope.yaml", project=repo[1], version_descriptor=MAIN)
    assert item.value.type_key == "GitItemNotFoundException"
    assert item.value.type_name == (
        "Microsoft.TeamFoundation.Git.Server.GitItemNotFoundException, Microsoft.TeamFoundation.Git.Server"
    )
    assert item.value.message.startswith("TF401174")
    with pytest.raises(AzureDevOpsServiceError) as branch:
        git_client.get_item(
            repo[0],
            "/README.md",
            project=repo[1],
            version_descriptor=GitVersionDescriptor(version="no-such-branch", version_type="branch"),
        )
    assert branch.value.type_key == "GitUnresolvableToCommitException"
    with pytest.raises(AzureDevOpsServiceError) as repository:
        git_client.get_repository("no-such-repo", project=repo[1])
    assert repository.value.type_key == "GitRepositoryNotFoundException"


def test_a_pat_works_as_basic_auth_until_it_is_revoked(devops_lab: LabHandle, repo: tuple[str, str]) -> None:
    pat = devops_lab.control("POST", "/_lab/devops/pats", {"scope": "vso.code", "days": 7}, expect=201)
    with devops_lab.applied_env():
        client = Connection(
            base_url=devops_lab.env["FLUXFLEET_DEVOPS_ORG_URL"], creds=BasicAuthentication("", pat["token"])
        ).clients_v7_1.get_git_client()
        assert client.get_repository(repo[0], project=repo[1]).name == repo[0]
        devops_lab.control("POST", f"/_lab/devops/pats/{pat['authorizationId']}/revoke", expect=200)
        with pytest.raises(AzureDevOpsAuthenticationError):
            client.get_repository(repo[0], project=repo[1])


def test_api_versions_outside_the_git_area_range_are_refused(
    devops_lab: LabHandle, repo: tuple[str, str]
) -> None:
    with devops_lab.applied_env():
        token = ManagedIdentityCredential().get_token(DEVOPS_SCOPE).token
    url = f"{devops_lab.env['FLUXFLEET_DEVOPS_ORG_URL']}/{repo[1]}/_apis/git/repositories/{repo[0]}"

    def get(version: str | None, *, auth: bool = True) -> requests.Response:
        params = {"api-version": version} if version else {}
        headers = {"Authorization": f"Bearer {token}"} if auth else {}
        return requests.get(url, params=params, headers=headers, verify=devops_lab.ca_bundle, timeout=10)

    assert get("7.1").status_code == 200
    assert get("7.2-preview.1").status_code == 200
    assert get("7.2").json()["typeKey"] == "VssInvalidPreviewVersionException"
    too_new = get("9.0")
    assert too_new.status_code == 400
    assert too_new.json()["typeKey"] == "VssVersionOutOfRangeException"
    assert get("7.1", auth=False).status_code == 401
