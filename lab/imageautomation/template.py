"""Commit messages from an ImageUpdateAutomation's `messageTemplate`: the part of Go `text/template`
that such templates use (reference §9.4).

image-automation-controller renders `spec.git.commit.messageTemplate` with Go's `text/template`
(plus Sprig's hermetic functions) over `{AutomationObject, Changed, Values}`. The templates people
write — and the one in this repository — use field chains, `range` over maps and lists (maps in
sorted key order), `if`/`with`/`else`, variables, the `{{-`/`-}}` trim markers, comments, and a few
built-ins (`index`, `len`, `eq`, `ne`, `not`, `and`, `or`, `print`). Those are implemented exactly;
anything else raises `TemplateUnsupported` (a gap of the lab, which then uses Flux's default
message and says so), while what Flux itself rejects — a syntax error, or the removed `.Updated` and
`.Changed.ImageResult` fields — raises `TemplateError` (the automation fails, as in Flux).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MESSAGE = "Update from image update automation"
# Go prints a missing map entry as this (text/template's "missingkey=default").
NO_VALUE = "<no value>"
_REMOVED_FIELDS = {"Updated", "ImageResult"}


class TemplateError(ValueError):
    """A template Flux refuses too (the automation reports the error and does not commit)."""


class TemplateUnsupported(ValueError):
    """Valid Go template syntax the lab does not implement (the lab falls back to the default message)."""


# --- the data Flux hands to the template ------------------------------------------------------------
@dataclass(frozen=True, order=True)
class ObjectIdentifier:
    """`update.ObjectIdentifier`; ordered field by field as Go's `fmtsort` orders struct map keys."""

    APIVersion: str
    Kind: str
    Name: str
    Namespace: str

    def __str__(self) -> str:
        return f"{{{self.APIVersion} {self.Kind} {self.Name} {self.Namespace}}}"


@dataclass(frozen=True)
class Change:
    OldValue: str
    NewValue: str
    Setter: str

    def __str__(self) -> str:
        return f"{{{self.OldValue} {self.NewValue} {self.Setter}}}"


@dataclass(frozen=True)
class AutomationObject:
    Namespace: str
    Name: str

    def __str__(self) -> str:
        return f"{self.Namespace}/{self.Name}"


@dataclass(frozen=True)
class Changed:
    """`update.ResultV2`: file (relative to `update.path`) -> object -> changes."""

    FileChanges: Mapping[str, Mapping[ObjectIdentifier, Sequence[Change]]]

    @property
    def Objects(self) -> dict[ObjectIdentifier, list[Change]]:  # noqa: N802 - Go field name
        merged: dict[ObjectIdentifier, list[Change]] = {}
        for objects in self.FileChanges.values():
            for identifier, changes in objects.items():
                merged.setdefault(identifier, []).extend(changes)
        return merged

    @property
    def Changes(self) -> list[Change]:  # noqa: N802 - Go field name
        unique: dict[Change, None] = {}
        for changes in self.Objects.values():
            unique.update(dict.fromkeys(changes))
        return list(unique)


@dataclass(frozen=True)
class TemplateData:
    AutomationObject: AutomationObject
    Changed: Changed
    Values: Mapping[str, str] = field(default_factory=dict)


# --- parsing ------------------------------------------------------------------------------------------
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)


@dataclass
class _Node:
    kind: str  # text | print | range | if | with
    text: str = ""
    pipeline: str = ""
    variables: tuple[str, ...] = ()
    body: list[_Node] = field(default_factory=list)
    otherwise: list[_Node] = field(default_factory=list)


