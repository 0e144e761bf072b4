"""Panels that fail the way factory panels fail, reported in Flux's own words through the real SDK.

On-call engineers ask fluxfleet which panels are not converged and why, and the app answers from
`fluxConfigurations.statuses[]`. These tests break a lab fleet the ways fleets break — a commit whose
kustomization does not parse or names a file that is not there, an image tag the registry does not
have, a secret someone removed from one panel — and read each panel's Flux configuration with
`azure-mgmt-kubernetesconfiguration-fluxconfigurations`, checking the reason and message against
the texts kustomize-controller and kustomize write (lab/docs/agents.md lists their sources).

The first part pins the wording machinery without a lab (go-yaml's error lines, Go's durations,
kustomize's error chain, the health timeline); the second drives a lab of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.identity import ManagedIdentityCredential
from azure.mgmt.kubernetesconfiguration.fluxconfigurations import (
    KubernetesConfigurationFluxConfigurationsMgmtClient,
)

from lab.fleet.health import ClusterObjects, HealthLedger, check_health, go_duration
from lab.fleet.kustomize import RepoTree, build_kustomization
from lab.fleet.yaml_errors import GoYamlError, load_all
from tests.labkit import REPO_ROOT, LabHandle, LabProcess

pytestmark = pytest.mark.lab

CONFIG = "ipc-platform-config"
WORKLOADS = f"{CONFIG}-workloads"
ROOT_KUSTOMIZATION = "kubernetes/workloads/kustomization.yaml"
# kustomize-controller extracts each artifact to os.MkdirTemp("", "kustomization-"): a decimal suffix.
# Only ever a path in a message: nothing is created there.
TEMP_PREFIX = "/tmp/kustomization-"  # noqa: S108
WORK_DIR = re.escape(TEMP_PREFIX) + r"\d+"
# The seed's required secrets, restated from the seed (names, types, keys; no values exist).
SEED_SECRETS = [
    {"namespace": "flux-system", "name": "acr-credentials", "type": "kubernetes.io/dockerconfigjson",
     "keys": [".dockerconfigjson"]},
    {"namespace": "ipc-workloads", "name": "acr-pull-secret", "type": "kubernetes.io/dockerconfigjson",
     "keys": [".dockerconfigjson"]},
    {"namespace": "ipc-workloads", "name": "blob-storage-connection", "type": "Opaque",
     "keys": ["connectionString"]},
    {"namespace": "ipc-workloads", "name": "iot-hub-connection", "type": "Opaque",
     "keys": ["connectionString"]},
    {"namespace": "ipc-workloads", "name": "log-analytics-connection", "type": "Opaque",
     "keys": ["key", "workspaceId"]},
]  # fmt: skip


# --- the wording, without a lab ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("document", "message"),
    [
        # go-yaml's own expectations (yaml/go-yaml v2.4.4 decode_test.go, unmarshalErrorTests).
        ("v: [A,", "yaml: line 1: did not find expected node content"),
        ("v:\n- [A,", "yaml: line 2: did not find expected node content"),
        ("a:\n- b: *,", "yaml: line 2: did not find expected alphabetic or numeric character"),
        ("a: *b\n", "yaml: unknown anchor 'b' referenced"),
        ("value: -", "yaml: block sequence entries are not allowed in this context"),
        ("%TAG !%79! tag:yaml.org,2002:\n---\nv: !%79!int '1'", "yaml: did not find expected whitespace"),
    ],
)
def test_yaml_errors_read_as_go_yaml_v2_writes_them(document: str, message: str) -> None:
    with pytest.raises(GoYamlError) as raised:
        load_all(document.encode(), version="v2")

    assert str(raised.value) == message


def test_durations_read_as_go_prints_them() -> None:
    assert [go_duration(s) for s in (600.004, 300.037, 0.037, 3661.5, 1.0)] == [
        "10m0.004s",
        "5m0.037s",
        "37ms",
        "1h1m1.5s",
        "1s",
    ]


def seed_tree(changes: dict[str, bytes | None] | None = None) -> RepoTree:
    """The repository as the lab seeds it (the project's kubernetes/ folder), with `changes` applied."""
    files = {
        path.relative_to(REPO_ROOT).as_posix(): path.read_bytes()
        for path in (REPO_ROOT / "kubernetes").rglob("*")
        if path.is_file()
    }
    for path, content in (changes or {}).items():
        if content is None:
            files.pop(path)
        else:
            files[path] = content
    dirs = {"/".join(path.split("/")[:end]) for path in files for end in range(1, path.count("/") + 1)}
    return RepoTree(revision="0" * 40, files=files, dirs=frozenset(dirs))


def test_a_missing_resource_in_a_nested_kustomization_reads_as_kustomize_chains_it() -> None:
    tree = seed_tree({"kubernetes/workloads/opcua-gateway/configmap.yaml": None})

    result = build_kustomization(tree, "./kubernetes/workloads", work_dir=f"{TEMP_PREFIX}42")

    base = f"{TEMP_PREFIX}42/kubernetes/workloads/opcua-gateway"
    assert (result.reason, result.message) == (
        "BuildFailed",
        "kustomize build failed: accumulating resources: accumulation err='accumulating resources from "
        f"'opcua-gateway': read {base}: is a directory': recursed accumulation of path '{base}': "
        "accumulating resources: accumulation err='accumulating resources from 'configmap.yaml': open "
        f"{base}/configmap.yaml: no such file or directory': must build at directory: not a valid directory: "
        f"evalsymlink failure on '{base}/configmap.yaml' : lstat {base}/configmap.yaml: no such file or "
        "directory",
    )


def test_the_seed_builds_to_the_namespace_ten_deployments_and_the_configmap() -> None:
    result = build_kustomization(seed_tree(), "./kubernetes/workloads", work_dir=f"{TEMP_PREFIX}1")

    kinds = sorted(item["kind"] for item in result.objects)
    assert result.ok, result.message
    assert kinds == ["ConfigMap", *["Deployment"] * 10, "Namespace"]
    assert {item["metadata"].get("namespace") for item in result.objects if item["kind"] != "Namespace"} == {
        "ipc-workloads"
    }


def test_a_deployment_that_cannot_start_is_in_progress_then_failed_after_its_progress_deadline() -> None:
    built = build_kustomization(seed_tree(), "./kubernetes/workloads", work_dir=f"{TEMP_PREFIX}7")
    deployment = next(item for item in built.objects if item["metadata"]["name"] == "health-monitor")
    cluster = ClusterObjects(secrets={}, config_maps={})
    ledger = HealthLedger()
    start = datetime(2026, 8, 1, tzinfo=UTC)

    def check(at: datetime) -> str:
        verdict = check_health(
            (deployment,), cluster=cluster, registry=None, ledger=ledger, scope="p", now=at, timeout_s=600
        )
        return verdict.message

    first, later, past_deadline = (
        check(start),
        check(start + timedelta(seconds=300)),
        check(start + timedelta(seconds=900)),
    )

    assert first == (
        "health check failed after 10m0.004s: timeout waiting for: "
        "[Deployment/ipc-workloads/health-monitor status: 'InProgress']"
    )
    assert later == (
        "health check failed after 5m0.037s: failed early due to stalled resources: "
        "[Deployment/ipc-workloads/health-monitor status: 'Failed']"
    )
    assert past_deadline == (
        "health check failed after 37ms: failed early due to stalled resources: "
        "[Deployment/ipc-workloads/health-monitor status: 'Failed']"
    )


# --- a lab of its own -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def failures_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    state_dir: Path = tmp_path_factory.mktemp("agent-failures")
    with (
        LabProcess(state_dir, clusters=6, subscriptions=1, offline=1, azurite=False) as handle,
        handle.applied_env(),
    ):
        yield handle


@pytest.fixture
def fleet(failures_lab: LabHandle) -> Iterator[LabHandle]:
    failures_lab.control("POST", "/_lab/reset")
    yield failures_lab
    failures_lab.control("POST", "/_lab/reset")


def tick(lab: LabHandle) -> None:
    lab.control("POST", "/_lab/agents/tick", expect=200)


def commit(lab: LabHandle, files: dict[str, str | None]) -> str:
    answer = lab.control("POST", "/_lab/devops/files", {"files": files, "message": "test"}, expect=201)
    return str(answer["sha"])


def seed_text(path: str) -> str:
    return (REPO_ROOT / path).read_text(encoding="utf-8")


def online_panels(lab: LabHandle) -> dict[str, str]:
    """Online factory panels (not the image-automation runner, which syncs no workloads): name → group."""
    return {
        c["name"]: c["resourceGroup"]
        for c in lab.state()["clusters"]
        if c["online"] and c.get("config_generation") and not c.get("runner")
    }


def flux_configs(lab: LabHandle) -> dict[str, Any]:
    """Every online panel's Flux configuration, read through the real SDK."""
    client = KubernetesConfigurationFluxConfigurationsMgmtClient(
        ManagedIdentityCredential(), lab.doc["subscriptions"][0], base_url=lab.endpoint("arm")
    )
    return {
        name: client.flux_configurations.get(group, "Microsoft.Kubernetes", "connectedClusters", name, CONFIG)
        for name, group in online_panels(lab).items()
    }


def ready(config: Any, object_name: str) -> Any:
    """The Ready condition of one of the configuration's Flux objects, as Arc reports it."""
    status = next(s for s in config.statuses if s.name == object_name)
    return next(c for c in status.status_conditions if c.type == "Ready")


def test_a_fresh_lab_reports_every_online_panel_compliant_after_real_syncs(fleet: LabHandle) -> None:
    tick(fleet)

    configs = flux_configs(fleet)
    workloads = fleet.control("GET", "/_lab/clusters/ipc-panel-0001/workloads")["kustomizations"][WORKLOADS]

    assert len(configs) >= 5
    assert {c.compliance_state for c in configs.values()} == {"Compliant"}
    assert {ready(c, WORKLOADS).reason for c in configs.values()} == {"ReconciliationSucceeded"}
    assert workloads["build"]["ok"] is True
    assert len(workloads["health"]["deployments"]) == 10, "every Deployment was health checked"
    assert all(d["ready"] for d in workloads["health"]["deployments"])


def test_a_kustomization_yaml_that_does_not_parse_fails_the_build_on_every_online_panel(
    fleet: LabHandle,
) -> None:
    broken = seed_text(ROOT_KUSTOMIZATION).replace("  - health-monitor\n", " health-monitor:\n")
    sha = commit(fleet, {ROOT_KUSTOMIZATION: broken})

    tick(fleet)

    for name, config in flux_configs(fleet).items():
        workloads = ready(config, WORKLOADS)
        # The root kustomization is read by Flux's generator (sigs.k8s.io/yaml): its error, unprefixed.
        assert (workloads.status, workloads.reason) == ("False", "BuildFailed"), name
        assert re.fullmatch(r"error converting YAML to JSON: yaml: line \d+: .+", workloads.message), (
            workloads.message
        )
        others = {s.name for s in config.statuses if s.kind == "Kustomization"} - {WORKLOADS}
        assert {ready(config, other).reason for other in others} <= {"ReconciliationSucceeded"}
        assert ready(config, CONFIG).message == f"stored artifact for revision 'main@sha1:{sha}'"
        assert (config.compliance_state, config.error_message) == ("Non-Compliant", workloads.message)


def test_a_nested_kustomization_that_does_not_parse_reads_as_kustomize_reports_it(fleet: LabHandle) -> None:
    commit(
        fleet,
        {"kubernetes/workloads/log-forwarder/kustomization.yaml": "resources:\n  - deployment.yaml\n - x\n"},
    )

    tick(fleet)

    messages = {ready(c, WORKLOADS).message for c in flux_configs(fleet).values()}
    assert len(messages) == 1, "every panel builds the same commit the same way"
    base = f"{WORK_DIR}/kubernetes/workloads/log-forwarder"
    assert re.fullmatch(
        "kustomize build failed: accumulating resources: accumulation err='accumulating resources from "
        f"'log-forwarder': read {base}: is a directory': couldn't make target for path '{base}': "
        r"invalid Kustomization: yaml: line 2: did not find expected key",
        messages.pop(),
    )


def test_a_resource_naming_a_missing_file_fails_the_build_with_kustomizes_message(fleet: LabHandle) -> None:
    kustomization = seed_text(ROOT_KUSTOMIZATION).replace(
        "  - motion-gateway\n", "  - motion-gateway\n  - conveyor.yaml\n"
    )
    commit(fleet, {ROOT_KUSTOMIZATION: kustomization})

    tick(fleet)

    for config in flux_configs(fleet).values():
        workloads = ready(config, WORKLOADS)
        missing = f"{WORK_DIR}/kubernetes/workloads/conveyor.yaml"
        assert workloads.reason == "BuildFailed"
        assert re.fullmatch(
            "kustomize build failed: accumulating resources: accumulation err='accumulating resources from "
            f"'conveyor.yaml': open {missing}: no such file or directory': must build at directory: not "
            f"a valid directory: evalsymlink failure on '{missing}' : lstat {missing}: no such file or "
            "directory",
            workloads.message,
        ), workloads.message


def test_an_image_tag_the_registry_lacks_fails_the_health_check_but_not_the_source(fleet: LabHandle) -> None:
    path = "kubernetes/workloads/opcua-gateway/deployment.yaml"
    # The lab's repository names the lab registry where the seed has its placeholder (lab/docs/devops.md).
    deployment = seed_text(path).replace("ipcplatformacr.azurecr.io", fleet.doc["acr_login_server"])
    current_tag = re.search(r"ipc/opcua-gateway:(v[\d.]+)", deployment)
    assert current_tag is not None
    commit(fleet, {path: deployment.replace(f":{current_tag[1]}", ":v9.9.9")})
    tick(fleet)
    newer = commit(fleet, {"kubernetes/workloads/NOTES.md": "a later commit\n"})

    tick(fleet)

    configs = flux_configs(fleet)
    why = fleet.control("GET", "/_lab/clusters/ipc-panel-0001/workloads")["kustomizations"][WORKLOADS]
    fleet.control("POST", "/_lab/acr/push", {"repository": "ipc/opcua-gateway", "tag": "v9.9.9"}, expect=201)
    tick(fleet)
    healed = flux_configs(fleet)
    for name, config in configs.items():
        workloads = ready(config, WORKLOADS)
        assert workloads.reason == "HealthCheckFailed", name
        assert re.fullmatch(
            r"health check failed after 10m0\.\d+s: timeout waiting for: "
            r"\[Deployment/ipc-workloads/opcua-gateway status: 'InProgress'\]",
            workloads.message,
        ), workloads.message
        assert ready(config, CONFIG).message == f"stored artifact for revision 'main@sha1:{newer}'"
        assert config.compliance_state == "Non-Compliant"
    stuck = next(d for d in why["health"]["deployments"] if d["object"].endswith("/opcua-gateway"))
    assert "v9.9.9" in stuck["problems"][0]
    assert {c.compliance_state for c in healed.values()} == {"Compliant"}, "the pushed tag lets it start"


def test_a_secret_removed_from_one_panel_fails_only_that_panels_health_check_until_restored(
    fleet: LabHandle,
) -> None:
    target = "ipc-panel-0002"
    removed = fleet.control(
        "DELETE", f"/_lab/clusters/{target}/secrets/ipc-workloads/log-analytics-connection"
    )
    tick(fleet)
    first = flux_configs(fleet)
    tick(fleet)
    second = flux_configs(fleet)
    fleet.control("POST", "/_lab/clock/advance", {"seconds": 60})  # ARM's timestamps have whole seconds
    fleet.control(
        "PUT",
        f"/_lab/clusters/{target}/secrets/ipc-workloads/log-analytics-connection",
        {"type": "Opaque", "keys": ["workspaceId", "key"]},
        expect=201,
    )
    tick(fleet)
    restored = flux_configs(fleet)

    assert removed["deleted"]["keys"] == ["key", "workspaceId"]
    failing = ready(first[target], WORKLOADS)
    assert (failing.reason, failing.message) == (
        "HealthCheckFailed",
        "health check failed after 10m0.004s: timeout waiting for: "
        "[Deployment/ipc-workloads/health-monitor status: 'InProgress', "
        "Deployment/ipc-workloads/log-forwarder status: 'InProgress']",
    )
    assert {name for name, c in first.items() if c.compliance_state != "Compliant"} == {target}
    assert ready(second[target], WORKLOADS).last_transition_time == failing.last_transition_time
    assert restored[target].compliance_state == "Compliant"
    assert ready(restored[target], WORKLOADS).last_transition_time > failing.last_transition_time


def test_each_panel_holds_the_seeds_secrets_as_names_and_keys_and_a_reset_restores_them(
    fleet: LabHandle,
) -> None:
    fleet.control("DELETE", "/_lab/clusters/ipc-panel-0003/secrets/ipc-workloads/iot-hub-connection")
    control = fleet.endpoint("control")
    with_value = requests.put(
        f"{control}/_lab/clusters/ipc-panel-0003/secrets/ipc-workloads/iot-hub-connection",
        json={"stringData": {"connectionString": "HostName=x;SharedAccessKey=y"}},
        verify=fleet.ca_bundle,
        timeout=30,
    )
    gone = requests.delete(
        f"{control}/_lab/clusters/ipc-panel-0003/secrets/ipc-workloads/iot-hub-connection",
        verify=fleet.ca_bundle,
        timeout=30,
    )
    fleet.control("POST", "/_lab/reset")

    after_reset = fleet.control("GET", "/_lab/clusters/ipc-panel-0003/secrets")["secrets"]
    assert with_value.status_code == 400, "the lab never takes a secret value"
    assert gone.status_code == 404
    assert after_reset == SEED_SECRETS
    assert fleet.control("GET", "/_lab/clusters/ipc-panel-0001/secrets")["secrets"] == SEED_SECRETS
