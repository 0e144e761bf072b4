"""Masterminds/semver v3.5 versions and constraints, and Flux's tag parser, in pure Python.

Why not a Python semver library: Flux's SemVer ImagePolicy is defined by two Go packages whose
behaviour no Python package reproduces. Masterminds' loose `NewVersion` accepts `v01.02.03` and
`1.2-rc.1`, its constraint language has wildcard quirks (`^*` matches only 0.0.0, `>1` rejects
1.9.9), and since v3.4 prerelease eligibility is decided per AND group (reference §4.3). On top of
that Flux (fluxcd/pkg `version.ParseVersion`) only treats a tag as a version when it has at least
two dots. Each rule below names the reference section it implements
(`/work/shared/reference/flux-image-policy.md`).

Regexes are the upstream ones, translated from Go RE2 with two care points: Go's `\\s` is
`[\\t\\n\\f\\r ]` (Python's also has `\\v`), and Go's `$` only matches at the very end, so whole-string
matches use `fullmatch`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from shared.image_policy.errors import InvalidPolicy

# Masterminds parses MAJOR/MINOR/PATCH with strconv.ParseUint(s, 10, 64); a larger number is an
# error for the version, and a prerelease identifier that big is compared as text (§3.3).
UINT64_MAX = 2**64 - 1

# Parsed versions are cached because the same registry tags are evaluated over and over (every
# push event re-evaluates the whole tag list); 65,536 entries bound the memory at a few MB.
_VERSION_CACHE_SIZE = 65_536
# Parsed ranges are few (one per ImagePolicy) but parsed on every evaluation.
_CONSTRAINT_CACHE_SIZE = 1_024

# Masterminds NewVersion in its default "coerce" mode, per reference §3.1: optional lowercase v,
# 1-3 numeric parts (leading zeros allowed), prerelease and metadata identifiers of [0-9A-Za-z-].
_VERSION_RE = re.compile(
    r"v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)

# Go's `\s` (RE2 Perl class): tab, newline, form feed, carriage return, space - no vertical tab.
_GO_SPACE = r"[\t\n\f\r ]"

# Masterminds constraints.go `cvRegex`. `[0-9|x|X|\*]` is a character class that also admits `|`,
# so tokens such as `1x` pass the regex and only fail later in NewVersion - kept as upstream.
_CV = (
    r"v?([0-9|xX*]+)(\.[0-9|xX*]+)?(\.[0-9|xX*]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)
# Upstream operator alternation, including its empty alternative (a bare version).
_OPS = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^"

_CONSTRAINT_RE = re.compile(f"{_GO_SPACE}*({_OPS}){_GO_SPACE}*({_CV}){_GO_SPACE}*")
_RANGE_RE = re.compile(f"{_GO_SPACE}*({_CV}){_GO_SPACE}+-{_GO_SPACE}+({_CV}){_GO_SPACE}*")
_FIND_CONSTRAINT_RE = re.compile(f"({_OPS}){_GO_SPACE}*({_CV})")
_VALID_GROUP_RE = re.compile(
    f"({_GO_SPACE}*({_OPS}){_GO_SPACE}*({_CV}){_GO_SPACE}*)"
    f"((?:{_GO_SPACE}+|,{_GO_SPACE}*)({_OPS}){_GO_SPACE}*({_CV}){_GO_SPACE}*)*"
)
# Group numbers inside _RANGE_RE: the first version is group 1, the second starts after the nine
# groups of the first cvRegex (upstream reads v[1] and v[11]).
_RANGE_LOW_GROUP = 1
_RANGE_HIGH_GROUP = 11

# Sort-key marker for "no prerelease": a release outranks every prerelease of the same core.
_RELEASE_KEY: tuple[tuple[int, int | str], ...] = ((2, 0),)


def _prerelease_key(prerelease: str) -> tuple[tuple[int, int | str], ...]:
    """Masterminds `comparePrerelease` as a tuple key (§3.3).

    Each identifier becomes (0, number) when it parses as uint64, else (1, text); numbers rank
    below text, text compares by bytes (identifiers are ASCII), and a missing identifier ranks below
    any present one - which is exactly how Python compares tuples of unequal length.
    """
    parts: list[tuple[int, int | str]] = []
    for identifier in prerelease.split("."):
        if identifier.isdigit() and identifier.isascii() and int(identifier) <= UINT64_MAX:
            parts.append((0, int(identifier)))
        else:
            parts.append((1, identifier))
    return tuple(parts)


@dataclass(frozen=True, eq=False)
class Version:
    """A version as Masterminds/semver v3 parses it; compares by Masterminds precedence.

    Equality is precedence equality (`Version.Equal`): metadata is ignored, so `1.0.0+a == 1.0.0+b`
    and `v1.0.0 == 1.0.0`. `original` is the string that was parsed (the tag Flux returns).
    """

    major: int
    minor: int
    patch: int
    prerelease: str
    metadata: str
    original: str
    # A tuple whose ordering is Masterminds precedence, built once: selection compares keys only.
    key: tuple[int, int, int, tuple[tuple[int, int | str], ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pre = _prerelease_key(self.prerelease) if self.prerelease else _RELEASE_KEY
        object.__setattr__(self, "key", (self.major, self.minor, self.patch, pre))

    def compare(self, other: Version) -> int:
        """-1, 0 or 1, like Masterminds `Version.Compare`."""
        mine, theirs = self.key, other.key
        return (mine > theirs) - (mine < theirs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __lt__(self, other: Version) -> bool:
        return self.key < other.key

    def __le__(self, other: Version) -> bool:
        return self.key <= other.key

    def __gt__(self, other: Version) -> bool:
        return self.key > other.key

    def __ge__(self, other: Version) -> bool:
        return self.key >= other.key

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += f"-{self.prerelease}"
        if self.metadata:
            text += f"+{self.metadata}"
        return text


@lru_cache(maxsize=_VERSION_CACHE_SIZE)
def parse_masterminds_version(text: str) -> Version | None:
    """Masterminds `NewVersion` (coerce mode): `1`, `1.4`, `v1.2-rc.1` are versions here.

    Flux never uses this directly on tags (see `parse_version`); constraints use it for their
    base versions, and tests use it to run Masterminds' own vectors.
    """
    match = _VERSION_RE.fullmatch(text)
    if match is None:
        return None
    major_text, minor_text, patch_text, prerelease, metadata = match.groups()
    major = int(major_text)
    minor = int(minor_text) if minor_text else 0
    patch = int(patch_text) if patch_text else 0
    if major > UINT64_MAX or minor > UINT64_MAX or patch > UINT64_MAX:
        return None
    if prerelease:
        for identifier in prerelease.split("."):
            # An all-digit prerelease identifier may not have a leading zero (`01`); `0` is fine.
            if identifier[0] == "0" and len(identifier) > 1 and identifier.isdigit():
                return None
    return Version(major, minor, patch, prerelease or "", metadata or "", text)


def parse_version(tag: str) -> Version | None:
    """Flux's tag parser (IRC >= v1.0, reference §3.1): None when the tag is not a version."""
    # fluxcd/pkg version.ParseVersion: strings.SplitN(tag, ".", 3) must give three pieces, i.e.
    # the tag needs two dots anywhere (prerelease and metadata dots count).
    if tag.count(".") < 2:
        return None
    return parse_masterminds_version(tag)


