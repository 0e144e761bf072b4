"""Masterminds/semver v3.5 and Flux's tag parser, from the reference's rules and upstream vectors."""

from __future__ import annotations

import pytest

from shared.image_policy import InvalidPolicy, parse_range, parse_version, semver_range_matches
from shared.image_policy.semver import parse_masterminds_version, rewrite_hyphen_ranges

# Reference §3.1 [observed] table.
FLUX_ACCEPTED_TAGS = [
    ("v1.2.3", (1, 2, 3, "", "")),
    ("2024.01.15", (2024, 1, 15, "", "")),
    ("v01.02.03", (1, 2, 3, "", "")),
    ("1.2.3-ALPHA", (1, 2, 3, "ALPHA", "")),
    ("1.2.3-0rc", (1, 2, 3, "0rc", "")),
    ("1.2.3+build.1", (1, 2, 3, "", "build.1")),
    ("v1.2-beta.5", (1, 2, 0, "beta.5", "")),
    ("1.2-rc.1", (1, 2, 0, "rc.1", "")),
]
FLUX_REJECTED_TAGS = [
    "V1.2.3",
    "vv1.2.3",
    "v1.0",
    "v1",
    "1.2.3.4",
    "1.2.3-01",
    "1.2.3-rc.01",
    "1.2.3-alpha_1",
    " 1.2.3",
    "1.2.3+",
    "v1.2.3-",
    "18446744073709551616.0.0",
    "latest",
    "1.2-beta5",
]


@pytest.mark.parametrize(("tag", "parts"), FLUX_ACCEPTED_TAGS)
def test_flux_parses_loose_tags_into_their_numeric_parts(
    tag: str, parts: tuple[int, int, int, str, str]
) -> None:
    version = parse_version(tag)
    assert version is not None
    assert (version.major, version.minor, version.patch, version.prerelease, version.metadata) == parts
    assert version.original == tag


@pytest.mark.parametrize("tag", FLUX_REJECTED_TAGS)
def test_flux_does_not_treat_these_tags_as_versions(tag: str) -> None:
    assert parse_version(tag) is None


def test_masterminds_alone_accepts_versions_with_fewer_than_two_dots_but_flux_does_not() -> None:
    assert parse_masterminds_version("1.4") is not None
    assert parse_masterminds_version("1") is not None
    assert parse_version("1.4") is None


def test_largest_uint64_part_is_still_a_version() -> None:
    assert parse_version("18446744073709551615.0.0") is not None


# Masterminds version_test.go TestNewVersion (coerce mode).
@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("1.2.3", True),
        ("1.2.3-alpha.01", False),
        ("1.2.3+test.01", True),
        ("1.2.3-alpha.-1", True),
        ("v1.2.3", True),
        ("1.0", True),
        ("v1", True),
        ("1.2.beta", False),
        ("foo", False),
        ("1.2-5", True),
        ("\n1.2", False),
        ("1.2.0-x.Y.0+metadata-width-hypen", True),
        ("1.2.3-rc1-with-hypen", True),
        ("1.2.3.4", False),
        ("2147483648.3.0", True),
        ("12.3.4.1234", False),
        ("20221209-update-renovatejson-v4", True),
    ],
)
def test_masterminds_new_version_vectors(text: str, valid: bool) -> None:
    assert (parse_masterminds_version(text) is not None) is valid


# Masterminds version_test.go TestCompare, TestGreaterThan (§3.3).
@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("1.2.3", "1.5.1", -1),
        ("2.2.3", "1.5.1", 1),
        ("3.2-beta", "3.2-beta", 0),
        ("1.3", "1.1.4", 1),
        ("4.2", "4.2-beta", 1),
        ("4.2-alpha", "4.2-beta", -1),
        ("4.2-beta.2", "4.2-beta.1", 1),
        ("4.2-beta2", "4.2-beta1", 1),
        ("4.2-beta", "4.2-beta.2", -1),
        ("4.2-beta", "4.2-beta.foo", -1),
        ("1.2+bar", "1.2+baz", 0),
        ("1.0.0-beta.4", "1.0.0-beta.-2", -1),
        ("1.0.0-beta.-2", "1.0.0-beta.-3", -1),
        ("1.0.0-beta.-3", "1.0.0-beta.5", 1),
        ("7.43.0-SNAPSHOT.99", "7.43.0-SNAPSHOT.103", -1),
        ("7.43.0-SNAPSHOT.FOO", "7.43.0-SNAPSHOT.103", 1),
        ("1.0.0-BETA", "1.0.0-alpha", -1),
        ("1.0.0-18446744073709551616", "1.0.0-a", -1),
        ("1.0.0-18446744073709551616", "1.0.0-99", 1),
    ],
)
def test_precedence_follows_masterminds_compare(left: str, right: str, expected: int) -> None:
    left_version, right_version = parse_masterminds_version(left), parse_masterminds_version(right)
    assert left_version is not None
    assert right_version is not None
    assert left_version.compare(right_version) == expected
    assert (left_version < right_version) is (expected < 0)
    assert (left_version == right_version) is (expected == 0)


