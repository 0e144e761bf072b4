# One module (>500 lines): finding markers and rewriting them share one model of kyaml's scalars.
"""Setter markers (`# {"$imagepolicy": "ns:name[:tag|:name|:digest]"}`) and the edits Flux makes.

image-automation-controller walks `spec.update.path`, screens files, reads each YAML scalar's
comment through kyaml's fieldmeta, and replaces marked scalars with the policy's latest ref
(reference §9.2, §9.3). This module finds the same markers and computes the same changes, so a
verdict can say which files will change and the lab's simulator can make the commit.

One deliberate difference: Flux re-serialises every changed file through kyaml (yaml.v3), which
can reflow formatting elsewhere in that file. `apply_rewrites` instead edits only the marked
scalar in place and leaves every other byte of the file as it was; the changed values, and the
quoting Flux applies to them (YAML 1.1 non-strings such as `1.10` become double-quoted), are the
same.

Comment placement follows kyaml: a scalar's line comment, else its head comment. PyYAML keeps no
comments, so they are read from the source: the text after a single-line scalar on its own line,
or (for a sequence item) a comment line directly above it. Markers on multi-line or empty scalars
are not recognised.
"""

from __future__ import annotations

import io
import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import yaml

from shared.image_policy.gofloat import parse_go_float

SETTER_KEY = "$imagepolicy"
# IAC screens raw file bytes for the key in double quotes before parsing anything.
SCREEN_TOKEN = f'"{SETTER_KEY}"'
YAML_EXTENSIONS = (".yaml", ".yml")
KUSTOMIZATION_BASENAME = "Kustomization"
_STR_TAG = "tag:yaml.org,2002:str"
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1

SetterField = Literal["image", "tag", "name", "digest"]
ScalarStyle = Literal["plain", "single", "double"]
_FIELD_SUFFIXES: dict[str, SetterField] = {"tag": "tag", "name": "name", "digest": "digest"}


@dataclass(frozen=True)
class ObjectIdentity:
    """The Kubernetes object a marker sits in (what Flux's change log records)."""

    api_version: str
    kind: str
    namespace: str
    name: str


@dataclass(frozen=True)
class Marker:
    """One setter marker on a scalar. `line` is 1-based; columns are 0-based, end exclusive."""

    path: str
    line: int
    policy_namespace: str
    policy_name: str
    field: SetterField
    current_value: str
    setter: str
    column: int
    end_column: int
    style: ScalarStyle
    flow_context: bool
    object: ObjectIdentity | None


@dataclass(frozen=True)
class IgnoredMarker:
    """A `$imagepolicy` comment Flux silently ignores, and why (for verdicts)."""

    path: str
    line: int
    setter: str
    reason: str


@dataclass(frozen=True)
class MarkerScan:
    """Markers found, markers Flux ignores, and files skipped because they are not valid YAML."""

    markers: tuple[Marker, ...]
    ignored: tuple[IgnoredMarker, ...]
    problem_files: tuple[str, ...]


@dataclass(frozen=True)
class LatestRef:
    """An ImagePolicy's `status.latestRef`: `name` is the ImageRepository `spec.image` as written."""

    name: str
    tag: str
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.name}:{self.tag}"
        return f"{text}@{self.digest}" if self.digest else text


@dataclass(frozen=True)
class Rewrite:
    """One scalar Flux changes: `old`/`new` are values; `text` is the YAML written at the columns."""

    path: str
    line: int
    old: str
    new: str
    setter: str
    column: int
    end_column: int
    text: str
    object: ObjectIdentity | None


def _clean_update_path(update_path: str) -> str:
    """SecureJoin(root, path) made relative: `..` cannot climb above the root; "" is the root."""
    cleaned = posixpath.normpath("/" + update_path.replace("\\", "/")).lstrip("/")
    return "" if cleaned == "." else cleaned


def _is_scanned_name(path: str) -> bool:
    base = posixpath.basename(path)
    return posixpath.splitext(base)[1] in YAML_EXTENSIONS or base == KUSTOMIZATION_BASENAME


def files_in_update_path(paths: Iterable[str], update_path: str) -> list[str]:
    """The files IAC considers under `spec.update.path`, in its walk order (reference §9.2).

    A file counts when its extension is exactly `.yaml` or `.yml`, or its name is exactly
    `Kustomization`. Flux's walk does not skip hidden directories. The order is Go
    `filepath.Walk`'s: lexical per directory, depth first (so `a/b.yaml` comes before `a.yaml`).
    """
    root = _clean_update_path(update_path)
    selected = []
    for path in paths:
        normalised = _clean_update_path(path)
        if root and normalised != root and not normalised.startswith(root + "/"):
            continue
        if _is_scanned_name(normalised):
            selected.append(path)
    return sorted(selected, key=lambda item: _clean_update_path(item).split("/"))


