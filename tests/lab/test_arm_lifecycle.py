"""A panel's life in ARM, through the real SDKs: onboarding a new panel (extension, then configuration),
connecting and disconnecting clusters with their Event Grid events, failure modes (a failed extension,
an expired Arc certificate), and the full fluxConfigurations shape per api-version.

A lab of its own over two subscriptions (four configured panels, one unconfigured, the runner); each test
starts from a reset lab. The last test moves the lab clock by months, so it runs last.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from lab.arm import flux_releases
from lab.fleet.model import Connectivity
from lab.host.eventgrid import resolve_topics, subscription_names
from tests.lab.armkit import (
    CONFIG,
    ON_ARC,
    clusters_client,
    commit,
    config_path,
    extensions_client,
    flux_client,
    raw,
    subscription,
    tick,
    truth,
)
from tests.lab.test_eventgrid import QUIET_PERIOD_S, Receiver
from tests.labkit import LabHandle, LabProcess

pytestmark = pytest.mark.lab

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
# ipc-panel-0005 is the unconfigured one: Arc-connected, nothing installed.
NEW_PANEL = "ipc-panel-0005"
DAY_S = 86_400
# A folder of the repository that builds to one ConfigMap: an onboarding check that does not depend on
# the workloads' own health.
PROBE_PATH = "kubernetes/onboarding-probe"
PROBE_FILES = {
    f"{PROBE_PATH}/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
    "resources:\n  - configmap.yaml\n",
    f"{PROBE_PATH}/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: onboarding-probe\n"
    "  namespace: flux-system\ndata:\n  hello: panel\n",
}
# Every FluxConfigurationProperties field of 2025-04-01 (fluxConfigurations/models.tsp) but the
# write-only configurationProtectedSettings; 2023-05-01 and 2024-11-01 have no ociRepository.
FLUX_PROPERTIES_2025 = {
    "scope",
    "namespace",
    "sourceKind",
    "suspend",
    "gitRepository",
    "bucket",
    "azureBlob",
    "ociRepository",
    "kustomizations",
    "statuses",
    "repositoryPublicKey",
    "sourceSyncedCommitId",
    "sourceUpdatedAt",
    "statusUpdatedAt",
    "waitForReconciliation",
    "reconciliationWaitDuration",
    "complianceState",
    "provisioningState",
    "errorMessage",
}
GIT_FIELDS_2023 = {
    "url",
    "timeoutInSeconds",
    "syncIntervalInSeconds",
    "repositoryRef",
    "sshKnownHosts",
    "httpsUser",
    "httpsCACert",
    "localAuthRef",
}
KUSTOMIZATION_FIELDS = {
    "name",
    "path",
    "dependsOn",
    "timeoutInSeconds",
    "syncIntervalInSeconds",
    "retryIntervalInSeconds",
    "prune",
    "force",
    "wait",
    "postBuild",
}


@pytest.fixture(scope="module")
def life_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    state_dir: Path = tmp_path_factory.mktemp("lifecycle")
    with (
        LabProcess(state_dir, clusters=4, subscriptions=2, unconfigured=1, azurite=False) as handle,
        handle.applied_env(),
    ):
        yield handle


@pytest.fixture
def lab(life_lab: LabHandle) -> LabHandle:
    life_lab.control("POST", "/_lab/reset")
    return life_lab


def config_body(url: str, path: str = f"./{PROBE_PATH}") -> dict[str, Any]:
    return {
        "properties": {
            "scope": "cluster",
            "namespace": "flux-system",
            "sourceKind": "GitRepository",
            "gitRepository": {
                "url": url,
                "repositoryRef": {"branch": "main"},
                "syncIntervalInSeconds": 300,
                "httpsUser": "git",
            },
            "kustomizations": {"probe": {"path": path, "prune": True}},
        }
    }


def fleet_pat(lab: LabHandle) -> str:
    return str(
        lab.control("POST", "/_lab/devops/pats", {"scope": "vso.code", "days": 30}, expect=201)["token"]
    )


def with_pat(body: dict[str, Any], pat: str) -> dict[str, Any]:
    encoded = base64.b64encode(pat.encode()).decode()
    return {"properties": {**body["properties"], "configurationProtectedSettings": {"httpsKey": encoded}}}


def ssh_rsa_fields(public_key: str) -> tuple[bytes, int, int]:
    """(key type, e, n) of an OpenSSH `ssh-rsa` public key line (RFC 4253 6.6)."""
    scheme, encoded = public_key.split(" ", 1)
    blob, fields = base64.b64decode(encoded, validate=True), []
    while blob:
        size = int.from_bytes(blob[:4], "big")
        fields.append(blob[4 : 4 + size])
        blob = blob[4 + size :]
    kind, exponent, modulus = fields
    assert scheme.encode() == kind
    return kind, int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")


# --- onboarding -----------------------------------------------------------------------------------
def test_a_flux_configuration_on_a_panel_without_the_extension_is_refused(lab: LabHandle) -> None:
    group = truth(lab, NEW_PANEL)["resourceGroup"]
    body = with_pat(config_body(lab.env["FLUXFLEET_GIT_URL"]), fleet_pat(lab))

    with pytest.raises(HttpResponseError) as refused:
        flux_client(lab).flux_configurations.begin_create_or_update(group, *ON_ARC, NEW_PANEL, CONFIG, body)

    assert refused.value.status_code == 400
    assert refused.value.error is not None
    assert refused.value.error.code == "ValidationFailed"
    assert "microsoft.flux" in str(refused.value.error.message)
    with pytest.raises(ResourceNotFoundError):
        flux_client(lab).flux_configurations.get(group, *ON_ARC, NEW_PANEL, CONFIG)


def test_an_unconfigured_panel_syncs_only_once_extension_and_configuration_exist(lab: LabHandle) -> None:
    commit(lab, PROBE_FILES, "an onboarding probe")
    group = truth(lab, NEW_PANEL)["resourceGroup"]
    before = truth(lab, NEW_PANEL)
    tick(lab)
    idle = truth(lab, NEW_PANEL)

    extensions_client(lab).extensions.begin_create(
        group,
        *ON_ARC,
        NEW_PANEL,
        "flux",
        {"properties": {"extensionType": "microsoft.flux", "autoUpgradeMinorVersion": True}},
    ).result()
    tick(lab)
    extension_only = truth(lab, NEW_PANEL)
    created = (
        flux_client(lab)
        .flux_configurations.begin_create_or_update(
            group,
            *ON_ARC,
            NEW_PANEL,
            CONFIG,
            with_pat(config_body(lab.env["FLUXFLEET_GIT_URL"]), fleet_pat(lab)),
        )
        .result()
    )
    tick(lab)
    onboarded = truth(lab, NEW_PANEL)
    reported = flux_client(lab).flux_configurations.get(group, *ON_ARC, NEW_PANEL, CONFIG)

    assert (before["onboarded"], before["agents_running"], before["extension"]) == (False, False, None)
    assert idle["last_fetch"] is None, "no extension: no agent, no fetch"
    assert extension_only["agents_running"] is True
    assert extension_only["last_fetch"] is None, "an agent with no configuration fetches nothing"
    assert created.properties is not None
    assert created.properties.provisioning_state == "Succeeded"
    assert onboarded["onboarded"] is True
    assert onboarded["last_fetch"]["ok"] is True
    assert onboarded["delivered_generation"] == 1
    assert reported.properties is not None
    assert reported.properties.compliance_state == "Compliant"
    assert str(reported.properties.source_synced_commit_id).startswith("main/")


def test_ground_truth_shows_the_secrets_a_panel_holds_and_never_a_value(lab: LabHandle) -> None:
    seeded = truth(lab, "ipc-panel-0002")["secrets"]
    lab.control("DELETE", "/_lab/clusters/ipc-panel-0002/secrets/ipc-workloads/iot-hub-connection")

    after = truth(lab, "ipc-panel-0002")["secrets"]
    untouched = truth(lab, "ipc-panel-0003")["secrets"]
    held = {(s["namespace"], s["name"]) for s in after}

    assert {"namespace", "name", "type", "keys"} == set(seeded[0])
    assert ("ipc-workloads", "iot-hub-connection") in {(s["namespace"], s["name"]) for s in seeded}
    assert ("ipc-workloads", "iot-hub-connection") not in held
    assert len(after) == len(seeded) - 1
    assert untouched == seeded, "one panel's secrets are its own"
    assert {s["name"] for s in truth(lab, NEW_PANEL)["secrets"]} == {s["name"] for s in seeded}


def test_the_onboarded_extension_runs_the_newest_release(lab: LabHandle) -> None:
    group = truth(lab, NEW_PANEL)["resourceGroup"]
    installed = (
        extensions_client(lab)
        .extensions.begin_create(
            group, *ON_ARC, NEW_PANEL, "flux", {"properties": {"extensionType": "microsoft.flux"}}
        )
        .result()
    )

    assert installed.properties is not None
    assert installed.properties.auto_upgrade_minor_version is True, "the schema's default"
    assert installed.properties.current_version == flux_releases.newest("Stable")
    assert truth(lab, NEW_PANEL)["flux_extension_version"] == flux_releases.newest("Stable")


# --- connecting and disconnecting -----------------------------------------------------------------
def test_a_new_cluster_publishes_one_resource_write_success_in_both_schemas(lab: LabHandle) -> None:
    second = subscription(lab, 1)
    topic = f"/subscriptions/{second}"
    assert topic in lab.doc["eventgrid"]["topics"]["subscriptions"]
    receivers = {"EventGridSchema": Receiver(), "CloudEventSchemaV1_0": Receiver()}
    try:
        for schema, receiver in receivers.items():
            lab.control(
                "POST",
                "/_lab/eventgrid/subscriptions",
                {
                    "name": f"connected-{schema[:5].lower()}",
                    "topic": topic,
                    "endpoint": receiver.url,
                    "eventTypes": [WRITE_SUCCESS],
                    "schema": schema,
                },
                expect=201,
            )
        created = lab.control(
            "POST",
            "/_lab/clusters",
            {
                "name": "ipc-panel-new",
                "subscription": second,
                "resourceGroup": "rg-ipc-site-lyon",
                "tags": {"ring": "broad", "site": "lyon"},
            },
            expect=201,
        )
        [grid] = receivers["EventGridSchema"].wait_for_notifications(1)
        [cloud] = receivers["CloudEventSchemaV1_0"].wait_for_notifications(1)
        again = _post(lab, "/_lab/clusters", {"name": "ipc-panel-new", "subscription": second})
        time.sleep(QUIET_PERIOD_S)
        counts = [len(receiver.notifications) for receiver in receivers.values()]
    finally:
        for receiver in receivers.values():
            receiver.close()
    cluster = clusters_client(lab, second).connected_cluster.get("rg-ipc-site-lyon", "ipc-panel-new")

    resource_id = created["id"]
    [event] = grid.body
    assert (event["topic"], event["subject"], event["eventType"]) == (topic, resource_id, WRITE_SUCCESS)
    assert (event["dataVersion"], event["metadataVersion"]) == ("2", "1")
    data = event["data"]
    assert set(data) == {
        "authorization",
        "claims",
        "correlationId",
        "resourceProvider",
        "resourceUri",
        "operationName",
        "status",
        "subscriptionId",
        "tenantId",
    }
    assert (
        data["operationName"]
        == data["authorization"]["action"]
        == "Microsoft.Kubernetes/connectedClusters/write"
    )
    assert (data["resourceUri"], data["authorization"]["scope"]) == (resource_id, resource_id)
    assert (data["status"], data["subscriptionId"], data["tenantId"]) == (
        "Succeeded",
        second,
        lab.doc["tenant_id"],
    )
    assert data["resourceProvider"] == "Microsoft.Kubernetes"
    assert (cloud.body["source"], cloud.body["subject"], cloud.body["type"]) == (
        topic,
        resource_id,
        WRITE_SUCCESS,
    )
    assert cloud.body["data"] == data
    assert again == 409
    assert counts == [1, 1], "one event per subscriber, and a refused connect raises none"
    assert cluster.connectivity_status == "Connected"
    assert dict(cluster.tags or {}) == {"ring": "broad", "site": "lyon"}
    assert created["onboarded"] is False
    assert created["extension"] is None
    assert (
        list(extensions_client(lab, second).extensions.list("rg-ipc-site-lyon", *ON_ARC, "ipc-panel-new"))
        == []
    )


def test_a_disconnected_cluster_is_gone_from_arm(lab: LabHandle) -> None:
    lab.control("POST", "/_lab/clusters", {"name": "ipc-panel-short-lived"}, expect=201)
    group = "rg-ipc-platform-arc"
    assert (
        clusters_client(lab).connected_cluster.get(group, "ipc-panel-short-lived").name
        == "ipc-panel-short-lived"
    )

    lab.control("DELETE", "/_lab/clusters/ipc-panel-short-lived", expect=204)

    with pytest.raises(ResourceNotFoundError):
        clusters_client(lab).connected_cluster.get(group, "ipc-panel-short-lived")
    names = [c.name for c in clusters_client(lab).connected_cluster.list_by_resource_group(group)]
    assert "ipc-panel-short-lived" not in names
    assert _delete(lab, "/_lab/clusters/ipc-panel-short-lived") == 404


def test_a_cluster_connected_offline_shows_connecting_until_its_agents_call_home(lab: LabHandle) -> None:
    lab.control("POST", "/_lab/clusters", {"name": "ipc-panel-quiet", "online": False}, expect=201)
    waiting = clusters_client(lab).connected_cluster.get("rg-ipc-platform-arc", "ipc-panel-quiet")
    lab.control("POST", "/_lab/clusters/ipc-panel-quiet/connectivity", {"online": True}, expect=200)
    called = clusters_client(lab).connected_cluster.get("rg-ipc-platform-arc", "ipc-panel-quiet")

    assert waiting.connectivity_status == "Connecting"
    assert called.connectivity_status == "Connected"


def test_the_subscriptions_topic_group_cannot_be_subscribed_to_as_one(lab: LabHandle) -> None:
    response = _post(
        lab,
        "/_lab/eventgrid/subscriptions",
        {"name": "all-subs", "topic": "subscriptions", "endpoint": "http://127.0.0.1:9/x"},
    )

    assert response == 400


def test_the_host_expands_the_subscriptions_alias_to_one_subscription_per_topic(lab: LabHandle) -> None:
    resolved = resolve_topics("subscriptions", lab.doc)
    single = resolve_topics("acr", lab.doc)

    assert resolved == ([f"/subscriptions/{sub}" for sub in lab.doc["subscriptions"]], True)
    assert subscription_names("arc-connected", resolved[0], grouped=True) == [
        "arc-connected-1",
        "arc-connected-2",
    ]
    assert single == ([lab.doc["eventgrid"]["topics"]["acr"]], False)
    assert subscription_names("acr-image-pushed", single[0], grouped=False) == ["acr-image-pushed"]


# --- failure modes --------------------------------------------------------------------------------
def test_a_failed_flux_extension_stops_the_agents_and_shows_in_arm_until_it_heals(lab: LabHandle) -> None:
    panel = "ipc-panel-0001"
    group = truth(lab, panel)["resourceGroup"]
    lab.control(
        "POST",
        f"/_lab/clusters/{panel}/extension",
        {"provisioningState": "Failed", "message": "Helm upgrade failed: context deadline exceeded"},
        expect=200,
    )
    sha = commit(lab, {"kubernetes/workloads/NOTES.md": "failed extension\n"})
    tick(lab)
    broken = extensions_client(lab).extensions.get(group, *ON_ARC, panel, "flux")
    stuck, moved = truth(lab, panel), truth(lab, "ipc-panel-0002")
    lab.control("POST", f"/_lab/clusters/{panel}/extension", {"provisioningState": "Succeeded"}, expect=200)
    tick(lab)
    healed = truth(lab, panel)

    assert broken.properties is not None
    assert broken.properties.provisioning_state == "Failed"
    assert broken.properties.error_info is not None
    assert broken.properties.error_info.code == "ExtensionOperationFailed"
    assert broken.properties.error_info.message == (
        "The extension operation failed with the following error: "
        "Helm upgrade failed: context deadline exceeded"
    )
    assert stuck["agents_running"] is False
    assert stuck["applied_revision"] != sha
    assert moved["applied_revision"] == sha
    assert healed["extension"]["provisioningState"] == "Succeeded"
    assert healed["applied_revision"] == sha


def test_an_expired_arc_certificate_shows_expired_and_stops_the_agents_for_good(lab: LabHandle) -> None:
    panel = "ipc-panel-0003"
    group = truth(lab, panel)["resourceGroup"]
    lab.control(
        "POST", f"/_lab/clusters/{panel}/connectivity", {"online": False, "expired": True}, expect=200
    )
    now = datetime.fromisoformat(lab.control("GET", "/_lab/clock")["now"].replace("Z", "+00:00"))
    expired = clusters_client(lab).connected_cluster.get(group, panel)
    lab.control("POST", f"/_lab/clusters/{panel}/connectivity", {"online": True}, expect=200)
    sha = commit(lab, {"kubernetes/workloads/NOTES.md": "expired\n"})
    tick(lab)
    back_online = clusters_client(lab).connected_cluster.get(group, panel)
    still = truth(lab, panel)
    lab.control("POST", f"/_lab/clusters/{panel}/connectivity", {"expired": False}, expect=200)
    tick(lab)
    renewed = clusters_client(lab).connected_cluster.get(group, panel)

    assert expired.connectivity_status == "Expired"
    assert expired.managed_identity_certificate_expiration_time is not None
    assert expired.managed_identity_certificate_expiration_time <= now + timedelta(seconds=1)
    assert back_online.connectivity_status == "Expired", "coming back does not renew an expired certificate"
    assert (still["agents_running"], still["connectivity_status"]) == (False, "Expired")
    assert still["applied_revision"] != sha
    assert renewed.connectivity_status == "Connected"
    assert truth(lab, panel)["applied_revision"] == sha


# --- the full fluxConfigurations shape ------------------------------------------------------------
@pytest.mark.parametrize("api_version", ["2023-05-01", "2024-11-01", "2025-04-01"])
def test_every_flux_configuration_property_is_present_null_where_unset(
    lab: LabHandle, api_version: str
) -> None:
    response = raw(lab, "GET", config_path(lab, "ipc-panel-0001"), api_version=api_version)

    properties = response.json()["properties"]
    expected = (
        FLUX_PROPERTIES_2025 if api_version >= "2025-04-01" else FLUX_PROPERTIES_2025 - {"ociRepository"}
    )
    assert set(properties) == expected
    git_fields = GIT_FIELDS_2023 | ({"provider"} if api_version >= "2024-11-01" else set())
    assert set(properties["gitRepository"]) == git_fields
    assert set(properties["gitRepository"]["repositoryRef"]) == {"branch", "tag", "semver", "commit"}
    assert {name: set(k) for name, k in properties["kustomizations"].items()} == {
        "workloads": KUSTOMIZATION_FIELDS
    }
    assert (properties["bucket"], properties["azureBlob"], properties["waitForReconciliation"]) == (
        None,
        None,
        None,
    )
    assert properties["kustomizations"]["workloads"]["retryIntervalInSeconds"] is None
    assert "configurationProtectedSettings" not in response.text
    # An HTTPS Git source still carries an SSH public key, as GetFluxConfiguration.json shows.
    kind, exponent, modulus = ssh_rsa_fields(properties["repositoryPublicKey"])
    assert (kind, exponent, modulus.bit_length()) == (b"ssh-rsa", 65537, 2048)


def test_the_repository_public_key_is_stable_and_new_for_a_re_created_configuration(lab: LabHandle) -> None:
    client = flux_client(lab)
    group = truth(lab, "ipc-panel-0001")["resourceGroup"]

    def key() -> str | None:
        config = client.flux_configurations.get(group, *ON_ARC, "ipc-panel-0001", CONFIG)
        return config.properties.repository_public_key if config.properties is not None else None

    before = key()
    assert before is not None
    assert before == key()
    current = client.flux_configurations.get(group, *ON_ARC, "ipc-panel-0001", CONFIG)
    client.flux_configurations.begin_delete(group, *ON_ARC, "ipc-panel-0001", CONFIG).result()
    client.flux_configurations.begin_create_or_update(
        group, *ON_ARC, "ipc-panel-0001", CONFIG, current
    ).result()

    after = key()
    assert after is not None
    assert after.startswith("ssh-rsa ")
    assert after != before


def test_force_delete_removes_a_flux_configuration_at_once(lab: LabHandle) -> None:
    path = config_path(lab, "ipc-panel-0002")

    deleted = raw(lab, "DELETE", path, api_version="2025-04-01", query="&forceDelete=true")

    assert deleted.status_code == 200
    assert raw(lab, "GET", path, api_version="2025-04-01").status_code == 404


def test_a_flux_configuration_delete_is_an_lro_with_the_examples_timeout(lab: LabHandle) -> None:
    deleted = raw(lab, "DELETE", config_path(lab, "ipc-panel-0002"), api_version="2025-04-01")

    assert deleted.status_code == 202
    assert deleted.headers["x-ms-async-operation-timeout"] == "PT1H"
    assert "/fluxConfigurations/ipc-platform-config/operations/" in deleted.headers["Azure-AsyncOperation"]


# --- the certificate's life, without a lab --------------------------------------------------------
def test_an_online_panel_renews_its_certificate_and_an_offline_one_lets_it_expire() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    online = Connectivity(online=True, changed_at=start, certificate_issued_at=start)
    offline = Connectivity(online=True, changed_at=start, certificate_issued_at=start)
    offline.set_online(False, start + timedelta(days=1))
    later = start + timedelta(days=200)

    assert online.status(later) == "Connected"
    assert later - online.certificate_issued_at < timedelta(days=45)
    assert offline.status(later) == "Expired"
    assert offline.certificate_expires_at == start + timedelta(days=90)
    offline.set_online(True, later)
    assert offline.status(later) == "Expired", "an expired certificate needs re-onboarding"


def test_the_release_notes_upgrade_rule_applies_only_from_below_1_21() -> None:
    assert flux_releases.upgrade_blocker("1.16.3", "1.23.0") is not None
    assert flux_releases.upgrade_blocker("1.20.4", "1.24.1") is not None
    assert flux_releases.upgrade_blocker("1.21.0", "1.23.0") is None
    assert flux_releases.upgrade_blocker("1.16.3", "1.22.2") is None
    assert flux_releases.is_released("1.13.1")
    assert not flux_releases.is_released("1.13.4")


# --- last: moves the clock by months --------------------------------------------------------------
def test_months_later_online_panels_kept_valid_certificates_and_an_offline_one_expired(
    lab: LabHandle,
) -> None:
    lab.control("POST", "/_lab/clusters/ipc-panel-0004/connectivity", {"online": False}, expect=200)

    lab.control("POST", "/_lab/clock/advance", {"seconds": 100 * DAY_S})
    online, offline = truth(lab, "ipc-panel-0001"), truth(lab, "ipc-panel-0004")

    assert online["connectivity_status"] == "Connected"
    assert offline["connectivity_status"] == "Expired"
    assert online["certificate_expires_at"] > offline["certificate_expires_at"]


def _post(lab: LabHandle, path: str, body: Any) -> int:
    return requests.post(
        lab.endpoint("control") + path, json=body, verify=lab.ca_bundle, timeout=30
    ).status_code


def _delete(lab: LabHandle, path: str) -> int:
    return requests.delete(lab.endpoint("control") + path, verify=lab.ca_bundle, timeout=30).status_code