def explain_not_a_version(tag: str) -> str:
    """A sentence saying why `parse_version(tag)` is None, for user-facing verdicts."""
    if tag.count(".") < 2:
        return (
            f"'{tag}' is not a version: Flux needs at least two '.' in a tag (MAJOR.MINOR.PATCH) "
            "before it tries to parse it"
        )
    if tag != tag.strip():
        return f"'{tag}' is not a version: it has leading or trailing whitespace"
    if tag.startswith("V"):
        return f"'{tag}' is not a version: only a lowercase 'v' prefix is accepted"
    match = _VERSION_RE.fullmatch(tag)
    if match is not None:
        numbers = [part for part in match.groups()[:3] if part]
        if any(int(number) > UINT64_MAX for number in numbers):
            return f"'{tag}' is not a version: a numeric part does not fit in 64 bits"
        return f"'{tag}' is not a version: a numeric prerelease identifier has a leading zero (e.g. '01')"
    return (
        f"'{tag}' is not a version: it is not of the form [v]MAJOR[.MINOR[.PATCH]][-PRERELEASE]"
        "[+METADATA] that Masterminds/semver accepts"
    )


def _is_wildcard(part: str) -> bool:
    return part in ("x", "X", "*")


@dataclass(frozen=True)
class Comparator:
    """One comparator of an AND group: Masterminds' `constraint` struct."""

    operator: str
    token: str
    base: Version
    dirty: bool
    minor_dirty: bool
    patch_dirty: bool

    @property
    def text(self) -> str:
        """How Masterminds prints it (`origfunc + orig`), e.g. `>=1.0.0`."""
        return self.operator + self.token

    def check(self, version: Version, include_prerelease: bool) -> bool:
        """Masterminds `constraint.check`, with the AND group's prerelease flag (§4.2, §4.3)."""
        if version.prerelease and not include_prerelease:
            return False
        return _OPERATORS[self.operator](version, self)


