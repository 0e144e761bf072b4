"""Which tag an ImagePolicy selects, exactly as image-reflector-controller does, and why others lose.

The pipeline is IRC's `applyPolicy` (reference §2): build the policer first (an invalid policy is
`InvalidPolicy` before any tag is read); take the tags in the order the ImageRepository stores them
(descending by bytes); apply `filterTags` (unanchored pattern, optional `extract` template of the
first match, a map from value to original tag where a later tag wins a collision); run the
policy's `Latest`; map the winner back to its original tag.

`select_latest` takes tags in any order and sorts them as Flux stores them, so its answer depends
only on the set of tags. `select_latest_from_stored` takes the stored order as given; that is where
Flux's tie-breaking lives (semver: first of equal precedence wins; numerical: last of equal value
wins; filterTags collision: last wins).

One place where Flux is not deterministic: with `filterTags`, the policy sees the map's keys in Go's
random map order, so equal-precedence semver values (`1.0.0` vs `v1.0.0`) or equal numerical values
(`1` vs `1.0`) tie randomly in Flux. Here keys keep stored order (first insertion), and
`evaluate_tag` says when a tag lost such a tie.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shared.image_policy.errors import InvalidPolicy
from shared.image_policy.gofloat import parse_go_float
from shared.image_policy.goregex import GoRegex, compile_go_regex
from shared.image_policy.semver import (
    Constraints,
    explain_not_a_version,
    latest_matching,
    parse_range,
    parse_version,
)

RejectionReason = Literal["filter-pattern", "range", "not-a-version", "not-numeric"]

# Flux's own messages for a policy that cannot select (Ready=False, reason Failure or
# DependencyNotReady), from IRC internal/policy and internal/controller.
NO_TAGS = "no tags in database"
EMPTY_LIST = "version list argument cannot be empty"
NO_MATCH = "unable to determine latest version from provided list"
_ORDER_ASC = "ASC"
_ORDER_DESC = "DESC"


@dataclass(frozen=True)
class SemVerPolicy:
    constraints: Constraints


@dataclass(frozen=True)
class AlphabeticalPolicy:
    descending: bool


@dataclass(frozen=True)
class NumericalPolicy:
    descending: bool


Policer = SemVerPolicy | AlphabeticalPolicy | NumericalPolicy


@dataclass(frozen=True)
class TagFilter:
    """`spec.filterTags`: a Go regex and an optional `Expand` template."""

    regex: GoRegex
    extract: str

    def value_of(self, tag: str) -> str | None:
        """The value the policy sees for `tag`, or None when the pattern does not match."""
        match = self.regex.search(tag)
        if match is None:
            return None
        return self.regex.expand(self.extract, match) if self.extract else tag


@dataclass(frozen=True)
class CompiledPolicy:
    """An ImagePolicy spec validated the way IRC's `PolicerFromSpec` and `NewRegexFilter` do."""

    policer: Policer
    tag_filter: TagFilter | None


@dataclass(frozen=True)
class Selection:
    """The outcome of a policy over a tag list: the selected original tag, or Flux's failure."""

    tag: str | None
    failure: str | None


