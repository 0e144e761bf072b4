"""The scalar functions of the subset: each turns its compiled arguments into one typed closure.

Anything not in `SUPPORTED_FUNCTIONS` is refused with ARG's `InvalidQueryLanguage`, never evaluated as null.
The arguments are compiled by the caller's `compile_arg` (`lab.resourcegraph.engine.scalars.compile_expr`),
after the function name is checked, so an unsupported function is reported before its arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lab.resourcegraph.engine.values import (
    INT32,
    INT64,
    NUMERIC_TYPES,
    Compiled,
    Row,
    ScalarType,
    Scope,
    as_bool,
    null_of,
    string_view,
    to_integer,
    to_string,
)
from lab.resourcegraph.kql.lexer import KqlUnsupported
from lab.resourcegraph.kql.syntax import Call, Expr

SUPPORTED_FUNCTIONS = (
    "tolower",
    "toupper",
    "tostring",
    "toint",
    "tolong",
    "isempty",
    "isnotempty",
    "isnull",
    "isnotnull",
    "strlen",
    "iff",
    "iif",
    "coalesce",
    "array_length",
    "bag_keys",
    "not",
    "split",
)


def compile_call(expr: Call, scope: Scope, compile_arg: Callable[[Expr, Scope], Compiled]) -> Compiled:
    name = expr.name
    if name not in SUPPORTED_FUNCTIONS:
        raise KqlUnsupported(
            f"The function '{name}' is not supported by the lab's Resource Graph.",
            fragment=name,
            position=expr.position,
        )
    args = [compile_arg(arg, scope) for arg in expr.args]
    if name in ("iff", "iif"):
        return _compile_iff(expr, args, scope)
    if name == "coalesce":
        return _compile_coalesce(expr, args, scope)
    if name == "split":
        return _compile_split(expr, args, scope)
    _arity(expr, args, 1, scope)
    return _UNARY[name](expr, args[0], scope)


def _case(expr: Call, arg: Compiled, scope: Scope) -> Compiled:
    if arg.type not in ("string", "dynamic"):
        raise scope.error(
            f"{expr.name}(): argument #1 must be a string, not {arg.type}",
            fragment=expr.name,
            position=expr.position,
        )
    text = string_view(arg)
    if expr.name == "tolower":
        return Compiled(lambda row: text(row).lower(), "string", None)
    return Compiled(lambda row: text(row).upper(), "string", None)


def _tostring(_expr: Call, arg: Compiled, _scope: Scope) -> Compiled:
    inner = arg.evaluate
    return Compiled(lambda row: to_string(inner(row)), "string", arg.name)


def _tointeger(expr: Call, arg: Compiled, _scope: Scope) -> Compiled:
    inner, bounds = arg.evaluate, INT32 if expr.name == "toint" else INT64
    return Compiled(
        lambda row: to_integer(inner(row), bounds), "int" if expr.name == "toint" else "long", arg.name
    )


def _emptiness(expr: Call, arg: Compiled, _scope: Scope) -> Compiled:
    inner, wanted = arg.evaluate, expr.name == "isempty"
    if arg.type == "string":
        return Compiled(lambda row: (inner(row) == "") == wanted, "bool", None)
    return Compiled(lambda row: (inner(row) in (None, "")) == wanted, "bool", None)


def _nullness(expr: Call, arg: Compiled, _scope: Scope) -> Compiled:
    if arg.type == "string":  # isnull-function.md: strings are never null
        constant = expr.name == "isnotnull"
        return Compiled(lambda _row: constant, "bool", None)
    inner, wanted = arg.evaluate, expr.name == "isnull"
    return Compiled(lambda row: (inner(row) is None) == wanted, "bool", None)


def _strlen(_expr: Call, arg: Compiled, _scope: Scope) -> Compiled:
    text = string_view(arg)
    return Compiled(lambda row: len(text(row)), "long", None)


def _not(expr: Call, arg: Compiled, scope: Scope) -> Compiled:
    test = as_bool(arg, scope, expr.position, "not()")

    def negation(row: Row) -> bool | None:
        value = test(row)
        return None if value is None else not value

    return Compiled(negation, "bool", None)


def _array_length(expr: Call, arg: Compiled, scope: Scope) -> Compiled:
    _dynamic_argument(expr, arg, scope)
    inner = arg.evaluate
    return Compiled(lambda row: len(v) if isinstance(v := inner(row), list) else None, "long", None)


def _bag_keys(expr: Call, arg: Compiled, scope: Scope) -> Compiled:
    _dynamic_argument(expr, arg, scope)
    inner = arg.evaluate
    return Compiled(lambda row: list(v) if isinstance(v := inner(row), dict) else None, "dynamic", None)


def _compile_split(expr: Call, args: Sequence[Compiled], scope: Scope) -> Compiled:
    """`split(source, delimiter)`: a dynamic array of the pieces (split-function.md), so that
    `tostring(split(id, '/providers/')[0])` cuts a resource id as ARG's samples do. The three-argument form
    (`requestedIndex`) is outside the subset; index the array instead."""
    if len(args) == 3:
        raise KqlUnsupported(
            "split() with a requestedIndex is not supported by the lab; index the array: split(s, d)[i].",
            fragment=expr.name,
            position=expr.position,
        )
    _arity(expr, args, 2, scope)
    for number, arg in enumerate(args, start=1):
        if arg.type not in ("string", "dynamic"):
            raise scope.error(
                f"split(): argument #{number} must be a string, not {arg.type}",
                fragment=expr.name,
                position=expr.position,
            )
    source, delimiter = string_view(args[0]), string_view(args[1])

    def split(row: Row) -> list[str]:
        text, separator = source(row), delimiter(row)
        return text.split(separator) if separator else [text]  # an empty delimiter splits nothing

    return Compiled(split, "dynamic", None)


_UNARY: dict[str, Callable[[Call, Compiled, Scope], Compiled]] = {
    "tolower": _case,
    "toupper": _case,
    "tostring": _tostring,
    "toint": _tointeger,
    "tolong": _tointeger,
    "isempty": _emptiness,
    "isnotempty": _emptiness,
    "isnull": _nullness,
    "isnotnull": _nullness,
    "strlen": _strlen,
    "not": _not,
    "array_length": _array_length,
    "bag_keys": _bag_keys,
}


def _arity(expr: Call, args: Sequence[Compiled], count: int, scope: Scope) -> None:
    if len(args) != count:
        raise scope.error(
            f"{expr.name}(): expects {count} argument{'s' if count != 1 else ''}, got {len(args)}",
            fragment=expr.name,
            position=expr.position,
        )


def _dynamic_argument(expr: Call, arg: Compiled, scope: Scope) -> None:
    if arg.type != "dynamic":
        raise scope.error(
            f"{expr.name}(): argument #1 must be dynamic, not {arg.type}",
            fragment=expr.name,
            position=expr.position,
        )


def _common_type(expr: Call, args: Sequence[Compiled], scope: Scope) -> ScalarType:
    """iff()/coalesce() need arguments of one type (numbers widen to the widest)."""
    kinds = {arg.type for arg in args}
    if len(kinds) == 1:
        return args[0].type
    if kinds <= NUMERIC_TYPES:
        return "real" if "real" in kinds else "long"
    raise scope.error(
        f"{expr.name}(): arguments must be of the same type, not {', '.join(sorted(kinds))}",
        fragment=expr.name,
        position=expr.position,
    )


def _compile_iff(expr: Call, args: Sequence[Compiled], scope: Scope) -> Compiled:
    _arity(expr, args, 3, scope)
    condition = as_bool(args[0], scope, expr.position, f"{expr.name}() condition")
    result_type = _common_type(expr, args[1:], scope)
    then, otherwise = args[1].evaluate, args[2].evaluate
    return Compiled(lambda row: then(row) if condition(row) is True else otherwise(row), result_type, None)


def _compile_coalesce(expr: Call, args: Sequence[Compiled], scope: Scope) -> Compiled:
    if len(args) < 2:
        raise scope.error(
            "coalesce(): expects at least 2 arguments", fragment=expr.name, position=expr.position
        )
    result_type = _common_type(expr, args, scope)
    evaluators = [arg.evaluate for arg in args]
    empty: Any = null_of(result_type)

    def coalesce(row: Row) -> Any:
        for evaluate in evaluators:
            value = evaluate(row)
            if value is not None and value != "":  # coalesce-function.md: "non-empty for string"
                return value
        return empty

    return Compiled(coalesce, result_type, None)
