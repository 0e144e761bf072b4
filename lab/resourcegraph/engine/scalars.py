"""Compiling scalar expressions: columns, members, comparisons, string operators, `in`, and calls.

Each expression becomes a closure with a static Kusto type, so a type error is found before any row is read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lab.resourcegraph.engine.functions import compile_call
from lab.resourcegraph.engine.values import (
    NUMERIC_TYPES,
    Compiled,
    Evaluator,
    Row,
    ScalarType,
    Scope,
    as_bool,
    dynamic_equal,
    has_term,
    string_view,
    to_string,
)
from lab.resourcegraph.kql.lexer import Position
from lab.resourcegraph.kql.syntax import (
    Binary,
    Call,
    ColumnRef,
    Constant,
    Expr,
    InList,
    Member,
)


def compile_expr(expr: Expr, scope: Scope) -> Compiled:
    if isinstance(expr, Constant):
        value = expr.value
        return Compiled(lambda _row: value, expr.type, None)
    if isinstance(expr, ColumnRef):
        return _compile_column(expr, scope)
    if isinstance(expr, Member):
        return _compile_member(expr, scope)
    if isinstance(expr, Call):
        return compile_call(expr, scope, compile_expr)
    if isinstance(expr, InList):
        return _compile_in(expr, scope)
    return _compile_binary(expr, scope)


def _compile_column(expr: ColumnRef, scope: Scope) -> Compiled:
    kind = scope.types.get(expr.name)
    if kind is None:
        raise scope.error(
            f"Failed to resolve scalar expression named '{expr.name}'",
            fragment=expr.name,
            position=expr.position,
        )
    name = expr.name
    return Compiled(lambda row: row[name], kind, name)


def _compile_member(expr: Member, scope: Scope) -> Compiled:
    target = compile_expr(expr.target, scope)
    if target.type != "dynamic":
        raise scope.error(
            f"Only dynamic values have properties or elements, not {target.type} values",
            fragment=str(expr.key),
            position=expr.position,
        )
    key, inner = expr.key, target.evaluate
    if isinstance(key, str):

        def member(row: Row) -> Any:
            value = inner(row)
            return value.get(key) if isinstance(value, dict) else None

    else:

        def member(row: Row) -> Any:
            value = inner(row)
            if isinstance(value, list) and -len(value) <= key < len(value):
                return value[key]
            return None

    name = f"{target.name}_{key}" if target.name is not None else None
    return Compiled(member, "dynamic", name)


def _compile_binary(expr: Binary, scope: Scope) -> Compiled:
    op = expr.op
    left, right = compile_expr(expr.left, scope), compile_expr(expr.right, scope)
    if op in ("and", "or"):
        return Compiled(_logical(op, left, right, scope, expr.position), "bool", None)
    if op in ("==", "!="):
        return Compiled(_equality(op == "!=", left, right, scope, expr.position), "bool", None)
    if op in ("=~", "!~"):
        return Compiled(_equality_ci(op == "!~", left, right, scope, expr.position), "bool", None)
    if op in ("<", "<=", ">", ">="):
        return Compiled(_ordering(op, left, right, scope, expr.position), "bool", None)
    return Compiled(_string_operator(op, left, right, scope, expr.position), "bool", None)


def _logical(op: str, left: Compiled, right: Compiled, scope: Scope, position: Position) -> Evaluator:
    first, second = as_bool(left, scope, position, op), as_bool(right, scope, position, op)
    if op == "and":

        def conjunction(row: Row) -> bool | None:
            a = first(row)
            if a is False:
                return False
            b = second(row)
            if b is False:
                return False
            return None if a is None or b is None else True

        return conjunction

    def disjunction(row: Row) -> bool | None:
        a = first(row)
        if a is True:
            return True
        b = second(row)
        if b is True:
            return True
        return None if a is None or b is None else False

    return disjunction


def _comparable(left: Compiled, right: Compiled, scope: Scope, position: Position, op: str) -> None:
    """Kusto refuses comparing, say, a string with a long (SEM0025-style 'try adding explicit casts')."""
    kinds = {left.type, right.type}
    if "dynamic" in kinds or len(kinds) == 1 or kinds <= NUMERIC_TYPES:
        return
    raise scope.error(
        f"Cannot compare values of types {left.type} and {right.type}. Try adding explicit casts",
        fragment=op,
        position=position,
    )


def _equality(negated: bool, left: Compiled, right: Compiled, scope: Scope, position: Position) -> Evaluator:
    _comparable(left, right, scope, position, "!=" if negated else "==")
    a, b = left.evaluate, right.evaluate
    if left.type == "string" and right.type == "string":
        return (lambda row: a(row) != b(row)) if negated else (lambda row: a(row) == b(row))
    match = _typed_equal(left.type, right.type)

    def equality(row: Row) -> bool | None:
        x, y = a(row), b(row)  # only strings are never None
        if x is None and y is None:
            return None  # null-values.md: two nulls compare to null
        if x is None or y is None:
            return negated
        return match(x, y) != negated

    return equality


def _typed_equal(left: ScalarType, right: ScalarType) -> Callable[[Any, Any], bool]:
    """Equality of two non-null values of the given types (a dynamic value by its JSON type)."""
    if left == "dynamic" and right == "dynamic":
        return dynamic_equal
    if "dynamic" in (left, right):
        other = right if left == "dynamic" else left

        def against_dynamic(x: Any, y: Any) -> bool:
            dyn, typed = (x, y) if left == "dynamic" else (y, x)
            if other == "string":
                return isinstance(dyn, str) and dyn == typed
            if other == "bool":
                return isinstance(dyn, bool) and dyn == typed
            return isinstance(dyn, (int, float)) and not isinstance(dyn, bool) and dyn == typed

        return against_dynamic
    return lambda x, y: bool(x == y)


def _equality_ci(
    negated: bool, left: Compiled, right: Compiled, scope: Scope, position: Position
) -> Evaluator:
    for side in (left, right):
        if side.type not in ("string", "dynamic"):
            raise scope.error(
                f"'{'!~' if negated else '=~'}' compares strings, not {side.type} values",
                fragment="!~" if negated else "=~",
                position=position,
            )
    a, b = left.evaluate, right.evaluate
    if left.type == "string" and right.type == "string":
        if negated:
            return lambda row: a(row).lower() != b(row).lower()
        return lambda row: a(row).lower() == b(row).lower()

    def equality(row: Row) -> bool | None:
        x, y = a(row), b(row)
        x_null = left.type == "dynamic" and x is None
        y_null = right.type == "dynamic" and y is None
        if x_null and y_null:
            return None
        if x_null or y_null:
            return negated
        return (to_string(x).lower() == to_string(y).lower()) != negated

    return equality


def _ordering(op: str, left: Compiled, right: Compiled, scope: Scope, position: Position) -> Evaluator:
    _comparable(left, right, scope, position, op)
    a, b = left.evaluate, right.evaluate
    compare: Callable[[Any, Any], bool] = {
        "<": lambda x, y: x < y,
        "<=": lambda x, y: x <= y,
        ">": lambda x, y: x > y,
        ">=": lambda x, y: x >= y,
    }[op]

    def ordering(row: Row) -> bool | None:
        x, y = a(row), b(row)
        if x is None or y is None:
            return None
        numeric = (isinstance(x, (int, float)) and not isinstance(x, bool)) and (
            isinstance(y, (int, float)) and not isinstance(y, bool)
        )
        if numeric or (isinstance(x, str) and isinstance(y, str)):
            return compare(x, y)
        return None  # a dynamic value of another JSON type has no order with this one

    return ordering


def _string_operator(op: str, left: Compiled, right: Compiled, scope: Scope, position: Position) -> Evaluator:
    negated = op.startswith("!")
    name = op.lstrip("!")
    case_sensitive = name.endswith("_cs")
    base = name.removesuffix("_cs")
    a, b = string_view(left), string_view(right)
    test: Callable[[str, str], bool]
    if base == "has":
        test = lambda x, y: has_term(x, y, case_sensitive=case_sensitive)  # noqa: E731
    elif case_sensitive:
        test = {
            "contains": lambda x, y: y in x,
            "startswith": lambda x, y: x.startswith(y),
            "endswith": lambda x, y: x.endswith(y),
        }[base]
    else:
        test = {
            "contains": lambda x, y: y.lower() in x.lower(),
            "startswith": lambda x, y: x.lower().startswith(y.lower()),
            "endswith": lambda x, y: x.lower().endswith(y.lower()),
        }[base]
    if negated:
        return lambda row: not test(a(row), b(row))
    return lambda row: test(a(row), b(row))


def _compile_in(expr: InList, scope: Scope) -> Compiled:
    target = compile_expr(expr.target, scope)
    items = [compile_expr(item, scope) for item in expr.items]
    for item in items:
        _comparable(target, item, scope, expr.position, "in")
    negated = expr.negated
    constant_strings = all(isinstance(item, Constant) and item.type == "string" for item in expr.items)
    if constant_strings and target.type in ("string", "dynamic"):
        # The common shape (`id in~ ('...', ...)` with hundreds of ids): one set lookup per row.
        values = [str(item.value) for item in expr.items if isinstance(item, Constant)]
        wanted = {value.lower() for value in values} if expr.case_insensitive else set(values)
        inner, is_dynamic, fold = target.evaluate, target.type == "dynamic", expr.case_insensitive

        def in_set(row: Row) -> bool:
            value = inner(row)
            if is_dynamic and not isinstance(value, str):
                return negated  # null, or a JSON value of another type: equal to none of them
            return ((value.lower() if fold else value) in wanted) != negated

        return Compiled(in_set, "bool", None)
    if expr.case_insensitive:
        tests = [_equality_ci(False, target, item, scope, expr.position) for item in items]
    else:
        tests = [_equality(False, target, item, scope, expr.position) for item in items]

    def in_list(row: Row) -> bool:
        found = any(test(row) is True for test in tests)
        return found != negated

    return Compiled(in_list, "bool", None)