def _as_mapping(value: object, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidPolicy(f"invalid policy: {what} must be a mapping")
    return value


def _order(choice: Mapping[str, Any], what: str) -> bool:
    order = choice.get("order") or ""
    if not isinstance(order, str):
        raise InvalidPolicy(f"invalid policy: {what}.order must be a string")
    upper = order.upper()
    if upper in ("", _ORDER_ASC):
        return False
    if upper == _ORDER_DESC:
        return True
    raise InvalidPolicy(
        f"invalid policy: invalid order argument provided: '{upper}', "
        f"must be one of: {_ORDER_ASC}, {_ORDER_DESC}"
    )


def compile_policy(spec: Mapping[str, Any]) -> CompiledPolicy:
    """Validate an ImagePolicy `spec` (as written in YAML); raises InvalidPolicy like Flux would."""
    choice = _as_mapping(spec.get("policy"), "spec.policy")
    policer: Policer
    if choice.get("semver") is not None:
        semver = _as_mapping(choice["semver"], "spec.policy.semver")
        range_ = semver.get("range") or ""
        if not isinstance(range_, str):
            raise InvalidPolicy("invalid policy: spec.policy.semver.range must be a string")
        try:
            policer = SemVerPolicy(parse_range(range_))
        except InvalidPolicy as error:
            raise InvalidPolicy(f"invalid policy: {error}") from None
    elif choice.get("alphabetical") is not None:
        alphabetical = _as_mapping(choice["alphabetical"], "spec.policy.alphabetical")
        policer = AlphabeticalPolicy(_order(alphabetical, "spec.policy.alphabetical"))
    elif choice.get("numerical") is not None:
        numerical = _as_mapping(choice["numerical"], "spec.policy.numerical")
        policer = NumericalPolicy(_order(numerical, "spec.policy.numerical"))
    else:
        raise InvalidPolicy("invalid policy: given ImagePolicyChoice object is invalid")
    tag_filter = None
    if spec.get("filterTags") is not None:
        filter_spec = _as_mapping(spec["filterTags"], "spec.filterTags")
        pattern = filter_spec.get("pattern") or ""
        extract = filter_spec.get("extract") or ""
        if not isinstance(pattern, str) or not isinstance(extract, str):
            raise InvalidPolicy("failed to filter tags: pattern and extract must be strings")
        try:
            regex = compile_go_regex(pattern)
        except InvalidPolicy as error:
            raise InvalidPolicy(
                f"failed to filter tags: invalid regular expression pattern '{pattern}': {error}"
            ) from None
        tag_filter = TagFilter(regex, extract)
    return CompiledPolicy(policer, tag_filter)


def _filter_values(tag_filter: TagFilter, stored_tags: Iterable[str]) -> dict[str, str]:
    """IRC `RegexFilter.Apply`: value -> original tag; a later tag overwrites an earlier one."""
    values: dict[str, str] = {}
    for tag in stored_tags:
        value = tag_filter.value_of(tag)
        if value is not None:
            values[value] = tag
    return values


def _numerical_latest(values: list[str], descending: bool) -> tuple[str | None, str | None]:
    """IRC `Numerical.Latest`: (winner, failure). Ties and NaN: the later value wins."""
    latest: str | None = None
    previous = math.nan
    for index, value in enumerate(values):
        number = parse_go_float(value)
        if number is None:
            return None, f"failed to parse invalid numeric value '{value}'"
        if index > 0 and ((not descending and number < previous) or (descending and number > previous)):
            continue
        latest, previous = value, number
    return latest, None


def _policer_latest(policer: Policer, values: list[str]) -> tuple[str | None, str | None]:
    if not values:
        return None, EMPTY_LIST
    if isinstance(policer, SemVerPolicy):
        winner = latest_matching(policer.constraints, values)
        return (winner, None) if winner is not None else (None, NO_MATCH)
    if isinstance(policer, AlphabeticalPolicy):
        return (min(values) if policer.descending else max(values)), None
    return _numerical_latest(values, policer.descending)


def run_policy(policy: CompiledPolicy, stored_tags: list[str]) -> Selection:
    """IRC `applyPolicy` over tags in stored order (see module docstring)."""
    if not stored_tags:
        return Selection(None, NO_TAGS)
    if policy.tag_filter is None:
        winner, failure = _policer_latest(policy.policer, stored_tags)
        return Selection(winner, failure)
    values = _filter_values(policy.tag_filter, stored_tags)
    winner, failure = _policer_latest(policy.policer, list(values))
    return Selection(None if winner is None else values[winner], failure)


def select_latest_from_stored(spec: Mapping[str, Any], stored_tags: Iterable[str]) -> str | None:
    """The tag Flux selects when its database holds `stored_tags` in exactly this order."""
    return run_policy(compile_policy(spec), list(stored_tags)).tag


def compute_selection(spec: Mapping[str, Any], tags: Iterable[str]) -> Selection:
    """Like `select_latest`, with Flux's failure message when nothing is selected."""
    return run_policy(compile_policy(spec), sorted(tags, reverse=True))


def select_latest(spec: Mapping[str, Any], tags: Iterable[str]) -> str | None:
    """The original tag Flux selects from a repository holding `tags` (any order); None if none.

    `tags` are the tags the ImageRepository kept (apply its exclusion list first, see
    `exclusions.excluded_by`). Raises InvalidPolicy when Flux would stall the policy.
    """
    return compute_selection(spec, tags).tag


@dataclass(frozen=True)
class TagEvaluation:
    """Why one tag is or is not what a policy selects, for user-facing verdicts.

    `selected` is the winner over `tags` plus this tag; `eligible` says whether this tag passes the
    filter and the policy's own test (it can still lose to a higher tag or a tie-break, which
    `detail` explains); `rejected_by` names the first gate that excluded it.
    """

    tag: str
    selected: str | None
    eligible: bool
    rejected_by: RejectionReason | None
    detail: str


def _policy_name(policer: Policer) -> str:
    if isinstance(policer, SemVerPolicy):
        return f"semver range '{policer.constraints.range_}'"
    order = "desc" if policer.descending else "asc"
    kind = "alphabetical" if isinstance(policer, AlphabeticalPolicy) else "numerical"
    return f"{kind} order {order}"


def _value_phrase(tag: str, value: str) -> str:
    return tag if value == tag else f"{tag} (extracted value '{value}')"


def _gate(policer: Policer, tag: str, value: str) -> tuple[RejectionReason | None, str]:
    """The policy's own test of one value: (rejection, sentence) - rejection None when it passes."""
    subject = _value_phrase(tag, value)
    if isinstance(policer, SemVerPolicy):
        version = parse_version(value)
        if version is None:
            return "not-a-version", explain_not_a_version(value) + "; Flux skips it"
        if not policer.constraints.check(version):
            reason = policer.constraints.explain_rejection(version)
            return "range", reason if value == tag else f"{subject}: {reason}"
        return None, ""
    if isinstance(policer, NumericalPolicy) and parse_go_float(value) is None:
        return "not-numeric", (
            f"{subject} is not a number Go's strconv.ParseFloat accepts; one such value makes Flux's "
            "numerical policy fail for every tag"
        )
    return None, ""


def _why_not_selected(policy: CompiledPolicy, tag: str, value: str, selection: Selection) -> str:
    subject = _value_phrase(tag, value)
    if selection.tag is None:
        policy_name = _policy_name(policy.policer)
        return f"{subject} passes {policy_name}, but Flux selects nothing: {selection.failure}"
    policer = policy.policer
    winner = selection.tag
    if isinstance(policer, SemVerPolicy):
        version = parse_version(value)
        winner_value = policy.tag_filter.value_of(winner) if policy.tag_filter else winner
        winning = parse_version(winner_value or "")
        if version is not None and winning is not None and version == winning:
            how = (
                "first in Flux's descending tag order wins"
                if policy.tag_filter is None
                else ("Flux breaks this tie in random map order")
            )
            return f"{subject} has the same precedence as {winner}; {how}"
        return f"{subject} is eligible, but {winner} has higher precedence under {_policy_name(policer)}"
    if isinstance(policer, NumericalPolicy):
        return f"{subject} is eligible, but {winner} wins under {_policy_name(policer)}"
    return f"{subject} is eligible, but {winner} sorts first under {_policy_name(policer)}"


def evaluate_tag(spec: Mapping[str, Any], tag: str, tags: Iterable[str]) -> TagEvaluation:
    """Explain Flux's decision about `tag` when the repository holds `tags` plus `tag`."""
    policy = compile_policy(spec)
    stored = sorted(set(tags) | {tag}, reverse=True)
    selection = run_policy(policy, stored)
    value = tag
    if policy.tag_filter is not None:
        filtered = policy.tag_filter.value_of(tag)
        if filtered is None:
            detail = f"{tag} does not match filterTags.pattern '{policy.tag_filter.regex.pattern}'"
            return TagEvaluation(tag, selection.tag, False, "filter-pattern", detail)
        value = filtered
    rejection, detail = _gate(policy.policer, tag, value)
    if rejection is not None:
        return TagEvaluation(tag, selection.tag, False, rejection, detail)
    if selection.tag == tag:
        detail = f"{_value_phrase(tag, value)} is the tag Flux selects under {_policy_name(policy.policer)}"
        return TagEvaluation(tag, selection.tag, True, None, detail)
    if policy.tag_filter is not None:
        keeper = _filter_values(policy.tag_filter, stored)[value]
        if keeper != tag:
            detail = (
                f"{tag} extracts to '{value}', which {keeper} also produces; Flux keeps the later tag "
                f"in its descending order, {keeper}, for that value"
            )
            return TagEvaluation(tag, selection.tag, True, None, detail)
    return TagEvaluation(tag, selection.tag, True, None, _why_not_selected(policy, tag, value, selection))
