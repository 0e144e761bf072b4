"""ARM connectedClusters and extensions as the real SDKs see them: fleet layout, paging, connectivity, errors.

Driven with `ConnectedKubernetesClient` and the extensions client, configured only with the lab's
endpoint and CA (plus `ManagedIdentityCredential` from the lab's identity endpoint); wire details the
SDK hides (headers, error bodies) are checked with plain requests carrying a real lab token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.mgmt.hybridkubernetes import ConnectedKubernetesClient
from azure.mgmt.hybridkubernetes.models import ConnectedCluster
from azure.mgmt.kubernetesconfiguration.extensions import KubernetesConfigurationExtensionsMgmtClient

from tests.labkit import LabHandle, LabProcess

pytestmark = pytest.mark.lab

ARM_SCOPE = "https://management.azure.com/.default"
# Arc shows `Offline` after 15 minutes without a heartbeat.
OFFLINE_AFTER_S = 15 * 60
# An expiry SDK token caches will never refresh before (2100-01-01).
FAR_FUTURE = 4_102_444_800


@pytest.fixture
def arm(lab: LabHandle) -> Iterator[LabHandle]:
    """The session lab with its env applied, so SDK clients built in the test reach it."""
    with lab.applied_env():
        yield lab


@dataclass(frozen=True)
class Listed:
    """What the tests need of a connectedCluster, with the SDK's Optionals resolved."""

    name: str
    subscription: str
    group: str
    tags: dict[str, str]
    location: str


def listed(cluster: ConnectedCluster) -> Listed:
    assert cluster.id is not None
    assert cluster.name is not None
    parts = cluster.id.split("/")
    return Listed(cluster.name, parts[2], parts[4], dict(cluster.tags or {}), cluster.location)


def list_subscription(lab: LabHandle, subscription: str | None = None) -> list[Listed]:
    return [listed(c) for c in clusters_client(lab, subscription).connected_cluster.list_by_subscription()]


def clusters_client(
    lab: LabHandle, subscription: str | None = None, **kwargs: Any
) -> ConnectedKubernetesClient:
    return ConnectedKubernetesClient(
        ManagedIdentityCredential(),
        subscription or lab.doc["subscriptions"][0],
        base_url=lab.endpoint("arm"),
        **kwargs,
    )