def test_versions_differing_only_in_prefix_or_metadata_are_equal_and_hash_alike() -> None:
    assert {parse_version("v1.0.0"), parse_version("1.0.0+b"), parse_version("01.0.0")} == {
        parse_version("1.0.0")
    }


# Masterminds constraints_test.go TestConstraintCheck (single comparator; the "" rows are excluded
# because NewConstraint("") is an error, reference §4.4).
SINGLE_COMPARATOR_VECTORS = [
    ("=2.0.0", "1.2.3", False), ("=2.0.0", "2.0.0", True), ("=2.0", "1.2.3", False), ("=2.0", "2.0.0", True),
    ("=2.0", "2.0.1", True), ("4.1", "4.1.0", True), ("!=4.1.0", "4.1.0", False), ("!=4.1.0", "4.1.1", True),
    ("!=4.1", "4.1.0", False), ("!=4.1", "4.1.1", False), ("!=4.1", "5.1.0-alpha.1", False),
    ("!=4.1-alpha", "4.1.0", True), ("!=4.1", "5.1.0", True), ("<11", "0.1.0", True),
    ("<11", "11.1.0", False), ("<1.1", "0.1.0", True), ("<1.1", "1.1.0", False), ("<1.1", "1.1.1", False),
    ("<=11", "1.2.3", True), ("<=11", "12.2.3", False), ("<=11", "11.2.3", True), ("<=1.1", "1.2.3", False),
    ("<=1.1", "0.1.0", True), ("<=1.1", "1.1.0", True), ("<=1.1", "1.1.1", True), (">1.1", "4.1.0", True),
    (">1.1", "1.1.0", False), (">0", "0", False), (">0", "1", True), (">0", "0.0.1-alpha", False),
    (">0.0", "0.0.1-alpha", False), (">0-0", "0.0.1-alpha", False), (">0.0-0", "0.0.1-alpha", False),
    (">0", "0.0.0-alpha", False), (">0-0", "0.0.0-alpha", False), (">0.0.0-0", "0.0.0-alpha", True),
    (">1.2.3-alpha.1", "1.2.3-alpha.2", True), (">1.2.3-alpha.1", "1.3.3-alpha.2", True),
    (">11", "11.1.0", False), (">11.1", "11.1.0", False), (">11.1", "11.1.1", False),
    (">11.1", "11.2.1", True), (">=11", "11.1.2", True), (">=11.1", "11.1.2", True),
    (">=11.1", "11.0.2", False), (">=1.1", "4.1.0", True), (">=1.1", "1.1.0", True),
    (">=1.1", "0.0.9", False), (">=0", "0.0.1-alpha", False), (">=0.0", "0.0.1-alpha", False),
    (">=0-0", "0.0.1-alpha", True), (">=0.0-0", "0.0.1-alpha", True), (">=0", "0.0.0-alpha", False),
    (">=0-0", "0.0.0-alpha", True), (">=0.0.0-0", "0.0.0-alpha", True), (">=0.0.0-0", "1.2.3", True),
    (">=0.0.0-0", "3.4.5-beta.1", True), ("<0", "0.0.0-alpha", False), ("<0-z", "0.0.0-alpha", True),
    (">=0", "0", True), ("=0", "1", False), ("*", "1", True), ("*", "4.5.6", True),
    ("*", "1.2.3-alpha.1", False), ("*-0", "1.2.3-alpha.1", True), ("2.*", "1", False),
    ("2.*", "3.4.5", False), ("2.*", "2.1.1", True), ("2.1.*", "2.1.1", True), ("2.1.*", "2.2.1", False),
    ("2", "1", False), ("2", "3.4.5", False), ("2", "2.1.1", True), ("2.1", "2.1.1", True),
    ("2.1", "2.2.1", False), ("~1.2.3", "1.2.4", True), ("~1.2.3", "1.3.4", False), ("~1.2", "1.2.4", True),
    ("~1.2", "1.3.4", False), ("~1", "1.2.4", True), ("~1", "2.3.4", False), ("~0.2.3", "0.2.5", True),
    ("~0.2.3", "0.3.5", False), ("~1.2.3-beta.2", "1.2.3-beta.4", True),
    ("~1.2.3-beta.2", "1.2.4-beta.2", True), ("~1.2.3-beta.2", "1.3.4-beta.2", False),
    ("^1.2.3", "1.8.9", True), ("^1.2.3", "2.8.9", False), ("^1.2.3", "1.2.1", False),
    ("^1.1.0", "2.1.0", False), ("^1.2.0", "2.2.1", False), ("^1.2.0", "1.2.1-alpha.1", False),
    ("^1.2.0-alpha.0", "1.2.1-alpha.1", True), ("^1.2.0-alpha.0", "1.2.1-alpha.0", True),
    ("^1.2.0-alpha.2", "1.2.0-alpha.1", False), ("^1.2", "1.8.9", True), ("^1.2", "2.8.9", False),
    ("^1", "1.8.9", True), ("^1", "2.8.9", False), ("^0.2.3", "0.2.5", True), ("^0.2.3", "0.5.6", False),
    ("^0.2", "0.2.5", True), ("^0.2", "0.5.6", False), ("^0.0.3", "0.0.3", True), ("^0.0.3", "0.0.4", False),
    ("^0.0", "0.0.3", True), ("^0.0", "0.1.4", False), ("^0.0", "1.0.4", False), ("^0", "0.2.3", True),
    ("^0", "1.1.4", False), ("^0.2.3-beta.2", "0.2.3-beta.4", True), ("^0.2.3-beta.2", "0.2.4-beta.2", True),
    ("^0.2.3-beta.2", "0.3.4-beta.2", False), ("^0.2.3-beta.2", "0.2.3-beta.2", True),
]  # fmt: skip

