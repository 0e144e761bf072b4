"""Setter markers, the changes Flux makes, and how they are written (reference §9.2, §9.3)."""

from __future__ import annotations

import pytest

from shared.image_policy import (
    LatestRef,
    apply_rewrites,
    compute_rewrites,
    files_in_update_path,
    find_markers,
    scan_markers,
)
from shared.image_policy.setters import is_yaml11_non_string, scalar_text

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: opcua-gateway
  namespace: ipc-workloads
spec:
  template:
    spec:
      containers:
        - name: gateway
          image: myacr.azurecr.io/ipc/opcua-gateway:v1.0.0 # {"$imagepolicy": "flux-system:opcua-gateway"}
          env:
            - name: VERSION
              value: "v1.0.0" # {"$imagepolicy": "flux-system:opcua-gateway:tag"}
        - name: sidecar
          image: busybox:1.36 # a plain comment, not a marker
"""

KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
images:
  - name: app
    newName: old-name # {"$imagepolicy": "flux-system:app:name"}
    newTag: '0.9' # {"$imagepolicy": "flux-system:app:tag"}
    digest: sha256:0000 # {"$imagepolicy": "flux-system:app:digest"}
"""

GATEWAY = LatestRef(name="myacr.azurecr.io/ipc/opcua-gateway", tag="v1.2.0")
APP = LatestRef(name="myacr.azurecr.io/ipc/app", tag="1.10", digest="sha256:abcd")


UPDATE_PATH_FIXTURE = (
    "kubernetes/workloads/a.yaml",
    "kubernetes/workloads/a/b.yaml",
    "kubernetes/workloads/c.yml",
    "kubernetes/workloads/Kustomization",
    "kubernetes/workloads/kustomization",
    "kubernetes/workloads/d.YAML",
    "kubernetes/workloads/e.json",
    "kubernetes/workloads/.hidden/f.yaml",
    "kubernetes/other/g.yaml",
    "kubernetes/workloads-old/h.yaml",
    "README.md",
)


class TestFilesInUpdatePath:
    def test_only_yaml_yml_and_kustomization_files_under_the_path_in_walk_order(self) -> None:
        assert files_in_update_path(UPDATE_PATH_FIXTURE, "./kubernetes/workloads") == [
            "kubernetes/workloads/.hidden/f.yaml",
            "kubernetes/workloads/Kustomization",
            "kubernetes/workloads/a/b.yaml",
            "kubernetes/workloads/a.yaml",
            "kubernetes/workloads/c.yml",
        ]

    @pytest.mark.parametrize("root", ["", ".", "/", "../..", "./"])
    def test_paths_that_clean_to_the_root_scan_everything(self, root: str) -> None:
        assert len(files_in_update_path(UPDATE_PATH_FIXTURE, root)) == 7

    def test_update_path_cannot_escape_the_checkout(self) -> None:
        assert files_in_update_path(UPDATE_PATH_FIXTURE, "../../kubernetes/other") == [
            "kubernetes/other/g.yaml"
        ]

    def test_update_path_may_name_a_single_file(self) -> None:
        assert files_in_update_path(UPDATE_PATH_FIXTURE, "kubernetes/workloads/c.yml") == [
            "kubernetes/workloads/c.yml"
        ]


