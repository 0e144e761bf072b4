"""`summarize [count()] by ...`: groups by typed keys, counts each group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lab.resourcegraph.engine.scalars import compile_expr
from lab.resourcegraph.engine.values import (
    Column,
    Evaluator,
    Names,
    Row,
    ScalarType,
    Scope,
    Table,
)
from lab.resourcegraph.kql.syntax import (
    Aggregate,
    Summarize,
)


def summarize_table(operator: Summarize, table: Table) -> Table:
    scope = Scope(table.columns, "summarize")
    names = Names()
    keys: list[tuple[str, Evaluator, ScalarType]] = []
    for item in operator.by:
        compiled = compile_expr(item.expr, scope)
        if compiled.type == "dynamic":
            label = item.name or compiled.name or "expression"
            raise scope.error(
                f"Summarize group key '{label}' is of a 'dynamic' type. Please use an explicit cast",
                fragment=label,
                position=item.position,
            )
        name = item.name or compiled.name
        keys.append((names.suffixed(name) if name else names.generated(), compiled.evaluate, compiled.type))
    aggregates = [(names.suffixed(agg.name or f"{agg.function}_"), agg) for agg in operator.aggregates]
    columns = (
        *(Column(name, kind) for name, _, kind in keys),
        *(Column(name, "long") for name, _ in aggregates),
    )
    counts: dict[tuple[Any, ...], list[Any]] = {}
    for row in table.rows:
        values = tuple(evaluate(row) for _, evaluate, _ in keys)
        group = counts.get(values)
        if group is None:
            counts[values] = [values, 1]
        else:
            group[1] += 1
    if not keys:  # summarize-operator.md: without group keys the result is one row, even for no input
        counts = {(): [(), len(table.rows)]}
    rows = [_summary_row(keys, aggregates, values, count) for values, count in counts.values()]
    return Table(columns, rows)


def _summary_row(
    keys: Sequence[tuple[str, Evaluator, ScalarType]],
    aggregates: Sequence[tuple[str, Aggregate]],
    values: tuple[Any, ...],
    count: int,
) -> Row:
    row: Row = {name: value for (name, _, _), value in zip(keys, values, strict=True)}
    for name, _ in aggregates:
        row[name] = count  # count() is the only aggregation in the subset
    return row
