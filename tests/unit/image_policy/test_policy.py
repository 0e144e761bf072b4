"""The ImagePolicy pipeline: what Flux selects, how ties break, and why a tag loses (reference §2-§8)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.image_policy import (
    InvalidPolicy,
    compute_selection,
    evaluate_tag,
    parse_version,
    select_latest,
    select_latest_from_stored,
    semver_range_matches,
)


def semver(range_: str, **extra: Any) -> dict[str, Any]:
    return {"policy": {"semver": {"range": range_}}, **extra}


def alphabetical(order: str = "asc", **extra: Any) -> dict[str, Any]:
    return {"policy": {"alphabetical": {"order": order}}, **extra}


def numerical(order: str = "asc", **extra: Any) -> dict[str, Any]:
    return {"policy": {"numerical": {"order": order}}, **extra}


def filter_tags(pattern: str, extract: str = "") -> dict[str, Any]:
    return {"filterTags": {"pattern": pattern, "extract": extract}}


# Upstream IRC vectors: TestImagePolicyReconciler_applyPolicy, calculateImageFromRepoTags, filterTags,
# TestSemVer_Latest, and the docs examples.
SELECTION_VECTORS = [
    (semver("1.0.x"), ["1.0.0", "2.0.0", "1.0.1", "1.2.0"], "1.0.1"),
    (semver("v1.0.x"), ["v1.0.0", "v2.0.0", "v1.0.1", "v1.2.0"], "v1.0.1"),
    (semver("v1.0.x"), ["1.0.0", "2.0.0", "1.0.1", "1.2.0"], "1.0.1"),
    (semver("1.0.x"), ["v1.0.0", "v2.0.0", "v1.0.1", "v1.2.0"], "v1.0.1"),
    (semver("1.0.x"), ["0.1.0", "0.1.1", "0.2.0", "1.0.0", "1.0.1", "1.0.2", "1.1.0-alpha"], "1.0.2"),
    (semver("1.0.x"), ["1.0.0", "1.0.0.1", "1.0.0p", "1.0.1", "1.2.0", "0.1.0"], "1.0.1"),
    (semver("1.0.x"), ["v1.2.3", "v1.0.0", "v0.1.0"], "v1.0.0"),
    (semver("1.0.x"), ["b1.2.3", "b1.0.0", "b0.1.0"], None),
    (semver("1.0.x"), ["1.2.0"], None),
    (alphabetical(), ["xenial", "yakkety", "zesty", "artful", "bionic"], "zesty"),
    (alphabetical("desc"), ["xenial", "yakkety", "zesty", "artful", "bionic"], "artful"),
    (
        numerical("asc", **filter_tags(r"1.0.0-rc\.(?P<num>[0-9]+)", "$num")),
        ["1.0.0", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0-rc.3", "1.0.1-rc.2"],
        "1.0.0-rc.3",
    ),
    (
        alphabetical("asc", **filter_tags("foo-(?P<word>[a-z]+)", "$word")),
        ["foo-aaa", "bar-bbb", "foo-zzz", "baz-nnn", "foo-ooo"],
        "foo-zzz",
    ),
    (
        semver(">=0.x", **filter_tags("^test-(.*)$", "$1")),
        ["test-0.1.0", "test-0.1.1", "dev-0.2.0", "1.0.0", "1.0.1", "1.0.2", "1.1.0-alpha"],
        "test-0.1.1",
    ),
    (semver("6.7.x", **filter_tags(r"^6\.7\.\d+$")), ["6.7.0", "6.7.1", "6.8.0", "7.0.0"], "6.7.1"),
    (
        semver("^1.x-0", **filter_tags(".*-rc.*")),
        ["1.1.0", "1.2.0-rc.1", "1.3.0-rc.2", "2.0.0-rc.1"],
        "1.3.0-rc.2",
    ),
    (
        alphabetical(**filter_tags(r"^RELEASE\.(?P<timestamp>.*)Z$", "$timestamp")),
        ["RELEASE.2024-01-01T00-00-00Z", "RELEASE.2024-03-01T00-00-00Z", "latest"],
        "RELEASE.2024-03-01T00-00-00Z",
    ),
]


@pytest.mark.parametrize(("spec", "tags", "expected"), SELECTION_VECTORS)
def test_upstream_selection_vectors(spec: dict[str, Any], tags: list[str], expected: str | None) -> None:
    assert select_latest(spec, tags) == expected


def test_semver_ties_go_to_the_lexicographically_greatest_spelling() -> None:
    assert select_latest(semver(">=1.0.0"), ["1.0.0", "v1.0.0"]) == "v1.0.0"
    assert select_latest(semver(">=1.0.0"), ["1.0.0+a", "1.0.0+b"]) == "1.0.0+b"
    assert select_latest(semver(">=1.0.0"), ["01.0.0", "1.0.0"]) == "1.0.0"


def test_in_stored_order_the_first_of_equal_semver_precedence_wins() -> None:
    assert select_latest_from_stored(semver(">=1.0.0"), ["1.0.0", "v1.0.0"]) == "1.0.0"
    assert select_latest_from_stored(semver(">=1.0.0"), ["v1.0.0", "1.0.0"]) == "v1.0.0"


def test_numerical_ties_go_to_the_later_tag_in_input_order() -> None:
    assert select_latest_from_stored(numerical(), ["1", "1.0", "01"]) == "01"
    assert select_latest_from_stored(numerical("desc"), ["1", "1.0", "01"]) == "01"
    # In Flux's stored (descending) order, the later tag is the lexicographically smallest spelling.
    assert select_latest(numerical(), ["1.0", "01", "1"]) == "01"


def test_numerical_nan_breaks_ordering_so_the_next_tag_replaces_it() -> None:
    assert select_latest_from_stored(numerical(), ["5", "NaN", "3"]) == "3"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["1", "10", "9"], "10"),
        (["1.5", "1.10"], "1.5"),  # floats, not versions
        (["1e3", "999"], "1e3"),
        (["0x1p4", "15"], "0x1p4"),
        (["1_000", "999"], "1_000"),
        (["-5", "-10"], "-5"),
    ],
)
def test_numerical_parses_tags_as_go_floats(tags: list[str], expected: str) -> None:
    assert select_latest(numerical(), tags) == expected


def test_one_non_numeric_tag_fails_the_whole_numerical_policy() -> None:
    outcome = compute_selection(numerical(), ["1", "2", "latest"])
    assert outcome.tag is None
    assert outcome.failure == "failed to parse invalid numeric value 'latest'"


def test_numerical_with_a_filter_ignores_non_numeric_tags_the_filter_drops() -> None:
    tags = ["main-abc-100", "main-def-200", "latest", "pr-3-300"]
    spec = numerical(**filter_tags(r"^main-[a-f0-9]+-(?P<ts>\d+)$", "$ts"))
    assert select_latest(spec, tags) == "main-def-200"


def test_extracted_value_collision_keeps_the_later_tag_in_stored_order() -> None:
    spec = numerical(**filter_tags(r"^main-[a-f0-9]+-(?P<ts>\d+)$", "$ts"))
    assert select_latest_from_stored(spec, ["main-def456-200", "main-fff-200"]) == "main-fff-200"
    # Flux stores tags in descending order, so from the registry's set the smaller spelling wins.
    assert select_latest(spec, ["main-def456-200", "main-fff-200"]) == "main-def456-200"


def test_extract_to_unknown_group_keeps_the_tag_with_an_empty_value() -> None:
    outcome = compute_selection(numerical(**filter_tags("^v", "$nope")), ["v1"])
    assert outcome.tag is None
    assert outcome.failure == "failed to parse invalid numeric value ''"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["a", "B"], "a"),
        (["v9", "v10"], "v9"),
        (["1.9", "1.10"], "1.9"),
        (["abcd", "abc-1", "abc"], "abcd"),
    ],
)
def test_alphabetical_is_byte_order(tags: list[str], expected: str) -> None:
    assert select_latest(alphabetical(), tags) == expected


def test_alphabetical_never_filters_non_version_tags() -> None:
    assert select_latest(alphabetical(), ["latest", "1.0.0"]) == "latest"


def test_alphabetical_order_is_case_insensitive_and_empty_means_ascending() -> None:
    assert select_latest(alphabetical("DESC"), ["a", "b"]) == "a"
    assert select_latest({"policy": {"alphabetical": {}}}, ["a", "b"]) == "b"


def test_no_tags_and_filtered_out_tags_are_failures_not_errors() -> None:
    assert compute_selection(semver(">=1.0.0"), []).failure == "no tags in database"
    emptied = compute_selection(semver(">=1.0.0", **filter_tags("^nothing$")), ["1.0.0"])
    assert (emptied.tag, emptied.failure) == (None, "version list argument cannot be empty")
    unmatched = compute_selection(semver(">=2.0.0"), ["1.0.0"])
    assert unmatched.failure == "unable to determine latest version from provided list"


def test_semver_is_checked_before_alphabetical_and_numerical() -> None:
    spec = {"policy": {"semver": {"range": "1.x"}, "alphabetical": {"order": "asc"}}}
    assert select_latest(spec, ["1.0.0", "latest"]) == "1.0.0"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "given ImagePolicyChoice object is invalid"),
        ({"policy": {}}, "given ImagePolicyChoice object is invalid"),
        ({"policy": {"semver": None}}, "given ImagePolicyChoice object is invalid"),
        (semver("*-*"), "improper constraint"),
        ({"policy": {"semver": {}}}, "improper constraint"),
        (alphabetical("sideways"), "invalid order argument provided: 'SIDEWAYS', must be one of: ASC, DESC"),
        (numerical("up"), "invalid order argument provided: 'UP'"),
        (semver("1.0.x", **filter_tags("[=")), "invalid regular expression pattern '\\[='"),
        (semver("1.0.x", **filter_tags("^test-(.*")), "invalid regular expression pattern"),
        (semver("1.0.x", **filter_tags("(?=lookahead)")), "invalid regular expression pattern"),
    ],
)
def test_invalid_policies_raise_with_flux_reason(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidPolicy, match=message):
        select_latest(spec, ["1.0.0"])


def test_invalid_policy_is_raised_even_without_tags() -> None:
    with pytest.raises(InvalidPolicy):
        select_latest(semver("nonsense"), [])


# Tags as registries allow them: [A-Za-z0-9_][A-Za-z0-9_.-]*, biased towards versions.
_VERSIONISH = st.builds(
    lambda v, major, minor, patch, pre: f"{v}{major}.{minor}.{patch}{pre}",
    st.sampled_from(["", "v", "0"]),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 3),
    st.sampled_from(["", "-rc.1", "-rc.2", "-alpha", "+b1", "+b2"]),
)
_TAGS = st.lists(
    st.one_of(_VERSIONISH, st.from_regex(r"[a-z0-9][a-z0-9._-]{0,6}", fullmatch=True)), max_size=25
)
_SPECS = st.sampled_from(
    [
        semver(">=1.0.0"),
        semver(">=1.0.0-0 <3.0.0"),
        semver("~1.x || ^2.1"),
        alphabetical(),
        alphabetical("desc"),
        semver(">=0.0.0", **filter_tags(r"^v?(?P<ver>\d+\.\d+\.\d+)", "$ver")),
    ]
)


@given(spec=_SPECS, tags=_TAGS, seed=st.integers(0, 2**32 - 1))
def test_selection_depends_only_on_the_set_of_tags(spec: dict[str, Any], tags: list[str], seed: int) -> None:
    shuffled = list(tags)
    random.Random(seed).shuffle(shuffled)
    assert select_latest(spec, shuffled) == select_latest(spec, tags)


@given(spec=_SPECS, tags=_TAGS)
def test_select_latest_is_the_stored_order_pipeline(spec: dict[str, Any], tags: list[str]) -> None:
    assert select_latest(spec, tags) == select_latest_from_stored(spec, sorted(tags, reverse=True))


@given(tags=st.lists(_VERSIONISH, min_size=1, max_size=25))
def test_semver_winner_satisfies_the_range_and_no_match_is_greater(tags: list[str]) -> None:
    winner = select_latest(semver(">=1.0.0 <3.0.0"), tags)
    matching = [
        version
        for tag in tags
        if (version := parse_version(tag)) and semver_range_matches(">=1.0.0 <3.0.0", tag)
    ]
    if winner is None:
        assert matching == []
        return
    best = parse_version(winner)
    assert best is not None
    assert best in matching
    assert all(version <= best for version in matching)


@given(tags=st.lists(_VERSIONISH, min_size=2, max_size=10, unique=True))
def test_stored_order_decides_semver_ties(tags: list[str]) -> None:
    """The first tag of the greatest precedence wins, so reversing the order picks the last one."""
    spec = semver(">=0.0.0-0")
    versions = [parse_version(tag) for tag in tags]
    greatest = max(version for version in versions if version is not None)
    spellings = [tag for tag, version in zip(tags, versions, strict=True) if version == greatest]
    assert select_latest_from_stored(spec, tags) == spellings[0]
    assert select_latest_from_stored(spec, list(reversed(tags))) == spellings[-1]


class TestEvaluateTag:
    def test_prerelease_outside_a_prerelease_group_names_the_rule(self) -> None:
        verdict = evaluate_tag(semver(">=1.0.0"), "1.3.0-rc.1", ["1.2.0"])
        assert (verdict.eligible, verdict.rejected_by, verdict.selected) == (False, "range", "1.2.0")
        assert verdict.detail == (
            "1.3.0-rc.1 is a prerelease; range '>=1.0.0' admits prereleases only when a comparator "
            "in the same AND group has one"
        )

    def test_release_outside_the_range_names_the_failing_comparator(self) -> None:
        verdict = evaluate_tag(semver(">=1.0.0 <2.0.0"), "2.1.0", ["1.2.0"])
        assert verdict.rejected_by == "range"
        assert "'<2.0.0'" in verdict.detail

    def test_tag_with_too_few_dots_is_not_a_version(self) -> None:
        verdict = evaluate_tag(semver(">=1.0.0"), "v2.0", ["1.2.0"])
        assert (verdict.rejected_by, verdict.selected) == ("not-a-version", "1.2.0")
        assert "two '.'" in verdict.detail

    def test_filter_pattern_rejection_comes_first(self) -> None:
        verdict = evaluate_tag(semver(">=1.0.0", **filter_tags("^main-")), "9.9.9", ["main-1.0.0"])
        assert (verdict.rejected_by, verdict.eligible) == ("filter-pattern", False)

    def test_non_numeric_value_fails_every_tag(self) -> None:
        verdict = evaluate_tag(numerical(), "latest", ["1", "2"])
        assert (verdict.rejected_by, verdict.selected) == ("not-numeric", None)

    def test_eligible_tag_losing_to_a_higher_one(self) -> None:
        verdict = evaluate_tag(semver(">=1.0.0"), "1.1.0", ["1.2.0"])
        assert (verdict.eligible, verdict.rejected_by, verdict.selected) == (True, None, "1.2.0")
        assert "1.2.0 has higher precedence" in verdict.detail

    def test_the_winning_tag(self) -> None:
        verdict = evaluate_tag(semver(">=1.0.0"), "1.3.0", ["1.2.0"])
        assert (verdict.eligible, verdict.selected) == (True, "1.3.0")

    def test_tie_with_another_spelling(self) -> None:
        verdict = evaluate_tag(semver(">=1.0.0"), "1.0.0", ["v1.0.0"])
        assert (verdict.eligible, verdict.selected) == (True, "v1.0.0")
        assert "same precedence" in verdict.detail

    def test_extract_collision_shadows_the_tag(self) -> None:
        spec = numerical(**filter_tags(r"^main-[a-f0-9]+-(?P<ts>\d+)$", "$ts"))
        verdict = evaluate_tag(spec, "main-fff-200", ["main-def456-200", "main-abc-100"])
        assert (verdict.eligible, verdict.selected) == (True, "main-def456-200")
        assert "main-def456-200 also produces" in verdict.detail

    def test_extracted_value_is_what_the_range_judges(self) -> None:
        spec = semver(">=1.0.0", **filter_tags("^app-(.*)$", "$1"))
        verdict = evaluate_tag(spec, "app-0.9.0", ["app-1.0.0"])
        assert (verdict.rejected_by, verdict.selected) == ("range", "app-1.0.0")
        assert "extracted value '0.9.0'" in verdict.detail

    def test_invalid_policy_raises(self) -> None:
        with pytest.raises(InvalidPolicy):
            evaluate_tag(semver("~>"), "1.0.0", [])