def _tilde(v: Version, c: Comparator) -> bool:
    if v < c.base:
        return False
    base = c.base
    # ~0.0.0 (and ~*, ~x) accepts everything (upstream special case).
    if base.major == 0 and base.minor == 0 and base.patch == 0 and not c.minor_dirty and not c.patch_dirty:
        return True
    if v.major != base.major:
        return False
    return not (v.minor != base.minor and not c.minor_dirty)


def _tilde_or_equal(v: Version, c: Comparator) -> bool:
    if c.dirty:
        return _tilde(v, c)
    return v == c.base


def _not_equal(v: Version, c: Comparator) -> bool:
    base = c.base
    if c.dirty:
        if base.major != v.major:
            return True
        if base.minor != v.minor and not c.minor_dirty:
            return True
        if c.minor_dirty:
            return False
        if base.patch != v.patch and not c.patch_dirty:
            return True
        if c.patch_dirty:
            if v.prerelease or base.prerelease:
                return _prerelease_key(v.prerelease) != _prerelease_key(base.prerelease)
            return False
    return v != base


def _greater_than(v: Version, c: Comparator) -> bool:
    base = c.base
    if not c.dirty:
        return v > base
    if v.major > base.major:
        return True
    if v.major < base.major:
        return False
    if c.minor_dirty:
        # `>11` needs 12 or higher: 11.1.0 is not greater than "11".
        return False
    if c.patch_dirty:
        return v.minor > base.minor
    return v > base


def _less_than(v: Version, c: Comparator) -> bool:
    return v < c.base


def _greater_equal(v: Version, c: Comparator) -> bool:
    return v >= c.base


def _less_equal(v: Version, c: Comparator) -> bool:
    base = c.base
    if not c.dirty:
        return v <= base
    if v.major > base.major:
        return False
    return not (v.major == base.major and v.minor > base.minor and not c.minor_dirty)


def _caret(v: Version, c: Comparator) -> bool:
    base = c.base
    if v < base:
        return False
    if base.major > 0 or c.minor_dirty:
        return v.major == base.major
    if v.major > 0:
        return False
    if base.minor > 0 or c.patch_dirty:
        return v.minor == base.minor
    if v.minor > 0:
        return False
    return v.patch == base.patch


_OPERATORS: dict[str, Callable[[Version, Comparator], bool]] = {
    "": _tilde_or_equal,
    "=": _tilde_or_equal,
    "!=": _not_equal,
    ">": _greater_than,
    "<": _less_than,
    ">=": _greater_equal,
    "=>": _greater_equal,
    "<=": _less_equal,
    "=<": _less_equal,
    "~": _tilde,
    "~>": _tilde,
    "^": _caret,
}


def _parse_comparator(text: str) -> Comparator:
    """Masterminds `parseConstraint` for one non-empty comparator string."""
    match = _CONSTRAINT_RE.fullmatch(text)
    if match is None:
        raise InvalidPolicy(f"improper constraint: {text}")
    operator, token, major = match.group(1), match.group(2), match.group(3)
    minor_part, patch_part, prerelease_part = match.group(4) or "", match.group(5) or "", match.group(6) or ""
    dirty = minor_dirty = patch_dirty = False
    base_text = token
    if _is_wildcard(major):
        base_text, dirty = f"0.0.0{prerelease_part}", True
    elif not minor_part or _is_wildcard(minor_part[1:]):
        base_text, dirty, minor_dirty = f"{major}.0.0{prerelease_part}", True, True
    elif not patch_part or _is_wildcard(patch_part[1:]):
        base_text, dirty, patch_dirty = f"{major}{minor_part}.0{prerelease_part}", True, True
    base = parse_masterminds_version(base_text)
    if base is None:
        raise InvalidPolicy(f"improper constraint: {text}")
    return Comparator(operator, token, base, dirty, minor_dirty, patch_dirty)


