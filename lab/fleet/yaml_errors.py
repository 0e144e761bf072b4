"""YAML that does not parse, in go-yaml's words: the text Flux and kustomize quote in a `BuildFailed`.

Flux's kustomization messages carry the Go YAML library's error verbatim, so the lab has to produce
go-yaml's text, not PyYAML's. Two go-yaml generations are involved (versions as pinned by
kustomize-controller's go.mod at fluxcd/kustomize-controller 186fb3b, 2026-08-01):

- **v2** (`go.yaml.in/yaml/v2` v2.4.x, through `sigs.k8s.io/yaml` v1.6.0): Flux's generator reading the
  root `kustomization.yaml`, and kustomize reading every nested one (`api/types/kustomization.go`
  `Unmarshal` → `yaml.YAMLToJSON`);
- **v3** (`go.yaml.in/yaml/v3` v3.0.4, through kyaml): kustomize reading resource files
  (`kyaml/kio/byteio_reader.go` `decode`).

go-yaml is a Go port of libyaml, so the *problem* and its position are libyaml's, and PyYAML's
`CSafeLoader` is libyaml itself. What go-yaml adds is how a position becomes "line N"
(`decode.go` `(*parser).fail`, yaml/go-yaml v2.4.4 line 111 and v3.0.4 line 112): v2 takes the
problem mark and falls back to the context mark, v3 the other way round; a scanner error's line is
0-based and gets one added, a parser error's is printed as it is; line 0 prints no line at all. The
result is checked against go-yaml's own `unmarshalErrorTests` (v2.4.4 `decode_test.go` line 880).
"""

from __future__ import annotations

from typing import Any, Literal

import yaml

GoYamlVersion = Literal["v2", "v3"]

# libyaml's loader when PyYAML was built with it (the wheels are), else PyYAML's pure-Python one,
# whose problem texts differ a little from libyaml's (e.g. "here" for "in this context").
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class GoYamlError(ValueError):
    """YAML go-yaml would refuse; `str()` is go-yaml's error text (`yaml: line N: <problem>`)."""


def load_all(data: bytes, *, version: GoYamlVersion) -> list[Any]:
    """Every document in `data`, or `GoYamlError` with go-yaml's text for why it does not parse."""
    try:
        return list(yaml.load_all(data, Loader=_LOADER))
    except yaml.MarkedYAMLError as error:
        raise GoYamlError(go_yaml_message(error, data, version=version)) from None
    except yaml.YAMLError as error:
        raise GoYamlError(f"yaml: {error}") from None


def load_first(data: bytes, *, version: GoYamlVersion) -> Any:
    """The first document only, as go-yaml's `Unmarshal` reads it (later documents are not parsed)."""
    loader = _LOADER(data)
    try:
        return loader.get_data() if loader.check_data() else None
    except yaml.MarkedYAMLError as error:
        raise GoYamlError(go_yaml_message(error, data, version=version)) from None
    except yaml.YAMLError as error:
        raise GoYamlError(f"yaml: {error}") from None
    finally:
        loader.dispose()


def go_yaml_message(error: yaml.MarkedYAMLError, data: bytes, *, version: GoYamlVersion) -> str:
    """go-yaml's `yaml: [line N: ]<problem>` for the error libyaml raised on `data`."""
    problem = error.problem or "unknown problem parsing YAML content"
    if isinstance(error, yaml.composer.ComposerError) and problem.startswith("found undefined alias"):
        # go-yaml resolves aliases itself (decode.go `(*parser).alias`): no line, the anchor quoted.
        return f"yaml: unknown anchor '{_alias_name(error, data)}' referenced"
    scanner = isinstance(error, yaml.scanner.ScannerError)
    problem_line = error.problem_mark.line if error.problem_mark is not None else 0
    context_line = error.context_mark.line if error.context_mark is not None else 0
    first, second = (problem_line, context_line) if version == "v2" else (context_line, problem_line)
    if first != 0:
        line = first + 1 if scanner else first
    elif second != 0:
        # v2 adds nothing on the fallback mark; v3 treats both marks alike.
        line = second + 1 if scanner and version == "v3" else second
    else:
        line = 0
    where = f"line {line}: " if line else ""
    return f"yaml: {where}{problem}"


def _alias_name(error: yaml.MarkedYAMLError, data: bytes) -> str:
    """The alias name at the problem mark (`*name`), as go-yaml quotes it."""
    mark = error.problem_mark
    if mark is None:
        return ""
    text = data.decode("utf-8", errors="replace")[mark.index :].lstrip("*")
    name = ""
    for char in text:
        if char.isspace() or char in ",[]{}":
            break
        name += char
    return name
