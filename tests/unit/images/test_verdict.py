"""The verdict for a pushed tag, decided from the repository and the registry's tags (pure)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.models.images import CommitId, ImageRef, Verdict
from shared.services.images.snapshot import build_snapshot
from shared.services.images.verdict import judge
from tests.unit.images.fakes import (
    AUTOMATION,
    GATEWAY_DEPLOYMENT,
    GATEWAY_IMAGE,
    LOGIN_SERVER,
    POLICIES,
    REPOSITORIES,
    T0,
    seed_files,
)

GATEWAY_TAGS = ["v1.0.0", "v1.2.0", "v1.4.0", "v1.4.2", "latest"]
COMMIT = CommitId("0123456789abcdef0123456789abcdef01234567")

EXTRA_REPOSITORY = """---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata:
  name: {name}
  namespace: flux-system
spec:
  image: ipcplatformacr.azurecr.io/ipc/{name}
  interval: 5m
"""
EXTRA_POLICY = """---
apiVersion: {api}
kind: ImagePolicy
metadata:
  name: {name}
  namespace: flux-system
spec:
  imageRepositoryRef:
    name: {repository}
  policy:
    semver:
      range: "{range_}"
"""


def run(
    tag: str, files: dict[str, str] | None = None, tags: list[str] | None = None, image: str = GATEWAY_IMAGE
) -> Verdict:
    snapshot = build_snapshot(COMMIT, files if files is not None else seed_files())
    return judge(
        snapshot=snapshot,
        ref=ImageRef(image, tag, "sha256:" + "a" * 64),
        tags=GATEWAY_TAGS if tags is None else tags,
        branch="main",
        pushed_at=T0,
        sync_interval_s=300.0,
    )


def with_changes(**replacements: tuple[str, str]) -> dict[str, str]:
    files = seed_files()
    for path_key, (old, new) in replacements.items():
        path = {"policies": POLICIES, "repositories": REPOSITORIES, "automation": AUTOMATION}[path_key]
        assert old in files[path]
        files[path] = files[path].replace(old, new, 1)
    return files


def test_a_higher_release_tag_will_roll_out_with_the_marker_change_and_eta() -> None:
    verdict = run("v1.5.0")
    assert verdict.verdict == "will-roll-out"
    [change] = verdict.markers
    assert (change.file, change.line) == (GATEWAY_DEPLOYMENT, 33)
    assert change.current == f"{GATEWAY_IMAGE}:v1.4.2"
    assert change.new == f"{GATEWAY_IMAGE}:v1.5.0"
    assert change.describe() == f"{GATEWAY_DEPLOYMENT}:33 {GATEWAY_IMAGE}:v1.4.2 → {GATEWAY_IMAGE}:v1.5.0"
    assert verdict.eta is not None
    # ImageRepository 5m + automation 5m until the commit, then the panels' 300 s sync.
    assert verdict.eta.commit_by == T0 + timedelta(minutes=10)
    assert verdict.eta.applied_by == T0 + timedelta(minutes=15)
    assert "flux-system/ipc-workloads" in verdict.reason


def test_a_lower_tag_is_not_latest_and_names_the_winner() -> None:
    verdict = run("v1.3.0")
    assert verdict.verdict == "not-latest"
    assert verdict.policies[0].selected == "v1.4.2"
    assert "v1.4.2" in verdict.reason
    assert verdict.eta is None
    assert verdict.markers == ()


def test_a_prerelease_against_a_plain_range_is_filtered_out_by_the_range() -> None:
    verdict = run("v1.5.0-rc.1")
    assert verdict.verdict == "filtered-out"
    assert verdict.policies[0].rule == "range"
    assert ">=1.0.0" in verdict.reason


def test_a_tag_that_is_not_a_version_is_filtered_out_as_such() -> None:
    verdict = run("nightly")
    assert (verdict.verdict, verdict.policies[0].rule) == ("filtered-out", "not-a-version")


def test_a_signature_tag_is_dropped_by_fluxs_default_exclusion_list() -> None:
    verdict = run("sha256-abc.sig")
    assert (verdict.verdict, verdict.policies[0].rule) == ("filtered-out", "exclusion")
    assert "default exclusion list" in verdict.reason


def test_a_written_exclusion_list_replaces_the_default() -> None:
    files = with_changes(
        repositories=(
            "image: ipcplatformacr.azurecr.io/ipc/opcua-gateway\n",
            "image: ipcplatformacr.azurecr.io/ipc/opcua-gateway\n  exclusionList: ['^v1\\.9']\n",
        )
    )
    assert run("v1.9.0", files).policies[0].rule == "exclusion"
    assert run("sha256-abc.sig", files).policies[0].rule == "not-a-version"


def test_an_image_no_repository_scans_says_so_and_lists_what_is_scanned() -> None:
    verdict = run("v1.0.0", image=f"{LOGIN_SERVER}/ipc/unknown")
    assert verdict.verdict == "no-image-repository"
    assert f"{LOGIN_SERVER}/ipc/unknown" in verdict.reason
    assert f"{LOGIN_SERVER}/ipc/anomaly-detection" in verdict.reason  # the first of the scanned images


def test_the_image_is_matched_in_canonical_form() -> None:
    verdict = run("v1.5.0", image=GATEWAY_IMAGE.upper().replace("/IPC/OPCUA-GATEWAY", "/ipc/opcua-gateway"))
    assert verdict.verdict == "will-roll-out"


def test_a_scanned_image_without_a_policy_is_no_policy() -> None:
    files = seed_files()
    files[REPOSITORIES] += EXTRA_REPOSITORY.format(name="extra")
    verdict = run("v1.0.0", files, image=f"{LOGIN_SERVER}/ipc/extra")
    assert verdict.verdict == "no-policy"
    assert "flux-system/extra" in verdict.reason


def test_a_policy_that_no_marker_uses_is_no_marker_and_points_at_markers_outside_the_path() -> None:
    files = seed_files()
    files[REPOSITORIES] += EXTRA_REPOSITORY.format(name="newapp")
    files[POLICIES] += EXTRA_POLICY.format(
        api="image.toolkit.fluxcd.io/v1", name="newapp", repository="newapp", range_=">=1.0.0"
    )
    files["apps/newapp.yaml"] = 'image: x # {"$imagepolicy": "flux-system:newapp"}\n'
    verdict = run("v1.0.0", files, tags=[], image=f"{LOGIN_SERVER}/ipc/newapp")
    assert verdict.verdict == "no-marker"
    assert "./kubernetes/workloads" in verdict.reason
    assert "apps/newapp.yaml:1" in verdict.reason


def test_a_suspended_automation_is_automation_suspended() -> None:
    files = with_changes(automation=("  interval: 5m\n", "  interval: 5m\n  suspend: true\n"))
    verdict = run("v1.5.0", files)
    assert verdict.verdict == "automation-suspended"
    assert "flux-system/ipc-workloads" in verdict.reason


def test_a_suspended_policy_is_policy_suspended() -> None:
    # Its own reason since issue 15 (ImagePolicy spec.suspend, Flux 2.7); it was `automation-suspended`.
    files = with_changes(policies=("    name: opcua-gateway\n", "    name: opcua-gateway\n  suspend: true\n"))
    verdict = run("v1.5.0", files)
    assert verdict.verdict == "policy-suspended"
    assert "spec.suspend: true" in verdict.reason


def test_no_automation_at_all_is_automation_missing() -> None:
    files = seed_files()
    del files[AUTOMATION]
    verdict = run("v1.5.0", files)
    assert verdict.verdict == "automation-missing"


def test_an_automation_whose_selector_excludes_the_policy_is_automation_missing() -> None:
    files = with_changes(
        automation=(
            "  interval: 5m\n",
            "  interval: 5m\n  policySelector:\n    matchLabels:\n      tier: db\n",
        )
    )
    assert run("v1.5.0", files).verdict == "automation-missing"


def test_the_tag_already_in_every_marker_is_already_deployed() -> None:
    verdict = run("v1.4.2")
    assert verdict.verdict == "already-deployed"
    assert verdict.markers == ()


def test_an_invalid_range_is_invalid_policy_with_fluxs_reason() -> None:
    files = with_changes(policies=('range: ">=1.0.0"', 'range: "> =1.0"'))
    verdict = run("v1.5.0", files)
    assert verdict.verdict == "invalid-policy"
    assert "InvalidPolicy" in verdict.reason


def test_v1beta2_objects_still_judge_but_warn() -> None:
    files = seed_files()
    files[POLICIES] = files[POLICIES].replace(
        "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: opcua-gateway",
        "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: opcua-gateway",
    )
    verdict = run("v1.5.0", files)
    assert verdict.verdict == "will-roll-out"
    assert any("v1beta2" in warning and "opcua-gateway" in warning for warning in verdict.warnings)


def test_one_rolling_policy_decides_the_check_when_several_watch_the_image() -> None:
    files = seed_files()
    files[POLICIES] += EXTRA_POLICY.format(
        api="image.toolkit.fluxcd.io/v1", name="gateway-v2", repository="opcua-gateway", range_=">=2.0.0"
    )
    verdict = run("v1.5.0", files)
    assert verdict.verdict == "will-roll-out"
    assert {(item.policy, item.verdict) for item in verdict.policies} == {
        ("flux-system/opcua-gateway", "will-roll-out"),
        ("flux-system/gateway-v2", "filtered-out"),
    }
    assert "flux-system/gateway-v2: filtered-out" in verdict.reason


def test_an_automation_pushing_elsewhere_than_the_synced_branch_warns() -> None:
    files = with_changes(
        automation=("    push:\n      branch: main", "    push:\n      branch: image-updates")
    )
    verdict = run("v1.5.0", files)
    assert verdict.verdict == "will-roll-out"
    assert any("image-updates" in warning for warning in verdict.warnings)


@pytest.mark.parametrize("sync", [None, 0.0])
def test_an_unknown_sync_interval_falls_back_to_the_arc_default(sync: float | None) -> None:
    snapshot = build_snapshot(COMMIT, seed_files())
    verdict = judge(
        snapshot=snapshot,
        ref=ImageRef(GATEWAY_IMAGE, "v1.5.0"),
        tags=GATEWAY_TAGS,
        branch="main",
        pushed_at=T0,
        sync_interval_s=sync,
    )
    assert verdict.eta is not None
    assert verdict.eta.sync_interval_s == 600.0


def test_a_stored_document_reads_back_as_the_same_check() -> None:
    from shared.models.images import CheckRecord, make_check_id

    verdict = run("v1.5.0")
    record = CheckRecord(
        make_check_id(canonical_image=GATEWAY_IMAGE, created_at=T0, salt="abcdef12"),
        verdict,
        "push",
        T0,
        "evt-1",
    )
    assert CheckRecord.from_document(record.to_document()) == record


# --- digests: the same tag pushed again with new content (issue 15) -----------------------------------
OLD_DIGEST = "sha256:" + "b" * 64
NEW_DIGEST = "sha256:" + "a" * 64  # what `run` pushes


def digest_files(reflection: str) -> dict[str, str]:
    """The gateway's marker holding `v1.4.2@<old digest>`, and its policy reflecting digests."""
    files = with_changes(
        policies=(
            '  policy:\n    semver:\n      range: ">=1.0.0"\n',
            f"  digestReflectionPolicy: {reflection}\n"
            + ("  interval: 10m\n" if reflection == "Always" else "")
            + '  policy:\n    semver:\n      range: ">=1.0.0"\n',
        )
    )
    held = "opcua-gateway:v1.4.2 #"
    assert held in files[GATEWAY_DEPLOYMENT]
    files[GATEWAY_DEPLOYMENT] = files[GATEWAY_DEPLOYMENT].replace(
        held, f"opcua-gateway:v1.4.2@{OLD_DIGEST} #", 1
    )
    return files


def test_a_re_pushed_tag_with_new_content_rolls_out_under_always_and_says_why() -> None:
    verdict = run("v1.4.2", files=digest_files("Always"))
    assert verdict.verdict == "will-roll-out", verdict.reason
    [change] = verdict.policies[0].markers
    assert change.new.endswith(f"v1.4.2@{NEW_DIGEST}")
    assert "Always" in verdict.reason


def test_a_re_pushed_tag_keeps_its_digest_under_if_not_present_and_says_why() -> None:
    verdict = run("v1.4.2", files=digest_files("IfNotPresent"))
    assert verdict.verdict == "already-deployed", verdict.reason
    assert "IfNotPresent" in verdict.reason