def _line_comment(lines: list[str], node: yaml.Node) -> str | None:
    start, end = node.start_mark, node.end_mark
    if start.line != end.line or end.line >= len(lines):
        return None
    rest = lines[end.line][end.column :]
    stripped = rest.lstrip(" \t")
    # A YAML comment starts with `#` after whitespace; anything else after the scalar (`]`, `,`)
    # means the comment, if any, belongs to an enclosing flow collection.
    if not stripped.startswith("#") or rest == stripped:
        return None
    return stripped.rstrip("\r\n")


def _head_comment(lines: list[str], node: yaml.Node) -> str | None:
    line = node.start_mark.line
    if line == 0:
        return None
    above = lines[line - 1].strip()
    return above if above.startswith("#") else None


def _setter_name(comment: str) -> str | None:
    """kyaml `fieldmeta.Read` shorthand: strip leading `#`s, JSON object of strings, `$imagepolicy`."""
    try:
        decoded = json.loads(comment.lstrip("#"))
    except ValueError:
        return None
    if not isinstance(decoded, dict) or not all(isinstance(value, str) for value in decoded.values()):
        return None
    name = decoded.get(SETTER_KEY)
    return name or None


def _style(node: yaml.ScalarNode) -> ScalarStyle | None:
    if node.style is None:
        return "plain"
    if node.style == "'":
        return "single"
    if node.style == '"':
        return "double"
    return None


def _identity(document: yaml.Node) -> ObjectIdentity | None:
    if not isinstance(document, yaml.MappingNode):
        return None
    fields: dict[str, str] = {}
    metadata: dict[str, str] = {}
    for key, value in document.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        if isinstance(value, yaml.ScalarNode):
            fields[key.value] = value.value
        elif key.value == "metadata" and isinstance(value, yaml.MappingNode):
            for meta_key, meta_value in value.value:
                if isinstance(meta_key, yaml.ScalarNode) and isinstance(meta_value, yaml.ScalarNode):
                    metadata[meta_key.value] = meta_value.value
    return ObjectIdentity(
        api_version=fields.get("apiVersion", ""),
        kind=fields.get("kind", ""),
        namespace=metadata.get("namespace", ""),
        name=metadata.get("name", ""),
    )


@dataclass
class _FileScan:
    path: str
    lines: list[str]
    markers: list[Marker]
    ignored: list[IgnoredMarker]
    identity: ObjectIdentity | None = None
    # An aliased scalar is the same node in two places; it is one marker, as in the source.
    seen: set[tuple[int, int]] = field(default_factory=set)

    def walk(self, node: yaml.Node, *, in_sequence: bool, flow: bool) -> None:
        if isinstance(node, yaml.MappingNode):
            inner_flow = flow or bool(node.flow_style)
            for _key, value in node.value:
                self.visit(value, in_sequence=False, flow=inner_flow)
        elif isinstance(node, yaml.SequenceNode):
            inner_flow = flow or bool(node.flow_style)
            for item in node.value:
                self.visit(item, in_sequence=True, flow=inner_flow)

    def visit(self, node: yaml.Node, *, in_sequence: bool, flow: bool) -> None:
        if not isinstance(node, yaml.ScalarNode):
            self.walk(node, in_sequence=in_sequence, flow=flow)
            return
        comment = _line_comment(self.lines, node)
        setter = _setter_name(comment) if comment else None
        if setter is None and in_sequence and not flow:
            head = _head_comment(self.lines, node)
            setter = _setter_name(head) if head else None
        if setter is None or (node.start_mark.line, node.start_mark.column) in self.seen:
            return
        self.seen.add((node.start_mark.line, node.start_mark.column))
        line = node.start_mark.line + 1
        style = _style(node)
        if style is None or node.value == "" or node.start_mark.line != node.end_mark.line:
            reason = "marker on an empty or multi-line scalar (not recognised by this emulation)"
            self.ignored.append(IgnoredMarker(self.path, line, setter, reason))
            return
        parts = setter.split(":")
        if (
            len(parts) not in (2, 3)
            or not parts[0]
            or not parts[1]
            or (len(parts) == 3 and parts[2] not in _FIELD_SUFFIXES)
        ):
            reason = "not of the form <namespace>:<policy>[:tag|:name|:digest]; no policy defines this setter"
            self.ignored.append(IgnoredMarker(self.path, line, setter, reason))
            return
        self.markers.append(
            Marker(
                path=self.path,
                line=line,
                policy_namespace=parts[0],
                policy_name=parts[1],
                field=_FIELD_SUFFIXES[parts[2]] if len(parts) == 3 else "image",
                current_value=node.value,
                setter=setter,
                column=node.start_mark.column,
                end_column=node.end_mark.column,
                style=style,
                flow_context=flow,
                object=self.identity,
            )
        )