def arm_get(lab: LabHandle, path: str, *, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(lab.endpoint("arm") + path, headers=headers, verify=lab.ca_bundle, timeout=30)


def test_the_fleet_is_spread_over_subscriptions_with_exact_ring_shares(arm: LabHandle) -> None:
    listed_all: list[Listed] = []
    for subscription in arm.doc["subscriptions"]:
        listed_all += list_subscription(arm, subscription)
    # The image-automation runner is listed too, but belongs to no ring or site (lab/docs/arm.md).
    runners = [c for c in listed_all if c.tags.get("fluxfleet-role") == "image-automation"]
    seen = [c for c in listed_all if c not in runners]

    assert [runner.name for runner in runners] == ["ipc-automation-hub"]
    assert len(seen) == 50
    assert Counter(cluster.tags["ring"] for cluster in seen) == {"canary": 5, "early": 15, "broad": 30}
    by_subscription = Counter(cluster.subscription for cluster in seen)
    assert sorted(by_subscription.values()) == [25, 25]
    canary_subscriptions = {cluster.subscription for cluster in seen if cluster.tags["ring"] == "canary"}
    assert canary_subscriptions == set(arm.doc["subscriptions"]), "every subscription has canaries"
    assert {cluster.tags["site"] for cluster in seen} == {"munich", "lyon", "austin", "pune"}
    assert all(cluster.location == "westeurope" for cluster in seen)


def test_a_cluster_shows_connectivity_and_workload_identity_facts(arm: LabHandle) -> None:
    first = list_subscription(arm)[0]

    cluster = clusters_client(arm).connected_cluster.get(first.group, first.name)

    assert cluster.connectivity_status == "Connected"
    assert cluster.last_connectivity_time is not None
    assert cluster.security_profile is not None
    assert cluster.security_profile.workload_identity is not None
    assert cluster.security_profile.workload_identity.enabled in (True, False)
    assert cluster.oidc_issuer_profile is not None
    assert cluster.oidc_issuer_profile.enabled in (True, False)
    assert cluster.identity is not None
    assert cluster.identity.principal_id


def test_list_by_resource_group_returns_exactly_the_group_members(arm: LabHandle) -> None:
    client = clusters_client(arm)
    groups = Counter(cluster.group for cluster in list_subscription(arm))

    for group, count in groups.items():
        members = [listed(member) for member in client.connected_cluster.list_by_resource_group(group)]
        assert len(members) == count
        assert all(member.group == group for member in members)
    assert "rg-ipc-platform-arc" in groups, "some panels live in the shared Arc resource group"


def test_missing_cluster_group_and_subscription_get_arm_404s(arm: LabHandle) -> None:
    client = clusters_client(arm)
    with pytest.raises(ResourceNotFoundError) as missing:
        client.connected_cluster.get("rg-ipc-site-munich", "ipc-panel-9999")
    assert missing.value.error is not None
    assert missing.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as no_group:
        list(client.connected_cluster.list_by_resource_group("rg-does-not-exist"))
    assert no_group.value.error is not None
    assert no_group.value.error.code == "ResourceGroupNotFound"
    stranger = clusters_client(arm, "00000000-0000-4000-8000-0000000000ff")
    with pytest.raises(ResourceNotFoundError) as no_sub:
        list(stranger.connected_cluster.list_by_subscription())
    assert no_sub.value.error is not None
    assert no_sub.value.error.code == "SubscriptionNotFound"


def test_an_unknown_api_version_is_refused_as_arm_does(arm: LabHandle) -> None:
    client = clusters_client(arm, api_version="2099-01-01")

    with pytest.raises(HttpResponseError) as refused:
        list(client.connected_cluster.list_by_subscription())

    assert refused.value.status_code == 400
    assert refused.value.error is not None
    assert refused.value.error.code == "NoRegisteredProviderFound"
    assert "2026-05-01" in str(refused.value.error.message)


def test_requests_without_a_valid_arm_token_get_401_with_a_challenge(arm: LabHandle) -> None:
    path = (
        f"/subscriptions/{arm.doc['subscriptions'][0]}/providers/Microsoft.Kubernetes/connectedClusters"
        "?api-version=2024-01-01"
    )
    vault_token = ManagedIdentityCredential().get_token("https://vault.azure.net/.default").token

    missing = arm_get(arm, path)
    wrong_audience = arm_get(arm, path, token=vault_token)
    garbage = arm_get(arm, path, token="not-a-token")

    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "AuthenticationFailed")
    assert missing.headers["WWW-Authenticate"].startswith(
        'Bearer authorization_uri="https://login.windows.net/"'
    )
    assert (wrong_audience.status_code, wrong_audience.json()["error"]["code"]) == (
        401,
        "InvalidAuthenticationTokenAudience",
    )
    assert "https://vault.azure.net" in wrong_audience.json()["error"]["message"]
    assert (garbage.status_code, garbage.json()["error"]["code"]) == (401, "InvalidAuthenticationToken")
    with pytest.raises(ClientAuthenticationError):
        ConnectedKubernetesClient(
            _WrongAudience(vault_token), arm.doc["subscriptions"][0], base_url=arm.endpoint("arm")
        ).connected_cluster.get("rg-ipc-site-munich", "x")


