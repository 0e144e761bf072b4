"""HTTP trigger route templates, matched as ASP.NET Core routing matches them for the Functions host.

Supported template syntax: literal segments (case-insensitive), `{name}`, optional `{name?}`, defaults
`{name=value}`, catch-all `{*rest}`/`{**rest}`, several parameters in one segment (`{a}.{b}`), and the
inline constraints `int long bool guid alpha datetime decimal double float minlength maxlength length
min max range regex required`. Values are percent-decoded; absent optional parameters are not in
`route_params`. When several routes match, the most specific wins (literals before constrained
parameters before plain ones before catch-alls), as ASP.NET's route precedence orders them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote

# .NET integer ranges for the `int` and `long` constraints.
INT32_RANGE = (-(2**31), 2**31 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)

# Precedence ranks of a segment kind (lower sorts first, i.e. is more specific).
_RANK_LITERAL, _RANK_COMPLEX, _RANK_CONSTRAINED, _RANK_PLAIN, _RANK_CATCH_ALL = range(5)

_PARAMETER = re.compile(r"\{([^{}]*(?:\([^)]*\))?[^{}]*)\}")


class RouteTemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Parameter:
    name: str
    optional: bool
    catch_all: bool
    default: str | None
    constraints: tuple[tuple[str, str | None], ...]


def _int_in(low: int, high: int) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        return re.fullmatch(r"[+-]?\d+", value) is not None and low <= int(value) <= high

    return check


def _parses(parse: Callable[[str], object]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            parse(value)
        except (ValueError, InvalidOperation):
            return False
        return True

    return check


def _number(value: str) -> Decimal:
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(value)
    return number


def _constraint(name: str, argument: str | None) -> Callable[[str], bool]:
    """The check for one inline constraint; RouteTemplateError for one ASP.NET would reject."""
    simple: dict[str, Callable[[str], bool]] = {
        "int": _int_in(*INT32_RANGE),
        "long": _int_in(*INT64_RANGE),
        "bool": lambda value: value.lower() in ("true", "false"),
        "guid": _parses(uuid.UUID),
        "alpha": lambda value: re.fullmatch(r"[A-Za-z]+", value) is not None,
        "datetime": _parses(datetime.fromisoformat),
        "decimal": _parses(_number),
        "double": _parses(float),
        "float": _parses(float),
        "required": lambda value: value != "",
    }
    if name in simple:
        if argument is not None:
            raise RouteTemplateError(f"route constraint {name!r} takes no argument")
        return simple[name]
    if argument is None:
        raise RouteTemplateError(f"unknown route constraint {name!r}")
    if name == "regex":
        pattern = re.compile(argument, re.IGNORECASE)
        return lambda value: pattern.search(value) is not None
    try:
        bounds = [int(part) for part in argument.split(",")]
    except ValueError as exc:
        raise RouteTemplateError(f"route constraint {name}({argument}) needs integer arguments") from exc
    if name == "minlength" and len(bounds) == 1:
        return lambda value: len(value) >= bounds[0]
    if name == "maxlength" and len(bounds) == 1:
        return lambda value: len(value) <= bounds[0]
    if name == "length" and len(bounds) in (1, 2):
        low, high = (bounds[0], bounds[0]) if len(bounds) == 1 else (bounds[0], bounds[1])
        return lambda value: low <= len(value) <= high
    is_int = _int_in(*INT64_RANGE)
    if name == "min" and len(bounds) == 1:
        return lambda value: is_int(value) and int(value) >= bounds[0]
    if name == "max" and len(bounds) == 1:
        return lambda value: is_int(value) and int(value) <= bounds[0]
    if name == "range" and len(bounds) == 2:
        return lambda value: is_int(value) and bounds[0] <= int(value) <= bounds[1]
    raise RouteTemplateError(f"unknown route constraint {name}({argument})")


def _split_constraints(text: str) -> list[str]:
    """`int:min(1):regex(a:b)` → ["int", "min(1)", "regex(a:b)"] (colons inside parentheses kept)."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part]