class TestFindMarkers:
    def test_image_and_tag_markers_with_position_and_object(self) -> None:
        image, tag = find_markers({"deploy.yaml": DEPLOYMENT})
        assert (image.line, image.field, image.policy_namespace, image.policy_name) == (
            11,
            "image",
            "flux-system",
            "opcua-gateway",
        )
        assert image.current_value == "myacr.azurecr.io/ipc/opcua-gateway:v1.0.0"
        assert (tag.line, tag.field, tag.current_value, tag.style) == (14, "tag", "v1.0.0", "double")
        assert image.object is not None
        assert (image.object.kind, image.object.namespace, image.object.name) == (
            "Deployment",
            "ipc-workloads",
            "opcua-gateway",
        )

    def test_name_tag_and_digest_suffixes(self) -> None:
        markers = find_markers({"kustomization.yaml": KUSTOMIZATION})
        assert [(marker.field, marker.current_value, marker.style) for marker in markers] == [
            ("name", "old-name", "plain"),
            ("tag", "0.9", "single"),
            ("digest", "sha256:0000", "plain"),
        ]

    def test_files_without_the_quoted_token_or_a_yaml_name_are_not_read(self) -> None:
        assert find_markers({"deploy.json": DEPLOYMENT, "deploy.YAML": DEPLOYMENT}) == []
        assert find_markers({"a.yaml": "image: x # {'$imagepolicy': 'ns:p'}\n"}) == []

    def test_unparsable_file_with_the_token_is_a_problem_file(self) -> None:
        scan = scan_markers(
            {"broken.yaml": 'a: [\nimage: x # {"$imagepolicy": "ns:p"}\n', "ok.yaml": DEPLOYMENT}
        )
        assert scan.problem_files == ("broken.yaml",)
        assert len(scan.markers) == 2

    @pytest.mark.parametrize(
        "comment",
        [
            '# {"$imagepolicy": "ns:p"} # note',  # trailing text after the JSON
            '# {"$imagepolicy": 1}',  # a non-string value
            '# {"$imagepolicy": "ns:p", "n": 2}',  # every value must be a string
            '# {"$ImagePolicy": "ns:p"}',  # the key is case-sensitive
            '# {"$imagepolicy": ""}',
            '# ["$imagepolicy", "ns:p"]',
        ],
    )
    def test_comments_that_are_not_markers(self, comment: str) -> None:
        assert find_markers({"a.yaml": f"image: x {comment}\n"}) == []

    @pytest.mark.parametrize(
        "comment",
        [
            '## {"$imagepolicy": "ns:p"}',
            '#{"$imagepolicy":"ns:p"}',
            '# {"$imagepolicy": "ns:p", "owner": "me"}',
        ],
    )
    def test_leading_hashes_spacing_and_extra_string_keys_are_tolerated(self, comment: str) -> None:
        (marker,) = find_markers({"a.yaml": f"image: x {comment}\n"})
        assert (marker.policy_namespace, marker.policy_name) == ("ns", "p")

    def test_marker_on_a_sequence_item_line_or_head_comment(self) -> None:
        text = 'args:\n  - x:1 # {"$imagepolicy": "ns:p"}\n  # {"$imagepolicy": "ns:q:tag"}\n  - "2"\n'
        markers = find_markers({"a.yaml": text})
        assert [(marker.line, marker.policy_name, marker.field) for marker in markers] == [
            (2, "p", "image"),
            (4, "q", "tag"),
        ]

    def test_mappings_and_flow_collections_do_not_carry_markers(self) -> None:
        text = 'spec: # {"$imagepolicy": "ns:p"}\n  images: [a, b] # {"$imagepolicy": "ns:q"}\n'
        assert find_markers({"a.yaml": text}) == []

    def test_malformed_setter_names_are_reported_as_ignored(self) -> None:
        scan = scan_markers(
            {"a.yaml": 'a: x # {"$imagepolicy": "justname"}\nb: y # {"$imagepolicy": "ns:p:size"}\n'}
        )
        assert scan.markers == ()
        assert [item.setter for item in scan.ignored] == ["justname", "ns:p:size"]


class TestComputeRewrites:
    def test_each_setter_field_takes_its_part_of_the_latest_ref(self) -> None:
        markers = find_markers({"k.yaml": KUSTOMIZATION})
        rewrites = compute_rewrites(markers, {("flux-system", "app"): APP})
        assert [(rewrite.old, rewrite.new) for rewrite in rewrites] == [
            ("old-name", "myacr.azurecr.io/ipc/app"),
            ("0.9", "1.10"),
            ("sha256:0000", "sha256:abcd"),
        ]

    def test_image_setter_writes_name_tag_and_digest(self) -> None:
        (marker,) = find_markers({"a.yaml": 'image: img # {"$imagepolicy": "ns:p"}\n'})
        (rewrite,) = compute_rewrites([marker], {("ns", "p"): LatestRef("image", "v1.0.0", "sha256:6745")})
        assert rewrite.new == "image:v1.0.0@sha256:6745"

    def test_digest_setter_without_a_reflected_digest_blanks_the_field(self) -> None:
        (marker,) = find_markers({"a.yaml": 'd: sha256:1 # {"$imagepolicy": "ns:p:digest"}\n'})
        (rewrite,) = compute_rewrites([marker], {("ns", "p"): LatestRef("image", "v1")})
        assert (rewrite.new, rewrite.text) == ("", "")

    def test_no_rewrite_when_the_value_is_already_current(self) -> None:
        markers = find_markers({"deploy.yaml": DEPLOYMENT})
        current = LatestRef(name="myacr.azurecr.io/ipc/opcua-gateway", tag="v1.0.0")
        assert compute_rewrites(markers, {("flux-system", "opcua-gateway"): current}) == []

    def test_markers_for_unknown_or_out_of_namespace_policies_do_nothing(self) -> None:
        markers = find_markers({"deploy.yaml": DEPLOYMENT})
        assert compute_rewrites(markers, {}) == []
        latest = {("flux-system", "opcua-gateway"): GATEWAY}
        assert compute_rewrites(markers, latest, namespace="apps") == []
        assert len(compute_rewrites(markers, latest, namespace="flux-system")) == 2


