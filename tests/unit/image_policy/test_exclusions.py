"""ImageRepository exclusion lists and the stored tag order (reference §2.1, §5)."""

from __future__ import annotations

import pytest

from shared.image_policy import (
    DEFAULT_EXCLUSION_LIST,
    InvalidPolicy,
    effective_exclusion_list,
    excluded_by,
    stored_tag_order,
)


def test_default_list_drops_cosign_signature_tags() -> None:
    assert excluded_by(DEFAULT_EXCLUSION_LIST, "sha256-abc123.sig") == "^.*\\.sig$"
    assert excluded_by(DEFAULT_EXCLUSION_LIST, "1.2.3") is None


@pytest.mark.parametrize("written", [None, []])
def test_absent_or_empty_list_means_the_default(written: list[str] | None) -> None:
    assert effective_exclusion_list(written) == DEFAULT_EXCLUSION_LIST


def test_a_written_list_replaces_the_default_instead_of_merging() -> None:
    effective = effective_exclusion_list(["^dev-"])
    assert effective == ("^dev-",)
    assert excluded_by(effective, "sha256-abc.sig") is None


def test_patterns_are_an_unanchored_search_and_any_match_excludes() -> None:
    patterns = ["rc", "^nightly$"]
    assert excluded_by(patterns, "1.0.0-rc.1") == "rc"
    assert excluded_by(patterns, "nightly") == "^nightly$"
    assert excluded_by(patterns, "nightly-2") is None


def test_a_bad_pattern_fails_like_the_scan_does() -> None:
    with pytest.raises(InvalidPolicy, match="exclusion list pattern"):
        excluded_by(["(?!x)"], "1.0.0")


def test_stored_order_is_descending_bytes_after_exclusion() -> None:
    stored = stored_tag_order(["1.0.0", "v1.0.0", "B", "a", "x.sig"], DEFAULT_EXCLUSION_LIST)
    assert stored == ["v1.0.0", "a", "B", "1.0.0"]