# Masterminds constraints_test.go TestConstraintsCheck (AND/OR groups, separators, hyphen ranges).
CONSTRAINTS_VECTORS = [
    ("*", "1.2.3", True), ("~0.0.0", "1.2.3", True), ("0.x.x", "1.2.3", False), ("0.0.x", "1.2.3", False),
    ("0.0.0", "1.2.3", False), ("^0.0.0", "1.2.3", False), ("= 2.0", "1.2.3", False),
    ("= 2.0", "2.0.0", True), ("4.1.x", "4.1.3", True), ("1.x", "1.4", True),
    ("!=4.1-alpha", "4.1.0-alpha", False), ("!=4.1-alpha", "4.1.1-alpha", False), ("!=4.x", "5.1.0", True),
    ("!=4.x", "4.1.0", False), ("!=4.1.x", "4.2.0", True), ("!=4.2.x", "4.2.3", False),
    ("<1.x", "1.1.1", False), ("<1.x", "0.1.1", True), ("<1.x", "2.0.0", False), ("<1.1.x", "1.2.1", False),
    ("<1.1.x", "1.1.500", False), ("<1.1.x", "1.0.500", True), ("<1.2.x", "1.1.1", True),
    (">=1.1", "4.1.0-beta", False), ("<=1.1", "0.1.0-alpha", False), ("<=1.1-a", "0.1.0-alpha", True),
    ("<=1.x", "1.1.0", True), ("<=2.x", "3.0.0", False), ("<=1.1.x", "1.2.500", False),
    ("<=4.5", "3.4.0", True), ("<=4.5", "3.7.0", True), ("<=4.5", "4.6.3", False),
    (">1.1, <2", "1.1.1", False), (">1.1, <2", "1.2.1", True), (">1.1, <3", "4.3.2", False),
    (">=1.1, <2, !=1.2.3", "1.2.3", False), (">1.1 <2", "1.1.1", False), (">1.1 <2", "1.2.1", True),
    (">1.1    <3", "4.3.2", False), (">=1.1    <2    !=1.2.3", "1.2.3", False),
    (">=1.1, <2, !=1.2.3 || > 3", "4.1.2", True), (">=1.1, <2, !=1.2.3 || > 3", "3.1.2", False),
    (">=1.1, <2, !=1.2.3 || >= 3", "3.0.0", True), (">=1.1, <2, !=1.2.3 || > 3", "3.0.0", False),
    (">=1.1, <2, !=1.2.3 || > 3", "1.2.3", False), (">=1.1 <2 !=1.2.3 || > 3", "4.1.2", True),
    ("> 1.1, <     2", "1.1.1", False), (">   1.1, <2", "1.2.1", True),
    (">= 1.1 <2 != 1.2.3 || >= 3", "3.0.0", True), (">=1.1 < 2 !=1.2.3 || > 3", "1.2.3", False),
    ("1.1 - 2", "1.1.1", True), ("1.5.0 - 4.5", "3.7.0", True), ("1.1-3", "4.3.2", False),
    ("^1.1", "1.1.1", True), ("^1.1", "4.3.2", False), ("^1.x", "1.1.1", True), ("^2.x", "1.1.1", False),
    ("^1.x", "2.1.1", False), ("^1.x", "1.1.1-beta1", False), ("^1.1.2-alpha", "1.2.1-beta1", True),
    ("^1.2.x-alpha", "1.1.1-beta1", False), ("^0.0.1", "0.0.1", True), ("^0.0.1", "0.3.1", False),
    ("~*", "2.1.1", True), ("~1", "2.1.1", False), ("~1", "1.3.5", True), ("~1", "1.4", True),
    ("~1.x", "2.1.1", False), ("~1.x", "1.3.5", True), ("~1.1", "1.1.1-alpha", False),
    ("~1.1-alpha", "1.1.1-beta", True), ("~1.1.1-beta", "1.1.1-alpha", False), ("~1.1.1-beta", "1.1.1", True),
    ("~1.2.3", "1.2.2", False), ("~1.2.3", "1.3.2", False), ("~1.1", "1.2.3", False),
    ("~1.3", "2.4.5", False), ("~1.3.6-alpha", "1.3.5-beta", False), ("~1.3.5-alpha", "1.3.5-beta", True),
    ("~1.3.5-beta", "1.3.5-alpha", False), ("^1.1.1-alpha", "1.1.1-beta", True),
    ("^1.1.1-beta", "1.1.1-alpha", False), ("^0.0.1", "0.1.3", False),
]  # fmt: skip

