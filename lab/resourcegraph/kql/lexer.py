"""The KQL subset's tokens: positions as ARG reports them, the errors a refusal carries, and the lexer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# --- positions and errors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a token starts: `line` 1-based, `column` 0-based (ARG's `characterPositionInLine`)."""

    line: int
    column: int


class KqlError(Exception):
    """A query ARG would refuse; `fragment` is the text the refusal names (ARG's `token`)."""

    def __init__(self, message: str, *, fragment: str, position: Position | None) -> None:
        super().__init__(message)
        self.message = message
        self.fragment = fragment
        self.position = position


class KqlSyntaxError(KqlError):
    """Not KQL at all (ARG: `ParserFailure`)."""


class KqlUnsupported(KqlError):
    """KQL outside the lab's subset (ARG: `InvalidQueryLanguage`)."""


class KqlSemanticError(KqlError):
    """Well-formed but meaningless: an unknown column, a type mismatch (Kusto's SEM errors)."""


# --- tokens -------------------------------------------------------------------------------------------

TokenKind = Literal["ident", "string", "long", "real", "punct", "eof"]

# Longest first, so `==` wins over `=`.
_PUNCTUATION = (
    "==",
    "!=",
    "=~",
    "!~",
    "<=",
    ">=",
    "|",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "=",
    "<",
    ">",
    "*",
    "!",
    "~",
    ":",
    "-",
    "+",
    "/",
    "%",
    ";",
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str  # as written in the query (for error messages)
    value: str  # identifiers and punctuation as written; strings unescaped; numbers as written
    position: Position
    start: int  # offset in the query text
    end: int


def tokenize(text: str) -> list[Token]:
    """The query's tokens; `//` comments and whitespace are dropped, adjacent strings stay separate."""
    return _Lexer(text).tokens()


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.offset = 0
        self.line = 1
        self.line_start = 0

    def position(self, at: int) -> Position:
        return Position(self.line, at - self.line_start)

    def tokens(self) -> list[Token]:
        found: list[Token] = []
        text, length = self.text, len(self.text)
        while self.offset < length:
            char = text[self.offset]
            if char == "\n":
                self.offset += 1
                self.line, self.line_start = self.line + 1, self.offset
            elif char.isspace():
                self.offset += 1
            elif text.startswith("//", self.offset):
                newline = text.find("\n", self.offset)
                self.offset = length if newline < 0 else newline
            else:
                found.append(self.token(char))
        found.append(Token("eof", "<EOF>", "", self.position(self.offset), self.offset, self.offset))
        return found

    def token(self, char: str) -> Token:
        text, start = self.text, self.offset
        prefixed = char in "@hH" and text[start + 1 : start + 2] in ("'", '"')  # @'verbatim', h'obfuscated'
        if char in "'\"" or prefixed:
            quote_at = start + 1 if prefixed else start
            value, self.offset = _read_string(
                text, quote_at, verbatim=char == "@", start=start, at=self.position(start)
            )
            return Token("string", text[start : self.offset], value, self.position(start), start, self.offset)
        if char.isdigit():
            return self.number()
        if char.isalpha() or char in "_$":
            end = start + 1
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
            self.offset = end
            return Token("ident", text[start:end], text[start:end], self.position(start), start, end)
        for punct in _PUNCTUATION:
            if text.startswith(punct, start):
                self.offset = start + len(punct)
                return Token("punct", punct, punct, self.position(start), start, self.offset)
        raise KqlSyntaxError(f"Unexpected character '{char}'.", fragment=char, position=self.position(start))

    def number(self) -> Token:
        text, start = self.text, self.offset
        end = _read_number_end(text, start)
        if end < len(text) and (text[end].isalpha() or text[end] == "_"):
            # 1d, 5m, 0x1F: timespan and hex literals are KQL, but not the lab's subset.
            while end < len(text) and (text[end].isalnum() or text[end] in "_."):
                end += 1
            raise KqlUnsupported(
                f"The literal '{text[start:end]}' is not supported by the lab's Resource Graph.",
                fragment=text[start:end],
                position=self.position(start),
            )
        self.offset = end
        literal = text[start:end]
        kind: TokenKind = "real" if ("." in literal or "e" in literal.lower()) else "long"
        return Token(kind, literal, literal, self.position(start), start, end)


def _read_string(text: str, offset: int, *, verbatim: bool, start: int, at: Position) -> tuple[str, int]:
    """The unescaped value of the string literal whose quote is at `offset`, and the offset after it."""
    quote = text[offset]
    offset += 1
    chars: list[str] = []
    while offset < len(text):
        char = text[offset]
        if char == quote:
            if verbatim and offset + 1 < len(text) and text[offset + 1] == quote:
                chars.append(quote)  # verbatim strings double their quote
                offset += 2
                continue
            return "".join(chars), offset + 1
        if char == "\n":
            break  # KQL strings do not span lines
        if char == "\\" and not verbatim:
            if offset + 1 >= len(text):
                break
            escaped = text[offset + 1]
            if escaped == "u" and offset + 5 < len(text):
                try:
                    chars.append(chr(int(text[offset + 2 : offset + 6], 16)))
                except ValueError:
                    break
                offset += 6
                continue
            if escaped not in _ESCAPES:
                raise KqlSyntaxError(
                    f"Unknown escape sequence '\\{escaped}'.", fragment=f"\\{escaped}", position=at
                )
            chars.append(_ESCAPES[escaped])
            offset += 2
            continue
        chars.append(char)
        offset += 1
    raise KqlSyntaxError("Unterminated string literal.", fragment=text[start:].split("\n", 1)[0], position=at)


def _read_number_end(text: str, offset: int) -> int:
    length = len(text)
    while offset < length and text[offset].isdigit():
        offset += 1
    if offset + 1 < length and text[offset] == "." and text[offset + 1].isdigit():
        offset += 1
        while offset < length and text[offset].isdigit():
            offset += 1
    if offset < length and text[offset] in "eE":
        exponent = offset + 1
        if exponent < length and text[exponent] in "+-":
            exponent += 1
        if exponent < length and text[exponent].isdigit():
            offset = exponent
            while offset < length and text[offset].isdigit():
                offset += 1
    return offset
