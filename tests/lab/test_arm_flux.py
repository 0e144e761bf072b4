"""ARM fluxConfigurations through the real management client: GET/LIST, PATCH/PUT/DELETE as real LROs.

`KubernetesConfigurationFluxConfigurationsMgmtClient` is configured only with the lab's endpoint and CA;
its `begin_*` pollers run against the lab's `Azure-AsyncOperation` resources. The request log
(`/_lab/requests`) shows what went over the wire; plain requests check what the SDK hides.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.mgmt.kubernetesconfiguration.fluxconfigurations import (
    KubernetesConfigurationFluxConfigurationsMgmtClient,
)
from azure.mgmt.kubernetesconfiguration.fluxconfigurations.models import (
    FluxConfiguration,
    FluxConfigurationProperties,
    GitRepositoryDefinition,
    KustomizationDefinition,
)

from tests.labkit import LabHandle

pytestmark = pytest.mark.lab

ARM_SCOPE = "https://management.azure.com/.default"
CONFIG = "ipc-platform-config"
# ipc-panel-0001 is the first panel of the first (munich, subscription 1) stratum: online, canary.
PANEL, GROUP = "ipc-panel-0001", "rg-ipc-site-munich"
ON_ARC = ("Microsoft.Kubernetes", "connectedClusters")


@pytest.fixture
def arm(lab_clean: LabHandle) -> Iterator[LabHandle]:
    with lab_clean.applied_env():
        yield lab_clean


def flux_client(lab: LabHandle, **kwargs: Any) -> KubernetesConfigurationFluxConfigurationsMgmtClient:
    return KubernetesConfigurationFluxConfigurationsMgmtClient(
        ManagedIdentityCredential(), lab.doc["subscriptions"][0], base_url=lab.endpoint("arm"), **kwargs
    )


def properties_of(config: FluxConfiguration) -> FluxConfigurationProperties:
    assert config.properties is not None
    return config.properties


def git_of(config: FluxConfiguration) -> GitRepositoryDefinition:
    git = properties_of(config).git_repository
    assert git is not None
    return git


def kustomizations_of(config: FluxConfiguration) -> dict[str, KustomizationDefinition]:
    return dict(properties_of(config).kustomizations or {})


def config_path(lab: LabHandle, name: str = CONFIG) -> str:
    return (
        f"/subscriptions/{lab.doc['subscriptions'][0]}/resourceGroups/{GROUP}/providers/Microsoft.Kubernetes"
        f"/connectedClusters/{PANEL}/providers/Microsoft.KubernetesConfiguration/fluxConfigurations/{name}"
    )


def raw(
    lab: LabHandle,
    method: str,
    path: str,
    *,
    api_version: str = "2025-04-01",
    body: Any = None,
    data: str | None = None,
) -> requests.Response:
    token = ManagedIdentityCredential().get_token(ARM_SCOPE).token
    return requests.request(
        method,
        f"{lab.endpoint('arm')}{path}?api-version={api_version}",
        json=body,
        data=data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        verify=lab.ca_bundle,
        timeout=30,
    )


def arm_requests(lab: LabHandle, since: int) -> list[tuple[str, str, int]]:
    log = lab.control("GET", f"/_lab/requests?service=arm&since={since}")["requests"]
    return [(entry["method"], entry["path"], entry["status"]) for entry in log]


def log_position(lab: LabHandle) -> int:
    entries = lab.control("GET", "/_lab/requests")["requests"]
    return max((entry["seq"] for entry in entries), default=0)


def test_the_seeded_configuration_is_the_platform_config_and_compliant(arm: LabHandle) -> None:
    head = arm.control("GET", "/_lab/devops/commits?branch=main&top=1")["commits"][0]["sha"]

    config = flux_client(arm).flux_configurations.get(GROUP, *ON_ARC, PANEL, CONFIG)

    props, git, kustomizations = properties_of(config), git_of(config), kustomizations_of(config)
    assert git.url == arm.doc["env"]["FLUXFLEET_GIT_URL"]
    assert git.repository_ref is not None
    assert (git.repository_ref.branch, git.https_user) == ("main", "git")
    assert git.sync_interval_in_seconds == 300
    # A factory panel applies the workloads only; the image automation runs on the runner (issue 15).
    assert {name: k.path for name, k in kustomizations.items()} == {"workloads": "./kubernetes/workloads"}
    assert all(k.prune for k in kustomizations.values())
    assert (props.compliance_state, props.provisioning_state) == ("Compliant", "Succeeded")
    assert props.source_synced_commit_id == f"main/{head}"
    assert {status.kind for status in props.statuses or []} == {"GitRepository", "Kustomization"}
    listed = list(flux_client(arm).flux_configurations.list(GROUP, *ON_ARC, PANEL))
    assert [item.name for item in listed] == [CONFIG]


def test_protected_settings_are_accepted_but_never_returned(arm: LabHandle) -> None:
    new_pat = arm.control("POST", "/_lab/devops/pats", {"scope": "vso.code", "days": 90})["token"]
    encoded = base64.b64encode(new_pat.encode()).decode()

    result = (
        flux_client(arm)
        .flux_configurations.begin_update(
            GROUP,
            *ON_ARC,
            PANEL,
            CONFIG,
            {"properties": {"configurationProtectedSettings": {"httpsKey": encoded}}},
        )
        .result()
    )
    fetched = raw(arm, "GET", config_path(arm))
    listed = raw(arm, "GET", config_path(arm).rsplit("/", 1)[0])

    assert properties_of(result).configuration_protected_settings is None
    for response in (fetched, listed):
        assert response.status_code == 200
        assert "configurationProtectedSettings" not in response.text
        assert encoded not in response.text
        assert new_pat not in response.text
    truth = arm.control("GET", f"/_lab/clusters/{PANEL}")
    assert truth["config_generation"] == 2, "a protected-settings PATCH always counts as a change"


def test_protected_settings_are_merged_by_a_patch_and_null_removes_a_key(arm: LabHandle) -> None:
    """Issue 12, finding 16: ARM merges a PATCH's protected settings (JSON merge patch). `{}` keeps
    the PAT; `{"httpsKey": null}` (what the workload-identity migration sends) removes it."""
    client = flux_client(arm).flux_configurations

    def patch(protected: dict[str, str | None]) -> list[str]:
        client.begin_update(
            GROUP, *ON_ARC, PANEL, CONFIG, {"properties": {"configurationProtectedSettings": protected}}
        ).result()
        return list(arm.control("GET", f"/_lab/clusters/{PANEL}")["configuration"]["protectedSettingKeys"])

    assert patch({}) == ["httpsKey"], "an empty map changes nothing"
    other = base64.b64encode(b"-----BEGIN OPENSSH PRIVATE KEY-----").decode()
    assert patch({"sshPrivateKey": other}) == ["httpsKey", "sshPrivateKey"], "other keys are merged in"
    assert patch({"httpsKey": None}) == ["sshPrivateKey"], "null removes the PAT"


def test_patch_is_a_real_lro_with_azure_async_operation_polling(arm: LabHandle) -> None:
    since = log_position(arm)
    poller = flux_client(arm).flux_configurations.begin_update(
        GROUP, *ON_ARC, PANEL, CONFIG, {"properties": {"suspend": True}}
    )
    during = raw(arm, "GET", config_path(arm)).json()["properties"]["provisioningState"]
    result = poller.result()

    assert during == "Updating"
    assert (properties_of(result).suspend, properties_of(result).provisioning_state) == (True, "Succeeded")
    wire = arm_requests(arm, since)
    assert wire[0] == ("PATCH", config_path(arm), 202)
    polls = [entry for entry in wire if "/operations/" in entry[1]]
    assert polls, "the SDK polled the operation-status resource"
    assert all(status == 200 for _, _, status in polls)
    assert wire[-1] == ("GET", config_path(arm), 200), "final GET of the resource (final-state-via)"


def test_a_patch_that_changes_nothing_is_answered_200_without_an_operation(arm: LabHandle) -> None:
    response = raw(arm, "PATCH", config_path(arm), body={"properties": {"suspend": False}})

    assert response.status_code == 200
    assert "Azure-AsyncOperation" not in response.headers
    assert response.json()["properties"]["provisioningState"] == "Succeeded"
    assert arm.control("GET", f"/_lab/clusters/{PANEL}")["config_generation"] == 1


def test_merge_patch_null_deletes_a_kustomization_and_a_new_one_gets_defaults(arm: LabHandle) -> None:
    patch = {"properties": {"kustomizations": {"image-automation": None, "extra": {"path": "./kubernetes"}}}}

    result = flux_client(arm).flux_configurations.begin_update(GROUP, *ON_ARC, PANEL, CONFIG, patch).result()

    kustomizations = kustomizations_of(result)
    assert sorted(kustomizations) == ["extra", "workloads"]
    extra = kustomizations["extra"]
    assert (extra.name, extra.timeout_in_seconds, extra.sync_interval_in_seconds) == ("extra", 600, 600)
    assert (extra.prune, extra.force, extra.wait) == (False, False, True)
    assert kustomizations["workloads"].prune is True, "untouched kustomizations keep their settings"
    assert git_of(result).https_user == "git", "untouched fields stay"


def test_put_creates_a_configuration_and_delete_removes_it(arm: LabHandle) -> None:
    client = flux_client(arm)
    since = log_position(arm)
    body = {
        "properties": {
            "scope": "cluster",
            "namespace": "flux-system",
            "sourceKind": "GitRepository",
            "gitRepository": {
                "url": arm.doc["env"]["FLUXFLEET_GIT_URL"],
                "repositoryRef": {"branch": "main"},
            },
            "kustomizations": {"apps": {"path": "./kubernetes/workloads"}},
        }
    }

    created = client.flux_configurations.begin_create_or_update(
        GROUP, *ON_ARC, PANEL, "extra-config", body
    ).result()
    replaced = raw(arm, "PUT", config_path(arm, "extra-config"), body=body)
    names = sorted(str(item.name) for item in client.flux_configurations.list(GROUP, *ON_ARC, PANEL))
    client.flux_configurations.begin_delete(GROUP, *ON_ARC, PANEL, "extra-config").result()

    assert properties_of(created).provisioning_state == "Succeeded"
    assert git_of(created).sync_interval_in_seconds == 600, "the spec's default"
    assert replaced.status_code == 200, "a PUT over an existing configuration is a 200 ..."
    assert "/operations/" in replaced.headers["Azure-AsyncOperation"], "... that still runs asynchronously"
    assert replaced.json()["properties"]["provisioningState"] == "Updating"
    assert names == ["extra-config", CONFIG]
    with pytest.raises(ResourceNotFoundError):
        client.flux_configurations.get(GROUP, *ON_ARC, PANEL, "extra-config")
    assert client.flux_configurations.begin_delete(GROUP, *ON_ARC, PANEL, "extra-config").result() is None
    statuses = [
        (method, status)
        for method, path, status in arm_requests(arm, since)
        if "extra-config" in path and "/operations/" not in path
    ]
    assert statuses[0] == ("PUT", 201)
    assert ("DELETE", 202) in statuses
    assert statuses[-1] == ("DELETE", 204), "deleting what is gone is a 204"


def test_older_api_versions_answer_in_their_own_shape(arm: LabHandle) -> None:
    set_provider = raw(
        arm,
        "PATCH",
        config_path(arm),
        api_version="2024-11-01",
        body={"properties": {"gitRepository": {"provider": "Generic"}}},
    )
    old = raw(arm, "GET", config_path(arm), api_version="2023-05-01")
    ignored = raw(
        arm,
        "PATCH",
        config_path(arm),
        api_version="2023-05-01",
        body={"properties": {"gitRepository": {"provider": "Azure"}}},
    )
    new = raw(arm, "GET", config_path(arm), api_version="2025-04-01")
    unknown = raw(arm, "GET", config_path(arm), api_version="2022-01-01-preview")

    assert set_provider.status_code == 202
    assert old.status_code == 200
    assert "provider" not in old.json()["properties"]["gitRepository"]
    assert ignored.status_code == 200, "2023-05-01 does not know `provider`: nothing changed"
    assert new.json()["properties"]["gitRepository"]["provider"] == "Generic"
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "NoRegisteredProviderFound")


def test_malformed_bodies_are_refused_with_arm_error_envelopes(arm: LabHandle) -> None:
    not_json = raw(arm, "PATCH", config_path(arm), data="{not json")
    wrong_type = raw(arm, "PATCH", config_path(arm), body={"properties": {"suspend": "yes"}})
    bad_kind = raw(arm, "PATCH", config_path(arm), body={"properties": {"sourceKind": "Subversion"}})
    scope_change = raw(
        arm,
        "PUT",
        config_path(arm),
        body={
            "properties": {
                "scope": "namespace",
                "namespace": "flux-system",
                "gitRepository": {"url": arm.doc["env"]["FLUXFLEET_GIT_URL"]},
            }
        },
    )

    assert (not_json.status_code, not_json.json()["error"]["code"]) == (400, "InvalidRequestContent")
    assert (wrong_type.status_code, wrong_type.json()["error"]["code"]) == (400, "InvalidRequestContent")
    assert "properties.suspend" in wrong_type.json()["error"]["message"]
    assert (bad_kind.status_code, bad_kind.json()["error"]["code"]) == (400, "BadRequest")
    assert (scope_change.status_code, scope_change.json()["error"]["code"]) == (400, "BadRequest")
    assert arm.control("GET", f"/_lab/clusters/{PANEL}")["config_generation"] == 1, "nothing was changed"


def test_a_missing_configuration_is_a_404_the_sdk_maps(arm: LabHandle) -> None:
    with pytest.raises(ResourceNotFoundError) as missing:
        flux_client(arm).flux_configurations.get(GROUP, *ON_ARC, PANEL, "no-such-config")
    with pytest.raises(HttpResponseError) as no_cluster:
        flux_client(arm).flux_configurations.get(GROUP, *ON_ARC, "ipc-panel-9999", CONFIG)

    assert missing.value.error is not None
    assert missing.value.error.code == "ResourceNotFound"
    assert no_cluster.value.status_code == 404
