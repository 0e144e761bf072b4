"""The pipeline: `run_query` applies each tabular operator in turn (where, project, project-away,
extend, parse, join, summarize, count, distinct, order/sort, take/limit, top) to a table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lab.resourcegraph.engine.joins import join_tables
from lab.resourcegraph.engine.parsing import parse_rows
from lab.resourcegraph.engine.scalars import compile_expr
from lab.resourcegraph.engine.summaries import summarize_table
from lab.resourcegraph.engine.values import (
    MAX_JOINS,
    Column,
    Evaluator,
    Names,
    Row,
    Scope,
    Table,
    TableNotFound,
    as_bool,
    hashable,
)
from lab.resourcegraph.kql.lexer import KqlUnsupported, Position
from lab.resourcegraph.kql.syntax import (
    Assignment,
    ColumnRef,
    Count,
    Distinct,
    Extend,
    Join,
    Operator,
    Parse,
    Project,
    ProjectAway,
    Query,
    Sort,
    SortKey,
    Summarize,
    Take,
    Top,
    Where,
)

TableSource = Callable[[str, Position], Table]


def run_query(query: Query, tables: TableSource) -> Table:
    """Evaluate a parsed query; `tables(name, position)` resolves table names (or raises `TableNotFound`)."""
    joins = sum(1 for sub in query.walk() for op in sub.operators if isinstance(op, Join))
    if joins > MAX_JOINS:
        first = next(op for sub in query.walk() for op in sub.operators if isinstance(op, Join))
        raise KqlUnsupported(
            f"A Resource Graph query can have at most {MAX_JOINS} join operators; this one has {joins}.",
            fragment="join",
            position=first.position,
        )
    return _run_pipeline(query, tables)


def _run_pipeline(query: Query, tables: TableSource) -> Table:
    table = tables(query.table or "resources", query.table_position)  # ARG's default table
    for operator in query.operators:
        table = _apply(operator, table, tables)
    return table


def _apply(operator: Operator, table: Table, tables: TableSource) -> Table:
    if isinstance(operator, Where):
        return _where(operator, table)
    if isinstance(operator, Project):
        return _project(operator, table)
    if isinstance(operator, ProjectAway):
        return _project_away(operator, table)
    if isinstance(operator, Extend):
        return _extend(operator.items, table, "extend")
    if isinstance(operator, Parse):
        return parse_rows(operator, table)
    if isinstance(operator, Join):
        return join_tables(operator, table, _run_pipeline(operator.right, tables))
    if isinstance(operator, Summarize):
        return summarize_table(operator, table)
    if isinstance(operator, Count):
        return Table((Column("Count", "long"),), [{"Count": len(table.rows)}])
    if isinstance(operator, Distinct):
        return _distinct(operator, table)
    if isinstance(operator, Sort):
        return Table(table.columns, _sorted(table, operator.keys, "order"))
    if isinstance(operator, Take):
        return Table(table.columns, table.rows[: max(operator.count, 0)])
    assert isinstance(operator, Top)
    return Table(table.columns, _sorted(table, (operator.key,), "top")[: max(operator.count, 0)])


def _where(operator: Where, table: Table) -> Table:
    scope = Scope(table.columns, "where")
    predicate = as_bool(compile_expr(operator.predicate, scope), scope, operator.position, "The predicate")
    return Table(table.columns, [row for row in table.rows if predicate(row) is True])


def _project(operator: Project, table: Table) -> Table:
    scope = Scope(table.columns, "project")
    names = Names()
    columns: list[Column] = []
    evaluators: list[tuple[str, Evaluator]] = []
    for item in operator.items:
        compiled = compile_expr(item.expr, scope)
        name = item.name or compiled.name
        if name is not None and name in names.taken:
            raise scope.error(
                f"Column '{name}' is projected more than once", fragment=name, position=item.position
            )
        name = names.claim(name) if name is not None else names.generated()
        columns.append(Column(name, compiled.type))
        evaluators.append((name, compiled.evaluate))
    if all(isinstance(item.expr, ColumnRef) and item.name is None for item in operator.items):
        picked = [column.name for column in columns]  # the plain `project a, b, c`: copy, no closures
        return Table(tuple(columns), [{name: row[name] for name in picked} for row in table.rows])
    return Table(
        tuple(columns), [{name: evaluate(row) for name, evaluate in evaluators} for row in table.rows]
    )


def _project_away(operator: ProjectAway, table: Table) -> Table:
    removed: set[str] = set()
    for pattern in operator.patterns:
        if "*" in pattern:
            regex = re.compile(
                "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern))
            )
            removed.update(column.name for column in table.columns if regex.fullmatch(column.name))
        elif table.column(pattern) is None:
            raise Scope(table.columns, "project-away").error(
                f"Failed to resolve column named '{pattern}'", fragment=pattern, position=operator.position
            )
        else:
            removed.add(pattern)
    kept = [column for column in table.columns if column.name not in removed]
    names = [column.name for column in kept]
    return Table(tuple(kept), [{name: row[name] for name in names} for row in table.rows])


def _extend(items: Sequence[Assignment], table: Table, operator: str) -> Table:
    """`extend`: each item may read the ones before it; a re-assigned column moves to the end."""
    columns = list(table.columns)
    evaluators: list[tuple[str, Evaluator]] = []
    existing = {column.name for column in table.columns}
    names = Names(existing)
    replaced = False
    for item in items:
        scope = Scope(columns, operator)
        compiled = compile_expr(item.expr, scope)
        name = item.name or compiled.name
        if name is None:
            name = names.generated()
        names.claim(name)
        if any(column.name == name for column in columns):
            replaced = True
            columns = [column for column in columns if column.name != name]
        columns.append(Column(name, compiled.type))
        evaluators.append((name, compiled.evaluate))
    order = [column.name for column in columns]

    def extended(row: Row) -> Row:
        current = dict(row)
        for name, evaluate in evaluators:
            if replaced:
                current.pop(name, None)
            current[name] = evaluate(current)
        return {name: current[name] for name in order} if replaced else current

    return Table(tuple(columns), [extended(row) for row in table.rows])


def _distinct(operator: Distinct, table: Table) -> Table:
    if operator.columns == ("*",):
        columns = table.columns
    else:
        scope = Scope(table.columns, "distinct")
        columns = ()
        for name in operator.columns:
            column = table.column(name)
            if column is None:
                raise scope.error(
                    f"Failed to resolve column named '{name}'", fragment=name, position=operator.position
                )
            columns = (*columns, column)
    names = [column.name for column in columns]
    seen: set[tuple[Any, ...]] = set()
    rows: list[Row] = []
    for row in table.rows:
        key = tuple(hashable(row[name]) for name in names)
        if key not in seen:
            seen.add(key)
            rows.append({name: row[name] for name in names})
    return Table(columns, rows)


def _sorted(table: Table, keys: Sequence[SortKey], operator: str) -> list[Row]:
    """Stable multi-key sort: one stable pass per key, last key first; nulls placed per key."""
    scope = Scope(table.columns, operator)
    compiled = []
    for key in keys:
        expr = compile_expr(key.expr, scope)
        if expr.type == "dynamic":
            raise scope.error(
                "A sort key cannot be of a dynamic type; use an explicit cast",
                fragment="by",
                position=key.position,
            )
        compiled.append((expr.evaluate, key))
    rows = list(table.rows)
    for evaluate, key in reversed(compiled):
        decorated = [(evaluate(row), row) for row in rows]
        present = [item for item in decorated if item[0] is not None]
        nulls = [row for value, row in decorated if value is None]
        present.sort(key=lambda item: item[0], reverse=key.descending)
        ordered = [row for _, row in present]
        rows = nulls + ordered if key.nulls_first else ordered + nulls
    return rows


def static_tables(tables: Mapping[str, Table]) -> TableSource:
    """A table source over fixed tables, names case-insensitive (for tests and the service alike)."""
    by_name = {name.lower(): table for name, table in tables.items()}

    def resolve(name: str, _position: Position) -> Table:
        table = by_name.get(name.lower())
        if table is None:
            raise TableNotFound(name)
        return table

    return resolve
