"""The lab automation's commit messages: Go text/template as image-automation-controller renders it."""

from __future__ import annotations

import pytest

from lab.imageautomation.template import (
    DEFAULT_MESSAGE,
    AutomationObject,
    Change,
    Changed,
    ObjectIdentifier,
    TemplateData,
    TemplateError,
    TemplateUnsupported,
    render_message,
)

DEPLOYMENT = ObjectIdentifier("apps/v1", "Deployment", "test", "")
DATA = TemplateData(
    AutomationObject("test-ns", "test-update"),
    Changed(
        {"deploy.yaml": {DEPLOYMENT: [Change("helloworld:1.0.0", "helloworld:1.0.1", "test-ns:policy")]}}
    ),
    {"env": "prod"},
)

# The shape of IAC's own ResultV2 test template (reference §9.4), with trim markers on every line.
RESULT_V2 = """{{ range $filename, $objects := .Changed.FileChanges -}}
- File: {{ $filename }}
{{- range $obj, $changes := $objects }}
  - Object: {{ $obj.Kind }}/{{ $obj.Namespace }}/{{ $obj.Name }}
    Changes:
{{- range $_ , $change := $changes }}
    - {{ $change.OldValue }} -> {{ $change.NewValue }}
{{- end }}
{{- end }}
{{ end -}}"""


def test_no_template_gives_fluxs_default_message() -> None:
    assert render_message(None, DATA) == DEFAULT_MESSAGE == "Update from image update automation"


def test_the_result_v2_template_renders_as_flux_documents() -> None:
    assert render_message(RESULT_V2, DATA) == (
        "- File: deploy.yaml\n"
        "  - Object: Deployment//test\n"
        "    Changes:\n"
        "    - helloworld:1.0.0 -> helloworld:1.0.1\n"
    )


def test_the_automation_object_prints_as_namespace_slash_name() -> None:
    assert render_message("by {{ .AutomationObject }} ({{ .AutomationObject.Name }})", DATA) == (
        "by test-ns/test-update (test-update)"
    )


def test_values_index_len_and_if_else() -> None:
    template = (
        '{{ .Values.env }} {{ index .Values "env" }} {{ len .Changed.Changes }}'
        "{{ if .Values.missing }} yes{{ else }} no{{ end }} {{ .Values.missing }}"
    )
    assert render_message(template, DATA) == "prod prod 1 no <no value>"


def test_maps_are_ranged_in_sorted_key_order() -> None:
    changed = Changed(
        {name: {DEPLOYMENT: [Change("a", "b", "s")]} for name in ("z.yaml", "a.yaml", "m.yaml")}
    )
    data = TemplateData(AutomationObject("ns", "n"), changed)
    assert render_message("{{ range $f, $_ := .Changed.FileChanges }}{{ $f }} {{ end }}", data) == (
        "a.yaml m.yaml z.yaml "
    )


@pytest.mark.parametrize(
    "template", ["{{ .Updated }}", "{{ .Changed.ImageResult }}", "{{ range .X }}", "{{ end }}"]
)
def test_what_flux_refuses_is_an_error(template: str) -> None:
    with pytest.raises(TemplateError):
        render_message(template, DATA)


@pytest.mark.parametrize("template", ["{{ .Values.env | upper }}", '{{ printf "%s" .Values.env }}'])
def test_what_the_lab_does_not_implement_is_said_so(template: str) -> None:
    with pytest.raises(TemplateUnsupported):
        render_message(template, DATA)