def _tokens(template: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", s)] with the trim markers already applied to the texts."""
    tokens: list[tuple[str, str]] = []
    position = 0
    trim_next = False
    for match in _ACTION.finditer(template):
        text = template[position : match.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if match.group(1):
            text = text.rstrip(" \t\r\n")
        tokens.append(("text", text))
        tokens.append(("action", match.group(2).strip()))
        trim_next = bool(match.group(3))
        position = match.end()
    tail = template[position:]
    if "{{" in tail:
        raise TemplateError("template: unclosed action")
    tokens.append(("text", tail.lstrip(" \t\r\n") if trim_next else tail))
    return tokens


_DECLARATION = re.compile(r"^(\$\w+)\s*:?=\s*(.+)$", re.DOTALL)
_RANGE_VARS = re.compile(r"^(\$\w*)\s*(?:,\s*(\$\w*)\s*)?:=\s*(.+)$", re.DOTALL)


def _block(word: str, rest: str) -> _Node:
    """A `range`/`if`/`with` node from its action text."""
    variables: tuple[str, ...] = ()
    pipeline = rest
    assignment = _RANGE_VARS.match(rest)
    if assignment:
        variables = tuple(item for item in assignment.group(1, 2) if item)
        pipeline = assignment.group(3).strip()
    if not pipeline:
        raise TemplateError(f"template: missing value for {word}")
    return _Node(word, pipeline=pipeline, variables=variables)


def _parse(tokens: list[tuple[str, str]]) -> list[_Node]:
    root: list[_Node] = []
    stack: list[tuple[_Node, bool]] = []  # (block node, in its else branch)

    def current() -> list[_Node]:
        if not stack:
            return root
        node, in_else = stack[-1]
        return node.otherwise if in_else else node.body

    for kind, value in tokens:
        word, _, rest = value.partition(" ")
        if kind == "text" or (value.startswith("/*") and value.endswith("*/")):
            if kind == "text" and value:
                current().append(_Node("text", text=value))
        elif word == "end":
            if not stack:
                raise TemplateError("template: unexpected {{end}}")
            stack.pop()
        elif word == "else":
            if not stack or stack[-1][1]:
                raise TemplateError("template: unexpected {{else}}")
            if rest.strip():
                raise TemplateUnsupported("{{else if}} / {{else with}} chains")
            stack[-1] = (stack[-1][0], True)
        elif word in ("range", "if", "with"):
            node = _block(word, rest.strip())
            current().append(node)
            stack.append((node, False))
        elif word in ("define", "template", "block", "break", "continue"):
            raise TemplateUnsupported(f"{{{{{word}}}}}")
        else:
            current().append(_Node("print", pipeline=value))
    if stack:
        raise TemplateError(f"template: unexpected EOF in {stack[-1][0].kind}")
    return root


# --- evaluation ---------------------------------------------------------------------------------------
_OPERAND = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|[^\s()]+')


def _go_format(value: Any) -> str:
    if value is None:
        return NO_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{_go_format(k)}:{_go_format(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_go_format(item) for item in value) + "]"
    return str(value)


def _truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, (int, float, str, list, tuple, Mapping)):
        return bool(value)
    return True


class _Scope:
    def __init__(self, root: Any) -> None:
        self.frames: list[dict[str, Any]] = [{"$": root}]

    def lookup(self, name: str) -> Any:
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        raise TemplateError(f'template: undefined variable "{name}"')


def _field(value: Any, name: str) -> Any:
    if name in _REMOVED_FIELDS:
        raise TemplateError(f"template: field {name} has been removed (RemovedTemplateField)")
    if isinstance(value, Mapping):
        return value.get(name)
    if value is None or not hasattr(value, name) or name.startswith("_"):
        raise TemplateError(f"template: can't evaluate field {name} in type {type(value).__name__}")
    return getattr(value, name)


def _operand(text: str, dot: Any, scope: _Scope) -> Any:
    if text.startswith('"'):
        return json.loads(text)
    if text.startswith("`"):
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if text == "nil":
        return None
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text.startswith("$"):
        name, _, chain = text.partition(".")
        value = scope.lookup(name)
        return _chain(value, chain)
    if text.startswith("."):
        return _chain(dot, text[1:])
    raise TemplateUnsupported(f"function {text!r}")


def _chain(value: Any, chain: str) -> Any:
    for name in filter(None, chain.split(".")):
        value = _field(value, name)
    return value


def _index(collection: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(collection, Mapping):
            collection = collection.get(key)
        elif isinstance(collection, (list, tuple)) and isinstance(key, int):
            collection = collection[key]
        else:
            raise TemplateError("template: index of untyped nil")
    return collection


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "index": _index,
    "len": len,
    "eq": lambda first, *others: any(first == other for other in others),
    "ne": lambda first, second: first != second,
    "not": lambda value: not _truthy(value),
    "and": lambda *values: next((value for value in values if not _truthy(value)), values[-1]),
    "or": lambda *values: next((value for value in values if _truthy(value)), values[-1]),
    "print": lambda *values: "".join(_go_format(value) for value in values),
}


def _evaluate(pipeline: str, dot: Any, scope: _Scope) -> Any:
    if "|" in pipeline:
        raise TemplateUnsupported("pipelines with |")
    words = _OPERAND.findall(pipeline)
    if not words or "(" in words:
        raise TemplateUnsupported(f"expression {pipeline!r}")
    head, arguments = words[0], words[1:]
    if head in _FUNCTIONS:
        return _FUNCTIONS[head](*(_operand(word, dot, scope) for word in arguments))
    if arguments:
        raise TemplateUnsupported(f"function {head!r}")
    return _operand(head, dot, scope)


def _items(value: Any) -> list[tuple[Any, Any]]:
    if isinstance(value, Mapping):
        return [(key, value[key]) for key in sorted(value)]
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    if value is None:
        return []
    raise TemplateError(f"template: range can't iterate over {_go_format(value)}")


def _render(nodes: list[_Node], dot: Any, scope: _Scope, out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "print":
            declaration = _DECLARATION.match(node.pipeline)
            if declaration:  # `{{ $name := value }}` / `{{ $name = value }}` print nothing
                scope.frames[-1][declaration.group(1)] = _evaluate(declaration.group(2), dot, scope)
                continue
            out.append(_go_format(_evaluate(node.pipeline, dot, scope)))
        elif node.kind == "range":
            items = _items(_evaluate(node.pipeline, dot, scope))
            if not items:
                _render(node.otherwise, dot, scope, out)
            for key, element in items:
                frame: dict[str, Any] = {}
                if len(node.variables) == 1:
                    frame[node.variables[0]] = element
                elif len(node.variables) == 2:
                    frame[node.variables[0]], frame[node.variables[1]] = key, element
                scope.frames.append(frame)
                _render(node.body, element, scope, out)
                scope.frames.pop()
        else:
            value = _evaluate(node.pipeline, dot, scope)
            branch = node.body if _truthy(value) else node.otherwise
            scope.frames.append(dict.fromkeys(node.variables, value))
            _render(branch, value if node.kind == "with" and _truthy(value) else dot, scope, out)
            scope.frames.pop()


def render_message(template: str | None, data: TemplateData) -> str:
    """The commit message Flux writes: the template rendered, or Flux's default without a template."""
    if not template:
        return DEFAULT_MESSAGE
    out: list[str] = []
    _render(_parse(_tokens(template)), data, _Scope(data), out)
    return "".join(out)
