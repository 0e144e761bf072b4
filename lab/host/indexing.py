"""Load the app and index its functions the way the Python worker does (v2 programming model).

The worker imports the script file, finds the one top-level `FunctionRegister` (the `FunctionApp`),
calls `get_functions()` once, and checks every function's Python signature against its bindings:
each parameter must be a binding (or `context`), `func.Out[T]` exactly on output bindings, annotations
accepted by the binding's converter. Doing the same checks here means an app that starts locally does
not fail indexing in Azure for a reason the lab hid.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import azure.functions as func
from azure.functions import meta

from lab.host.errors import FunctionLoadError, HostStartupError

log = logging.getLogger("lab.host")

TRIGGER_TYPES = ("httpTrigger", "timerTrigger", "eventGridTrigger", "queueTrigger")
OUTPUT_TYPES = ("http", "queue")

Direction = Literal["in", "out", "inout"]


@dataclass(frozen=True)
class BindingSpec:
    """One entry of the function's generated function.json `bindings`."""

    name: str
    type: str
    direction: Direction
    properties: Mapping[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.properties.get(key, default)


@dataclass(frozen=True)
class OutputParam:
    """A `func.Out[T]` parameter and the output binding it feeds."""

    param: str
    binding: BindingSpec
    pytype: Any


@dataclass(frozen=True)
class IndexedFunction:
    name: str
    trigger: BindingSpec
    bindings: tuple[BindingSpec, ...]
    user_function: Callable[..., Any]
    is_async: bool
    requires_context: bool
    trigger_pytype: Any
    outputs: tuple[OutputParam, ...]
    return_binding: BindingSpec | None
    function_json: Mapping[str, Any] = field(repr=False)
    unsupported: str | None = None
    """Why the lab host cannot trigger this function (a binding it does not emulate), or None."""

    @property
    def trigger_type(self) -> str:
        return self.trigger.type

    @property
    def trigger_param(self) -> str:
        return self.trigger.name


def _direction(value: Any) -> Direction:
    text = str(value).lower()
    if text not in ("in", "out", "inout"):
        raise HostStartupError(f"unknown binding direction {value!r}")
    return "in" if text == "in" else "out" if text == "out" else "inout"


def _binding_specs(function: func.Function) -> tuple[dict[str, Any], tuple[BindingSpec, ...]]:
    doc: dict[str, Any] = json.loads(function.get_function_json())
    specs = tuple(
        BindingSpec(
            name=str(raw["name"]),
            type=str(raw["type"]),
            direction=_direction(raw.get("direction", "in")),
            properties=dict(raw),
        )
        for raw in doc.get("bindings", [])
    )
    return doc, specs


def _out_inner_type(annotation: Any) -> tuple[bool, Any]:
    """(is `func.Out[...]`, the T of `Out[T]`)."""
    origin = typing.get_origin(annotation)
    if origin is not None and isinstance(origin, type) and origin.__name__ == "Out":
        args = typing.get_args(annotation)
        return True, args[0] if len(args) == 1 else None
    if isinstance(annotation, type) and annotation.__name__ == "Out":
        return True, None
    return False, None


def _annotations(user_function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(user_function)
    except (NameError, TypeError):
        # Annotations naming types imported only for type checking: fall back to what is resolvable.
        return {
            name: param.annotation
            for name, param in inspect.signature(user_function).parameters.items()
            if param.annotation is not inspect.Parameter.empty and not isinstance(param.annotation, str)
        }


def _converter(binding_type: str) -> Any:
    return meta.get_binding_registry().get(binding_type)  # type: ignore[no-untyped-call]


def _check_input_annotation(name: str, spec: BindingSpec, pytype: Any) -> None:
    if pytype in (str, bytes):
        return  # the worker's "generic" binding: the raw payload as text or bytes
    converter = _converter(spec.type)
    if converter is None:
        return
    if not (isinstance(pytype, type) and converter.check_input_type_annotation(pytype)):
        raise FunctionLoadError(
            name,
            f'type of {spec.name} binding "{spec.type}" does not match its Python '
            f'annotation "{getattr(pytype, "__name__", pytype)}"',
        )


def _check_output_annotation(name: str, spec: BindingSpec, pytype: Any) -> None:
    if pytype is None or pytype in (str, bytes):
        return
    converter = _converter(spec.type)
    if converter is not None and not converter.check_output_type_annotation(pytype):
        raise FunctionLoadError(
            name,
            f'Python type "{getattr(pytype, "__name__", pytype)}" of {spec.name} does '
            f'not match binding type "{spec.type}"',
        )


def _split_bindings(
    name: str, specs: tuple[BindingSpec, ...]
) -> tuple[dict[str, BindingSpec], BindingSpec | None]:
    """Parameter bindings by name, and the `$return` binding if any."""
    return_binding: BindingSpec | None = None
    bound: dict[str, BindingSpec] = {}
    for spec in specs:
        if spec.direction == "inout":
            raise FunctionLoadError(name, '"inout" bindings are not supported')
        if spec.name == "$return":
            if spec.direction != "out":
                raise FunctionLoadError(name, '"$return" binding must have direction set to "out"')
            return_binding = spec
        else:
            bound[spec.name] = spec
    return bound, return_binding


def _check_parameters(
    name: str, params: dict[str, inspect.Parameter], bound: Mapping[str, BindingSpec]
) -> bool:
    """Every parameter a binding and vice versa (`context` aside); True when `context` is wanted."""
    requires_context = "context" in params and "context" not in bound
    names = set(params) - {"context"} if requires_context else set(params)
    if names - set(bound):
        raise FunctionLoadError(
            name,
            f"the following parameters are not bindings: {sorted(names - set(bound))}",
        )
    if set(bound) - names:
        raise FunctionLoadError(
            name, f"the following bindings are not parameters in Python: {sorted(set(bound) - names)}"
        )
    return requires_context


def _output_param(name: str, param: str, spec: BindingSpec, annotation: Any) -> OutputParam:
    is_out, inner = _out_inner_type(annotation)
    if annotation is not None and not is_out:
        raise FunctionLoadError(
            name,
            f'binding {param} is declared to have the "out" direction, but '
            f"its annotation in Python is not a subclass of azure.functions.Out",
        )
    _check_output_annotation(name, spec, inner)
    return OutputParam(param=param, binding=spec, pytype=inner)


def _unsupported(trigger: BindingSpec, specs: tuple[BindingSpec, ...]) -> str | None:
    if trigger.type not in TRIGGER_TYPES:
        return f"trigger type {trigger.type!r} is not emulated by the lab host"
    others = [spec for spec in specs if spec is not trigger and spec.type not in OUTPUT_TYPES]
    if others:
        return f"binding {others[0].name!r} of type {others[0].type!r} is not emulated by the lab host"
    return None


def index_function(function: func.Function) -> IndexedFunction:
    """Check one function as the worker does and describe it for the host."""
    name = function.get_function_name() or "<unnamed>"
    doc, specs = _binding_specs(function)
    trigger_specs = [spec for spec in specs if spec.type.endswith("Trigger")]
    if len(trigger_specs) != 1:
        raise FunctionLoadError(name, "a function must have exactly one trigger")
    trigger = trigger_specs[0]
    user_function = function.get_user_function()
    params = dict(inspect.signature(user_function).parameters)
    annotations = _annotations(user_function)
    bound, return_binding = _split_bindings(name, specs)
    requires_context = _check_parameters(name, params, bound)

    outputs: list[OutputParam] = []
    for param, spec in bound.items():
        annotation = annotations.get(param)
        if spec.direction == "out":
            outputs.append(_output_param(name, param, spec, annotation))
            continue
        if _out_inner_type(annotation)[0]:
            raise FunctionLoadError(
                name,
                f'binding {param} is declared to have the "in" direction, but its '
                f"annotation is azure.functions.Out in Python",
            )
        if annotation is not None:
            _check_input_annotation(name, spec, annotation)

    return IndexedFunction(
        name=name,
        trigger=trigger,
        bindings=specs,
        user_function=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        requires_context=requires_context,
        trigger_pytype=annotations.get(trigger.name),
        outputs=tuple(outputs),
        return_binding=return_binding,
        function_json=doc,
        unsupported=_unsupported(trigger, specs),
    )


def find_function_app(module: Any, *, script: str) -> func.FunctionRegister:
    """The module's single top-level FunctionApp, as the worker's loader finds it."""
    found: list[func.FunctionRegister] = [
        value for value in vars(module).values() if isinstance(value, func.FunctionRegister)
    ]
    if not found:
        raise HostStartupError(f"could not find a top-level function app instance in {script}")
    if len({id(app) for app in found}) > 1:
        raise HostStartupError(
            f"more than one FunctionApp or other top-level function app instance in {script}"
        )
    return found[0]


def load_functions(*, app_dir: Path, module_name: str) -> list[IndexedFunction]:
    """Import `module_name` from `app_dir` (first on sys.path, as the worker's script root) and index it."""
    root = str(app_dir)
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise HostStartupError(
            f"importing {module_name} from {app_dir} failed: {type(exc).__name__}: {exc}"
        ) from exc
    app = find_function_app(module, script=f"{module_name}.py")
    try:
        functions = app.get_functions()
    except ValueError as exc:
        raise HostStartupError(f"indexing {module_name} failed: {exc}") from exc
    return [index_function(function) for function in functions]
