"""Kusto's values and types for the engine: columns and tables, nulls, `tostring()`, the scope an
expression is compiled in, and the output-name rules every operator shares.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lab.resourcegraph.kql.lexer import KqlSemanticError, Position

ScalarType = Literal["string", "long", "int", "real", "bool", "dynamic"]
Row = dict[str, Any]
Evaluator = Callable[[Row], Any]

NUMERIC_TYPES = frozenset({"long", "int", "real"})
# ARG's query-language.md: "Limit of 3 `join` in a single query" (the SDK's default; portal limits differ).
MAX_JOINS = 3
# toint() is a signed 32-bit conversion, tolong() a 64-bit one; out of range is null (toint-function.md).
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
_INTEGER_TEXT = re.compile(r"\s*[+-]?\d+\s*")
_REAL_TEXT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


@dataclass(frozen=True)
class Column:
    name: str
    type: ScalarType


@dataclass
class Table:
    """Columns and rows; every row is a dict whose keys are the column names in column order."""

    columns: tuple[Column, ...]
    rows: list[Row]

    def column(self, name: str) -> Column | None:
        return next((column for column in self.columns if column.name == name), None)


class TableNotFound(Exception):
    """A table the lab's Resource Graph does not have (ARG: `DisallowedLogicalTableName`)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class Compiled:
    evaluate: Evaluator
    type: ScalarType
    name: str | None  # the column name Kusto derives for it, if any


# --- values -------------------------------------------------------------------------------------------


def null_of(kind: ScalarType) -> Any:
    """The null of a type: `""` for strings (which have no null), None otherwise."""
    return "" if kind == "string" else None


def to_string(value: Any) -> str:
    """`tostring()`: null is "", JSON strings are themselves, bags and arrays compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and math.isfinite(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def to_integer(value: Any, bounds: tuple[int, int]) -> int | None:
    """`toint()`/`tolong()`: numbers truncate, numeric text parses, anything else is null."""
    number: int | None = None
    if isinstance(value, bool):
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = int(value) if math.isfinite(value) else None
    elif isinstance(value, str):
        if _INTEGER_TEXT.fullmatch(value):
            number = int(value)
        elif _REAL_TEXT.fullmatch(value):
            parsed = float(value)
            number = int(parsed) if math.isfinite(parsed) else None
    if number is None or not bounds[0] <= number <= bounds[1]:
        return None
    return number


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def dynamic_equal(left: Any, right: Any) -> bool:
    """Deep equality of JSON values that tells `true` from `1` (Python does not)."""
    if _json_kind(left) != _json_kind(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(dynamic_equal(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(dynamic_equal(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


def hashable(value: Any) -> Any:
    """A dict/set key for a value of any type (bags and arrays by their JSON text)."""
    if isinstance(value, (dict, list)):
        return ("json", json.dumps(value, sort_keys=True, separators=(",", ":")))
    if isinstance(value, bool):
        return ("bool", value)
    return value


def has_term(haystack: str, needle: str, *, case_sensitive: bool) -> bool:
    """Kusto's `has`: `needle` occurs bounded by non-alphanumerics wherever it ends in an alphanumeric."""
    if not case_sensitive:
        haystack, needle = haystack.lower(), needle.lower()
    if not needle:
        return True
    start = 0
    while (found := haystack.find(needle, start)) >= 0:
        end = found + len(needle)
        before = not needle[0].isalnum() or found == 0 or not haystack[found - 1].isalnum()
        after = not needle[-1].isalnum() or end == len(haystack) or not haystack[end].isalnum()
        if before and after:
            return True
        start = found + 1
    return False


class Scope:
    """What an expression can see: the input's columns, and which operator it belongs to (for messages)."""

    def __init__(self, columns: Sequence[Column], operator: str) -> None:
        self.types = {column.name: column.type for column in columns}
        self.operator = operator

    def error(self, message: str, *, fragment: str, position: Position) -> KqlSemanticError:
        return KqlSemanticError(
            f"'{self.operator}' operator: {message}", fragment=fragment, position=position
        )


def as_bool(compiled: Compiled, scope: Scope, position: Position, what: str) -> Evaluator:
    """A predicate's evaluator: bool values as they are, dynamic ones true only for JSON `true`/`false`."""
    if compiled.type == "bool":
        return compiled.evaluate
    if compiled.type == "dynamic":
        inner = compiled.evaluate

        def dynamic_as_bool(row: Row) -> bool | None:
            value = inner(row)
            return value if isinstance(value, bool) else None

        return dynamic_as_bool
    raise scope.error(f"{what} must be of type bool, not {compiled.type}", fragment=what, position=position)


def string_view(compiled: Compiled) -> Evaluator:
    """The value as text for a string operator: strings as they are, others through tostring()."""
    if compiled.type == "string":
        return compiled.evaluate
    inner = compiled.evaluate
    return lambda row: to_string(inner(row))


class Names:
    """Output column names: given, derived, or `Column1`, `Column2`... never twice."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self.taken = set(taken)

    def generated(self) -> str:
        index = 1
        while f"Column{index}" in self.taken:
            index += 1
        return self.claim(f"Column{index}")

    def suffixed(self, name: str) -> str:
        """`name`, or `name1`, `name2`... when taken (join's and summarize's renaming)."""
        if name not in self.taken:
            return self.claim(name)
        index = 1
        while f"{name}{index}" in self.taken:
            index += 1
        return self.claim(f"{name}{index}")

    def claim(self, name: str) -> str:
        self.taken.add(name)
        return name


def table_format_type(kind: ScalarType) -> str:
    """ARG's `ColumnDataType` for a Kusto type (resourcegraph.json's enum)."""
    return {
        "string": "string",
        "long": "integer",
        "int": "integer",
        "real": "number",
        "bool": "boolean",
        "dynamic": "object",
    }[kind]