def _parse_parameter(body: str) -> Parameter:
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    optional = body.endswith("?")
    body = body.removesuffix("?")
    default: str | None = None
    name_and_constraints = body
    # A default comes after the constraints: {name:int=5}. An '=' inside a regex(...) is not a default.
    depth = 0
    for index, char in enumerate(body):
        depth += char == "("
        depth -= char == ")"
        if char == "=" and depth == 0:
            name_and_constraints, default = body[:index], body[index + 1 :]
            break
    name, _, constraint_text = name_and_constraints.partition(":")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RouteTemplateError(f"invalid route parameter name {name!r}")
    constraints: list[tuple[str, str | None]] = []
    for item in _split_constraints(constraint_text):
        match = re.fullmatch(r"([A-Za-z]+)(?:\((.*)\))?", item, re.DOTALL)
        if match is None:
            raise RouteTemplateError(f"invalid route constraint {item!r}")
        constraints.append((match.group(1).lower(), match.group(2)))
    return Parameter(
        name=name,
        optional=optional or catch_all,
        catch_all=catch_all,
        default=default,
        constraints=tuple(constraints),
    )


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    pattern: re.Pattern[str]
    parameters: tuple[Parameter, ...]
    precedence: tuple[int, ...]
    checks: Mapping[str, tuple[Callable[[str], bool], ...]]

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for `path` (the raw, still percent-encoded path), or None if it does not match."""
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        values: dict[str, str] = {}
        for index, parameter in enumerate(self.parameters):
            raw = found.group(f"p{index}")
            if raw is None or raw == "":
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                elif not parameter.optional:
                    return None
                continue
            value = unquote(raw)
            if not all(check(value) for check in self.checks[parameter.name]):
                return None
            values[parameter.name] = value
        return values


def _compile_segment(segment: str, *, last: bool, first_index: int) -> tuple[str, list[Parameter], int]:
    """(regex, parameters, precedence rank) of one path segment."""
    pieces = _PARAMETER.split(segment)  # literal, param, literal, param, ..., literal
    literals, params = pieces[0::2], [_parse_parameter(body) for body in pieces[1::2]]
    for parameter in params:
        if parameter.catch_all and not (last and len(params) == 1 and segment.startswith("{")):
            raise RouteTemplateError(f"catch-all parameter {parameter.name!r} must be the whole last segment")
    if not params:
        return "/" + re.escape(segment), [], _RANK_LITERAL
    if len(params) == 1 and literals == ["", ""]:
        parameter = params[0]
        value = ".*" if parameter.catch_all else "[^/]+"
        rank = (
            _RANK_CATCH_ALL
            if parameter.catch_all
            else _RANK_CONSTRAINED
            if parameter.constraints
            else _RANK_PLAIN
        )
        if parameter.optional or parameter.default is not None:
            if not last:
                raise RouteTemplateError(f"optional parameter {parameter.name!r} must be in the last segment")
            return f"(?:/(?P<p{first_index}>{value}))?", [parameter], rank
        return f"/(?P<p{first_index}>{value})", [parameter], rank
    # A complex segment: literals and parameters mixed, e.g. {name}.{ext}
    regex = "/"
    for offset, (literal, shared) in enumerate(zip(literals, [*params, None], strict=True)):
        regex += re.escape(literal)
        if shared is not None:
            if shared.optional:
                raise RouteTemplateError(f"optional parameter {shared.name!r} cannot share a segment")
            regex += f"(?P<p{first_index + offset}>[^/]+?)"
    return regex, params, _RANK_COMPLEX


def compile_route(template: str, *, prefix: str) -> RouteTemplate:
    """Compile `{prefix}/{template}` into a matcher; RouteTemplateError names what is wrong."""
    full = "/".join(part.strip("/") for part in (prefix, template) if part.strip("/"))
    segments = full.split("/") if full else []
    regex = ""
    parameters: list[Parameter] = []
    precedence: list[int] = []
    for position, segment in enumerate(segments):
        if segment == "":
            raise RouteTemplateError(f"route {template!r} has an empty segment")
        piece, found, rank = _compile_segment(
            segment, last=position == len(segments) - 1, first_index=len(parameters)
        )
        regex += piece
        parameters.extend(found)
        precedence.append(rank)
    names = [parameter.name.lower() for parameter in parameters]
    if len(set(names)) != len(names):
        raise RouteTemplateError(f"route {template!r} repeats a parameter name")
    checks = {
        parameter.name: tuple(_constraint(name, argument) for name, argument in parameter.constraints)
        for parameter in parameters
    }
    pattern = re.compile(regex + "/?", re.IGNORECASE)
    return RouteTemplate(
        template=template,
        pattern=pattern,
        parameters=tuple(parameters),
        precedence=tuple(precedence),
        checks=checks,
    )


def precedence_key(route: RouteTemplate) -> tuple[tuple[int, ...], int]:
    """Sort key: more specific routes first; among equals, longer routes first."""
    return route.precedence, -len(route.precedence)
