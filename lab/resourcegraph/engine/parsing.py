"""The `parse` operator (kind=simple): a pattern of constants, `*` and typed captures over a string."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

from lab.resourcegraph.engine.scalars import compile_expr
from lab.resourcegraph.engine.values import (
    INT32,
    INT64,
    Column,
    Row,
    ScalarType,
    Scope,
    Table,
    null_of,
    string_view,
    to_integer,
)
from lab.resourcegraph.kql.syntax import (
    Parse,
    ParseCapture,
    ParsePart,
)


def parse_rows(operator: Parse, table: Table) -> Table:
    """`parse` (simple): the pattern becomes an anchored regex, `*` and captures lazy, constants literal."""
    scope = Scope(table.columns, "parse")
    source = compile_expr(operator.source, scope)
    text = string_view(source)
    pieces: list[str] = []
    captures: list[ParseCapture] = []
    for part in operator.pattern:
        if isinstance(part, ParseCapture):
            captures.append(part)
            pieces.append(r"(-?\d+)" if part.type in ("long", "int") else "(.*?)")
        elif part == "*":
            pieces.append(".*?")
        else:
            pieces.append(re.escape(part))
    pattern = re.compile("".join(pieces), re.DOTALL)
    converters = [_capture_converter(capture.type) for capture in captures]
    failed = tuple(null_of(_scalar(capture.type)) for capture in captures)
    names = [capture.name for capture in captures]
    existing = {column.name for column in table.columns}
    columns = [column for column in table.columns if column.name not in names]
    columns.extend(Column(capture.name, _scalar(capture.type)) for capture in captures)
    reorder = bool(existing & set(names))
    order = [column.name for column in columns]

    quick = _find_matcher(operator.pattern)

    def parsed(row: Row) -> Row:
        source = text(row)
        found = quick(source) if quick is not None else None
        if found is None:  # no quick answer: the regex decides (it may backtrack to a later delimiter)
            match = pattern.fullmatch(source)
            found = match.groups() if match is not None else None
        values = (
            tuple(convert(value) for convert, value in zip(converters, found, strict=True))
            if found is not None
            else failed
        )
        current = dict(row)
        current.update(zip(names, values, strict=True))
        return {name: current[name] for name in order} if reorder else current

    return Table(tuple(columns), [parsed(row) for row in table.rows])


def _find_matcher(pattern: Sequence[ParsePart]) -> Callable[[str], tuple[str, ...] | None] | None:
    """A `str.find` matcher for a pattern of string captures, `*` and constants, or None for others.

    It takes each constant's first occurrence (the last constant must end the text), which is the regex's
    own first try; when that path succeeds it is the regex's answer, and when it fails the caller asks the
    regex, which may backtrack. Patterns with typed captures or two captures in a row keep the regex.
    """
    for first, second in itertools.pairwise(pattern):
        if (not isinstance(first, str) or first == "*") and (not isinstance(second, str) or second == "*"):
            return None
    if any(isinstance(part, ParseCapture) and part.type != "string" for part in pattern):
        return None
    last = len(pattern) - 1

    def match(text: str) -> tuple[str, ...] | None:
        position = 0
        values: list[str] = []
        waiting: ParsePart | None = None  # a capture or `*` that the next constant ends
        for index, part in enumerate(pattern):
            if isinstance(part, ParseCapture) or part == "*":
                waiting = part
                continue
            if waiting is None:
                if not text.startswith(part, position):
                    return None
                position += len(part)
                continue
            if index == last:
                found = len(text) - len(part)
                if found < position or not text.endswith(part):
                    return None
            else:
                found = text.find(part, position)
                if found < 0:
                    return None
            if isinstance(waiting, ParseCapture):
                values.append(text[position:found])
            position, waiting = found + len(part), None
        if waiting is not None:
            if isinstance(waiting, ParseCapture):
                values.append(text[position:])
            position = len(text)
        return tuple(values) if position == len(text) else None

    return match


def _capture_converter(kind: str) -> Callable[[str], Any]:
    if kind in ("long", "int"):
        bounds = INT32 if kind == "int" else INT64
        return lambda value: to_integer(value, bounds)
    return str


def _scalar(kind: str) -> ScalarType:
    return {"string": "string", "long": "long", "int": "int"}[kind]  # type: ignore[return-value]