def rewrite_hyphen_ranges(range_: str) -> str:
    """Masterminds `rewriteRange`: `A - B` (spaces required) becomes `>= A, <= B ` (§4.1)."""
    rewritten = range_
    for match in _RANGE_RE.finditer(range_):
        replacement = f">= {match.group(_RANGE_LOW_GROUP)}, <= {match.group(_RANGE_HIGH_GROUP)} "
        rewritten = rewritten.replace(match.group(0), replacement, 1)
    return rewritten


@dataclass(frozen=True)
class AndGroup:
    """One `||`-separated group; `admits_prerelease` is upstream's per-group `containsPre` flag."""

    comparators: tuple[Comparator, ...]
    admits_prerelease: bool

    def check(self, version: Version) -> bool:
        return all(comparator.check(version, self.admits_prerelease) for comparator in self.comparators)

    def first_failure(self, version: Version) -> Comparator | None:
        for comparator in self.comparators:
            if not comparator.check(version, self.admits_prerelease):
                return comparator
        return None


@dataclass(frozen=True)
class Constraints:
    """A parsed semver range (Masterminds `Constraints` with IncludePrerelease=false, as in Flux)."""

    range_: str
    groups: tuple[AndGroup, ...]

    def check(self, version: Version) -> bool:
        return any(group.check(version) for group in self.groups)

    def explain_rejection(self, version: Version) -> str:
        """Why `version` fails the range, one clause per OR group; for verdict text."""
        tag = version.original
        if version.prerelease and not any(group.admits_prerelease for group in self.groups):
            return (
                f"{tag} is a prerelease; range '{self.range_}' admits prereleases only when a "
                "comparator in the same AND group has one"
            )
        reasons: list[str] = []
        for group in self.groups:
            if version.prerelease and not group.admits_prerelease:
                names = " ".join(comparator.text for comparator in group.comparators)
                reasons.append(f"group '{names}' has no prerelease comparator, so it excludes prereleases")
                continue
            failed = group.first_failure(version)
            if failed is not None:
                reasons.append(f"it fails '{failed.text}'")
        return f"{tag} does not satisfy range '{self.range_}': " + "; ".join(reasons)


@lru_cache(maxsize=_CONSTRAINT_CACHE_SIZE)
def parse_range(range_: str) -> Constraints:
    """Masterminds `NewConstraint`; raises InvalidPolicy with upstream's message when it fails."""
    rewritten = rewrite_hyphen_ranges(range_)
    groups: list[AndGroup] = []
    for group_text in rewritten.split("||"):
        if _VALID_GROUP_RE.fullmatch(group_text) is None:
            raise InvalidPolicy(f"improper constraint: {group_text}")
        found = [match.group(0) for match in _FIND_CONSTRAINT_RE.finditer(group_text)] or [group_text]
        comparators = tuple(_parse_comparator(text) for text in found)
        admits_prerelease = any(comparator.base.prerelease for comparator in comparators)
        groups.append(AndGroup(comparators, admits_prerelease))
    return Constraints(range_, tuple(groups))


def semver_range_matches(range_: str, version: str) -> bool:
    """Whether Flux's SemVer policy with `range_` admits tag `version`.

    Raises InvalidPolicy for a range Flux rejects; False for a tag that is not a version (Flux skips
    such tags silently).
    """
    constraints = parse_range(range_)
    parsed = parse_version(version)
    return parsed is not None and constraints.check(parsed)


def latest_matching(constraints: Constraints, tags: list[str]) -> str | None:
    """IRC `SemVer.Latest` without its empty-list error: first strictly-greatest match wins (§3.2)."""
    best: Version | None = None
    for tag in tags:
        version = parse_version(tag)
        if version is None:
            continue
        # Only a strictly greater version can replace the candidate, so skip the constraint check
        # for the rest: same result, and the check is the expensive part.
        if best is not None and not version.key > best.key:
            continue
        if constraints.check(version):
            best = version
    return None if best is None else best.original
