# One module (>500 lines): Go's regexp/syntax grammar is translated token by token by one parser.
"""Go RE2 regular expressions (as `regexp.Compile` sees them) run on Python's `re`, and Go's `Expand`.

Why: `filterTags.pattern` and `exclusionList` are Go regexes. Python's `re` accepts things Go
rejects (lookarounds, backreferences, possessive quantifiers), rejects things Go accepts
(`(?<name>…)`, group names starting with a digit such as `(?P<1x>…)`, `\\z`, `\\Q…\\E`, `[[:alpha:]]`,
`\\x{41}`, `(?U)`, flags in the middle of a pattern, `^*`), and reads some text differently
(`{01}` and `{,3}` are literals in Go, `\\12` is octal in Go, `$` in Go matches only at the very
end). A wrong answer here means a wrong verdict, so the pattern is translated token by token
following Go's `regexp/syntax` parser, and everything Go rejects raises `InvalidPolicy` with Go's
error wording (reference §7, §10.7).

Known limits, harmless for image tags (ASCII `[A-Za-z0-9_.-]`, no newlines): `\\p{…}` classes are
supported for general categories and the Latin/Common/Inherited scripts only, evaluated on ASCII;
`(?i)` folds ASCII only; negated classes match `\\n` (Go's do not, outside `(?s)`); a repeat
right after an inline flag group (`a(?i)*`, which Go applies to `a`) is rejected.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from shared.image_policy.errors import InvalidPolicy

# Go's regexp/syntax limits a counted repetition to 1000 (`{1001}` is "invalid repeat count").
_MAX_REPEAT = 1000
# Go's parser stops accumulating a repeat count at 1e8 and reports it as invalid (-1).
_REPEAT_OVERFLOW = 100_000_000
# Go's Expand treats a group number of 1e8 or more as a name (it stops parsing numbers there).
_EXPAND_NUMBER_LIMIT = 100_000_000
# Largest Unicode code point: `\x{…}` beyond it is an invalid escape in Go.
_MAX_RUNE = 0x10FFFF
_ASCII_END = 0x80
# Compiled patterns are cached: the same few filters and exclusion lists run for every tag.
_PATTERN_CACHE_SIZE = 512

_GO_SPACE_CHARS = "\t\n\f\r "
_PERL_CLASSES: dict[str, list[tuple[int, int]]] = {
    "d": [(0x30, 0x39)],
    "s": [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
}
_POSIX_CLASSES: dict[str, list[tuple[int, int]]] = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)],
    "blank": [(0x09, 0x09), (0x20, 0x20)],
    "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": [(0x30, 0x39)],
    "graph": [(0x21, 0x7E)],
    "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)],
    "word": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}
# Unicode general categories Go's `\p{…}` accepts (plus their one-letter groups, derived below).
_GENERAL_CATEGORIES = (
    *("Cc", "Cf", "Co", "Cs", "Ll", "Lm", "Lo", "Lt", "Lu", "Mc", "Me", "Mn", "Nd", "Nl", "No"),
    *("Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "Sc", "Sk", "Sm", "So", "Zl", "Zp", "Zs"),
)


def _ascii_ranges(predicate_codes: list[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for code in predicate_codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    return ranges


def _unicode_class_table() -> dict[str, list[tuple[int, int]]]:
    table: dict[str, list[tuple[int, int]]] = {}
    for category in _GENERAL_CATEGORIES:
        codes = [code for code in range(_ASCII_END) if unicodedata.category(chr(code)) == category]
        table[category] = _ascii_ranges(codes)
    for letter in sorted({category[0] for category in _GENERAL_CATEGORIES}):
        codes = [code for code in range(_ASCII_END) if unicodedata.category(chr(code))[0] == letter]
        table[letter] = _ascii_ranges(codes)
    table["Any"] = [(0, _MAX_RUNE)]
    table["Latin"] = [(0x41, 0x5A), (0x61, 0x7A)]
    table["Common"] = _ascii_ranges([code for code in range(_ASCII_END) if not chr(code).isalpha()])
    table["Inherited"] = []
    return table


_UNICODE_CLASSES = _unicode_class_table()


def _negate(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    negated: list[tuple[int, int]] = []
    next_start = 0
    for low, high in sorted(ranges):
        if low > next_start:
            negated.append((next_start, low - 1))
        next_start = max(next_start, high + 1)
    if next_start <= _MAX_RUNE:
        negated.append((next_start, _MAX_RUNE))
    return negated


def _class_char(code: int) -> str:
    char = chr(code)
    if char.isascii() and char.isalnum():
        return char
    return f"\\U{code:08x}"


def _ranges_body(ranges: list[tuple[int, int]]) -> str:
    return "".join(
        _class_char(low) if low == high else f"{_class_char(low)}-{_class_char(high)}" for low, high in ranges
    )


def _ranges_class(ranges: list[tuple[int, int]]) -> str:
    if not ranges:
        return "[^\\U00000000-\\U0010ffff]"  # matches nothing, as Go's empty class does
    return f"[{_ranges_body(ranges)}]"


class _GoSyntaxError(Exception):
    def __init__(self, code: str, expression: str) -> None:
        super().__init__(f"error parsing regexp: {code}: `{expression}`")


@dataclass
class _Frame:
    """One open group: where it starts in the output, its flags, and its inline-flag wrappers.

    Go applies `(?i)` from that point to the end of the enclosing group, across `|`. Python only
    has scoped `(?i:…)`, so each inline flag change opens a wrapper that is closed and re-opened
    around every `|` of the group and closed with it.
    """

    start: int
    flags: frozenset[str]
    wrappers: list[str] = field(default_factory=list)


@dataclass
class _Translator:
    pattern: str
    position: int = 0
    output: list[str] = field(default_factory=list)
    group_count: int = 0
    group_names: dict[str, int] = field(default_factory=dict)
    frames: list[_Frame] = field(default_factory=lambda: [_Frame(0, frozenset())])
    # Index in `output` of the last atom (for quantifiers), and whether it is an assertion.
    last_atom: int | None = None
    last_atom_is_assertion: bool = False
    last_was_repeat: bool = False

    @property
    def flags(self) -> frozenset[str]:
        return self.frames[-1].flags

    def rest(self) -> str:
        return self.pattern[self.position :]

    def translate(self) -> str:
        while self.position < len(self.pattern):
            self._step()
        if len(self.frames) > 1:
            raise _GoSyntaxError("missing closing )", self.pattern)
        self.output.extend(")" for _ in self.frames[-1].wrappers)
        return "".join(self.output)

    def _emit_atom(self, text: str, *, assertion: bool = False) -> None:
        self.last_atom = len(self.output)
        self.last_atom_is_assertion = assertion
        self.last_was_repeat = False
        self.output.append(text)

    def _no_atom(self) -> None:
        self.last_atom = None
        self.last_was_repeat = False

    def _step(self) -> None:
        char = self.pattern[self.position]
        if char == "(":
            self._open_group()
        elif char == ")":
            self._close_group()
        elif char == "|":
            self.position += 1
            frame = self.frames[-1]
            self.output.extend(")" for _ in frame.wrappers)
            self.output.append("|")
            self.output.extend(frame.wrappers)
            self._no_atom()
        elif char in "*+?":
            self._repeat(char, char)
        elif char == "{":
            self._brace()
        elif char == "[":
            self._emit_atom(self._parse_class())
        elif char == ".":
            self.position += 1
            self._emit_atom("(?s:.)" if "s" in self.flags else "(?-s:.)")
        elif char == "^":
            self.position += 1
            self._emit_atom("(?m:^)" if "m" in self.flags else "\\A", assertion=True)
        elif char == "$":
            self.position += 1
            self._emit_atom("(?m:$)" if "m" in self.flags else "\\Z", assertion=True)
        elif char == "\\":
            self._escape_outside_class()
        else:
            self.position += 1
            self._emit_atom(re.escape(char))

    def _open_group(self) -> None:
        rest = self.rest()
        if rest.startswith(("(?P<", "(?<")):
            start = 4 if rest.startswith("(?P<") else 3
            end = rest.find(">")
            if end < 0:
                raise _GoSyntaxError("invalid named capture", rest)
            name = rest[start:end]
            if not name or not all(c == "_" or (c.isascii() and c.isalnum()) for c in name):
                raise _GoSyntaxError("invalid named capture", rest[: end + 1])
            if name in self.group_names:
                raise _GoSyntaxError("duplicate capture group name", rest[: end + 1])
            self.group_count += 1
            self.group_names[name] = self.group_count
            self.position += end + 1
            self._push_group("(")
            return
        if rest.startswith("(?"):
            self._perl_flags(rest)
            return
        self.position += 1
        self.group_count += 1
        self._push_group("(")

    def _push_group(self, opener: str, flags: frozenset[str] | None = None) -> None:
        self.frames.append(_Frame(len(self.output), self.flags if flags is None else flags))
        self.output.append(opener)
        self._no_atom()

    def _perl_flags(self, rest: str) -> None:
        flags = set(self.flags)
        on: list[str] = []
        off: list[str] = []
        negated = False
        saw_flag = False
        index = 2
        while index < len(rest):
            char = rest[index]
            index += 1
            if char in "imsU":
                (off if negated else on).append(char)
                if negated:
                    flags.discard(char)
                else:
                    flags.add(char)
                saw_flag = True
            elif char == "-" and not negated:
                negated = True
                saw_flag = False
            elif char in ":)":
                if negated and not saw_flag:
                    break
                self.position += index
                python_flags = "".join(c for c in on if c != "U")
                python_off = "".join(c for c in off if c != "U")
                spec = python_flags + (f"-{python_off}" if python_off else "")
                opener = f"(?{spec}:" if spec else "(?:"
                if char == ":":
                    self._push_group(opener, frozenset(flags))
                else:
                    frame = self.frames[-1]
                    frame.flags = frozenset(flags)
                    frame.wrappers.append(opener)
                    self.output.append(opener)
                    self._no_atom()
                return
            else:
                break
        raise _GoSyntaxError("invalid or unsupported Perl syntax", rest[:index])

    def _close_group(self) -> None:
        if len(self.frames) == 1:
            raise _GoSyntaxError("unexpected )", self.pattern)
        frame = self.frames.pop()
        self.output.extend(")" for _ in frame.wrappers)
        self.output.append(")")
        self.position += 1
        self.last_atom = frame.start
        self.last_atom_is_assertion = False
        self.last_was_repeat = False

    def _repeat(self, text: str, python_operator: str) -> None:
        """Go `parser.repeat`: a lazy `?` suffix, no stacked repeats, needs an operand; `(?U)` swaps."""
        before = self.position
        self.position += len(text)
        lazy = False
        if self.position < len(self.pattern) and self.pattern[self.position] == "?":
            lazy = True
            self.position += 1
        operator_text = self.pattern[before : self.position]
        if self.last_was_repeat:
            raise _GoSyntaxError("invalid nested repetition operator", operator_text)
        if self.last_atom is None:
            raise _GoSyntaxError("missing argument to repetition operator", operator_text)
        if "U" in self.flags:
            lazy = not lazy
        if self.last_atom_is_assertion:
            # Go repeats empty-width assertions (`^*`); Python needs them grouped first.
            self.output[self.last_atom] = f"(?:{self.output[self.last_atom]}"
            self.output.append(")")
        self.output.append(python_operator + ("?" if lazy else ""))
        self.last_was_repeat = True

    def _brace(self) -> None:
        """Go `parseRepeat`: `{n}`, `{n,}`, `{n,m}` without leading zeros; anything else is literal."""
        match = re.match(r"\{([0-9]+)(?:(,)([0-9]*))?\}", self.rest())
        if match is None or _has_leading_zero(match.group(1)) or _has_leading_zero(match.group(3) or ""):
            self.position += 1
            self._emit_atom("\\{")
            return
        low = _repeat_count(match.group(1))
        if match.group(2) is None:
            high = low
        elif not match.group(3):
            high = -1  # open-ended
        else:
            high = _repeat_count(match.group(3))
            if high < 0:
                low = -1
        if low < 0 or low > _MAX_REPEAT or high > _MAX_REPEAT or (high >= 0 and low > high):
            raise _GoSyntaxError("invalid repeat count", match.group(0))
        if high < 0:
            python_text = f"{{{low},}}"
        elif high == low:
            python_text = f"{{{low}}}"
        else:
            python_text = f"{{{low},{high}}}"
        self._repeat(match.group(0), python_text)

    def _escape_outside_class(self) -> None:
        rest = self.rest()
        if len(rest) >= 2:
            letter = rest[1]
            if letter in "AbBz":
                self.position += 2
                python = {"A": "\\A", "b": "\\b", "B": "\\B", "z": "\\Z"}[letter]
                self._emit_atom(python, assertion=True)
                return
            if letter == "C":
                raise _GoSyntaxError("invalid escape sequence", rest[:2])
            if letter == "Q":
                body, _, _ = rest[2:].partition("\\E")
                consumed = 2 + len(body) + (2 if rest[2:].find("\\E") >= 0 else 0)
                self.position += consumed
                for char in body:
                    self._emit_atom(re.escape(char))
                return
        ranges = self._class_escape(rest)
        if ranges is not None:
            self._emit_atom(_ranges_class(ranges))
            return
        code, length = _parse_escape(rest)
        self.position += length
        self._emit_atom(f"\\U{code:08x}")

    def _class_escape(self, rest: str) -> list[tuple[int, int]] | None:
        """`\\d \\s \\w`, their negations and `\\p{…}`: ranges, and advances; else None."""
        if len(rest) >= 2 and rest[1].lower() in _PERL_CLASSES:
            ranges = _PERL_CLASSES[rest[1].lower()]
            self.position += 2
            return _negate(ranges) if rest[1].isupper() else ranges
        if len(rest) >= 2 and rest[1] in "pP":
            if len(rest) < 3:
                raise _GoSyntaxError("invalid character class range", rest)
            if rest[2] == "{":
                end = rest.find("}")
                if end < 0:
                    raise _GoSyntaxError("invalid character class range", rest)
                name, length = rest[3:end], end + 1
            else:
                name, length = rest[2], 3
            negated = rest[1] == "P"
            if name.startswith("^"):
                negated, name = not negated, name[1:]
            if name not in _UNICODE_CLASSES:
                raise _GoSyntaxError(
                    "invalid character class range (or a Unicode class fluxfleet's emulation does not know)",
                    rest[:length],
                )
            self.position += length
            ranges = _UNICODE_CLASSES[name]
            return _negate(ranges) if negated else ranges
        return None

    def _parse_class(self) -> str:
        start = self.position
        self.position += 1
        negated = False
        if self.position < len(self.pattern) and self.pattern[self.position] == "^":
            negated = True
            self.position += 1
        pieces: list[str] = []
        first = True
        while True:
            if self.position >= len(self.pattern):
                raise _GoSyntaxError("missing closing ]", self.pattern[start:])
            rest = self.rest()
            if rest[0] == "]" and not first:
                self.position += 1
                break
            first = False
            if rest.startswith("[:"):
                end = rest.find(":]", 2)
                if end >= 0:
                    name = rest[2:end]
                    posix_negated = name.startswith("^")
                    name = name.removeprefix("^")
                    if name not in _POSIX_CLASSES:
                        raise _GoSyntaxError("invalid character class range", rest[: end + 2])
                    ranges = _POSIX_CLASSES[name]
                    pieces.append(_ranges_body(_negate(ranges) if posix_negated else ranges))
                    self.position += end + 2
                    continue
            if rest[0] == "\\":
                escaped = self._class_escape(rest)
                if escaped is not None:
                    pieces.append(_ranges_body(escaped))
                    continue
            low = self._parse_class_char()
            high = low
            rest = self.rest()
            if len(rest) >= 2 and rest[0] == "-" and rest[1] != "]":
                range_start = self.position
                self.position += 1
                high = self._parse_class_char()
                if high < low:
                    raise _GoSyntaxError(
                        "invalid character class range", self.pattern[range_start - 1 : self.position]
                    )
            pieces.append(_ranges_body([(low, high)]))
        body = "".join(pieces)
        if not body:
            return "[^\\U00000000-\\U0010ffff]" if not negated else "[\\U00000000-\\U0010ffff]"
        return f"[{'^' if negated else ''}{body}]"

    def _parse_class_char(self) -> int:
        rest = self.rest()
        if not rest:
            raise _GoSyntaxError("missing closing ]", self.pattern)
        if rest[0] == "\\":
            code, length = _parse_escape(rest)
            self.position += length
            return code
        self.position += 1
        return ord(rest[0])


def _has_leading_zero(digits: str) -> bool:
    return len(digits) >= 2 and digits[0] == "0"


def _repeat_count(digits: str) -> int:
    value = 0
    for digit in digits:
        if value >= _REPEAT_OVERFLOW:
            return -1
        value = value * 10 + int(digit)
    return value


def _parse_escape(text: str) -> tuple[int, int]:
    """Go `parseEscape`: (code point, characters consumed) for one escape starting with `\\`."""
    if len(text) < 2:
        raise _GoSyntaxError("trailing backslash at end of expression", "")
    char = text[1]
    if char.isascii() and not char.isalnum():
        return ord(char), 2
    octal = "01234567"
    if char in "1234567" and (len(text) < 3 or text[2] not in octal):
        raise _GoSyntaxError("invalid escape sequence", text[:2])
    if char in octal:
        value, length = int(char), 2
        while length < 4 and length < len(text) and text[length] in octal:
            value = value * 8 + int(text[length])
            length += 1
        return value, length
    if char == "x":
        if len(text) >= 3 and text[2] == "{":
            end = text.find("}", 3)
            digits = text[3:end] if end >= 0 else ""
            if end < 0 or not digits or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise _GoSyntaxError("invalid escape sequence", text[: end + 1 if end >= 0 else len(text)])
            value = int(digits, 16)
            if value > _MAX_RUNE:
                raise _GoSyntaxError("invalid escape sequence", text[: end + 1])
            return value, end + 1
        digits = text[2:4]
        if len(digits) == 2 and all(d in "0123456789abcdefABCDEF" for d in digits):
            return int(digits, 16), 4
        raise _GoSyntaxError("invalid escape sequence", text[:4])
    simple = {"a": 0x07, "f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B}
    if char in simple:
        return simple[char], 2
    raise _GoSyntaxError("invalid escape sequence", text[:2])


@dataclass(frozen=True)
class GoRegex:
    """A Go regex compiled for Python, with Go's group names for `Expand`."""

    pattern: str
    compiled: re.Pattern[str]
    group_names: tuple[tuple[str, int], ...]

    def search(self, text: str) -> re.Match[str] | None:
        """Go `FindStringSubmatchIndex` / `MatchString`: the leftmost match anywhere in `text`."""
        return self.compiled.search(text)

    def expand(self, template: str, match: re.Match[str]) -> str:
        """Go `Regexp.ExpandString` for one match (reference §7)."""
        return go_expand(template, match, dict(self.group_names))


