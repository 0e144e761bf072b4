"""Drift against ARM's real shapes: the field, want and have, and a repair that writes only that field."""

from __future__ import annotations

from pathlib import Path

from shared.models import ClusterId, Panel, SubscriptionId
from shared.services.conformance.declaration import Desired, parse_declaration
from shared.services.conformance.drift import assess, configuration_body, extension_body, upgrade_path
from tests.unit.conformance.arm_shapes import GIT_URL, extension, flux_configuration, kustomization

REPO_FILE = Path(__file__).resolve().parents[3] / "kubernetes" / "fleet" / "flux.yaml"


def desired(**tags: str) -> Desired:
    tags = tags or {"ring": "canary"}
    panel = Panel(
        id=ClusterId("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/p"),
        name="p",
        subscription=SubscriptionId("s"),
        resource_group="rg",
        tags=tags,
    )
    return parse_declaration(REPO_FILE.read_text()).desired_for(panel, default_url=GIT_URL)


def test_a_panel_as_the_operator_set_it_up_is_conformant() -> None:
    verdict = assess(desired(), extension=extension(), configuration=flux_configuration())
    assert verdict.state == "conformant"
    assert verdict.differences == ()


def test_read_only_and_undeclared_fields_never_drift() -> None:
    config = flux_configuration(
        repositoryPublicKey="ssh-rsa OTHER", suspend=True, complianceState="Non-Compliant", statuses=[]
    )
    verdict = assess(
        desired(),
        extension=extension(settings={"multiTenancy.enforce": "false", "workloadIdentity.enable": "true"}),
        configuration=config,
    )
    assert verdict.state == "conformant"


def test_az_flux_update_interval_30m_is_drift_of_that_field_repaired_by_it_alone() -> None:
    config = flux_configuration(gitRepository__syncIntervalInSeconds=1800)
    verdict = assess(desired(), extension=extension(), configuration=config)
    assert verdict.state == "drifted"
    assert [d.to_json() for d in verdict.differences] == [
        {"field": "configuration.gitRepository.syncIntervalInSeconds", "want": 300, "have": 1800}
    ]
    assert verdict.configuration_patch == {"gitRepository": {"syncIntervalInSeconds": 300}}
    assert verdict.extension_patch == {}


def test_a_kustomization_drift_patches_that_kustomization_field() -> None:
    config = flux_configuration(
        kustomizations={
            "workloads": {**kustomization("workloads", "./kubernetes/workloads"), "prune": False},
            "debug": kustomization("debug", "./kubernetes/debug"),
        }
    )
    verdict = assess(desired(), extension=extension(), configuration=config)
    fields = {d.field for d in verdict.differences}
    assert fields == {"configuration.kustomizations.workloads.prune", "configuration.kustomizations.debug"}
    assert verdict.configuration_patch == {"kustomizations": {"workloads": {"prune": True}, "debug": None}}


def test_the_runner_without_its_automation_kustomization_is_drifted() -> None:
    runner = desired(**{"fluxfleet-role": "image-automation"})
    settings = {
        "multiTenancy.enforce": "false",
        "image-automation-controller.enabled": "true",
        "image-reflector-controller.enabled": "true",
    }
    verdict = assess(runner, extension=extension(settings=settings), configuration=flux_configuration())
    assert verdict.state == "drifted"
    assert verdict.configuration_patch["kustomizations"]["image-automation"]["path"] == (
        "./kubernetes/flux-system/image-automation"
    )


def test_extension_settings_drift_patches_only_the_declared_key() -> None:
    verdict = assess(
        desired(),
        extension=extension(settings={"multiTenancy.enforce": "true", "x": "y"}),
        configuration=flux_configuration(),
    )
    assert verdict.state == "drifted"
    assert verdict.extension_patch == {"configurationSettings": {"multiTenancy.enforce": "false"}}


def test_no_extension_or_no_configuration_is_not_onboarded() -> None:
    assert assess(desired(), extension=None, configuration=None).state == "not-onboarded"
    assert assess(desired(), extension=extension(), configuration=None).state == "not-onboarded"


def test_an_old_extension_is_outdated_with_its_upgrade_path() -> None:
    verdict = assess(desired(), extension=extension(version="1.13.1"), configuration=flux_configuration())
    assert verdict.state == "extension-outdated"
    assert verdict.upgrade_path == ("1.16.3",)
    assert verdict.differences[0].field == "extension.currentVersion"


def test_an_upgrade_past_1_23_from_below_1_21_steps_through_1_2x() -> None:
    want = desired().extension
    from dataclasses import replace

    to_124 = replace(want, minimum_version="1.24.0", version="1.24.0")
    path = upgrade_path(to_124, "1.16.3")
    assert len(path) == 2
    assert path[-1] == "1.24.0"
    assert path[0].startswith(("1.21.", "1.22."))
    assert upgrade_path(to_124, "1.22.2") == ("1.24.0",)


def test_an_offline_panel_is_unreachable_but_still_shows_its_differences() -> None:
    config = flux_configuration(gitRepository__syncIntervalInSeconds=1800)
    verdict = assess(desired(), extension=extension(), configuration=config, offline=True)
    assert verdict.state == "unreachable"
    assert verdict.differences


def test_scope_or_namespace_drift_needs_a_reset() -> None:
    verdict = assess(desired(), extension=extension(), configuration=flux_configuration(namespace="default"))
    assert verdict.needs_reset == ("configuration.namespace",)
    assert "namespace" not in verdict.configuration_patch


def test_bodies_carry_the_declaration_and_keep_a_panels_own_extension_settings() -> None:
    body = configuration_body(desired().configuration, https_key="c2VjcmV0")
    props = body["properties"]
    assert props["gitRepository"]["syncIntervalInSeconds"] == 300
    assert props["kustomizations"]["workloads"] == {
        "path": "./kubernetes/workloads",
        "prune": True,
        "syncIntervalInSeconds": 300,
    }
    assert props["configurationProtectedSettings"] == {"httpsKey": "c2VjcmV0"}
    ext = extension_body(
        desired().extension, version="1.16.3", current_settings={"workloadIdentity.enable": "true"}
    )
    assert ext["properties"]["configurationSettings"] == {
        "workloadIdentity.enable": "true",
        "multiTenancy.enforce": "false",
    }
    assert ext["properties"]["version"] == "1.16.3"