class _WrongAudience:
    """A credential handing out a token for another audience, whatever it is asked for."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(self.token, FAR_FUTURE)

    def get_token_info(self, *scopes: str, options: object = None) -> AccessTokenInfo:
        return AccessTokenInfo(self.token, FAR_FUTURE)


def test_every_arm_answer_carries_request_ids_and_rate_limit_counters(arm: LabHandle) -> None:
    token = ManagedIdentityCredential().get_token(ARM_SCOPE).token
    path = f"/subscriptions/{arm.doc['subscriptions'][0]}/providers/Microsoft.Kubernetes/connectedClusters"

    ok = arm_get(arm, path + "?api-version=2024-01-01", token=token)
    not_found = arm_get(arm, path + "/x?api-version=2024-01-01", token=token)

    for response in (ok, not_found):
        assert response.headers["x-ms-request-id"]
        assert response.headers["x-ms-correlation-request-id"]
        assert int(response.headers["x-ms-ratelimit-remaining-subscription-reads"]) < 250
        assert int(response.headers["x-ms-ratelimit-remaining-subscription-global-reads"]) < 3750


def test_a_panel_shows_offline_only_after_fifteen_minutes_without_heartbeat(lab_clean: LabHandle) -> None:
    lab = lab_clean
    with lab.applied_env():
        first = list_subscription(lab)[0]
        group = first.group
        lab.control("POST", f"/_lab/clusters/{first.name}/connectivity", {"online": False}, expect=200)
        went_offline = clusters_client(lab).connected_cluster.get(group, first.name)
        lab.control("POST", "/_lab/clock/advance", {"seconds": OFFLINE_AFTER_S + 60})
        later = clusters_client(lab).connected_cluster.get(group, first.name)
        lab.control("POST", f"/_lab/clusters/{first.name}/connectivity", {"online": True}, expect=200)
        back = clusters_client(lab).connected_cluster.get(group, first.name)

    assert went_offline.connectivity_status == "Connected"
    assert later.connectivity_status == "Offline"
    assert later.last_connectivity_time == went_offline.last_connectivity_time
    assert back.connectivity_status == "Connected"
    assert back.last_connectivity_time is not None
    assert later.last_connectivity_time is not None
    assert back.last_connectivity_time > later.last_connectivity_time


def test_every_panel_has_a_flux_extension_and_some_run_an_old_one(arm: LabHandle) -> None:
    client = KubernetesConfigurationExtensionsMgmtClient(
        ManagedIdentityCredential(), arm.doc["subscriptions"][0], base_url=arm.endpoint("arm")
    )
    versions: Counter[str | None] = Counter()
    for cluster in list_subscription(arm):
        (extension,) = client.extensions.list(
            cluster.group, "Microsoft.Kubernetes", "connectedClusters", cluster.name
        )
        same = client.extensions.get(
            cluster.group, "Microsoft.Kubernetes", "connectedClusters", cluster.name, "flux"
        )
        assert extension.properties is not None
        assert same.properties is not None
        assert extension.properties.extension_type == "microsoft.flux"
        assert same.properties.current_version == extension.properties.current_version
        versions[extension.properties.current_version] += 1

    # Factory panels run 1.16.3 (one in ten still 1.13.1); the image-automation runner 1.23.3.
    assert set(versions) == {"1.16.3", "1.13.1", "1.23.3"}
    assert versions["1.16.3"] > versions["1.13.1"] > versions["1.23.3"] == 1


@pytest.fixture(scope="module")
def big_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """More panels than one page (100) in the subscription and in a site's resource group (630 panels
    plus the automation runner)."""
    state_dir: Path = tmp_path_factory.mktemp("arm-paging")
    with LabProcess(state_dir, clusters=630, subscriptions=1, azurite=False) as handle, handle.applied_env():
        yield handle


def test_lists_page_with_next_links_and_the_sdk_follows_them(big_lab: LabHandle) -> None:
    client = clusters_client(big_lab)

    pages = [[listed(c) for c in page] for page in client.connected_cluster.list_by_subscription().by_page()]
    names = [cluster.name for page in pages for cluster in page]
    munich = [listed(c) for c in client.connected_cluster.list_by_resource_group("rg-ipc-site-munich")]

    assert [len(page) for page in pages] == [100, 100, 100, 100, 100, 100, 31]
    assert len(set(names)) == 631
    assert names == sorted(names)
    assert names[:2] == ["ipc-automation-hub", "ipc-panel-0001"]
    assert len(munich) > 100, "a site's group needs two pages too"
    assert all(cluster.tags["site"] == "munich" for cluster in munich)
    log = big_lab.control("GET", "/_lab/requests?service=arm")["requests"]
    assert sum("skiptoken" in entry["query"] for entry in log) >= 7