@pytest.mark.parametrize(
    ("value", "non_string"),
    [
        ("1.10", True),
        ("123", True),
        ("1e3", True),  # yaml.v2 reads exponent-only floats; PyYAML would not
        ("0x1F", True),
        ("0o17", True),
        ("1_000", True),
        ("true", True),
        ("yes", True),
        ("on", True),
        ("Off", True),
        ("~", True),
        ("null", True),
        (".inf", True),
        ("-.5", True),
        ("#x", True),  # an empty document decodes to nil
        ("a: b", True),
        ("[a]", True),
        ("v1.2.3", False),
        ("1.2.3", False),
        ("2024-01-15", False),  # yaml.v2 keeps timestamps as strings
        ("1:20", False),  # no sexagesimal in yaml.v2
        ("1e400", False),  # out of range: stays a string
        ("sha256:abcd", False),
        ("'quoted'", False),
        ("", False),
        ("nope", False),
    ],
)
def test_yaml11_non_string_detection_follows_yaml_v2(value: str, non_string: bool) -> None:
    assert is_yaml11_non_string(value) is non_string


@pytest.mark.parametrize(
    ("value", "style", "text"),
    [
        ("1.10", "plain", '"1.10"'),
        ("v1.10", "plain", "v1.10"),
        ("1.10", "single", "'1.10'"),
        ("it's", "single", "'it''s'"),
        ("1.10", "double", '"1.10"'),
        ("a: b", "plain", '"a: b"'),
        ("x #y", "plain", "'x #y'"),
    ],
)
def test_scalar_text_keeps_quotes_and_quotes_non_strings(value: str, style: str, text: str) -> None:
    assert scalar_text(value, style) == text  # type: ignore[arg-type]


class TestApplyRewrites:
    def test_only_changed_files_are_returned_and_only_the_values_change(self) -> None:
        files = {"deploy.yaml": DEPLOYMENT, "k.yaml": KUSTOMIZATION, "untouched.yaml": "a: 1\n"}
        latest = {("flux-system", "opcua-gateway"): GATEWAY}
        rewrites = compute_rewrites(find_markers(files), latest)
        changed = apply_rewrites(files, rewrites)
        assert set(changed) == {"deploy.yaml"}
        expected = DEPLOYMENT.replace("opcua-gateway:v1.0.0 #", "opcua-gateway:v1.2.0 #").replace(
            'value: "v1.0.0"', 'value: "v1.2.0"'
        )
        assert changed["deploy.yaml"] == expected

    def test_numeric_looking_tag_in_a_plain_scalar_is_double_quoted(self) -> None:
        files = {"a.yaml": 'newTag: v1 # {"$imagepolicy": "flux-system:app:tag"}\n'}
        changed = apply_rewrites(files, compute_rewrites(find_markers(files), {("flux-system", "app"): APP}))
        assert changed["a.yaml"] == 'newTag: "1.10" # {"$imagepolicy": "flux-system:app:tag"}\n'

    def test_crlf_line_endings_and_multiple_documents_survive(self) -> None:
        text = 'a: 1\r\n---\r\nimage: x:1 # {"$imagepolicy": "ns:p"}\r\nb: 2\r\n'
        files = {"a.yaml": text}
        changed = apply_rewrites(
            files, compute_rewrites(find_markers(files), {("ns", "p"): LatestRef("x", "2")})
        )
        assert changed["a.yaml"] == text.replace("x:1 #", "x:2 #")

    def test_rewrite_against_a_changed_file_is_refused(self) -> None:
        files = {"a.yaml": 'image: x:1 # {"$imagepolicy": "ns:p"}\n'}
        rewrites = compute_rewrites(find_markers(files), {("ns", "p"): LatestRef("x", "2")})
        with pytest.raises(ValueError, match="does not hold"):
            apply_rewrites({"a.yaml": 'image: y:9 # {"$imagepolicy": "ns:p"}\n'}, rewrites)
