"""Go's `strconv.ParseFloat(s, 64)`, because Flux's numerical policy is defined by it (reference §8).

Python's `float()` differs in ways that change verdicts: it accepts surrounding whitespace and
`nan` with a sign, turns `1e400` into `inf` instead of failing, and rejects hex floats such as
`0x1p4`. One tag that Go cannot parse fails Flux's whole numerical policy, so the syntax check
follows Go's `readFloat`, `special` and `underscoreOK` exactly; the value itself comes from Python,
whose decimal and hex conversions are correctly rounded like Go's.
"""

from __future__ import annotations

import math

_SPECIAL_INFINITY = "infinity"
_SPECIAL_INF_LENGTH = 3  # "inf": Go accepts exactly "inf" or the full "infinity" (any case)


def _special(text: str) -> float | None:
    """Go `special`: [+-]inf, [+-]infinity (any case) and nan (any case, no sign)."""
    sign = 1.0
    body = text
    if body[:1] in ("+", "-"):
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
        if body.lower() in ("inf", _SPECIAL_INFINITY):
            return math.copysign(math.inf, sign)
        return None
    if body.lower() in ("inf", _SPECIAL_INFINITY):
        return math.inf
    if body.lower() == "nan":
        return math.nan
    return None


def _underscore_ok(text: str) -> bool:
    """Go `underscoreOK`: underscores only between digits (or after a base prefix)."""
    saw = "^"
    index = 0
    if text[:1] in ("+", "-"):
        text = text[1:]
    hexadecimal = False
    if len(text) >= 2 and text[0] == "0" and text[1].lower() in "box":
        index = 2
        saw = "0"
        hexadecimal = text[1].lower() == "x"
    while index < len(text):
        char = text[index]
        index += 1
        if ("0" <= char <= "9") or (hexadecimal and char.lower() in "abcdef"):
            saw = "0"
            continue
        if char == "_":
            if saw != "0":
                return False
            saw = "_"
            continue
        if saw == "_":
            return False
        saw = "!"
    return saw != "_"


def _is_digit(char: str, hexadecimal: bool) -> bool:
    return ("0" <= char <= "9") or (hexadecimal and char.lower() in "abcdef")


def _exponent_end(text: str, index: int) -> int | None:
    """End of the exponent digits after `e`/`p` at `index` (optional sign, then a digit first)."""
    if index < len(text) and text[index] in "+-":
        index += 1
    if index >= len(text) or not ("0" <= text[index] <= "9"):
        return None
    while index < len(text) and (("0" <= text[index] <= "9") or text[index] == "_"):
        index += 1
    return index


def _read_float_syntax(text: str) -> tuple[bool, bool]:
    """Go `readFloat` syntax only: (accepted, hexadecimal)."""
    index = 0
    underscores = False
    if index < len(text) and text[index] in "+-":
        index += 1
    hexadecimal = False
    exponent_char = "e"
    if index + 2 < len(text) and text[index] == "0" and text[index + 1].lower() == "x":
        hexadecimal = True
        exponent_char = "p"
        index += 2
    saw_dot = saw_digits = False
    while index < len(text):
        char = text[index]
        if char == "_":
            underscores = True
        elif char == "." and not saw_dot:
            saw_dot = True
        elif _is_digit(char, hexadecimal):
            saw_digits = True
        else:
            break
        index += 1
    if not saw_digits:
        return False, hexadecimal
    if index < len(text) and text[index].lower() == exponent_char:
        end = _exponent_end(text, index + 1)
        if end is None:
            return False, hexadecimal
        underscores = underscores or "_" in text[index:end]
        index = end
    elif hexadecimal:
        return False, hexadecimal  # a hex float must have a p exponent
    if underscores and not _underscore_ok(text[:index]):
        return False, hexadecimal
    return index == len(text), hexadecimal


def parse_go_float(text: str) -> float | None:
    """The float64 Go's ParseFloat returns, or None where Go returns an error (syntax or range)."""
    if not text:
        return None
    special = _special(text)
    if special is not None:
        return special
    accepted, hexadecimal = _read_float_syntax(text)
    if not accepted:
        return None
    plain = text.replace("_", "")
    try:
        value = float.fromhex(plain) if hexadecimal else float(plain)
    except OverflowError:
        return None  # Go: ErrRange ("value out of range")
    if math.isinf(value):
        return None  # a finite literal beyond float64: Go reports ErrRange, Python says inf
    return value
