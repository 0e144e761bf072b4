"""Image checks end to end: the app in the local Functions host, the lab behind it.

Everything goes through the doors a real deployment has: images are pushed to the lab registry
(which raises `ImagePushed` to Event Grid, which delivers to the host), the app is asked over its
HTTP API, the follow-up is run through the host's admin API with the message the queue would
carry, and outcomes are checked against the lab's ground truth (Git commits, what each panel
applied). One lab (4 factory panels and the image-automation runner `ipc-automation-hub`, the one
cluster that runs the image controllers and commits) and one host serve the module. The simulator's
background loop is paused, so only the tests' forced runs commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from tests.e2e.hostkit import HostProcess
from tests.labkit import LabHandle, LabProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

T = TypeVar("T")
PANELS = 4
# Event Grid delivery and the host's invocation take well under a second in the lab.
EVENT_TIMEOUT_S = 30.0
# How old a branch HEAD a push verdict may use (ImageCheckConfig.head_max_age_s), plus a margin.
HEAD_MAX_AGE_S = 1.2
POLICIES = "kubernetes/flux-system/image-automation/image-policies.yaml"
REPOSITORIES = "kubernetes/flux-system/image-automation/image-repositories.yaml"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    with LabProcess(tmp_path_factory.mktemp("images-lab"), clusters=PANELS, subscriptions=1) as handle:
        # No background cycle may consume a pushed tag between a test's push and its forced run.
        handle.control("POST", "/_lab/imageautomation/pause")
        yield handle


@pytest.fixture(scope="module")
def host(lab: LabHandle) -> Iterator[HostProcess]:
    with HostProcess(lab, instance="images") as process:
        yield process


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = EVENT_TIMEOUT_S) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def image_of(lab: LabHandle, repository: str) -> str:
    return f"{lab.doc['acr_login_server']}/{repository}"


def push(lab: LabHandle, repository: str, tag: str) -> str:
    return str(
        lab.control("POST", "/_lab/acr/push", {"repository": repository, "tag": tag}, expect=201)["eventId"]
    )


def checks(host: HostProcess, image: str, tag: str) -> list[dict[str, Any]]:
    response = host.call("GET", "/api/images/checks", params={"image": image, "tag": tag})
    assert response.status_code == 200, response.text
    return list(response.json()["checks"])


def verdict_of_push(lab: LabHandle, host: HostProcess, repository: str, tag: str) -> dict[str, Any]:
    event_id = push(lab, repository, tag)
    image = image_of(lab, repository)
    return wait_for(
        f"the verdict on {repository}:{tag}",
        lambda: next((check for check in checks(host, image, tag) if check["eventId"] == event_id), None),
    )


def run_follow_up(host: HostProcess, check_id: str, attempt: int) -> dict[str, Any]:
    message = json.dumps({"checkId": check_id, "attempt": attempt})
    response = host.call("POST", "/admin/functions/image_follow_up", key="master", json={"input": message})
    assert response.status_code == 202, response.text

    def done() -> dict[str, Any] | None:
        check = host.call("GET", f"/api/images/checks/{check_id}").json()
        follow_up = check.get("followUp") or {}
        return check if follow_up.get("attempts", 0) >= attempt else None

    return wait_for(f"follow-up {attempt} of {check_id}", done)


def applied_revisions(lab: LabHandle) -> dict[str, str | None]:
    """What each factory panel applied (the runner commits; it is not one of the panels rolled out to)."""
    return {
        cluster["name"]: cluster["applied_revision"]
        for cluster in lab.state()["clusters"]
        if not cluster["runner"]
    }


def set_suspended(lab: LabHandle, name: str, *, suspended: bool) -> None:
    """Suspend or resume one panel's Flux configuration through ARM, as `az k8s-configuration` would."""
    from azure.identity import ManagedIdentityCredential
    from azure.mgmt.kubernetesconfiguration.fluxconfigurations import (
        KubernetesConfigurationFluxConfigurationsMgmtClient,
    )

    cluster = next(cluster for cluster in lab.state()["clusters"] if cluster["name"] == name)
    with lab.applied_env():
        client = KubernetesConfigurationFluxConfigurationsMgmtClient(
            ManagedIdentityCredential(), cluster["subscription"], base_url=lab.endpoint("arm")
        )
        client.flux_configurations.begin_update(
            cluster["resourceGroup"],
            "Microsoft.Kubernetes",
            "connectedClusters",
            name,
            "ipc-platform-config",
            {"properties": {"suspend": suspended}},
            polling_interval=0.2,
        ).result()
    lab.control("POST", "/_lab/agents/tick")


