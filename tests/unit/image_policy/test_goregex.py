"""Go RE2 patterns on Python's `re`, and Go's `Expand` (reference §7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.image_policy import InvalidPolicy
from shared.image_policy.goregex import compile_go_regex


def _expand(pattern: str, template: str, text: str) -> str:
    regex = compile_go_regex(pattern)
    match = regex.search(text)
    assert match is not None
    return regex.expand(template, match)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$1", "12"),
        ("${1}x", "12x"),
        ("$1x", ""),  # the group named "1x", which does not exist
        ("$2.$1", "ab.12"),
        ("${2}", "ab"),
        ("$01", ""),  # a leading zero makes it a name
        ("$0", "12-ab"),
        ("$$1", "$1"),
        ("$-", "$-"),
        ("${}", "${}"),
        ("${1", "${1"),
        ("$", "$"),
        ("a$", "a$"),
        ("$9", ""),
        ("v$1-$2", "v12-ab"),
    ],
)
def test_expand_follows_go_template_rules(template: str, expected: str) -> None:
    assert _expand(r"(\d+)-(\w+)", template, "x12-ab") == expected


def test_expand_by_name_with_both_named_group_syntaxes() -> None:
    assert _expand(r"^RELEASE\.(?P<timestamp>.*)Z$", "$timestamp", "RELEASE.2024-01-01T00-00-00Z") == (
        "2024-01-01T00-00-00"
    )
    assert _expand(r"^v(?<num>\d+)$", "${num}", "v42") == "42"


def test_group_names_python_rejects_are_usable() -> None:
    assert _expand(r"(?P<1x>\d+)", "$1x", "a77") == "77"


def test_group_that_did_not_take_part_expands_to_empty() -> None:
    assert _expand(r"(a)|(b)", "[$1][$2]", "b") == "[][b]"


def test_first_match_is_used_not_a_substitution_into_the_tag() -> None:
    assert _expand(r"(\d)", "$1", "x1y2") == "1"


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("^ver", "ver1", True),
        ("^ver", "rel-ver1", False),
        ("ver", "rel-ver1", True),  # unanchored search
        ("", "anything", True),
        (r"\d+", "abc", False),
        (r"a\z", "a", True),
        (r"\Qa.b\E", "axb", False),
        (r"\Qa.b\E", "a.b", True),
        ("[[:alpha:]]+$", "abc", True),
        ("^[[:digit:]]+$", "12a", False),
        (r"\x{41}", "A", True),
        (r"\101", "A", True),  # octal escape, not a backreference
        ("(?i)abc", "ABC", True),
        ("a(?i)b|c", "C", True),  # the flag holds for the rest of the group, across `|`
        ("a(?i)b|c", "aB", True),
        ("(?i:a)b", "AB", False),
        ("a{01}", "a{01}", True),  # not a valid repeat in Go: literal
        ("a{,3}", "a{,3}", True),
        ("^a{2}$", "aa", True),
        (r"\pL+", "abc", True),
        (r"[\s\S]", "x", True),
        ("[]a]", "]", True),
        ("^*a", "a", True),
    ],
)
def test_go_patterns_match_as_go_does(pattern: str, text: str, matches: bool) -> None:
    assert (compile_go_regex(pattern).search(text) is not None) is matches


def test_ungreedy_flag_swaps_greediness() -> None:
    assert _expand("(?U)(a+)", "$1", "aaa") == "a"
    assert _expand("(?U)(a+?)", "$1", "aaa") == "aaa"


def test_dollar_matches_only_at_the_very_end() -> None:
    assert compile_go_regex("a$").search("a\n") is None


@pytest.mark.parametrize(
    "pattern",
    [
        "(?=a)",
        "(?!a)",
        "(?<=a)b",
        "(?<!a)b",
        r"(a)\1",
        "(?P=name)",
        "(?#comment)",
        "(?>a)",
        "a**",
        "a*+",
        "a{2}{3}",
        "*a",
        "(|*)",
        "a{1001}",
        "a{2,1}",
        "(a",
        "a)",
        "[a",
        "[z-a]",
        r"\C",
        r"\Z",
        r"\8",
        "(?i-)",
        "(?P<>a)",
        "(?P<a-b>a)",
        "(?P<n>a)(?P<n>b)",
        "[[:nope:]]",
        "^test-(.*",
        "[=",
    ],
)
def test_patterns_go_rejects_raise_invalid_policy(pattern: str) -> None:
    with pytest.raises(InvalidPolicy, match="error parsing regexp"):
        compile_go_regex(pattern)


@given(pattern=st.text(alphabet="ab()[]{}*+?|\\^$.-:,019PpxQEzisU<>=!#_", max_size=14))
def test_any_pattern_either_compiles_or_is_invalid_policy(pattern: str) -> None:
    """No pattern reaches the user as a crash: Go either accepts it or says why not."""
    try:
        regex = compile_go_regex(pattern)
    except InvalidPolicy:
        return
    regex.search("ab01_")
