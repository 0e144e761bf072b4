"""The image-automation runner as the lab seeds it (issue 15): one cluster, found by its tag, that runs the
image controllers and holds the write PAT, while every factory panel holds the read-only fleet PAT.

Driven with the real ARM and Key Vault SDKs against a lab of its own; each test starts from a reset lab.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from tests.lab.armkit import (
    CONFIG,
    ON_ARC,
    clusters_client,
    extensions_client,
    flux_client,
    subscription,
    tick,
)
from tests.labkit import LabHandle, LabProcess

pytestmark = pytest.mark.lab

RUNNER = "ipc-automation-hub"
RUNNER_GROUP = "rg-ipc-platform-arc"
ROLE_TAG = {"fluxfleet-role": "image-automation"}
IMAGE_SETTINGS = ("image-automation-controller.enabled", "image-reflector-controller.enabled")


@pytest.fixture(scope="module")
def runner_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    state_dir: Path = tmp_path_factory.mktemp("runner")
    with (
        LabProcess(state_dir, clusters=6, subscriptions=2, azurite=False) as handle,
        handle.applied_env(),
    ):
        yield handle


@pytest.fixture
def lab(runner_lab: LabHandle) -> LabHandle:
    runner_lab.control("POST", "/_lab/reset")
    return runner_lab


def clusters(lab: LabHandle) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in lab.state()["clusters"]}


def pat_named(lab: LabHandle, display_name: str) -> dict[str, Any]:
    return next(pat for pat in lab.state()["pats"] if pat["displayName"] == display_name)


def test_the_runner_is_one_tagged_cluster_in_the_shared_arc_group_outside_the_panel_count(
    lab: LabHandle,
) -> None:
    listed = [
        c
        for sub in lab.doc["subscriptions"]
        for c in clusters_client(lab, sub).connected_cluster.list_by_subscription()
    ]
    runners = [c for c in listed if (c.tags or {}).get("fluxfleet-role") == "image-automation"]

    assert [c.name for c in runners] == [RUNNER]
    [runner] = runners
    assert runner.id is not None
    assert runner.id.split("/")[2] == subscription(lab, 0)
    assert runner.id.split("/")[4] == RUNNER_GROUP
    assert dict(runner.tags or {}) == ROLE_TAG, "no ring, no site: ring and site selectors never pick it"
    assert runner.connectivity_status == "Connected"
    assert len(listed) == 6 + 1, "--clusters 6 are the factory panels; the runner comes on top"
    assert lab.doc["runner"] == {"name": RUNNER, "id": runner.id}


def test_only_the_runner_runs_the_image_controllers(lab: LabHandle) -> None:
    client = extensions_client(lab)
    runner_extension = client.extensions.get(RUNNER_GROUP, *ON_ARC, RUNNER, "flux")
    truth = clusters(lab)

    assert runner_extension.properties is not None
    settings = runner_extension.properties.configuration_settings or {}
    assert {key: settings.get(key) for key in IMAGE_SETTINGS} == dict.fromkeys(IMAGE_SETTINGS, "true")
    assert truth[RUNNER]["image_controllers"] == {
        "image-automation-controller": True,
        "image-reflector-controller": True,
    }
    factory = [c for c in truth.values() if not c["runner"]]
    assert len(factory) == 6
    for panel in factory:
        assert panel["image_controllers"] == {
            "image-automation-controller": False,
            "image-reflector-controller": False,
        }
        assert not any(
            panel["extension"]["configurationSettings"].get(key) == "true" for key in IMAGE_SETTINGS
        )


def test_the_runner_applies_workloads_and_image_automation_and_factory_panels_only_workloads(
    lab: LabHandle,
) -> None:
    runner_config = flux_client(lab).flux_configurations.get(RUNNER_GROUP, *ON_ARC, RUNNER, CONFIG)
    truth = clusters(lab)

    assert runner_config.properties is not None
    kustomizations = runner_config.properties.kustomizations or {}
    assert {name: k.path for name, k in kustomizations.items()} == {
        "workloads": "./kubernetes/workloads",
        "image-automation": "./kubernetes/flux-system/image-automation",
    }
    assert runner_config.properties.compliance_state == "Compliant"
    assert truth[RUNNER]["configuration"]["kustomizations"] == {
        "workloads": "./kubernetes/workloads",
        "image-automation": "./kubernetes/flux-system/image-automation",
    }
    for panel in (c for c in truth.values() if not c["runner"]):
        assert panel["configuration"]["kustomizations"] == {"workloads": "./kubernetes/workloads"}


def test_the_runner_holds_a_pat_that_can_push_and_no_factory_panel_does(lab: LabHandle) -> None:
    truth = clusters(lab)
    fleet, automation = pat_named(lab, "flux-gitops (fleet)"), pat_named(lab, "flux-image-automation")

    assert (fleet["scope"], automation["scope"]) == ("vso.code", "vso.code_write")
    assert truth[RUNNER]["credential_fingerprint"] == automation["fingerprint"]
    assert truth[RUNNER]["credential_can_push"] is True
    factory = [c for c in truth.values() if not c["runner"]]
    assert {c["credential_fingerprint"] for c in factory} == {fleet["fingerprint"]}
    assert not any(c["credential_can_push"] for c in factory), "no factory panel can push"


def test_key_vault_holds_both_pats_with_expiry_and_their_authorization_ids(lab: LabHandle) -> None:
    vault = SecretClient(
        lab.env["FLUXFLEET_KEYVAULT_URL"], ManagedIdentityCredential(), verify_challenge_resource=False
    )
    expected = {
        lab.env["FLUXFLEET_PAT_SECRET_NAME"]: pat_named(lab, "flux-gitops (fleet)"),
        lab.env["FLUXFLEET_AUTOMATION_PAT_SECRET_NAME"]: pat_named(lab, "flux-image-automation"),
    }
    fingerprints = {
        name: secret["versions"][-1]["fingerprint"]
        for name, secret in lab.state()["keyvault"]["secrets"].items()
    }

    assert lab.env["FLUXFLEET_AUTOMATION_PAT_SECRET_NAME"] == "flux-gitops-automation-pat"
    for name, pat in expected.items():
        secret = vault.get_secret(name)
        assert secret.properties.expires_on is not None
        assert secret.properties.tags is not None
        assert secret.properties.tags["authorizationId"] == pat["authorizationId"]
        assert secret.properties.tags["scope"] == pat["scope"]
        assert fingerprints[name] == pat["fingerprint"], "the vault holds that very PAT"


def test_rolling_a_new_fleet_pat_out_to_the_factory_panels_never_touches_the_runner(lab: LabHandle) -> None:
    runner_before = clusters(lab)[RUNNER]
    minted = lab.control("POST", "/_lab/devops/pats", {"scope": "vso.code", "days": 90}, expect=201)
    encoded = base64.b64encode(minted["token"].encode()).decode()
    patch = {"properties": {"configurationProtectedSettings": {"httpsKey": encoded}}}
    for panel in (c for c in clusters(lab).values() if not c["runner"]):
        flux_client(lab, panel["subscription"]).flux_configurations.begin_update(
            panel["resourceGroup"], *ON_ARC, panel["name"], CONFIG, patch, polling=False
        ).result()

    tick(lab)

    after = clusters(lab)
    new_fingerprint = next(
        p["fingerprint"] for p in lab.state()["pats"] if p["authorizationId"] == minted["authorizationId"]
    )
    factory = [c for c in after.values() if not c["runner"]]
    assert {c["credential_fingerprint"] for c in factory} == {new_fingerprint}
    assert all(c["last_fetch"]["ok"] for c in factory)
    assert after[RUNNER]["credential_fingerprint"] == runner_before["credential_fingerprint"]
    assert after[RUNNER]["config_generation"] == runner_before["config_generation"]
    assert after[RUNNER]["credential_can_push"] is True
    assert minted["token"] not in str(lab.state())


def test_no_runner_and_unconfigured_panels_are_lab_options(tmp_path: Path) -> None:
    with LabProcess(
        tmp_path / "lab", clusters=3, subscriptions=1, unconfigured=2, runner=False, azurite=False
    ) as lab:
        state = {c["name"]: c for c in lab.state()["clusters"]}

    assert sorted(state) == [f"ipc-panel-000{i}" for i in range(1, 6)]
    assert lab.doc["runner"] is None
    assert [name for name, c in state.items() if c["onboarded"]] == [
        "ipc-panel-0001",
        "ipc-panel-0002",
        "ipc-panel-0003",
    ]
    for name in ("ipc-panel-0004", "ipc-panel-0005"):
        assert (state[name]["extension"], state[name]["configuration"]) == (None, None)
        assert state[name]["online"] is True
        assert {"ring", "site"} <= set(state[name]["tags"]), "the same layout rules as configured panels"
