"""The declaration file: the repository's own file is valid, and every fault names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.models import ClusterId, Panel, SubscriptionId
from shared.services.conformance.declaration import InvalidDeclaration, parse_declaration, parse_duration

REPO_FILE = Path(__file__).resolve().parents[3] / "kubernetes" / "fleet" / "flux.yaml"
URL = "https://dev.azure.com/contoso/ipc/_git/ipc-platform"


def panel(name: str = "ipc-panel-0001", **tags: str) -> Panel:
    return Panel(
        id=ClusterId(
            f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/{name}"
        ),
        name=name,
        subscription=SubscriptionId("s"),
        resource_group="rg",
        tags=tags,
    )


def test_the_repositorys_declaration_is_the_seeds_section_3_1() -> None:
    declaration = parse_declaration(REPO_FILE.read_text(), revision="abc")
    desired = declaration.desired_for(panel(ring="canary"), default_url=URL)
    conf = desired.configuration
    assert (conf.name, conf.namespace, conf.scope) == ("ipc-platform-config", "flux-system", "cluster")
    assert (conf.git.url, conf.git.branch, conf.git.sync_interval_s) == (URL, "main", 300)
    assert list(conf.kustomizations) == ["workloads"]
    workloads = conf.kustomizations["workloads"]
    assert (workloads.path, workloads.prune, workloads.sync_interval_s) == (
        "./kubernetes/workloads",
        True,
        300,
    )
    assert desired.extension.type == "microsoft.flux"
    assert desired.extension.settings == {"multiTenancy.enforce": "false"}


def test_the_runner_gets_its_override_and_a_bench_stays_out() -> None:
    declaration = parse_declaration(REPO_FILE.read_text())
    runner = panel("ipc-automation-hub", **{"fluxfleet-role": "image-automation"})
    desired = declaration.desired_for(runner, default_url=URL)
    assert set(desired.configuration.kustomizations) == {"workloads", "image-automation"}
    assert desired.extension.settings["image-automation-controller.enabled"] == "true"
    assert desired.overrides == ("image-automation-runner",)
    assert declaration.targets(runner)
    assert declaration.targets(panel(ring="broad"))
    assert not declaration.targets(panel("lab-bench-01", purpose="bench"))
    assert not declaration.targets(panel(ring="broad", **{"fluxfleet-conformance": "off"}))
    # A factory panel does not get the runner's kustomization.
    factory = declaration.desired_for(panel(ring="broad"), default_url=URL)
    assert set(factory.configuration.kustomizations) == {"workloads"}


def _with(old: str, new: str) -> str:
    text = REPO_FILE.read_text()
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (
            "      prune: true\n      syncInterval: 5m\n\n",
            "      prune: true\n      syncIntervall: 5m\n\n",
            "configuration.kustomizations.workloads.syncIntervall",
        ),
        (
            "    syncInterval: 5m\n  kustomizations:",
            "    syncInterval: 5 min\n  kustomizations:",
            "configuration.gitRepository.syncInterval",
        ),
        ("path: ./kubernetes/workloads", "path: ../secrets", "configuration.kustomizations.workloads.path"),
        ("path: ./kubernetes/workloads", "path: /etc", "configuration.kustomizations.workloads.path"),
        ("minimumVersion: 1.16.3", "minimumVersion: 1.99.0", "extension.minimumVersion"),
        ("releaseTrain: Stable", "releaseTrain: Nightly", "extension.releaseTrain"),
        (
            'multiTenancy.enforce: "false"',
            "multiTenancy.enforce: false",
            "extension.configurationSettings.multiTenancy.enforce",
        ),
        ("  scope: cluster", "  scope: world", "configuration.scope"),
        (
            "      prune: true\n      syncInterval: 5m\n\n",
            "      prune: yes please\n      syncInterval: 5m\n\n",
            "configuration.kustomizations.workloads.prune",
        ),
        ("kind: FleetFluxDeclaration", "kind: Something", "kind"),
        ('    - tags: {ring: "*"}\n', "    - tags: {}\n", "target.include[0].tags"),
        (
            "  - name: image-automation-runner\n    match:",
            "  - name: image-automation-runner\n    matches:",
            "overrides[0].matches",
        ),
    ],
)
def test_a_bad_declaration_names_the_field(old: str, new: str, field: str) -> None:
    with pytest.raises(InvalidDeclaration) as caught:
        parse_declaration(_with(old, new))
    assert caught.value.field == field


def test_not_yaml_is_an_error_with_its_line() -> None:
    with pytest.raises(InvalidDeclaration, match="line"):
        parse_declaration("target: [\n")


def test_a_pinned_version_with_auto_upgrade_is_refused_as_arm_would() -> None:
    text = _with("  autoUpgradeMinorVersion: false\n", "  autoUpgradeMinorVersion: true\n  version: 1.16.3\n")
    with pytest.raises(InvalidDeclaration) as caught:
        parse_declaration(text)
    assert caught.value.field == "extension.version"


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300), ("1h30m", 5400), ("90s", 90), ("1h", 3600)])
def test_durations_read_as_flux_reads_them(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 m", "0s", "1d", "m5", "-5m", "1.5m"])
def test_what_flux_would_not_read_is_no_duration(text: str) -> None:
    assert parse_duration(text) is None
