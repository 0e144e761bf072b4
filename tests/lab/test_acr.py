"""The lab's container registry, driven by the real `azure-containerregistry` client as the app uses it."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import pytest
import requests
from azure.containerregistry import ArtifactTagOrder, ContainerRegistryClient
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential

from tests.labkit import REPO_ROOT, LabHandle

pytestmark = pytest.mark.lab

IMAGE = re.compile(r"ipcplatformacr\.azurecr\.io/(ipc/[a-z0-9-]+):(v\d+\.\d+\.\d+)")


def deployed_images() -> dict[str, str]:
    """repository → version, as the GitOps content deploys them."""
    images: dict[str, str] = {}
    for path in (REPO_ROOT / "kubernetes").rglob("*.yaml"):
        images.update(IMAGE.findall(path.read_text()))
    return images


@pytest.fixture
def registry(lab_clean: LabHandle) -> Iterator[ContainerRegistryClient]:
    with lab_clean.applied_env():
        yield ContainerRegistryClient(
            lab_clean.env["FLUXFLEET_ACR_ENDPOINT"],
            ManagedIdentityCredential(),
            audience=lab_clean.env["FLUXFLEET_ACR_AUDIENCE"],
        )


def app_token(lab: LabHandle, resource: str) -> str:
    response = requests.get(
        lab.env["IDENTITY_ENDPOINT"],
        params={"api-version": "2019-08-01", "resource": resource},
        headers={"X-IDENTITY-HEADER": lab.env["IDENTITY_HEADER"]},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def semver(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in tag.lstrip("v").split("."))


def test_every_deployed_workload_image_has_a_repository(registry: ContainerRegistryClient) -> None:
    expected = set(deployed_images())
    assert expected, "kubernetes/ should reference workload images"
    assert set(registry.list_repository_names(results_per_page=4)) == expected


def test_tag_history_ends_at_the_deployed_version_with_latest_on_it(
    registry: ContainerRegistryClient,
) -> None:
    for repository, version in deployed_images().items():
        tags = {t.name: t.digest for t in registry.list_tag_properties(repository)}
        releases = sorted((t for t in tags if t != "latest"), key=semver)
        assert releases[0] == "v1.0.0"
        assert releases[-1] == version, repository
        assert tags["latest"] == tags[version]


def test_tags_page_with_link_headers_and_order_by_last_update(
    lab_clean: LabHandle, registry: ContainerRegistryClient
) -> None:
    newest_first = list(
        registry.list_tag_properties(
            "ipc/opcua-gateway", results_per_page=3, order_by=ArtifactTagOrder.LAST_UPDATED_ON_DESCENDING
        )
    )

    updated = [t.last_updated_on for t in newest_first]
    assert updated == sorted(updated, reverse=True)
    assert len(newest_first) == registry.get_repository_properties("ipc/opcua-gateway").tag_count
    pages = [
        r
        for r in lab_clean.control("GET", "/_lab/requests?service=acr")["requests"]
        if r["path"] == "/acr/v1/ipc/opcua-gateway/_tags" and r["status"] == 200
    ]
    assert len(pages) == math.ceil(len(newest_first) / 3)


def test_a_push_moves_the_tag_and_shows_through_the_sdk(
    lab_clean: LabHandle, registry: ContainerRegistryClient
) -> None:
    pushed = lab_clean.control(
        "POST", "/_lab/acr/push", {"repository": "ipc/health-monitor", "tag": "latest"}, expect=201
    )

    assert registry.get_tag_properties("ipc/health-monitor", "latest").digest == pushed["digest"]
    manifest = registry.get_manifest_properties("ipc/health-monitor", pushed["digest"])
    assert manifest.tags == ["latest"]
    repositories = lab_clean.control("GET", "/_lab/acr/repositories")["repositories"]
    assert repositories["ipc/health-monitor"]["latest"] == pushed["digest"]


def test_an_unknown_repository_is_404_name_unknown(registry: ContainerRegistryClient) -> None:
    with pytest.raises(ResourceNotFoundError, match="NAME_UNKNOWN"):
        registry.get_repository_properties("ipc/not-there")


def test_a_request_without_a_token_gets_the_registry_challenge(lab_clean: LabHandle) -> None:
    response = requests.get(
        f"{lab_clean.env['FLUXFLEET_ACR_ENDPOINT']}/acr/v1/ipc/opcua-gateway/_tags",
        verify=lab_clean.ca_bundle,
        timeout=10,
    )
    server = lab_clean.doc["acr_login_server"]
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer realm="https://{server}/oauth2/token",service="{server}",'
        'scope="repository:ipc/opcua-gateway:metadata_read"'
    )
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_the_exchange_accepts_only_a_registry_or_arm_audience(lab_clean: LabHandle) -> None:
    exchange = f"{lab_clean.env['FLUXFLEET_ACR_ENDPOINT']}/oauth2/exchange"
    server = lab_clean.doc["acr_login_server"]
    outcomes = {}
    for audience in (
        "https://containerregistry.azure.net",
        "https://management.azure.com",
        "https://vault.azure.net",
    ):
        form = {
            "grant_type": "access_token",
            "service": server,
            "access_token": app_token(lab_clean, audience),
        }
        outcomes[audience] = requests.post(
            exchange, data=form, verify=lab_clean.ca_bundle, timeout=10
        ).status_code
    assert outcomes == {
        "https://containerregistry.azure.net": 200,
        "https://management.azure.com": 200,
        "https://vault.azure.net": 401,
    }


def test_an_identity_without_acr_pull_cannot_read(
    lab_clean: LabHandle, registry: ContainerRegistryClient
) -> None:
    identity = lab_clean.doc["app_identity"]["object_id"]
    lab_clean.control("PUT", f"/_lab/acr/roleAssignments/{identity}", {"role": None})

    with pytest.raises(ClientAuthenticationError):
        list(registry.list_tag_properties("ipc/opcua-gateway"))