# Reference §4.2/§4.3 statements, each one observed upstream.
REFERENCE_VECTORS = [
    # v3.4+: prerelease eligibility per AND group, not per comparator.
    (">= 1.0.0-0 <= 2.0.0", "1.0.1-beta", True),
    (">=1.0.0-0", "1.0.0-alpha", True),
    (">=1.0.0-0", "2.0.0-rc.1", True),
    (">=1.0.0-0, <2.0.0", "1.5.0-rc.1", True),
    (">=1.0.0-0, <2.0.0", "2.0.0-rc.1", True),
    (">=1.0.0-0, <2.0.0-0", "2.0.0-rc.1", False),
    ("^1.x-0", "1.2.0-rc.1", True),
    ("^1.x-0", "2.0.0-rc.1", False),
    ("*-0", "3.0.0-alpha", True),
    (">=1.0.0-0 <2.0.0 || >=3.0.0", "3.1.0-rc.1", False),
    (">=1.0.0-0 <2.0.0 || >=3.0.0", "1.1.0-rc.1", True),
    (">=1.2.3-BETA", "1.2.3-alpha", True),
    (">=1.0.0", "1.0.1-rc.1", False),
    ("!=1.2.3", "1.2.4-rc.1", False),
    # Metadata never matters.
    ("=1.2.3", "1.2.3+build", True),
    (">=1.0.0+meta", "1.0.0", True),
    # Wildcard and dirty quirks.
    ("^*", "0.0.0", True),
    ("^*", "0.0.1", False),
    ("^*", "1.0.0", False),
    ("!=*", "0.0.0", False),
    ("!=*", "0.0.1", True),
    ("<=*", "0.0.9", True),
    ("<=*", "0.1.0", False),
    ("<*", "0.0.0", False),
    (">*", "0.0.1", True),
    (">*", "0.0.0", False),
    (">=*", "0.0.0", True),
    ("~0.0.0", "9.9.9", True),
    ("~x", "9.9.9", True),
    ("~0", "0.9.9", True),
    ("~0", "1.0.0", False),
    ("~0.0", "0.0.9", True),
    ("~0.0", "0.1.0", False),
    (">1", "1.9.9", False),
    (">1", "2.0.0", True),
    (">1.2.x", "1.2.9", False),
    (">1.2.x", "1.3.0", True),
    ("<1.x", "1.0.0", False),
    ("<=2.x", "2.9.9", True),
    ("<=1.2", "1.2.99", True),
    ("X.1.2", "7.0.0", True),
    ("1.*.3", "1.9.0", True),
    ("!=4.x", "4.9.9", False),
    ("!=4.1", "4.1.7", False),
    ("!=4.1-alpha", "4.1.5", True),
    ("^0.0.3", "0.0.3", True),
    ("^0.0.3", "0.0.4", False),
    ("^0.0.0", "0.0.0", True),
    ("^0.0.0", "0.0.1", False),
    ("^0.0.x", "0.0.7", True),
    ("^0.0.x", "0.1.0", False),
    ("^0.x", "0.9.0", True),
    ("^0.x", "1.0.0", False),
    # Hyphen ranges: the upper bound is the dirty <=, inclusive of the whole partial range.
    ("1.2 - 2", "2.9.9", True),
    ("1.2 - 2", "3.0.0", False),
    ("1.2 - 2", "1.1.9", False),
    # A leading v on the range.
    ("v1.0.x", "1.0.1", True),
    # Separators: `||` without spaces, `,`, comma with spaces on either side.
    (">=1 <2||>=3", "3.5.0", True),
    (">=1 <2||>=3", "2.5.0", False),
    (">=1.2.3,<2", "1.9.0", True),
    (">= 1.2.3 < 2.0", "2.0.0", False),
    ("1.2.3 ,1.2.4", "1.2.3", False),
]