@lru_cache(maxsize=_PATTERN_CACHE_SIZE)
def compile_go_regex(pattern: str) -> GoRegex:
    """Compile a Go RE2 pattern; raises InvalidPolicy with Go's error text when Go would."""
    translator = _Translator(pattern)
    try:
        python_pattern = translator.translate()
    except _GoSyntaxError as error:
        raise InvalidPolicy(str(error)) from None
    try:
        compiled = re.compile(python_pattern, re.ASCII)
    except re.error as error:  # pragma: no cover - a translation gap, not a Go rejection
        raise InvalidPolicy(f"error parsing regexp (fluxfleet emulation of Go RE2): {error}") from None
    return GoRegex(pattern, compiled, tuple(translator.group_names.items()))


def go_expand(template: str, match: re.Match[str], group_names: dict[str, int]) -> str:
    """Go `Regexp.expand`: `$1`, `${1}`, `$name`, `${name}`, `$$`; anything else stays literal."""
    result: list[str] = []
    rest = template
    while True:
        before, dollar, after = rest.partition("$")
        if not dollar:
            break
        result.append(before)
        rest = after
        if rest.startswith("$"):
            result.append("$")
            rest = rest[1:]
            continue
        parsed = _extract_reference(rest)
        if parsed is None:
            result.append("$")
            continue
        name, number, rest = parsed
        index = number if number >= 0 else group_names.get(name, -1)
        if 0 <= index <= (match.re.groups or 0):
            value = match.group(index)
            if value is not None:
                result.append(value)
    result.append(rest)
    return "".join(result)


def _extract_reference(text: str) -> tuple[str, int, str] | None:
    """Go `extract`: (name, group number or -1, remaining template), or None when malformed."""
    if not text:
        return None
    braced = text[0] == "{"
    body = text[1:] if braced else text
    length = 0
    while length < len(body) and (body[length].isalpha() or body[length].isdecimal() or body[length] == "_"):
        length += 1
    if length == 0:
        return None
    name = body[:length]
    if braced:
        if length >= len(body) or body[length] != "}":
            return None
        length += 1
    number = 0
    for char in name:
        # Go stops at the first non-ASCII-digit, or once the number has reached 1e8.
        if not ("0" <= char <= "9") or number >= _EXPAND_NUMBER_LIMIT:
            number = -1
            break
        number = number * 10 + int(char)
    if name[0] == "0" and len(name) > 1:
        number = -1  # a leading zero makes it a name: `$01` is the group named "01"
    return name, number, body[length:]