def scan_markers(files: Mapping[str, str]) -> MarkerScan:
    """Find setter markers the way IAC does, in every scanned file of `files` (path -> text).

    Apply `files_in_update_path` first to limit the scan to an automation's `update.path`.
    """
    markers: list[Marker] = []
    ignored: list[IgnoredMarker] = []
    problems: list[str] = []
    for path in files_in_update_path(files, ""):
        text = files[path]
        if SCREEN_TOKEN not in text:
            continue
        try:
            documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        except yaml.YAMLError:
            problems.append(path)
            continue
        scan = _FileScan(path, text.splitlines(keepends=True), markers, ignored)
        for document in documents:
            scan.identity = _identity(document)
            scan.walk(document, in_sequence=False, flow=False)
    return MarkerScan(tuple(markers), tuple(ignored), tuple(problems))


def find_markers(files: Mapping[str, str]) -> list[Marker]:
    """The setter markers in `files` (see `scan_markers`)."""
    return list(scan_markers(files).markers)


def _go_parse_int_any(text: str) -> bool:
    """Whether Go `strconv.ParseInt(s, 0, 64)` or `ParseUint(s, 0, 64)` accepts `text`."""
    sign = ""
    body = text
    if body[:1] in ("+", "-"):
        sign, body = body[0], body[1:]
    prefix = body[:2].lower()
    if prefix in ("0x", "0o", "0b"):
        base, digits = {"0x": 16, "0o": 8, "0b": 2}[prefix], body[2:]
    elif len(body) > 1 and body[0] == "0":
        base, digits = 8, body[1:]
    else:
        base, digits = 10, body
    allowed = "0123456789abcdef"[:base]
    if not digits or any(char not in allowed for char in digits.lower()):
        return False
    value = int(digits, base) * (-1 if sign == "-" else 1)
    return _INT64_MIN <= value <= _INT64_MAX or (not sign and value <= _UINT64_MAX)


# gopkg.in/yaml.v2 resolve_map: plain scalars that are booleans, nulls or special floats.
_YAML_V2_KEYWORDS = frozenset(
    (
        *("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"),
        *("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"),
        *("~", "null", "Null", "NULL"),
        *(".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF"),
        *("+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF"),
    )
)
_YAML_V2_FLOAT_CHARS = frozenset("0123456789+-.eE")


def _yaml_v2_plain_is_non_string(value: str) -> bool:
    """gopkg.in/yaml.v2 `resolve` for an untagged plain scalar: True unless it stays a string.

    yaml.v2 keeps timestamps as strings when decoding into interface{}, so they count as strings.
    """
    first = value[0]
    if first in "+-" or first.isdigit():
        hint = "number"
    elif first in "yYnNtTfFoO~":
        hint = "keyword"
    elif first == ".":
        hint = "dot"
    else:
        return False
    if value in _YAML_V2_KEYWORDS:
        return True
    if hint == "keyword":
        return False
    if hint == "dot":
        return parse_go_float(value) is not None
    plain = value.replace("_", "")
    if _go_parse_int_any(plain):
        return True
    # yaml.v2's yamlStyleFloat: ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
    return _is_yaml_style_float(plain) and parse_go_float(plain) is not None


def _is_yaml_style_float(text: str) -> bool:
    if not text or any(char not in _YAML_V2_FLOAT_CHARS for char in text):
        return False
    body = text[1:] if text[0] in "+-" else text
    mantissa, _, exponent = body.lower().partition("e")
    if "e" in body.lower():
        digits = exponent[1:] if exponent[:1] in ("+", "-") else exponent
        if not digits.isdigit():
            return False
    whole, dot, fraction = mantissa.partition(".")
    if not whole:
        return bool(dot) and fraction.isdigit()
    return whole.isdigit() and (not fraction or fraction.isdigit())


