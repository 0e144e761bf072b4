"""Digest reflection and the interval rules, rule by rule as image-reflector-controller v1.0.4 has them.

Each test names the lines of fluxcd/image-reflector-controller v1.0.4 it follows:
`internal/controller/imagepolicy_controller.go` (`updateImageRefs`, L398-443) and
`api/v1/imagepolicy_types.go` (CEL rules L30-31, `GetInterval` L224-234).
"""

from __future__ import annotations

import pytest

from shared.image_policy import (
    INTERVAL_NOT_ACCEPTED,
    INTERVAL_REQUIRED,
    ImagePolicy,
    LatestRef,
    compute_rewrites,
    digest_interval_seconds,
    digest_lookup_needed,
    digest_would_change,
    find_markers,
    interval_rule_violation,
    judge_digest,
    next_latest_ref,
    parse_image_objects,
    ref_in_markers,
    reflect_digest,
    reflection_policy_of,
    uses_digest,
)

IMAGE = "registry.example/ipc/app"
OLD = "sha256:" + "1" * 64
NEW = "sha256:" + "2" * 64


def ref(tag: str, digest: str | None = None, name: str = IMAGE) -> LatestRef:
    return LatestRef(name, tag, digest)


class Registry:
    """A digest lookup that records every HEAD Flux would send."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.asked: list[str] = []

    def __call__(self, selected: LatestRef) -> str:
        self.asked.append(f"{selected.name}:{selected.tag}")
        return self.digest


# --- Never (the default): the digest stays empty and the registry is never asked ---------------------


def test_never_reflects_no_digest_and_never_asks_the_registry() -> None:
    registry = Registry(NEW)
    assert reflect_digest("Never", ref("v1", OLD), ref("v2"), registry) == ref("v2")
    assert registry.asked == []


def test_an_unset_reflection_policy_means_never() -> None:
    assert reflection_policy_of({"policy": {"semver": {"range": ">=1"}}}) == "Never"
    assert reflection_policy_of({"digestReflectionPolicy": ""}) == "Never"


# --- IfNotPresent: looked up only without a usable previous digest (L412-421) -----------------------


def test_if_not_present_looks_up_when_there_is_no_previous_ref() -> None:
    registry = Registry(NEW)
    assert reflect_digest("IfNotPresent", None, ref("v1"), registry) == ref("v1", NEW)
    assert registry.asked == [f"{IMAGE}:v1"]


def test_if_not_present_looks_up_when_the_tag_changed() -> None:
    registry = Registry(NEW)
    assert reflect_digest("IfNotPresent", ref("v1", OLD), ref("v2"), registry) == ref("v2", NEW)
    assert registry.asked == [f"{IMAGE}:v2"]


def test_if_not_present_looks_up_when_the_image_name_changed() -> None:
    registry = Registry(NEW)
    moved = ref("v1", OLD, name="other.example/ipc/app")
    assert reflect_digest("IfNotPresent", moved, ref("v1"), registry) == ref("v1", NEW)


def test_if_not_present_looks_up_when_the_previous_digest_is_empty() -> None:
    registry = Registry(NEW)
    assert reflect_digest("IfNotPresent", ref("v1"), ref("v1"), registry) == ref("v1", NEW)
    assert registry.asked == [f"{IMAGE}:v1"]


def test_if_not_present_keeps_the_digest_of_the_same_tag_even_when_the_registry_moved() -> None:
    registry = Registry(NEW)
    assert reflect_digest("IfNotPresent", ref("v1", OLD), ref("v1"), registry) == ref("v1", OLD)
    assert registry.asked == []


# --- Always: looked up on every reconcile (L423-424) -----------------------------------------------


def test_always_looks_up_on_every_reconcile_and_takes_the_new_digest() -> None:
    registry = Registry(NEW)
    assert reflect_digest("Always", ref("v1", OLD), ref("v1"), registry) == ref("v1", NEW)
    assert registry.asked == [f"{IMAGE}:v1"]


def test_a_failed_lookup_propagates_so_the_caller_keeps_the_old_status() -> None:
    def unreachable(_: LatestRef) -> str:
        raise ConnectionError("registry unreachable")

    with pytest.raises(ConnectionError):
        reflect_digest("Always", ref("v1", OLD), ref("v1"), unreachable)


def test_the_status_changes_only_when_the_reflected_ref_differs() -> None:
    previous = ref("v1", OLD)
    assert next_latest_ref(previous, ref("v1", OLD)) is previous
    assert next_latest_ref(previous, ref("v1", NEW)) == ref("v1", NEW)
    assert next_latest_ref(None, ref("v1")) == ref("v1")


# --- the verdict's predicate: does a re-pushed tag change the digest? ------------------------------


@pytest.mark.parametrize(
    ("policy", "changes"),
    [("Always", True), ("IfNotPresent", False), ("Never", False)],
)
def test_a_tag_pushed_again_with_new_content_changes_the_digest_only_under_always(
    policy: str, changes: bool
) -> None:
    previous = ref("v1", OLD if policy != "Never" else None)
    assert digest_would_change(policy, previous, ref("v1"), NEW) is changes


def test_the_same_digest_pushed_again_changes_nothing_under_always() -> None:
    assert digest_would_change("Always", ref("v1", OLD), ref("v1"), OLD) is False


def test_if_not_present_reflects_a_first_digest_for_a_policy_that_had_none() -> None:
    assert digest_would_change("IfNotPresent", ref("v1"), ref("v1"), NEW) is True


# --- interval: only with Always, and then required (CEL L30-31, GetInterval L224-234) -------------


def _policy(spec_lines: str) -> ImagePolicy:
    text = (
        "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: app\n"
        "  namespace: flux-system\nspec:\n  imageRepositoryRef:\n    name: app\n"
        "  policy:\n    semver:\n      range: '>=1.0.0'\n" + spec_lines
    )
    [policy] = parse_image_objects({"policy.yaml": text}).policies
    return policy


def test_always_requeues_on_its_interval() -> None:
    policy = _policy("  digestReflectionPolicy: Always\n  interval: 2m\n")
    assert digest_interval_seconds(policy) == 120.0
    assert interval_rule_violation(policy) is None


def test_always_with_a_zero_interval_requeues_every_ten_minutes() -> None:
    policy = _policy("  digestReflectionPolicy: Always\n  interval: 0s\n")
    assert digest_interval_seconds(policy) == 600.0


def test_the_other_policies_never_requeue_on_their_own() -> None:
    assert digest_interval_seconds(_policy("  digestReflectionPolicy: IfNotPresent\n")) == 0.0
    assert digest_interval_seconds(_policy("")) == 0.0


def test_always_without_an_interval_breaks_the_crd_rule() -> None:
    assert interval_rule_violation(_policy("  digestReflectionPolicy: Always\n")) == INTERVAL_REQUIRED


def test_an_interval_without_always_breaks_the_crd_rule() -> None:
    policy = _policy("  digestReflectionPolicy: IfNotPresent\n  interval: 5m\n")
    assert interval_rule_violation(policy) == INTERVAL_NOT_ACCEPTED
    assert interval_rule_violation(_policy("  interval: 5m\n")) == INTERVAL_NOT_ACCEPTED


def test_the_lookup_decision_matches_the_reflection() -> None:
    assert digest_lookup_needed("Always", ref("v1", OLD), ref("v1")) is True
    assert digest_lookup_needed("IfNotPresent", ref("v1", OLD), ref("v1")) is False
    assert digest_lookup_needed("Never", None, ref("v1")) is False


# --- the verdict: a tag pushed again with new content, judged from what Git holds ----------------------
PORT_IMAGE = "127.0.0.1:5000/ipc/app"  # a registry port must not be read as a tag


def _deployment(image_line: str) -> dict[str, str]:
    return {
        "app/deployment.yaml": (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  template:\n"
            "    spec:\n      containers:\n        - name: app\n" + image_line
        )
    }


WHOLE_IMAGE = _deployment(f'          image: {PORT_IMAGE}:v1@{OLD} # {{"$imagepolicy": "flux-system:app"}}\n')
TAG_ONLY = {
    "app/values.yaml": 'image:\n  repository: ipc/app\n  tag: v1 # {"$imagepolicy": "flux-system:app:tag"}\n'
}


def test_git_holds_the_tag_and_digest_a_whole_image_marker_carries() -> None:
    markers = find_markers(WHOLE_IMAGE)
    assert ref_in_markers(markers, PORT_IMAGE) == LatestRef(PORT_IMAGE, "v1", OLD)
    assert uses_digest(markers)


def test_git_holds_a_tag_without_digest_where_only_a_tag_marker_writes() -> None:
    markers = find_markers(TAG_ONLY)
    assert ref_in_markers(markers, PORT_IMAGE) == LatestRef(PORT_IMAGE, "v1", None)
    assert not uses_digest(markers)
    assert ref_in_markers([], PORT_IMAGE) is None


def _judge(spec_lines: str, extension: str | None = None) -> tuple[bool, str, list[str]]:
    """(digest changes, reason, the new marker values) for v1 pushed again as NEW over WHOLE_IMAGE."""
    policy = _policy(spec_lines)
    markers = find_markers(WHOLE_IMAGE)
    outcome = judge_digest(
        policy,
        selected=LatestRef(PORT_IMAGE, "v1"),
        pushed_digest=NEW,
        held=ref_in_markers(markers, PORT_IMAGE),
        extension_version=extension,
    )
    rewrites = compute_rewrites(markers, {("flux-system", "app"): outcome.latest})
    return outcome.digest_changes, outcome.reason, [rewrite.new for rewrite in rewrites]


def test_always_rolls_a_re_pushed_tag_out_within_its_interval_and_says_so() -> None:
    changes, reason, values = _judge("  digestReflectionPolicy: Always\n  interval: 1m\n")
    assert changes is True
    assert values == [f"{PORT_IMAGE}:v1@{NEW}"]
    assert "every 60s (digestReflectionPolicy Always)" in reason
    assert NEW[:19] in reason


def test_if_not_present_keeps_the_digest_and_the_reason_says_always_would_roll_it_out() -> None:
    changes, reason, values = _judge("  digestReflectionPolicy: IfNotPresent\n")
    assert (changes, values) == (False, [])
    assert "keeps it (digestReflectionPolicy IfNotPresent" in reason
    assert reason.endswith("does not roll out; with Always it would")


def test_never_drops_the_digest_from_a_whole_image_marker_and_says_no_digest_is_reflected() -> None:
    changes, reason, values = _judge("")
    # Flux writes `latestRef.String()`: without a reflected digest the `@digest` goes away.
    assert (changes, values) == (True, [f"{PORT_IMAGE}:v1"])
    assert "reflects no digest (digestReflectionPolicy Never, the default)" in reason


def test_an_extension_without_digest_reflection_reflects_none_even_under_always() -> None:
    _, reason, values = _judge("  digestReflectionPolicy: Always\n  interval: 1m\n", "1.16.12")
    assert values == [f"{PORT_IMAGE}:v1"]
    assert "microsoft.flux 1.16.12 runs image-reflector-controller 0.34.0" in reason
    assert _judge("  digestReflectionPolicy: Always\n  interval: 1m\n", "1.23.0")[0] is True


def test_the_same_digest_pushed_again_rolls_nothing_out_under_always() -> None:
    policy = _policy("  digestReflectionPolicy: Always\n  interval: 1m\n")
    held = LatestRef(PORT_IMAGE, "v1", OLD)
    outcome = judge_digest(policy, selected=LatestRef(PORT_IMAGE, "v1"), pushed_digest=OLD, held=held)
    assert (outcome.digest_changes, outcome.latest, outcome.within_s) == (False, held, 60.0)
