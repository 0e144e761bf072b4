"""ARM `extensions` through the real `azure-mgmt-kubernetesconfiguration-extensions` client: install,
upgrade, patch and delete as long-running operations, the release catalogue, and the wire shape.

A lab of its own: four configured panels, two newly connected ones with nothing installed, the runner.
Each test starts from a reset lab.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.kubernetesconfiguration.extensions.models import Extension

from lab.arm import flux_releases
from tests.lab.armkit import ON_ARC, arm_log, extension_path, extensions_client, log_position, raw, truth
from tests.labkit import LabHandle, LabProcess

pytestmark = pytest.mark.lab

# Panels 5 and 6 of this lab are unconfigured: connected to Arc with no extension.
NEW_PANEL = "ipc-panel-0005"
PINNED = "1.24.1"
FLUX_BODY: dict[str, Any] = {
    "identity": {"type": "SystemAssigned"},
    "properties": {
        "extensionType": "microsoft.flux",
        "autoUpgradeMinorVersion": False,
        "version": PINNED,
        "releaseTrain": "Stable",
        "scope": {"cluster": {"releaseNamespace": "flux-system"}},
        "configurationSettings": {"multiTenancy.enforce": "false"},
        "configurationProtectedSettings": {"some.secret": "s3cr3t-value-never-echoed"},
    },
}
# Every property of the Extension schema, per api-version (extensions.json 2023-05-01 and 2024-11-01;
# 2025-03-01 adds what models.tsp marks @added(v2025_03_01)).
PROPERTIES_2023 = {
    "extensionType",
    "autoUpgradeMinorVersion",
    "releaseTrain",
    "version",
    "scope",
    "configurationSettings",
    "configurationProtectedSettings",
    "currentVersion",
    "provisioningState",
    "statuses",
    "errorInfo",
    "customLocationSettings",
    "packageUri",
    "aksAssignedIdentity",
    "isSystemExtension",
}
PROPERTIES_2025 = PROPERTIES_2023 | {
    "autoUpgradeMode",
    "managementDetails",
    "additionalDetails",
    "extensionState",
}
TOP_LEVEL_2023 = {"id", "name", "type", "systemData", "identity", "plan", "properties"}


@pytest.fixture(scope="module")
def ext_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    state_dir: Path = tmp_path_factory.mktemp("extensions")
    with (
        LabProcess(state_dir, clusters=4, subscriptions=1, unconfigured=2, azurite=False) as handle,
        handle.applied_env(),
    ):
        yield handle


@pytest.fixture
def lab(ext_lab: LabHandle) -> LabHandle:
    ext_lab.control("POST", "/_lab/reset")
    return ext_lab


def group_of(lab: LabHandle, cluster: str) -> str:
    return str(truth(lab, cluster)["resourceGroup"])


def props(extension: Extension) -> Any:
    assert extension.properties is not None
    return extension.properties


def test_installing_the_flux_extension_is_a_put_lro_that_ends_with_the_version_running(
    lab: LabHandle,
) -> None:
    client = extensions_client(lab)
    group = group_of(lab, NEW_PANEL)
    with pytest.raises(ResourceNotFoundError) as missing:
        client.extensions.get(group, *ON_ARC, NEW_PANEL, "flux")
    since = log_position(lab)

    poller = client.extensions.begin_create(group, *ON_ARC, NEW_PANEL, "flux", FLUX_BODY)
    during = raw(lab, "GET", extension_path(lab, NEW_PANEL), api_version="2025-03-01").json()["properties"]
    installed = poller.result()

    assert missing.value.error is not None
    assert (missing.value.error.code, missing.value.error.message) == (
        "ResourceNotFound",
        "Extension instance with name 'flux' not found.",
    )
    assert (during["provisioningState"], during["currentVersion"]) == ("Creating", None)
    assert (props(installed).provisioning_state, props(installed).current_version) == ("Succeeded", PINNED)
    assert props(installed).version == PINNED
    assert installed.identity is not None
    assert installed.identity.principal_id
    wire = arm_log(lab, since)
    assert wire[0] == ("PUT", extension_path(lab, NEW_PANEL), 201)
    assert any("/extensions/flux/operations/" in path and status == 200 for _, path, status in wire)
    assert wire[-1] == ("GET", extension_path(lab, NEW_PANEL), 200), "the poller's final GET"
    assert [e.name for e in client.extensions.list(group, *ON_ARC, NEW_PANEL)] == ["flux"]
    assert truth(lab, NEW_PANEL)["extension"]["currentVersion"] == PINNED


def test_deleting_an_extension_is_an_lro_and_a_second_delete_is_a_204(lab: LabHandle) -> None:
    client = extensions_client(lab)
    group = group_of(lab, "ipc-panel-0001")
    since = log_position(lab)

    poller = client.extensions.begin_delete(group, *ON_ARC, "ipc-panel-0001", "flux")
    during = raw(lab, "GET", extension_path(lab, "ipc-panel-0001"), api_version="2025-03-01").json()
    poller.result()
    again = raw(lab, "DELETE", extension_path(lab, "ipc-panel-0001"), api_version="2025-03-01")

    assert during["properties"]["provisioningState"] == "Deleting"
    assert list(client.extensions.list(group, *ON_ARC, "ipc-panel-0001")) == []
    assert arm_log(lab, since)[0] == ("DELETE", extension_path(lab, "ipc-panel-0001"), 202)
    assert again.status_code == 204
    assert truth(lab, "ipc-panel-0001")["extension"] is None


def test_force_delete_removes_the_azure_resource_at_once(lab: LabHandle) -> None:
    response = raw(
        lab,
        "DELETE",
        extension_path(lab, "ipc-panel-0002"),
        api_version="2025-03-01",
        query="&forceDelete=true",
    )

    assert response.status_code == 200
    assert "Azure-AsyncOperation" not in response.headers
    gone = raw(lab, "GET", extension_path(lab, "ipc-panel-0002"), api_version="2025-03-01")
    assert gone.status_code == 404


def test_auto_upgrade_installs_the_newest_release_and_pins_no_version(lab: LabHandle) -> None:
    body = {"properties": {"extensionType": "microsoft.flux", "autoUpgradeMinorVersion": True}}

    installed = (
        extensions_client(lab)
        .extensions.begin_create(group_of(lab, NEW_PANEL), *ON_ARC, NEW_PANEL, "flux", body)
        .result()
    )

    assert props(installed).version is None
    assert props(installed).current_version == flux_releases.newest("Stable") == "1.24.1"
    assert props(installed).release_train == "Stable"


def test_a_version_with_auto_upgrade_is_refused_at_once(lab: LabHandle) -> None:
    body = {
        "properties": {"extensionType": "microsoft.flux", "autoUpgradeMinorVersion": True, "version": PINNED}
    }

    refused = raw(lab, "PUT", extension_path(lab, NEW_PANEL), api_version="2025-03-01", body=body)

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "BadRequest"
    assert raw(lab, "GET", extension_path(lab, NEW_PANEL), api_version="2025-03-01").status_code == 404


def test_an_unreleased_version_fails_the_operation_in_the_rps_words(lab: LabHandle) -> None:
    body = {
        "properties": {
            "extensionType": "microsoft.flux",
            "autoUpgradeMinorVersion": False,
            "version": "1.99.0",
        }
    }
    client = extensions_client(lab)

    with pytest.raises(HttpResponseError) as failed:
        client.extensions.begin_create(group_of(lab, NEW_PANEL), *ON_ARC, NEW_PANEL, "flux", body).result()
    after = client.extensions.get(group_of(lab, NEW_PANEL), *ON_ARC, NEW_PANEL, "flux")

    assert "Failed to resolve the extension version from the given values." in str(failed.value)
    assert props(after).provisioning_state == "Failed"
    assert props(after).current_version is None
    assert props(after).error_info is not None
    assert props(after).error_info.code == "ExtensionOperationFailed"
    assert props(after).error_info.message == (
        "The extension operation failed with the following error: "
        "Failed to resolve the extension version from the given values."
    )
    assert truth(lab, NEW_PANEL)["agents_running"] is False


def test_an_upgrade_that_skips_the_interim_versions_fails_and_stepping_through_them_works(
    lab: LabHandle,
) -> None:
    client = extensions_client(lab)
    panel, group = "ipc-panel-0001", group_of(lab, "ipc-panel-0001")
    assert truth(lab, panel)["extension"]["currentVersion"] == "1.16.3"

    with pytest.raises(HttpResponseError) as skipped:
        client.extensions.begin_update(
            group, *ON_ARC, panel, "flux", {"properties": {"version": "1.23.0"}}
        ).result()
    blocked = client.extensions.get(group, *ON_ARC, panel, "flux")
    interim = client.extensions.begin_update(
        group, *ON_ARC, panel, "flux", {"properties": {"version": "1.21.1"}}
    ).result()
    final = client.extensions.begin_update(
        group, *ON_ARC, panel, "flux", {"properties": {"version": "1.23.0"}}
    ).result()

    assert "1.21.0 or higher" in str(skipped.value)
    assert (props(blocked).provisioning_state, props(blocked).current_version) == ("Failed", "1.16.3")
    assert props(blocked).error_info is not None
    assert props(blocked).error_info.code == "ExtensionOperationFailed"
    assert (props(interim).provisioning_state, props(interim).current_version) == ("Succeeded", "1.21.1")
    assert props(interim).error_info is None, "a successful operation clears the error"
    assert (props(final).provisioning_state, props(final).current_version) == ("Succeeded", "1.23.0")


def test_a_failed_operation_reads_failed_with_its_error_in_the_operation_status(lab: LabHandle) -> None:
    body = {
        "properties": {
            "extensionType": "microsoft.flux",
            "autoUpgradeMinorVersion": False,
            "version": "0.0.1",
        }
    }
    accepted = raw(lab, "PUT", extension_path(lab, NEW_PANEL), api_version="2024-11-01", body=body)
    status_url = accepted.headers["Azure-AsyncOperation"]
    lab.control("POST", "/_lab/clock/advance", {"seconds": 5})

    token_path = status_url.split(lab.endpoint("arm"), 1)[1].split("?", 1)[0]
    status = raw(lab, "GET", token_path, api_version="2024-11-01").json()

    assert accepted.status_code == 201
    assert accepted.headers["Operation-Location"] == status_url
    assert accepted.headers["x-ms-async-operation-timeout"] == "PT48H"
    assert status["status"] == "Failed"
    assert status["error"]["code"] == "ExtensionOperationFailed"
    assert status["id"].endswith(f"/extensions/flux/operations/{status['name']}")


def test_a_patch_merges_settings_turns_the_image_controllers_on_and_an_identical_patch_is_a_200(
    lab: LabHandle,
) -> None:
    client = extensions_client(lab)
    panel, group = "ipc-panel-0002", group_of(lab, "ipc-panel-0002")
    enable = {
        "properties": {
            "configurationSettings": {
                "image-automation-controller.enabled": "true",
                "image-reflector-controller.enabled": "true",
            }
        }
    }
    assert truth(lab, panel)["image_controllers"] == {
        "image-automation-controller": False,
        "image-reflector-controller": False,
    }

    patched = client.extensions.begin_update(group, *ON_ARC, panel, "flux", enable).result()
    same = raw(lab, "PATCH", extension_path(lab, panel), api_version="2025-03-01", body=enable)
    removed = raw(
        lab,
        "PATCH",
        extension_path(lab, panel),
        api_version="2025-03-01",
        body={"properties": {"configurationSettings": {"image-reflector-controller.enabled": None}}},
    )

    settings = props(patched).configuration_settings
    assert settings["multiTenancy.enforce"] == "false", "settings not in the patch stay"
    assert settings["image-automation-controller.enabled"] == "true"
    assert (same.status_code, "Azure-AsyncOperation" in same.headers) == (200, False)
    assert removed.status_code == 202
    assert "image-reflector-controller.enabled" not in removed.json()["properties"]["configurationSettings"]
    assert truth(lab, panel)["image_controllers"] == {
        "image-automation-controller": True,
        "image-reflector-controller": False,
    }


@pytest.mark.parametrize(
    ("api_version", "expected_properties", "expected_top"),
    [
        ("2023-05-01", PROPERTIES_2023, TOP_LEVEL_2023),
        ("2024-11-01", PROPERTIES_2023, TOP_LEVEL_2023),
        ("2025-03-01", PROPERTIES_2025, TOP_LEVEL_2023 | {"managedBy"}),
    ],
)
def test_every_extension_property_is_present_null_where_unset_in_each_api_version(
    lab: LabHandle, api_version: str, expected_properties: set[str], expected_top: set[str]
) -> None:
    extensions_client(lab).extensions.begin_create(
        group_of(lab, NEW_PANEL), *ON_ARC, NEW_PANEL, "flux", FLUX_BODY
    ).result()

    document = raw(lab, "GET", extension_path(lab, NEW_PANEL), api_version=api_version)
    listed = raw(lab, "GET", extension_path(lab, NEW_PANEL).rsplit("/", 1)[0], api_version=api_version)

    body = document.json()
    assert set(body) == expected_top
    assert set(body["properties"]) == expected_properties
    properties = body["properties"]
    assert properties["scope"] == {"cluster": {"releaseNamespace": "flux-system"}, "namespace": None}
    assert (properties["errorInfo"], properties["packageUri"], properties["aksAssignedIdentity"]) == (
        None,
        None,
        None,
    )
    assert properties["configurationProtectedSettings"] == {}
    assert body["plan"] is None
    assert listed.json()["value"] == [body]
    for response in (document, listed):
        assert "s3cr3t-value-never-echoed" not in response.text
    assert "s3cr3t-value-never-echoed" not in str(lab.state())
