"""Reading image automation objects from repository YAML (reference §1, §5, §9.1)."""

from __future__ import annotations

import pytest

from shared.image_policy import (
    DEFAULT_EXCLUSION_LIST,
    ImageObjects,
    parse_duration,
    parse_image_objects,
    select_latest,
)

REPOSITORIES = """\
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata:
  name: opcua-gateway
  namespace: flux-system
spec:
  image: myacr.azurecr.io/ipc/opcua-gateway
  interval: 5m
  provider: azure
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata:
  name: vision
spec:
  image: MyAcr.azurecr.io/ipc/vision
  interval: 1m30s
  exclusionList: ["^dev-"]
  suspend: true
"""

POLICIES = """\
# one comment line before the first document
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata:
  name: opcua-gateway
  namespace: flux-system
  labels: {ring: canary}
spec:
  imageRepositoryRef:
    name: opcua-gateway
  policy:
    semver:
      range: ">=1.0.0"
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata:
  name: cross
  namespace: apps
spec:
  imageRepositoryRef:
    name: opcua-gateway
    namespace: flux-system
  digestReflectionPolicy: IfNotPresent
  policy:
    alphabetical: {}
"""

AUTOMATION = """\
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata:
  name: ipc-images
  namespace: flux-system
spec:
  interval: 30m
  sourceRef:
    kind: GitRepository
    name: ipc-platform-config
  git:
    checkout:
      ref:
        branch: main
    commit:
      author:
        email: fluxcdbot@example.com
        name: fluxcdbot
      messageTemplate: "Update images"
  update:
    path: ./kubernetes/workloads
    strategy: Setters
  policySelector:
    matchLabels:
      ring: canary
"""

OTHER = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: not-an-image-object
---
apiVersion: image.toolkit.fluxcd.io/v1beta1
kind: ImagePolicy
metadata:
  name: ancient
"""


def _objects() -> ImageObjects:
    return parse_image_objects(
        {
            "kubernetes/flux-system/image-automation/image-repositories.yaml": REPOSITORIES,
            "kubernetes/flux-system/image-automation/image-policies.yaml": POLICIES,
            "kubernetes/flux-system/image-automation/image-update-automation.yaml": AUTOMATION,
            "kubernetes/other.yaml": OTHER,
        }
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60.0), ("5m30s", 330.0), ("1h", 3600.0), ("1.5h", 5400.0), ("500ms", 0.5), ("1h0m10s", 3610.0)],
)
def test_flux_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "1d", "-1m", "1m 30s", "1.m", "m"])
def test_durations_outside_the_crd_pattern_are_rejected(text: str) -> None:
    assert parse_duration(text) is None


def test_repositories_carry_defaults_and_record_their_api_version() -> None:
    gateway, vision = _objects().repositories
    assert (gateway.namespace, gateway.name, gateway.interval_seconds) == (
        "flux-system",
        "opcua-gateway",
        300.0,
    )
    assert gateway.exclusion_list == DEFAULT_EXCLUSION_LIST
    assert gateway.exclusion_list_is_default
    assert (gateway.provider, gateway.is_deprecated_api) == ("azure", False)
    assert vision.namespace == "default"
    assert (vision.exclusion_list, vision.exclusion_list_is_default) == (("^dev-",), False)
    assert (vision.suspend, vision.interval_seconds) == (True, 90.0)
    assert vision.is_deprecated_api
    assert vision.image == "MyAcr.azurecr.io/ipc/vision"
    assert vision.canonical_image == "myacr.azurecr.io/ipc/vision"


def test_policies_default_the_repository_namespace_to_their_own() -> None:
    objects = _objects()
    gateway, cross = objects.policies
    assert gateway.repository_ref == ("flux-system", "opcua-gateway")
    assert cross.repository_ref == ("flux-system", "opcua-gateway")
    assert (gateway.digest_reflection_policy, cross.digest_reflection_policy) == ("Never", "IfNotPresent")
    assert objects.repository_for(cross) is objects.repositories[0]
    assert select_latest(gateway.spec, ["1.0.0", "1.1.0-rc.1", "0.9.0"]) == "1.0.0"


def test_automation_defaults_push_branch_and_reads_update_path() -> None:
    (automation,) = _objects().automations
    assert automation.interval_seconds == 1800.0
    assert (automation.checkout_branch, automation.push_branch) == ("main", "main")
    assert (automation.update_path, automation.strategy) == ("./kubernetes/workloads", "Setters")
    assert automation.source_ref == ("GitRepository", "flux-system", "ipc-platform-config")
    assert (automation.commit_author_name, automation.commit_author_email) == (
        "fluxcdbot",
        "fluxcdbot@example.com",
    )
    assert automation.commit_message_template == "Update images"


def test_policy_selector_and_namespace_decide_which_policies_an_automation_uses() -> None:
    objects = _objects()
    (automation,) = objects.automations
    gateway, cross = objects.policies
    assert automation.selects(gateway)
    assert not automation.selects(cross)  # another namespace, whatever its labels


def test_unsupported_api_versions_are_reported_and_other_kinds_ignored() -> None:
    objects = _objects()
    assert [problem.message for problem in objects.problems] == [
        "ImagePolicy default/ancient: unsupported apiVersion image.toolkit.fluxcd.io/v1beta1"
    ]
    assert all(policy.name != "not-an-image-object" for policy in objects.policies)


def test_broken_yaml_is_a_problem_not_an_exception() -> None:
    objects = parse_image_objects({"bad.yaml": "a: [unclosed", "good.yaml": REPOSITORIES})
    assert [problem.path for problem in objects.problems] == ["bad.yaml"]
    assert len(objects.repositories) == 2


def test_missing_interval_is_reported() -> None:
    text = (
        "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {name: r}\nspec: {image: x}"
    )
    objects = parse_image_objects({"r.yaml": text})
    assert objects.repositories[0].interval_seconds is None
    assert objects.problems[0].message == "ImageRepository default/r: spec.interval is required"