# --- verdicts ---------------------------------------------------------------------------------------------


def test_a_winning_push_rolls_out_and_the_follow_up_confirms_every_panel_applied_it(
    lab: LabHandle, host: HostProcess
) -> None:
    image = image_of(lab, "ipc/opcua-gateway")
    check = verdict_of_push(lab, host, "ipc/opcua-gateway", "v1.9.0")
    assert check["verdict"] == "will-roll-out", check["reason"]
    [marker] = check["markers"]
    assert marker["file"] == "kubernetes/workloads/opcua-gateway/deployment.yaml"
    assert (marker["current"], marker["new"]) == (f"{image}:v1.4.2", f"{image}:v1.9.0")
    assert check["eta"]["appliedBy"] > check["eta"]["commitBy"] > check["createdAt"]
    assert check["followUp"]["status"] == "scheduled"

    automation = lab.control("POST", "/_lab/imageautomation/run")
    [commit] = automation["committed"]
    lab.control("POST", "/_lab/agents/tick")
    assert set(applied_revisions(lab).values()) == {commit}

    followed = run_follow_up(host, check["id"], 1)
    follow_up = followed["followUp"]
    assert follow_up["outcome"] == "rolled-out", follow_up["reason"]
    assert follow_up["commit"] == commit
    assert follow_up["panels"]["applied"] == follow_up["panels"]["total"] == PANELS
    # Which cluster committed the new tag: the runner, as the lab's ground truth of the push says.
    pushes = lab.control("GET", "/_lab/imageautomation")["pushes"]
    assert [p["committedBy"] for p in pushes if p["commit"] == commit] == [lab.doc["runner"]["name"]]
    assert follow_up["committedBy"] == lab.doc["runner"]["name"]


def test_a_suspended_panel_shows_up_in_committed_not_applied(lab: LabHandle, host: HostProcess) -> None:
    suspended = sorted(applied_revisions(lab))[0]
    set_suspended(lab, suspended, suspended=True)
    try:
        check = verdict_of_push(lab, host, "ipc/anomaly-detection", "v1.5.0")
        assert check["verdict"] == "will-roll-out", check["reason"]
        [commit] = lab.control("POST", "/_lab/imageautomation/run")["committed"]
        lab.control("POST", "/_lab/agents/tick")
        revisions = applied_revisions(lab)
        assert revisions[suspended] != commit
        assert sum(revision == commit for revision in revisions.values()) == PANELS - 1

        follow_up = run_follow_up(host, check["id"], 1)["followUp"]
        assert follow_up["outcome"] == "committed-not-applied", follow_up["reason"]
        assert follow_up["panels"]["notApplied"] == [
            {"name": suspended, "state": "suspended", "detail": "the Flux configuration is suspended"}
        ]
        assert follow_up["panels"]["applied"] == PANELS - 1
    finally:
        set_suspended(lab, suspended, suspended=False)


def test_a_lower_tag_is_not_latest_and_names_the_winner(lab: LabHandle, host: HostProcess) -> None:
    check = verdict_of_push(lab, host, "ipc/health-monitor", "v1.0.1")
    assert check["verdict"] == "not-latest"
    assert "v1.0.7" in check["reason"]
    assert check["followUp"] is None


def test_a_prerelease_against_the_plain_range_is_filtered_out(lab: LabHandle, host: HostProcess) -> None:
    check = verdict_of_push(lab, host, "ipc/log-forwarder", "v1.3.0-rc.1")
    assert check["verdict"] == "filtered-out"
    assert check["policies"][0]["rule"] == "range"
    assert ">=1.0.0" in check["reason"]


def test_a_policy_no_marker_uses_is_no_marker(lab: LabHandle, host: HostProcess) -> None:
    login = lab.doc["acr_login_server"]
    repositories = _file(lab, REPOSITORIES) + (
        "---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: edge-agent\n"
        f"  namespace: flux-system\nspec:\n  image: {login}/ipc/edge-agent\n  interval: 5m\n"
    )
    policies = _file(lab, POLICIES) + (
        "---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: edge-agent\n"
        "  namespace: flux-system\nspec:\n  imageRepositoryRef:\n    name: edge-agent\n"
        '  policy:\n    semver:\n      range: ">=1.0.0"\n'
    )
    lab.control(
        "POST",
        "/_lab/devops/files",
        {"files": {REPOSITORIES: repositories, POLICIES: policies}, "message": "Add edge-agent policy"},
        expect=201,
    )
    # A push verdict judges the branch HEAD as read at most a second earlier (ImageCheckConfig).
    time.sleep(HEAD_MAX_AGE_S)
    check = verdict_of_push(lab, host, "ipc/edge-agent", "v1.0.0")
    assert check["verdict"] == "no-marker", check["reason"]
    assert "flux-system:edge-agent" in check["reason"]


