"""Fleet health against the lab: panels broken the way factories break them, diagnosed from Resource Graph.

The app's own composition root (`shared.container.Container`, over the lab's env) reads the fleet through
the real `azure-mgmt-resourcegraph` client: one panel per lab failure mode (a PAT changed by hand, a
wrong repository URL, a kustomization path that is not in the commit, a folder whose kustomization does
not parse, a secret removed, a failed microsoft.flux extension, an expired Arc certificate, a freeze, an
offline panel, a panel never onboarded). Each must get its cause and Flux's (or Arc's) own message as
the panel's Flux configuration shows it through ARM — and the fleet-wide answer must send no per-panel
ARM request (the lab's request log is the witness).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from shared.container import Container
from shared.errors import NotFound
from shared.services.fleet.health_report import parse_health_query
from tests.lab.armkit import CONFIG, ON_ARC, flux_client, truth
from tests.labkit import LabHandle, LabProcess

pytestmark = pytest.mark.lab

PANELS = 12
BROKEN_FOLDER = "kubernetes/broken"
WRONG_PAT = "this-is-not-the-fleet-pat"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    state_dir: Path = tmp_path_factory.mktemp("health-lab")
    with (
        LabProcess(state_dir, clusters=PANELS, subscriptions=1, offline=1, unconfigured=1) as handle,
        handle.applied_env(),
    ):
        yield handle


@pytest.fixture(scope="module")
def container(lab: LabHandle) -> Container:
    return Container(Settings.from_env(lab.env))


def group_of(lab: LabHandle, name: str) -> str:
    return str(truth(lab, name)["resourceGroup"])


def patch(lab: LabHandle, name: str, properties: dict[str, Any]) -> None:
    client = flux_client(lab)
    client.flux_configurations.begin_update(
        group_of(lab, name), *ON_ARC, name, CONFIG, {"properties": properties}
    ).result()


def tick(lab: LabHandle, times: int = 3) -> None:
    for _ in range(times):
        lab.control("POST", "/_lab/agents/tick", expect=200)


def ready_message(lab: LabHandle, name: str, kind: str) -> str:
    config = flux_client(lab).flux_configurations.get(group_of(lab, name), *ON_ARC, name, CONFIG)
    status = next(s for s in config.statuses if s.kind == kind and s.name.startswith(CONFIG))
    condition = next(c for c in status.status_conditions if c.type == "Ready")
    return str(condition.message)


@pytest.fixture(scope="module")
def broken(lab: LabHandle) -> dict[str, str]:
    """Break one panel per failure mode; return panel name → the cause it must get."""
    url = (
        flux_client(lab)
        .flux_configurations.get(group_of(lab, "ipc-panel-0002"), *ON_ARC, "ipc-panel-0002", CONFIG)
        .git_repository.url
    )
    lab.control(
        "POST",
        "/_lab/devops/files",
        {"files": {f"{BROKEN_FOLDER}/kustomization.yaml": "resources:\n  - a.yaml\n - b\n"}, "message": "x"},
        expect=201,
    )
    key = base64.b64encode(WRONG_PAT.encode()).decode()
    patch(lab, "ipc-panel-0001", {"configurationProtectedSettings": {"httpsKey": key}})
    patch(lab, "ipc-panel-0002", {"gitRepository": {"url": url + "-missing"}})
    patch(lab, "ipc-panel-0003", {"kustomizations": {"workloads": {"path": "./kubernetes/nowhere"}}})
    patch(lab, "ipc-panel-0004", {"kustomizations": {"workloads": {"path": f"./{BROKEN_FOLDER}"}}})
    lab.control("DELETE", "/_lab/clusters/ipc-panel-0005/secrets/ipc-workloads/iot-hub-connection")
    lab.control("POST", "/_lab/clusters/ipc-panel-0006/extension", {"provisioningState": "Failed"})
    lab.control("POST", "/_lab/clusters/ipc-panel-0007/connectivity", {"online": False, "expired": True})
    patch(lab, "ipc-panel-0008", {"suspend": True})
    tick(lab)
    lab.control("POST", "/_lab/resourcegraph/catch-up")
    state = lab.state()["clusters"]
    offline = next(
        c["name"]
        for c in state
        if not c["online"] and c.get("config_generation") and c["name"] != "ipc-panel-0007"
    )
    unconfigured = next(c["name"] for c in state if not c.get("config_generation") and not c.get("runner"))
    return {
        "ipc-panel-0001": "git-auth-failed",
        "ipc-panel-0002": "git-source-not-found",
        "ipc-panel-0003": "kustomization-path-not-found",
        "ipc-panel-0004": "kustomize-build-failed",
        "ipc-panel-0005": "health-check-failed",
        "ipc-panel-0006": "extension-failed",
        "ipc-panel-0007": "agent-expired",
        "ipc-panel-0008": "suspended",
        offline: "offline",
        unconfigured: "not-onboarded",
    }


def report(container: Container, **params: str) -> dict[str, Any]:
    return container.fleet_health.report(parse_health_query(params))


def test_each_broken_panel_gets_its_cause_and_the_rest_are_ready(
    container: Container, broken: dict[str, str]
) -> None:
    answer = report(container, limit="1000")

    causes = {row["name"]: row["cause"] for row in answer["panels"]}
    assert {name: causes[name] for name in broken} == broken
    healthy = set(causes) - set(broken)
    assert healthy
    assert {causes[name] for name in healthy} == {"ready"}
    assert answer["total"] == len(causes)
    assert sum(answer["counts"].values()) == answer["total"]
    assert answer["counts"]["git-auth-failed"] == 1


def test_messages_are_fluxs_own_words_as_arm_shows_them(
    lab: LabHandle, container: Container, broken: dict[str, str]
) -> None:
    rows = {row["name"]: row for row in report(container, limit="1000")["panels"]}

    assert rows["ipc-panel-0001"]["message"] == ready_message(lab, "ipc-panel-0001", "GitRepository")
    assert "authentication required" in rows["ipc-panel-0001"]["message"]
    assert rows["ipc-panel-0002"]["message"] == ready_message(lab, "ipc-panel-0002", "GitRepository")
    assert rows["ipc-panel-0003"]["message"] == ready_message(lab, "ipc-panel-0003", "Kustomization")
    assert rows["ipc-panel-0003"]["message"].startswith(
        "kustomization path not found: stat /tmp/kustomization-"
    )
    assert rows["ipc-panel-0004"]["message"] == ready_message(lab, "ipc-panel-0004", "Kustomization")
    health = rows["ipc-panel-0005"]["message"]
    assert health == ready_message(lab, "ipc-panel-0005", "Kustomization")
    assert health.startswith("health check failed after ")
    assert "Deployment/ipc-workloads/" in health
    assert rows["ipc-panel-0008"]["message"] == "suspend: true"
    assert WRONG_PAT not in str(rows)


def test_the_fleet_wide_answer_sends_no_per_panel_arm_request(lab: LabHandle, container: Container) -> None:
    seq = max((r["seq"] for r in lab.control("GET", "/_lab/requests")["requests"]), default=0)
    report(container)

    sent = lab.control("GET", f"/_lab/requests?since={seq}")["requests"]
    per_panel = [r for r in sent if "/connectedclusters/" in r["path"].lower()]
    graph = [r for r in sent if "microsoft.resourcegraph" in r["path"].lower()]
    assert per_panel == []
    assert len(graph) == 1, "one query for a fleet under 1,000 panels"


def test_revision_and_head_say_which_panels_run_the_repositorys_head(
    lab: LabHandle, container: Container, broken: dict[str, str]
) -> None:
    head = lab.control("GET", "/_lab/devops/commits?branch=main&top=1")
    sha = (head.get("commits") or head.get("value"))[0]
    sha = sha.get("sha") or sha.get("commitId")
    rows = {row["name"]: row for row in report(container, limit="1000")["panels"]}

    assert {row["head"] for row in rows.values()} == {sha}
    assert rows["ipc-panel-0009"]["atHead"] is True
    assert rows["ipc-panel-0001"]["atHead"] is False, "a panel that cannot fetch runs an older commit"


def test_one_panels_detail_comes_from_arm_with_its_conditions_and_hint(
    container: Container, broken: dict[str, str]
) -> None:
    detail = container.fleet_health.panel("ipc-panel-0001")

    assert detail["cause"] == "git-auth-failed"
    assert detail["hint"].startswith("The Git server refused")
    assert detail["extension"]["type"].lower() == "microsoft.flux"
    assert detail["configuration"]["kustomizations"]["workloads"]["path"] == "./kubernetes/workloads"
    source = next(o for o in detail["objects"] if o["kind"] == "GitRepository")
    assert any(c["type"] == "Ready" and c["status"] == "False" for c in source["conditions"])
    assert detail["connectivity"] == "Connected"
    assert detail["lastConnectivityTime"]
    by_id = container.fleet_health.panel(detail["id"].lstrip("/"))
    assert by_id["name"] == "ipc-panel-0001"


def test_an_unknown_panel_is_not_found(container: Container) -> None:
    with pytest.raises(NotFound):
        container.fleet_health.panel("ipc-panel-9999")


def test_a_spent_resource_graph_window_is_waited_out_not_answered_with_429(
    lab: LabHandle, container: Container
) -> None:
    lab.control(
        "POST", "/_lab/resourcegraph/throttling", {"enabled": True, "queries": 2, "window_seconds": 2}
    )
    try:
        seq = max((r["seq"] for r in lab.control("GET", "/_lab/requests")["requests"]), default=0)
        for _ in range(4):
            report(container)
        sent = lab.control("GET", f"/_lab/requests?since={seq}")["requests"]
    finally:
        lab.control(
            "POST", "/_lab/resourcegraph/throttling", {"enabled": True, "queries": 15, "window_seconds": 5}
        )

    statuses = [r["status"] for r in sent if "microsoft.resourcegraph" in r["path"].lower()]
    assert statuses == [200] * 4, "the quota headers paced the third and fourth query into a new window"


def test_a_snapshot_stores_each_panels_cause_in_ffhealth_and_since_comes_from_it(
    container: Container, broken: dict[str, str]
) -> None:
    summary = container.health_snapshots.take()
    rows = container.health_snapshot_store.rows()
    answer = {row["name"]: row for row in report(container, limit="1000")["panels"]}

    assert summary["panels"] == len(answer)
    assert {rows[row_key].name: rows[row_key].cause for row_key in rows} == {
        name: row["cause"] for name, row in answer.items()
    }
    offline = next(name for name, cause in broken.items() if cause == "offline")
    assert answer[offline]["since"] is not None
    assert set(summary["notified"]) >= {f"cause:{cause}" for cause in broken.values() if cause != "suspended"}
    assert container.health_snapshots.take()["notified"] == [], "once, not on every snapshot"
