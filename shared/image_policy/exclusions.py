"""ImageRepository tag exclusion and the tag order Flux stores (reference §2.1, §5).

Exclusions live on the ImageRepository, not the ImagePolicy, so they are applied once at scan
time: a tag matching any exclusion regex (unanchored search) never reaches any policy. The
survivors are stored sorted in descending byte order, and that order is the input order every
policy sees - which is what makes Flux's tie-breaking deterministic without filterTags.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shared.image_policy.errors import InvalidPolicy
from shared.image_policy.goregex import compile_go_regex

# IRC `GetExclusionList()` and the CRD default: drop cosign signature tags (`sha256-….sig`).
DEFAULT_EXCLUSION_LIST: tuple[str, ...] = ("^.*\\.sig$",)


def effective_exclusion_list(exclusion_list: Sequence[str] | None) -> tuple[str, ...]:
    """The list Flux applies: the default when absent or empty, else the list as written.

    A non-empty list replaces the default; it is not merged with it.
    """
    if not exclusion_list:
        return DEFAULT_EXCLUSION_LIST
    return tuple(exclusion_list)


def excluded_by(exclusion_list: Sequence[str], tag: str) -> str | None:
    """The first exclusion regex (Go RE2, unanchored) that matches `tag`, or None.

    The list is used as given; pass it through `effective_exclusion_list` to get Flux's default
    for a repository that sets none. An invalid pattern raises InvalidPolicy (Flux fails the scan).
    """
    for pattern in exclusion_list:
        try:
            regex = compile_go_regex(pattern)
        except InvalidPolicy as error:
            raise InvalidPolicy(f"failed to compile exclusion list pattern '{pattern}': {error}") from None
        if regex.search(tag) is not None:
            return pattern
    return None


def stored_tag_order(tags: Iterable[str], exclusion_list: Sequence[str] = ()) -> list[str]:
    """The tag list an ImageRepository stores: excluded tags dropped, sorted descending by bytes.

    Python compares `str` by code point, which is the same order as Go's byte-wise comparison of
    the UTF-8 encoding.
    """
    kept = [tag for tag in tags if excluded_by(exclusion_list, tag) is None] if exclusion_list else list(tags)
    kept.sort(reverse=True)
    return kept