def test_duplicate_deliveries_give_one_verdict(lab: LabHandle, host: HostProcess, tmp_path: Path) -> None:
    endpoint = f"{host.url}/runtime/webhooks/eventgrid?functionName=image_pushed&code={host.eventgrid_key}"
    lab.control(
        "POST",
        "/_lab/eventgrid/subscriptions",
        {
            "name": "acr-duplicates",
            "topic": "acr",
            "endpoint": endpoint,
            "schema": "EventGridSchema",
            "eventTypes": ["Microsoft.ContainerRegistry.ImagePushed"],
            "duplicateRate": 1.0,
        },
    )
    try:
        event_id = push(lab, "ipc/motion-gateway", "v1.3.5")

        def delivered() -> int | None:
            records = lab.control("GET", f"/_lab/eventgrid/deliveries?eventId={event_id}")["deliveries"]
            succeeded = [record for record in records if 200 <= int(record.get("status") or 0) < 300]
            return len(succeeded) if len(succeeded) >= 3 else None

        deliveries = wait_for("every delivery of the event", delivered)
        assert deliveries >= 3
        found = list(checks(host, image_of(lab, "ipc/motion-gateway"), "v1.3.5"))
        assert [check["eventId"] for check in found] == [event_id]
    finally:
        lab.control("DELETE", "/_lab/eventgrid/subscriptions/acr-duplicates")


def test_a_malformed_event_is_rejected_with_a_log_line_and_no_crash(
    lab: LabHandle, host: HostProcess
) -> None:
    malformed = [
        {
            "id": "malformed-1",
            "topic": lab.doc["eventgrid"]["topics"]["acr"],
            "subject": "ipc/x:1",
            "eventType": "Microsoft.ContainerRegistry.ImagePushed",
            "eventTime": "2026-09-01T00:00:00Z",
            "data": {"target": "not an object"},
            "dataVersion": "2.0",
            "metadataVersion": "1",
        }
    ]
    response = requests.post(
        f"{host.url}/runtime/webhooks/eventgrid",
        params={"functionName": "image_pushed", "code": host.eventgrid_key},
        headers={"aeg-event-type": "Notification"},
        json=malformed,
        timeout=30,
    )
    assert response.status_code in (200, 202)
    wait_for("the log line", lambda: True if "malformed event rejected" in host.log_text() else None)
    assert host.call("GET", "/api/health").status_code == 200


# --- the API ----------------------------------------------------------------------------------------------


def test_preflight_gives_the_verdict_before_the_push(lab: LabHandle, host: HostProcess) -> None:
    response = host.call("POST", "/api/images/check", json={"image": "ipc/vision-simulator", "tag": "v3.0.0"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] == "will-roll-out"
    assert body["trigger"] == "preflight"
    assert body["image"] == image_of(lab, "ipc/vision-simulator")
    assert host.call("GET", f"/api/images/checks/{body['id']}").json()["verdict"] == "will-roll-out"
    bad = host.call("POST", "/api/images/check", json={"image": "ipc/vision-simulator", "tag": "bad tag"})
    assert bad.status_code == 400
    assert bad.json()["field"] == "tag"


def test_images_shows_the_latest_tag_per_policy(lab: LabHandle, host: HostProcess) -> None:
    response = host.call("GET", "/api/images")
    assert response.status_code == 200, response.text
    policies = {item["policy"]: item for item in response.json()["policies"]}
    simulator = policies["flux-system/ev-battery-simulator"]
    assert simulator["latest"] == "v1.2.4"
    assert simulator["upToDate"] is True
    assert simulator["inGit"] == [f"{image_of(lab, 'ipc/ev-battery-simulator')}:v1.2.4"]


def _file(lab: LabHandle, path: str) -> str:
    from tests.labkit import REPO_ROOT

    return (REPO_ROOT / path).read_text().replace("ipcplatformacr.azurecr.io", lab.doc["acr_login_server"])