def _check(range_: str, version: str) -> bool:
    parsed = parse_masterminds_version(version)
    assert parsed is not None
    return parse_range(range_).check(parsed)


@pytest.mark.parametrize(("range_", "version", "expected"), SINGLE_COMPARATOR_VECTORS)
def test_single_comparator_vectors(range_: str, version: str, expected: bool) -> None:
    assert _check(range_, version) is expected


@pytest.mark.parametrize(("range_", "version", "expected"), CONSTRAINTS_VECTORS)
def test_constraint_group_vectors(range_: str, version: str, expected: bool) -> None:
    assert _check(range_, version) is expected


@pytest.mark.parametrize(("range_", "version", "expected"), REFERENCE_VECTORS)
def test_reference_semantics(range_: str, version: str, expected: bool) -> None:
    assert _check(range_, version) is expected


def test_prerelease_flag_is_per_or_group() -> None:
    constraints = parse_range(">=1.0.0-0 <2.0.0 || >=3.0.0")
    assert [group.admits_prerelease for group in constraints.groups] == [True, False]


@pytest.mark.parametrize(
    "range_",
    [
        "",
        "||",
        "1.2.3 || ",
        "V1.x",
        "12.3.4.1234",
        "1.0.0p",
        "1x",
        "x1",
        "-1",
        "a",
        "*-*",
        "v1.2.3-beta.01",
        "foo",
        "> =1.2",
        "1.2.3 -2.3.4",
        ">= bar",
        "BAR >= 1.2.3",
        "12.3.34~ 1.2.3",
    ],
)
def test_ranges_flux_rejects_raise_invalid_policy(range_: str) -> None:
    with pytest.raises(InvalidPolicy):
        parse_range(range_)


@pytest.mark.parametrize(
    "range_",
    [
        "1.0.x",
        "^1.0",
        "=1.0.0",
        "~1.0",
        ">=1.0",
        ">0,<2.0",
        "12.3.34 ~1.2.3",
        "v2.3.5-20161202202307-sha.e8fc5e5",
    ],
)
def test_ranges_flux_accepts_parse(range_: str) -> None:
    assert parse_range(range_).groups


def test_invalid_range_message_is_masterminds_wording() -> None:
    with pytest.raises(InvalidPolicy, match="improper constraint: foo"):
        parse_range("foo")


@pytest.mark.parametrize(
    ("range_", "rewritten"),
    [
        ("2 - 3", ">= 2, <= 3 "),
        ("2 - 3, 2 - 3", ">= 2, <= 3 ,>= 2, <= 3 "),
        ("2 - 3, 4.0.0 - 5.1", ">= 2, <= 3 ,>= 4.0.0, <= 5.1 "),
        ("1.1-3", "1.1-3"),
    ],
)
def test_hyphen_ranges_need_spaces_on_both_sides(range_: str, rewritten: str) -> None:
    assert rewrite_hyphen_ranges(range_) == rewritten


def test_hyphen_without_spaces_is_a_prerelease_not_a_range() -> None:
    assert _check("1.1-3", "1.1.0-3")
    assert not _check("1.1-3", "2.0.0")


@pytest.mark.parametrize(
    ("range_", "tag", "expected"),
    [
        ("v1.0.x", "1.0.1", True),
        ("1.0.x", "v1.0.1", True),
        (">=1.0.0", "1.0", False),
        (">=1.0.0", "latest", False),
        (">=1.0.0", "1.2-rc.1", False),
        (">=1.0.0-0", "1.2-rc.1", True),
        (">=2024.1.1", "2024.01.15", True),
    ],
)
def test_semver_range_matches_uses_flux_tag_parsing(range_: str, tag: str, expected: bool) -> None:
    assert semver_range_matches(range_, tag) is expected


def test_semver_range_matches_rejects_invalid_range_even_for_non_version_tags() -> None:
    with pytest.raises(InvalidPolicy):
        semver_range_matches("not a range", "latest")
