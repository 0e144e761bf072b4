"""The lab's Flux image automation simulator: it commits what Flux would commit, and only that.

Everything is observed from outside, as a test of Flux on a cluster would: push an image (control
API), run one automation cycle, then read the Git repository's ground truth and the file itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.labkit import LabHandle

pytestmark = pytest.mark.lab

DEPLOYMENT = "kubernetes/workloads/opcua-gateway/deployment.yaml"
AUTOMATION = "kubernetes/flux-system/image-automation/image-update-automation.yaml"
REPOSITORY = "ipc/opcua-gateway"


def commits(lab: LabHandle, top: int = 5) -> list[dict[str, Any]]:
    return list(lab.control("GET", f"/_lab/devops/commits?branch=main&top={top}")["commits"])


def deployment_image(lab: LabHandle) -> str:
    """The image line of the opcua-gateway Deployment at HEAD, read through the real Git REST API path."""
    import requests

    devops = lab.doc["devops"]
    url = f"{devops['org_url']}/{devops['project']}/_apis/git/repositories/{devops['repository']}/items"
    with lab.applied_env():
        from azure.identity import ManagedIdentityCredential

        token = ManagedIdentityCredential().get_token("499b84ac-1321-427f-aa17-267ca6975798/.default").token
    response = requests.get(
        url,
        params={"path": "/" + DEPLOYMENT, "api-version": "7.1", "includeContent": "true"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        verify=lab.ca_bundle,
        timeout=30,
    )
    response.raise_for_status()
    content = str(response.json()["content"])
    return next(
        line.split("image:", 1)[1].split("#", 1)[0].strip()
        for line in content.splitlines()
        if "image:" in line
    )


def push(lab: LabHandle, tag: str) -> None:
    lab.control("POST", "/_lab/acr/push", {"repository": REPOSITORY, "tag": tag}, expect=201)


def run_cycle(lab: LabHandle) -> dict[str, Any]:
    return dict(lab.control("POST", "/_lab/imageautomation/run"))


def test_a_tag_the_policy_selects_is_committed_and_pushed_as_flux_would(lab_clean: LabHandle) -> None:
    login_server = lab_clean.doc["acr_login_server"]
    before = commits(lab_clean)[0]["sha"]
    push(lab_clean, "v1.9.0")
    outcome = run_cycle(lab_clean)
    assert outcome["error"] is None
    [sha] = outcome["committed"]
    head = commits(lab_clean)[0]
    assert head["sha"] == sha != before
    assert head["author"].startswith("fluxcdbot <fluxcdbot@users.noreply.github.com>")
    assert head["changed_paths"] == [DEPLOYMENT]
    # The repository's messageTemplate, rendered the way Go's text/template renders it.
    assert head["message"].startswith("Automated image update by flux-system/ipc-workloads\n\n")
    assert "- File: opcua-gateway/deployment.yaml\n  - Object: Deployment/opcua-gateway\n" in head["message"]
    assert (
        f"{login_server}/ipc/opcua-gateway:v1.4.2 -> {login_server}/ipc/opcua-gateway:v1.9.0"
        in head["message"]
    )
    assert deployment_image(lab_clean) == f"{login_server}/ipc/opcua-gateway:v1.9.0"
    state = lab_clean.control("GET", "/_lab/imageautomation")
    assert state["policies"]["flux-system/opcua-gateway"]["latestRef"]["tag"] == "v1.9.0"
    assert state["automations"]["flux-system/ipc-workloads"]["lastPushCommit"] == sha


def test_a_tag_the_policy_rejects_is_never_committed(lab_clean: LabHandle) -> None:
    before = commits(lab_clean)[0]["sha"]
    push(lab_clean, "v2.0.0-rc.1")  # a prerelease; the range is >=1.0.0
    push(lab_clean, "v1.0.1")  # lower than the deployed v1.4.2
    outcome = run_cycle(lab_clean)
    assert outcome["committed"] == []
    assert commits(lab_clean)[0]["sha"] == before
    state = lab_clean.control("GET", "/_lab/imageautomation")
    assert state["policies"]["flux-system/opcua-gateway"]["latestRef"]["tag"] == "v1.4.2"


def test_a_suspended_automation_commits_nothing(lab_clean: LabHandle) -> None:
    text = _read_seed(AUTOMATION)
    lab_clean.control(
        "POST",
        "/_lab/devops/files",
        {"files": {AUTOMATION: text.replace("  interval: 5m\n", "  interval: 5m\n  suspend: true\n", 1)}},
        expect=201,
    )
    before = commits(lab_clean)[0]["sha"]
    push(lab_clean, "v1.9.0")
    assert run_cycle(lab_clean)["committed"] == []
    assert commits(lab_clean)[0]["sha"] == before


def test_a_revoked_credential_cannot_fetch_and_the_failure_is_reported(lab_clean: LabHandle) -> None:
    revoked = next(pat for pat in lab_clean.state()["pats"] if pat["displayName"] == "flux-image-automation")
    lab_clean.control("POST", f"/_lab/devops/pats/{revoked['authorizationId']}/revoke")
    before = commits(lab_clean)[0]["sha"]
    push(lab_clean, "v1.9.0")
    outcome = run_cycle(lab_clean)
    assert outcome["committed"] == []
    assert outcome["error"] is not None
    assert "Authentication failed" in outcome["error"]
    assert lab_clean.control("GET", "/_lab/imageautomation")["source"]["error"] == outcome["error"]
    assert commits(lab_clean)[0]["sha"] == before


def _read_seed(path: str) -> str:
    from tests.labkit import REPO_ROOT

    return (REPO_ROOT / path).read_text().replace("ipcplatformacr.azurecr.io", "unused")


def test_the_simulator_runs_by_itself_on_the_objects_intervals(lab_clean: LabHandle) -> None:
    import time

    login_server = lab_clean.doc["acr_login_server"]
    run_cycle(lab_clean)  # every object has just run: the next scan and run are 5 lab minutes away
    push(lab_clean, "v1.8.0")
    lab_clean.control("POST", "/_lab/clock/advance", {"seconds": 120})
    time.sleep(1.0)  # the simulator wakes on the advance and finds nothing due yet
    assert deployment_image(lab_clean) == f"{login_server}/ipc/opcua-gateway:v1.4.2"
    lab_clean.control("POST", "/_lab/clock/advance", {"seconds": 200})
    deadline = time.monotonic() + 30
    while deadline > time.monotonic() and deployment_image(lab_clean).endswith(":v1.4.2"):
        time.sleep(0.5)
    assert deployment_image(lab_clean) == f"{login_server}/ipc/opcua-gateway:v1.8.0"
    assert commits(lab_clean)[0]["author"].startswith("fluxcdbot")
