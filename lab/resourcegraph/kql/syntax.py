"""The AST of a parsed query: frozen dataclasses, each carrying where it was written (for ARG's errors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lab.resourcegraph.kql.lexer import Position

# --- the AST: scalar expressions ----------------------------------------------------------------------

LiteralType = Literal["string", "long", "real", "bool"]


@dataclass(frozen=True)
class Constant:
    value: str | int | float | bool
    type: LiteralType
    position: Position


@dataclass(frozen=True)
class ColumnRef:
    name: str
    position: Position


@dataclass(frozen=True)
class Member:
    """`x.name`, `x['name']` (a property of a dynamic bag) or `x[0]` (an element of a dynamic array)."""

    target: Expr
    key: str | int
    position: Position


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    position: Position


@dataclass(frozen=True)
class Binary:
    """`and`, `or`, comparisons and the string operators (`has`, `!contains`, `startswith_cs`...)."""

    op: str
    left: Expr
    right: Expr
    position: Position


@dataclass(frozen=True)
class InList:
    """`x in (...)`, `x !in (...)`, `x in~ (...)`, `x !in~ (...)`."""

    target: Expr
    items: tuple[Expr, ...]
    negated: bool
    case_insensitive: bool
    position: Position


Expr = Constant | ColumnRef | Member | Call | Binary | InList


# --- the AST: tabular operators -----------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """One item of `project`/`extend`/`summarize by`: `name = expr`, or `expr` with a generated name."""

    name: str | None
    expr: Expr
    position: Position


@dataclass(frozen=True)
class Where:
    predicate: Expr
    position: Position


@dataclass(frozen=True)
class Project:
    items: tuple[Assignment, ...]
    position: Position


@dataclass(frozen=True)
class ProjectAway:
    patterns: tuple[str, ...]  # column names, `*` wildcards allowed
    position: Position


@dataclass(frozen=True)
class Extend:
    items: tuple[Assignment, ...]
    position: Position


@dataclass(frozen=True)
class ParseCapture:
    name: str
    type: str  # string | long | int
    position: Position


ParsePart = Literal["*"] | str | ParseCapture  # `*`, a string constant, or a captured column


@dataclass(frozen=True)
class Parse:
    source: Expr
    pattern: tuple[ParsePart, ...]
    position: Position


JoinKind = Literal["innerunique", "inner", "leftouter"]


@dataclass(frozen=True)
class JoinCondition:
    left: str
    right: str
    position: Position


@dataclass(frozen=True)
class Join:
    kind: JoinKind
    right: Query
    conditions: tuple[JoinCondition, ...]
    position: Position


@dataclass(frozen=True)
class Aggregate:
    name: str | None
    function: str  # count
    position: Position


@dataclass(frozen=True)
class Summarize:
    aggregates: tuple[Aggregate, ...]
    by: tuple[Assignment, ...]
    position: Position


@dataclass(frozen=True)
class Count:
    position: Position


@dataclass(frozen=True)
class Distinct:
    columns: tuple[str, ...]  # ("*",) for every column
    position: Position


@dataclass(frozen=True)
class SortKey:
    expr: Expr
    descending: bool
    nulls_first: bool
    position: Position


@dataclass(frozen=True)
class Sort:
    keys: tuple[SortKey, ...]
    position: Position


@dataclass(frozen=True)
class Take:
    count: int
    position: Position


@dataclass(frozen=True)
class Top:
    count: int
    key: SortKey
    position: Position


Operator = (
    Where | Project | ProjectAway | Extend | Parse | Join | Summarize | Count | Distinct | Sort | Take | Top
)


@dataclass(frozen=True)
class Query:
    """`table | op | op ...`; `table` is None when the query starts with an operator (ARG: `Resources`)."""

    table: str | None
    table_position: Position
    operators: tuple[Operator, ...]

    def walk(self) -> list[Query]:
        """This query and every subquery (join right sides), depth first."""
        found = [self]
        for operator in self.operators:
            if isinstance(operator, Join):
                found.extend(operator.right.walk())
        return found
