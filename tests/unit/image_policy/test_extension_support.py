"""Which `microsoft.flux` extension versions can run which image automation objects and features.

Facts: the extension's release notes (MicrosoftDocs/azure-management-docs
`articles/azure-arc/kubernetes/flux-gitops-release-notes.md`, and `extensions-release.md` history) and
the served versions in the image controllers' CRDs at each tag (see `extension_support`).
"""

from __future__ import annotations

import pytest

from shared.image_policy import (
    FIRST_EXTENSION_WITH_IMAGE_V1,
    RELEASES,
    dry_run_error,
    parse_image_objects,
    release_for,
    served_api_versions,
    supports_digest_reflection,
    supports_digest_setter,
    supports_policy_suspend,
    unserved_objects,
)
from shared.image_policy.extension_support import version_tuple

V1_OBJECTS = """\
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {name: app, namespace: flux-system}
spec: {image: registry.example/app, interval: 5m}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata: {name: zeta, namespace: flux-system}
spec: {imageRepositoryRef: {name: app}, policy: {semver: {range: ">=1.0.0"}}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata: {name: alpha, namespace: flux-system}
spec: {imageRepositoryRef: {name: app}, policy: {semver: {range: ">=1.0.0"}}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {name: fleet, namespace: flux-system}
spec: {interval: 5m, sourceRef: {kind: GitRepository, name: repo}, git: {checkout: {ref: {branch: main}}}}
"""


def test_the_release_table_is_in_version_order_without_duplicates() -> None:
    versions = [version_tuple(release.version) for release in RELEASES]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)


def test_1_23_0_is_the_first_release_with_flux_2_7_and_the_v1_image_controllers() -> None:
    first = release_for(FIRST_EXTENSION_WITH_IMAGE_V1)
    assert first is not None
    assert (first.flux, first.image_reflector_controller, first.image_automation_controller) == (
        "2.7.5",
        "1.0.4",
        "1.0.4",
    )
    before = release_for("1.22.2")
    assert before is not None
    assert (before.flux, before.image_reflector_controller, before.image_automation_controller) == (
        "2.6.4",
        "0.35.2",
        "0.41.2",
    )


@pytest.mark.parametrize(
    ("extension", "kind", "served"),
    [
        ("1.23.0", "ImagePolicy", {"v1", "v1beta2"}),
        ("1.24.1", "ImageUpdateAutomation", {"v1", "v1beta2"}),
        ("1.22.2", "ImagePolicy", {"v1beta1", "v1beta2"}),
        ("1.16.3", "ImageRepository", {"v1beta1", "v1beta2"}),
        ("1.16.3", "ImageUpdateAutomation", {"v1beta1", "v1beta2"}),
        # IAC v0.36.1 (Flux 2.1) served ImageUpdateAutomation v1beta1 only.
        ("1.10.0", "ImageUpdateAutomation", {"v1beta1"}),
        # IRC v0.26.1 already served v1beta2 (from v0.25.0), IRC v0.24.0 did not.
        ("1.7.3", "ImagePolicy", {"v1beta1", "v1beta2"}),
        ("1.7.0", "ImageRepository", {"v1beta1"}),
        # Flux 0.33 (1.6.0) still served the alpha APIs; IAC v0.27.0 (1.6.3) dropped them.
        ("1.6.0", "ImagePolicy", {"v1alpha1", "v1alpha2", "v1beta1"}),
        ("1.6.1", "ImageUpdateAutomation", {"v1alpha1", "v1alpha2", "v1beta1"}),
        ("1.6.4", "ImageUpdateAutomation", {"v1beta1"}),
    ],
)
def test_each_extension_serves_the_image_api_versions_its_controllers_define(
    extension: str, kind: str, served: set[str]
) -> None:
    assert served_api_versions(extension, kind) == {f"image.toolkit.fluxcd.io/{v}" for v in served}


def test_an_unlisted_patch_version_ships_what_the_listed_release_before_it_ships() -> None:
    # The lab seeds 1.13.4, which the notes never list: it runs what 1.13.1 runs (Flux 2.4.0).
    release = release_for("1.13.4")
    assert release is not None
    assert release.version == "1.13.1"
    assert release.flux == "2.4.0"


def test_a_version_older_than_the_table_serves_nothing_known() -> None:
    assert release_for("1.2.0") is None
    assert served_api_versions("1.2.0", "ImagePolicy") == frozenset()


def test_policy_suspend_exists_from_the_flux_2_7_controllers_only() -> None:
    assert supports_policy_suspend("1.23.0")
    assert not supports_policy_suspend("1.22.2")


def test_digest_reflection_needs_irc_0_35_and_the_digest_setter_iac_0_41() -> None:
    assert supports_digest_reflection("1.17.2")
    assert supports_digest_setter("1.17.2")
    assert not supports_digest_reflection("1.16.12")
    assert not supports_digest_setter("1.16.12")


def test_v1_objects_cannot_be_applied_before_1_23_0_and_flux_says_so_in_apply_order() -> None:
    objects = parse_image_objects({"image-automation/objects.yaml": V1_OBJECTS})
    assert unserved_objects("1.23.0", objects) == []
    unserved = unserved_objects("1.16.3", objects)
    # fluxcd/pkg ssa order: kind, then namespace, then name.
    assert [(item.kind, item.name) for item in unserved] == [
        ("ImagePolicy", "alpha"),
        ("ImagePolicy", "zeta"),
        ("ImageRepository", "app"),
        ("ImageUpdateAutomation", "fleet"),
    ]
    assert dry_run_error(unserved[0]) == (
        "ImagePolicy/flux-system/alpha dry-run failed: "
        'no matches for kind "ImagePolicy" in version "image.toolkit.fluxcd.io/v1"\n'
    )
