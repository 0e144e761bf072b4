"""`join` (innerunique, inner, leftouter): a hash join on typed, non-dynamic key columns."""

from __future__ import annotations

from typing import Any

from lab.resourcegraph.engine.values import (
    NUMERIC_TYPES,
    Column,
    Names,
    Row,
    Scope,
    Table,
    null_of,
)
from lab.resourcegraph.kql.syntax import (
    Join,
)


def join_tables(operator: Join, left: Table, right: Table) -> Table:
    left_keys, right_keys = _join_keys(operator, left, right)
    names = Names(column.name for column in left.columns)
    renamed = [(names.suffixed(column.name), column) for column in right.columns]
    columns = (*left.columns, *(Column(name, column.type) for name, column in renamed))
    index: dict[tuple[Any, ...], list[Row]] = {}
    for row in right.rows:
        key = tuple(row[name] for name in right_keys)
        if None not in key:  # a null key matches nothing
            index.setdefault(key, []).append(row)
    pairs = [(name, column.name) for name, column in renamed]
    unmatched = {name: null_of(column.type) for name, column in renamed}
    rows: list[Row] = []
    seen: set[tuple[Any, ...]] = set()
    for row in left.rows:
        key = tuple(row[name] for name in left_keys)
        if operator.kind == "innerunique":
            if key in seen:
                continue  # join-innerunique.md: the left side is deduplicated by key, first row kept
            seen.add(key)
        matches = index.get(key, []) if None not in key else []
        if not matches and operator.kind == "leftouter":
            rows.append({**row, **unmatched})
        for match in matches:
            joined = dict(row)
            for name, original in pairs:
                joined[name] = match[original]
            rows.append(joined)
    return Table(columns, rows)


def _join_keys(operator: Join, left: Table, right: Table) -> tuple[list[str], list[str]]:
    """The key columns of each side, checked: present, not dynamic, of comparable types."""
    scope = Scope(left.columns, "join")
    left_keys: list[str] = []
    right_keys: list[str] = []
    for condition in operator.conditions:
        found = []
        for side, table, name in (("left", left, condition.left), ("right", right, condition.right)):
            column = table.column(name)
            if column is None:
                raise scope.error(
                    f"Failed to resolve column named '{name}' on the {side} side of the join",
                    fragment=name,
                    position=condition.position,
                )
            if column.type == "dynamic":
                raise scope.error(
                    f"The join key '{name}' is of a dynamic type; use an explicit cast",
                    fragment=name,
                    position=condition.position,
                )
            found.append(column)
        kinds = {found[0].type, found[1].type}
        if len(kinds) > 1 and not kinds <= NUMERIC_TYPES:
            raise scope.error(
                f"The join keys '{condition.left}' ({found[0].type}) and '{condition.right}' "
                f"({found[1].type}) have different types",
                fragment=condition.left,
                position=condition.position,
            )
        left_keys.append(condition.left)
        right_keys.append(condition.right)
    return left_keys, right_keys