def is_yaml11_non_string(value: str) -> bool:
    """kyaml `IsValueNonString`: would yaml.v2 decode `value` as something other than a string?"""
    if not value or "\n" in value:
        return False
    try:
        node = yaml.compose(value, Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        return False
    if node is None:
        return True  # an empty document decodes to nil, which is not a string
    if not isinstance(node, yaml.ScalarNode):
        return True
    if node.tag != _STR_TAG:
        return True
    if node.style is not None:
        return False
    return _yaml_v2_plain_is_non_string(node.value)


_EMITTER = yaml.emitter.Emitter(io.StringIO())


def _double_quoted(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def scalar_text(value: str, style: ScalarStyle, *, flow_context: bool = False) -> str:
    """The YAML source for `value` written into a scalar of `style`, with kyaml's quoting rule.

    A plain scalar whose new value yaml.v2 reads as a non-string is double-quoted (kyaml
    `FormatNonStringStyle`); one that cannot be written plain at all is single-quoted, as the YAML
    emitter does. Quoted scalars keep their quotes.
    """
    if style == "double":
        return _double_quoted(value)
    if style == "single":
        return "'" + value.replace("'", "''") + "'"
    if is_yaml11_non_string(value):
        return _double_quoted(value)
    analysis = _EMITTER.analyze_scalar(value)
    plain_allowed = analysis.allow_flow_plain if flow_context else analysis.allow_block_plain
    if plain_allowed and not analysis.multiline:
        return value
    return "'" + value.replace("'", "''") + "'" if analysis.allow_single_quoted else _double_quoted(value)


def setter_value(field: SetterField, ref: LatestRef) -> str:
    """What a setter of `field` writes for `ref` (reference §9.3 table)."""
    if field == "image":
        return str(ref)
    if field == "tag":
        return ref.tag
    if field == "name":
        return ref.name
    return ref.digest or ""  # a :digest marker with no reflected digest blanks the field


def compute_rewrites(
    markers: Sequence[Marker],
    latest: Mapping[tuple[str, str], LatestRef],
    *,
    namespace: str | None = None,
) -> list[Rewrite]:
    """Exactly the scalar changes Flux makes: one per marker whose value would change.

    `latest` maps (policy namespace, policy name) to the policy's latestRef; pass only policies
    the automation selects. `namespace`, when given, is the automation's: markers naming a policy
    in another namespace do nothing, as in Flux.
    """
    rewrites: list[Rewrite] = []
    for marker in markers:
        if namespace is not None and marker.policy_namespace != namespace:
            continue
        ref = latest.get((marker.policy_namespace, marker.policy_name))
        if ref is None:
            continue
        new = setter_value(marker.field, ref)
        if new == marker.current_value:
            continue
        text = scalar_text(new, marker.style, flow_context=marker.flow_context)
        rewrites.append(
            Rewrite(
                path=marker.path,
                line=marker.line,
                old=marker.current_value,
                new=new,
                setter=marker.setter,
                column=marker.column,
                end_column=marker.end_column,
                text=text,
                object=marker.object,
            )
        )
    return rewrites


def _scalar_value(source: str) -> str | None:
    """The string value of one scalar's YAML source text (quotes and escapes resolved)."""
    try:
        node = yaml.compose(source, Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        return None
    return node.value if isinstance(node, yaml.ScalarNode) else None


def apply_rewrites(files: Mapping[str, str], rewrites: Iterable[Rewrite]) -> dict[str, str]:
    """The new text of every file a rewrite changes (unchanged files are absent, as in Flux).

    Edits are minimal and in place (see the module docstring for how this differs from kyaml's
    re-serialisation). Raises ValueError when a rewrite does not fit the file any more, e.g. the
    file changed since the markers were found.
    """
    by_path: dict[str, list[Rewrite]] = {}
    for rewrite in rewrites:
        by_path.setdefault(rewrite.path, []).append(rewrite)
    changed: dict[str, str] = {}
    for path, edits in by_path.items():
        if path not in files:
            raise ValueError(f"rewrite for {path}, which is not among the files")
        lines = files[path].splitlines(keepends=True)
        for edit in sorted(edits, key=lambda item: (item.line, item.column), reverse=True):
            index = edit.line - 1
            if index >= len(lines) or edit.end_column > len(lines[index].rstrip("\r\n")):
                raise ValueError(f"{path}:{edit.line} no longer has the marked scalar")
            line = lines[index]
            if _scalar_value(line[edit.column : edit.end_column]) != edit.old:
                raise ValueError(f"{path}:{edit.line} does not hold '{edit.old}' any more")
            lines[index] = line[: edit.column] + edit.text + line[edit.end_column :]
        changed[path] = "".join(lines)
    return changed
