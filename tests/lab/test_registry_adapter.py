"""`AcrTagLister` against the lab's registry, through the app's own client wiring (`AzureClients`,
`azure-containerregistry`, the managed identity's token exchange)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from shared.adapters.clients import AzureClients
from shared.adapters.registry import AcrTagLister
from shared.config import Settings
from shared.errors import FluxfleetError, NotFound
from tests.labkit import LabHandle

pytestmark = pytest.mark.lab

REPOSITORY = "ipc/opcua-gateway"


@pytest.fixture
def lister(lab_clean: LabHandle) -> Iterator[AcrTagLister]:
    with lab_clean.applied_env():
        clients = AzureClients(Settings.from_env(dict(os.environ)))
        with clients.registry as registry:
            yield AcrTagLister(client=registry)


def lab_tags(lab: LabHandle, repository: str) -> set[str]:
    return set(lab.control("GET", "/_lab/acr/repositories")["repositories"][repository])


def test_lists_every_tag_the_registry_holds(lab_clean: LabHandle, lister: AcrTagLister) -> None:
    tags = lister.list_tags(repository=REPOSITORY)
    assert set(tags) == lab_tags(lab_clean, REPOSITORY)
    assert "v1.4.2" in tags  # the version the GitOps repository deploys


def test_a_pushed_tag_is_listed_at_once(lab_clean: LabHandle, lister: AcrTagLister) -> None:
    lab_clean.control("POST", "/_lab/acr/push", {"repository": REPOSITORY, "tag": "v9.9.9"}, expect=201)
    assert "v9.9.9" in lister.list_tags(repository=REPOSITORY)


def test_an_unknown_repository_is_not_found(lister: AcrTagLister) -> None:
    with pytest.raises(NotFound):
        lister.list_tags(repository="ipc/never-pushed")


def test_without_acrpull_the_refusal_is_a_permanent_app_error(
    lab_clean: LabHandle, lister: AcrTagLister
) -> None:
    app_identity = lab_clean.doc["app_identity"]["object_id"]
    lab_clean.control("PUT", f"/_lab/acr/roleAssignments/{app_identity}", {"role": None})
    with pytest.raises(FluxfleetError) as caught:
        lister.list_tags(repository=REPOSITORY)
    assert caught.value.transient is False
    assert caught.value.status in (401, 403)
