"""The lab's Flux image automation: it runs on the automation runner only, and commits what Flux would.

Everything is observed from outside, as a test of Flux on a cluster would: change the fleet through
ARM with the real SDKs, push an image (control API), run one automation cycle, then read the Git
repository (Git REST, as the app does) and the ground truth — which cluster pushed, with which
credential (fingerprints only), and the automation's Ready condition in Flux's words.

The background loop is paused in every test (`POST /_lab/imageautomation/pause`, which answers only
once no background cycle is in flight, and forced runs never overlap one), so a background cycle can
never consume a pushed tag between the test's push and its forced `run`; the tests of the background
loop synchronise on its wake-up counter (`loop.wakes`), never on a sleep.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.identity import ManagedIdentityCredential

from tests.labkit import LabHandle, LabProcess

pytestmark = pytest.mark.lab

DEVOPS_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
DEPLOYMENT = "kubernetes/workloads/opcua-gateway/deployment.yaml"
POLICIES = "kubernetes/flux-system/image-automation/image-policies.yaml"
AUTOMATION = "kubernetes/flux-system/image-automation/image-update-automation.yaml"
REPOSITORY = "ipc/opcua-gateway"
RUNNER = "ipc-automation-hub"
CONFIG = "ipc-platform-config"
# microsoft.flux 1.23.0 is the first release with Flux 2.7's image controllers (image.toolkit v1).
FLUX_27_EXTENSION = "1.23.0"
# The release notes' path to 1.23.0: "upgrade them to an interim version (1.21.0 - 1.22.2) first".
INTERIM_EXTENSION = "1.21.0"
# The last release before Flux 2.7: its image controllers serve v1beta1/v1beta2 only.
PRE_FLUX_27_EXTENSION = "1.22.2"
# Ten lab seconds per real second: long-running ARM operations (one lab second) finish at once,
# while every interval a test relies on (5 lab minutes) is still half a real minute away.
TIME_SCALE = 10.0


# --- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def automation_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A small lab of our own: four factory panels and the runner, no Storage."""
    state_dir: Path = tmp_path_factory.mktemp("image-automation-lab")
    with LabProcess(state_dir, clusters=4, subscriptions=1, azurite=False, time_scale=TIME_SCALE) as handle:
        yield handle


def cluster(lab: LabHandle, name: str) -> dict[str, Any]:
    return next(item for item in lab.state()["clusters"] if item["name"] == name)


def set_extension_version(lab: LabHandle, name: str, version: str) -> None:
    """Move a cluster's microsoft.flux to `version` through ARM, as `az k8s-extension update` does."""
    from azure.mgmt.kubernetesconfiguration.extensions import KubernetesConfigurationExtensionsMgmtClient

    target = cluster(lab, name)
    with lab.applied_env():
        client = KubernetesConfigurationExtensionsMgmtClient(
            ManagedIdentityCredential(), target["subscription"], base_url=lab.endpoint("arm")
        )
        client.extensions.begin_update(
            target["resourceGroup"],
            "Microsoft.Kubernetes",
            "connectedClusters",
            name,
            "flux",
            {"properties": {"version": version, "autoUpgradeMinorVersion": False}},
            polling=False,  # ARM's Retry-After is whole real seconds; the ground truth says when it is done
        )
    deadline = time.monotonic() + 30
    while cluster(lab, name)["flux_extension_version"] != version:
        assert time.monotonic() < deadline, f"{name} did not reach microsoft.flux {version}"
        time.sleep(0.05)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def runner_view(lab: LabHandle) -> dict[str, Any]:
    [view] = [
        item for item in lab.control("GET", "/_lab/imageautomation")["runners"] if item["cluster"] == RUNNER
    ]
    return dict(view)


@pytest.fixture
def hub(automation_lab: LabHandle) -> LabHandle:
    """The seeded lab with its runner on the Flux 2.7 extension and the background loop paused.

    A reset resumes the loop; the pause that follows answers once any cycle in flight (started before
    or after the reset) has finished, so from here on only the test's forced runs touch the runner.
    """
    lab = automation_lab
    lab.control("POST", "/_lab/reset")
    assert lab.control("POST", "/_lab/imageautomation/pause") == {"paused": True}
    current = runner_view(lab)["extensionVersion"]
    if version_tuple(current) < version_tuple(FLUX_27_EXTENSION):
        if version_tuple(current) < version_tuple(INTERIM_EXTENSION):
            set_extension_version(lab, RUNNER, INTERIM_EXTENSION)
        set_extension_version(lab, RUNNER, FLUX_27_EXTENSION)
    assert runner_view(lab)["running"], runner_view(lab)
    return lab


# --- helpers ----------------------------------------------------------------------------------------------
def commits(lab: LabHandle, top: int = 5) -> list[dict[str, Any]]:
    return list(lab.control("GET", f"/_lab/devops/commits?branch=main&top={top}")["commits"])


def head(lab: LabHandle) -> str:
    return str(commits(lab, 1)[0]["sha"])


def file_at_head(lab: LabHandle, path: str) -> str:
    """A file at `main`'s HEAD, read through the real Git REST API path with the app's identity."""
    devops = lab.doc["devops"]
    url = f"{devops['org_url']}/{devops['project']}/_apis/git/repositories/{devops['repository']}/items"
    with lab.applied_env():
        token = ManagedIdentityCredential().get_token(DEVOPS_SCOPE).token
    response = requests.get(
        url,
        params={"path": "/" + path, "api-version": "7.1", "includeContent": "true"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        verify=lab.ca_bundle,
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["content"])


def deployment_image(lab: LabHandle) -> str:
    return next(
        line.split("image:", 1)[1].split("#", 1)[0].strip()
        for line in file_at_head(lab, DEPLOYMENT).splitlines()
        if "image:" in line
    )


def push(lab: LabHandle, tag: str, repository: str = REPOSITORY) -> str:
    """Push a tag (a new manifest each time); returns its digest."""
    pushed = lab.control("POST", "/_lab/acr/push", {"repository": repository, "tag": tag}, expect=201)
    return str(pushed["digest"])


def run_cycle(lab: LabHandle) -> dict[str, Any]:
    return dict(lab.control("POST", "/_lab/imageautomation/run"))


def loop_counters(lab: LabHandle) -> dict[str, int]:
    return dict(lab.control("GET", "/_lab/imageautomation")["loop"])


def wait_for_loop_wakes(lab: LabHandle, *, after: int, count: int = 2) -> dict[str, int]:
    """Until the background loop woke `count` more times than `after`; its counters then.

    Two wake-ups, because the first may have been under way before the caller's change: the second
    began after it, so it saw it.
    """
    deadline = time.monotonic() + 30  # ten lab seconds a tick at TIME_SCALE 10: about a real second each
    while (counters := loop_counters(lab))["wakes"] < after + count:
        assert time.monotonic() < deadline, f"the loop did not wake: {counters}"
        time.sleep(0.05)
    return counters


def automation_state(lab: LabHandle, name: str = "flux-system/ipc-workloads") -> dict[str, Any]:
    return dict(lab.control("GET", "/_lab/imageautomation")["clusters"][RUNNER]["automations"][name])


def policy_state(lab: LabHandle, name: str = "flux-system/opcua-gateway") -> dict[str, Any]:
    return dict(lab.control("GET", "/_lab/imageautomation")["clusters"][RUNNER]["policies"][name])


def commit_files(lab: LabHandle, files: dict[str, str], message: str) -> str:
    made = lab.control("POST", "/_lab/devops/files", {"files": files, "message": message}, expect=201)
    return str(made["sha"])


def apply_on_every_panel(lab: LabHandle) -> None:
    """Every panel's agent syncs now: the runner applies the image objects of the new HEAD."""
    lab.control("POST", "/_lab/agents/tick")


def with_policy_spec(lab: LabHandle, policy: str, extra: str) -> str:
    """image-policies.yaml at HEAD with `extra` (spec lines, two-space indented) added to one policy."""
    text = file_at_head(lab, POLICIES)
    marker = f"  name: {policy}\n  namespace: flux-system\nspec:\n"
    assert marker in text
    return text.replace(marker, marker + extra, 1)


def patch_runner_credential(lab: LabHandle, token: str) -> None:
    """Give the runner's Flux configuration another PAT, as a rotation through ARM would."""
    import base64

    from azure.mgmt.kubernetesconfiguration.fluxconfigurations import (
        KubernetesConfigurationFluxConfigurationsMgmtClient,
    )

    target = cluster(lab, RUNNER)
    with lab.applied_env():
        client = KubernetesConfigurationFluxConfigurationsMgmtClient(
            ManagedIdentityCredential(), target["subscription"], base_url=lab.endpoint("arm")
        )
        client.flux_configurations.begin_update(
            target["resourceGroup"],
            "Microsoft.Kubernetes",
            "connectedClusters",
            RUNNER,
            CONFIG,
            {
                "properties": {
                    "configurationProtectedSettings": {"httpsKey": base64.b64encode(token.encode()).decode()}
                }
            },
            polling_interval=0.1,
        ).result()
    apply_on_every_panel(lab)  # the runner's agent takes the new setting


# --- the runner, and only the runner, commits with its own credential -------------------------------------
def test_a_tag_the_policy_selects_is_committed_and_pushed_as_flux_would(hub: LabHandle) -> None:
    login_server = hub.doc["acr_login_server"]
    before = head(hub)
    push(hub, "v1.9.0")
    outcome = run_cycle(hub)
    assert outcome["error"] is None
    [sha] = outcome["committed"]
    latest = commits(hub)[0]
    assert latest["sha"] == sha != before
    assert latest["author"].startswith("fluxcdbot <fluxcdbot@users.noreply.github.com>")
    assert latest["changed_paths"] == [DEPLOYMENT]
    # The repository's messageTemplate, rendered the way Go's text/template renders it.
    assert latest["message"].startswith("Automated image update by flux-system/ipc-workloads\n\n")
    assert (
        "- File: opcua-gateway/deployment.yaml\n  - Object: Deployment/opcua-gateway\n" in latest["message"]
    )
    assert (
        f"{login_server}/ipc/opcua-gateway:v1.4.2 -> {login_server}/ipc/opcua-gateway:v1.9.0"
        in latest["message"]
    )
    assert deployment_image(hub) == f"{login_server}/ipc/opcua-gateway:v1.9.0"
    assert policy_state(hub)["latestRef"]["tag"] == "v1.9.0"
    automation = automation_state(hub)
    assert automation["lastPushCommit"] == sha
    assert automation["cluster"] == RUNNER
    assert automation["observedPolicies"]["opcua-gateway"]["tag"] == "v1.9.0"
    assert automation["ready"]["status"] == "True"
    assert (automation["ready"]["reason"], automation["ready"]["message"]) == (
        "Succeeded",
        "repository up-to-date",
    )


def test_the_runner_pushes_with_the_write_credential_its_agent_holds(hub: LabHandle) -> None:
    push(hub, "v1.9.0")
    [sha] = run_cycle(hub)["committed"]
    [pushed] = hub.control("GET", "/_lab/imageautomation")["pushes"]
    state = hub.state()
    runner = next(item for item in state["clusters"] if item["name"] == RUNNER)
    automation_pat = next(
        pat for pat in state["pats"] if pat["fingerprint"] == pushed["credentialFingerprint"]
    )
    assert pushed["commit"] == sha
    assert pushed["committedBy"] == RUNNER
    assert pushed["credentialFingerprint"] == runner["credential_fingerprint"]
    assert automation_pat["scope"] == "vso.code_write"
    # No factory panel holds it: they hold the read-only fleet credential.
    factory = [item for item in state["clusters"] if item["name"] != RUNNER]
    assert factory
    assert all(item["credential_fingerprint"] != pushed["credentialFingerprint"] for item in factory)
    fleet_pats = {pat["fingerprint"]: pat["scope"] for pat in state["pats"]}
    assert {fleet_pats[item["credential_fingerprint"]] for item in factory} == {"vso.code"}


def test_a_factory_panel_never_runs_the_image_controllers_even_with_them_enabled(hub: LabHandle) -> None:
    """Enabling the controllers in a factory panel's extension does not make it a runner: the tag does."""
    from azure.mgmt.kubernetesconfiguration.extensions import KubernetesConfigurationExtensionsMgmtClient

    factory = next(item for item in hub.state()["clusters"] if item["name"] != RUNNER)
    with hub.applied_env():
        client = KubernetesConfigurationExtensionsMgmtClient(
            ManagedIdentityCredential(), factory["subscription"], base_url=hub.endpoint("arm")
        )
        client.extensions.begin_update(
            factory["resourceGroup"],
            "Microsoft.Kubernetes",
            "connectedClusters",
            factory["name"],
            "flux",
            {
                "properties": {
                    "configurationSettings": {
                        "image-automation-controller.enabled": "true",
                        "image-reflector-controller.enabled": "true",
                    }
                }
            },
            polling_interval=0.1,
        ).result()
    push(hub, "v1.9.0")
    outcome = run_cycle(hub)
    assert len(outcome["committed"]) == 1
    assert [view["cluster"] for view in outcome["runners"]] == [RUNNER]
    assert set(outcome["clusters"]) == {RUNNER}
    assert {pushed["committedBy"] for pushed in outcome["pushes"]} == {RUNNER}


def test_the_controllers_see_the_objects_the_runner_applied_not_the_branch_head(hub: LabHandle) -> None:
    login_server = hub.doc["acr_login_server"]
    # A range that excludes v1.9.0, committed but not yet applied by the runner's agent.
    narrowed = file_at_head(hub, POLICIES).replace('range: ">=1.0.0"', 'range: ">=1.0.0 <1.5.0"')
    commit_files(hub, {POLICIES: narrowed}, "Hold every workload below 1.5")
    push(hub, "v1.9.0")
    [sha] = run_cycle(hub)["committed"]
    assert deployment_image(hub) == f"{login_server}/ipc/opcua-gateway:v1.9.0"
    assert automation_state(hub)["lastPushCommit"] == sha
    # Once applied, the narrowed range is what the policy evaluates.
    apply_on_every_panel(hub)
    assert runner_view(hub)["appliedRevision"] == head(hub)
    run_cycle(hub)
    assert policy_state(hub)["latestRef"]["tag"] == "v1.4.2"


def test_a_tag_the_policy_rejects_is_never_committed(hub: LabHandle) -> None:
    before = head(hub)
    push(hub, "v2.0.0-rc.1")  # a prerelease; the range is >=1.0.0
    push(hub, "v1.0.1")  # lower than the deployed v1.4.2
    outcome = run_cycle(hub)
    assert outcome["committed"] == []
    assert head(hub) == before
    assert policy_state(hub)["latestRef"]["tag"] == "v1.4.2"


def test_a_suspended_automation_commits_nothing(hub: LabHandle) -> None:
    text = file_at_head(hub, AUTOMATION).replace("  interval: 5m\n", "  interval: 5m\n  suspend: true\n", 1)
    commit_files(hub, {AUTOMATION: text}, "Suspend the image automation")
    apply_on_every_panel(hub)
    before = head(hub)
    push(hub, "v1.9.0")
    assert run_cycle(hub)["committed"] == []
    assert head(hub) == before
    assert (
        "flux-system/ipc-workloads"
        not in hub.control("GET", "/_lab/imageautomation")["clusters"][RUNNER]["automations"]
    )


# --- credentials: revoked, read-only ----------------------------------------------------------------------
def test_a_revoked_automation_pat_fails_the_next_run_in_flux_words_and_nothing_is_committed(
    hub: LabHandle,
) -> None:
    state = hub.state()
    runner = next(item for item in state["clusters"] if item["name"] == RUNNER)
    held = next(pat for pat in state["pats"] if pat["fingerprint"] == runner["credential_fingerprint"])
    hub.control("POST", f"/_lab/devops/pats/{held['authorizationId']}/revoke", expect=200)
    before = head(hub)
    push(hub, "v1.9.0")
    outcome = run_cycle(hub)
    assert outcome["committed"] == []
    assert head(hub) == before
    ready = automation_state(hub)["ready"]
    # go-git's 401 ("authentication required: <body>") inside IAC's checkout failure: a revoked PAT
    # fails already at the clone, before any push.
    assert (ready["status"], ready["reason"]) == ("False", "GitOperationFailed")
    assert ready["message"] == (
        f"failed to checkout source: unable to clone '{hub.doc['git_url']}': authentication required: "
        "Access Denied: The Personal Access Token used has been revoked."
    )
    assert automation_state(hub)["lastPushCommit"] is None


def test_a_read_only_pat_on_the_runner_clones_but_its_push_is_refused(hub: LabHandle) -> None:
    read_only = hub.control("POST", "/_lab/devops/pats", {"scope": "vso.code", "days": 30}, expect=201)
    patch_runner_credential(hub, read_only["token"])
    before = head(hub)
    push(hub, "v1.9.0")
    outcome = run_cycle(hub)
    assert outcome["committed"] == []
    assert head(hub) == before
    automation = automation_state(hub)
    ready = automation["ready"]
    assert (ready["status"], ready["reason"]) == ("False", "GitOperationFailed")
    # IAC "failed to update source" / gogit "failed to push to remote" / go-git's 403 with Azure
    # DevOps' body, verbatim.
    assert ready["message"].startswith(
        "failed to update source: failed to push to remote: authorization failed: "
        "001f# service=git-receive-pack\n00000000"
    )
    assert "TF401027: You need the Git 'GenericContribute' permission" in ready["message"]
    assert read_only["token"] not in str(hub.control("GET", "/_lab/imageautomation"))
    assert automation["lastPushCommit"] is None
    assert hub.control("GET", "/_lab/imageautomation")["pushes"] == []


# --- when the runner cannot run ---------------------------------------------------------------------------
def test_an_offline_runner_commits_nothing_and_commits_once_it_is_back(hub: LabHandle) -> None:
    before = head(hub)
    hub.control("POST", f"/_lab/clusters/{RUNNER}/connectivity", {"online": False})
    push(hub, "v1.9.0")
    outcome = run_cycle(hub)
    assert outcome["committed"] == []
    assert head(hub) == before
    view = runner_view(hub)
    assert (view["running"], view["reason"]) == (False, "the cluster is offline")
    hub.control("POST", f"/_lab/clusters/{RUNNER}/connectivity", {"online": True})
    [sha] = run_cycle(hub)["committed"]
    assert head(hub) == sha


def set_runner_suspended(lab: LabHandle, *, suspended: bool) -> None:
    from azure.mgmt.kubernetesconfiguration.fluxconfigurations import (
        KubernetesConfigurationFluxConfigurationsMgmtClient,
    )

    target = cluster(lab, RUNNER)
    with lab.applied_env():
        client = KubernetesConfigurationFluxConfigurationsMgmtClient(
            ManagedIdentityCredential(), target["subscription"], base_url=lab.endpoint("arm")
        )
        client.flux_configurations.begin_update(
            target["resourceGroup"],
            "Microsoft.Kubernetes",
            "connectedClusters",
            RUNNER,
            CONFIG,
            {"properties": {"suspend": suspended}},
            polling_interval=0.1,
        ).result()
    apply_on_every_panel(lab)


def test_suspending_the_runners_configuration_freezes_its_objects_not_its_image_controllers(
    hub: LabHandle,
) -> None:
    """Arc's suspend "suspends all source and kustomize reconciliations" (gitops-flux2-parameters.md):
    the applied image objects stay as they are and the image controllers go on working with them."""
    applied = runner_view(hub)["appliedRevision"]
    set_runner_suspended(hub, suspended=True)
    narrowed = file_at_head(hub, POLICIES).replace('range: ">=1.0.0"', 'range: ">=1.0.0 <1.5.0"')
    commit_files(hub, {POLICIES: narrowed}, "Hold every workload below 1.5")
    apply_on_every_panel(hub)
    assert runner_view(hub)["appliedRevision"] == applied  # the narrowed range is never applied
    push(hub, "v1.9.0")
    [sha] = run_cycle(hub)["committed"]
    assert automation_state(hub)["lastPushCommit"] == sha
    assert policy_state(hub)["latestRef"]["tag"] == "v1.9.0"


def test_a_runner_whose_extension_lacks_the_v1_image_api_runs_nothing_and_says_why(
    automation_lab: LabHandle,
) -> None:
    lab = automation_lab
    lab.control("POST", "/_lab/reset")
    lab.control("POST", "/_lab/imageautomation/pause")
    current = runner_view(lab)["extensionVersion"]
    if version_tuple(current) >= version_tuple(FLUX_27_EXTENSION):
        # The lab's runner is set up at 1.23.3; take it back to before Flux 2.7's image API, and let its
        # agent reconcile once with that extension before the cycle (no waiting on background ticks).
        set_extension_version(lab, RUNNER, PRE_FLUX_27_EXTENSION)
        deadline = time.monotonic() + 30
        while runner_view(lab)["running"]:  # the agent must reconcile with the old extension first
            assert time.monotonic() < deadline, "the runner's agent never reconciled the downgrade"
            lab.control("POST", "/_lab/agents/tick")
            time.sleep(0.1)
    before = head(lab)
    push(lab, "v1.9.0")
    outcome = run_cycle(lab)
    assert outcome["committed"] == []
    assert head(lab) == before
    view = runner_view(lab)
    assert view["running"] is False
    kustomization = view["kustomization"]
    # kustomize-controller's server-side dry-run over fluxcd/pkg ssa: the first object in apply order.
    assert (kustomization["ready"], kustomization["reason"]) == (False, "ReconciliationFailed")
    assert kustomization["message"] == (
        "ImagePolicy/flux-system/anomaly-detection dry-run failed: "
        'no matches for kind "ImagePolicy" in version "image.toolkit.fluxcd.io/v1"\n'
    )
    assert outcome["clusters"] == {}


# --- digests and suspended policies -----------------------------------------------------------------------
def _deployment_digest(lab: LabHandle) -> str | None:
    image = deployment_image(lab)
    return image.split("@", 1)[1] if "@" in image else None


def test_always_rolls_out_a_tag_pushed_again_with_a_new_digest(hub: LabHandle) -> None:
    login_server = hub.doc["acr_login_server"]
    policies = with_policy_spec(hub, "opcua-gateway", "  digestReflectionPolicy: Always\n  interval: 1m\n")
    commit_files(hub, {POLICIES: policies}, "Pin opcua-gateway by digest")
    apply_on_every_panel(hub)
    [first] = run_cycle(hub)["committed"]  # the whole-image marker gains `@digest`
    old_digest = hub.state()["acr"]["repositories"][REPOSITORY]["v1.4.2"]
    assert deployment_image(hub) == f"{login_server}/ipc/opcua-gateway:v1.4.2@{old_digest}"
    new_digest = push(hub, "v1.4.2")  # same tag, new content
    assert new_digest != old_digest
    [second] = run_cycle(hub)["committed"]
    assert second != first
    assert deployment_image(hub) == f"{login_server}/ipc/opcua-gateway:v1.4.2@{new_digest}"
    ref = policy_state(hub)
    assert ref["latestRef"] == {
        "name": f"{login_server}/ipc/opcua-gateway",
        "tag": "v1.4.2",
        "digest": new_digest,
    }
    assert ref["observedPreviousRef"]["digest"] == old_digest
    assert ref["ready"]["message"] == (
        f"Latest image tag for {login_server}/ipc/opcua-gateway resolved to v1.4.2 with digest {new_digest} "
        f"(previously {login_server}/ipc/opcua-gateway:v1.4.2@{old_digest})"
    )


def test_if_not_present_keeps_the_first_digest_when_the_tag_is_pushed_again(hub: LabHandle) -> None:
    policies = with_policy_spec(hub, "opcua-gateway", "  digestReflectionPolicy: IfNotPresent\n")
    commit_files(hub, {POLICIES: policies}, "Reflect opcua-gateway's digest once")
    apply_on_every_panel(hub)
    run_cycle(hub)
    old_digest = hub.state()["acr"]["repositories"][REPOSITORY]["v1.4.2"]
    assert _deployment_digest(hub) == old_digest
    before = head(hub)
    push(hub, "v1.4.2")
    assert run_cycle(hub)["committed"] == []
    assert head(hub) == before
    assert _deployment_digest(hub) == old_digest
    assert policy_state(hub)["latestRef"]["digest"] == old_digest


def test_a_suspended_policy_keeps_its_selection_while_the_others_move_on(hub: LabHandle) -> None:
    login_server = hub.doc["acr_login_server"]
    run_cycle(hub)  # every policy has a latestRef now
    commit_files(
        hub, {POLICIES: with_policy_spec(hub, "opcua-gateway", "  suspend: true\n")}, "Freeze opcua-gateway"
    )
    apply_on_every_panel(hub)
    push(hub, "v1.9.0")  # opcua-gateway: suspended, must not move
    push(hub, "v1.1.0", repository="ipc/health-monitor")  # health-monitor: not suspended
    [sha] = run_cycle(hub)["committed"]
    assert commits(hub)[0]["changed_paths"] == ["kubernetes/workloads/health-monitor/deployment.yaml"]
    assert head(hub) == sha
    assert deployment_image(hub) == f"{login_server}/ipc/opcua-gateway:v1.4.2"
    frozen = policy_state(hub)
    assert frozen["suspended"] is True
    assert frozen["latestRef"]["tag"] == "v1.4.2"


def connect_second_runner(lab: LabHandle, name: str) -> str:
    """Connect another cluster tagged as a runner and set it up as the hub is, through ARM with the SDKs.

    Returns the fingerprint of its own write PAT.
    """
    import base64

    from azure.mgmt.kubernetesconfiguration.extensions import KubernetesConfigurationExtensionsMgmtClient
    from azure.mgmt.kubernetesconfiguration.fluxconfigurations import (
        KubernetesConfigurationFluxConfigurationsMgmtClient,
    )

    created = lab.control(
        "POST", "/_lab/clusters", {"name": name, "tags": {"fluxfleet-role": "image-automation"}}, expect=201
    )
    write_pat = lab.control("POST", "/_lab/devops/pats", {"scope": "vso.code_write", "days": 30}, expect=201)
    group, subscription = created["resourceGroup"], created["subscription"]
    cluster_path = (group, "Microsoft.Kubernetes", "connectedClusters", name)
    with lab.applied_env():
        credential = ManagedIdentityCredential()
        extensions = KubernetesConfigurationExtensionsMgmtClient(
            credential, subscription, base_url=lab.endpoint("arm")
        )
        extensions.extensions.begin_create(
            *cluster_path,
            "flux",
            {
                "properties": {
                    "extensionType": "microsoft.flux",
                    "autoUpgradeMinorVersion": False,
                    "version": FLUX_27_EXTENSION,
                    "configurationSettings": {
                        "image-automation-controller.enabled": "true",
                        "image-reflector-controller.enabled": "true",
                    },
                }
            },
        ).result()
        flux = KubernetesConfigurationFluxConfigurationsMgmtClient(
            credential, subscription, base_url=lab.endpoint("arm")
        )
        flux.flux_configurations.begin_create_or_update(
            *cluster_path,
            CONFIG,
            {
                "properties": {
                    "scope": "cluster",
                    "namespace": "flux-system",
                    "sourceKind": "GitRepository",
                    "gitRepository": {
                        "url": lab.doc["git_url"],
                        "repositoryRef": {"branch": "main"},
                        "httpsUser": "git",
                        "syncIntervalInSeconds": 300,
                    },
                    "kustomizations": {
                        "image-automation": {
                            "path": "./kubernetes/flux-system/image-automation",
                            "prune": True,
                        }
                    },
                    "configurationProtectedSettings": {
                        "httpsKey": base64.b64encode(write_pat["token"].encode()).decode()
                    },
                }
            },
        ).result()
    apply_on_every_panel(lab)
    return str(cluster(lab, name)["credential_fingerprint"])


def test_two_runners_each_run_their_own_controllers_and_race_for_one_commit(hub: LabHandle) -> None:
    second = "ipc-automation-hub-2"
    second_fingerprint = connect_second_runner(hub, second)
    views = {view["cluster"]: view for view in hub.control("GET", "/_lab/imageautomation")["runners"]}
    assert set(views) == {RUNNER, second}
    assert all(view["running"] for view in views.values()), views
    before = head(hub)
    push(hub, "v1.9.0")
    outcome = run_cycle(hub)
    # Both clusters' controllers ran; the branch got the change once.
    assert set(outcome["clusters"]) == {RUNNER, second}
    [sha] = outcome["committed"]
    assert commits(hub)[1]["sha"] == before
    [pushed] = outcome["pushes"]
    assert pushed["commit"] == sha
    winner = pushed["committedBy"]
    assert pushed["credentialFingerprint"] == (
        second_fingerprint if winner == second else views[RUNNER]["credentialFingerprint"]
    )
    loser = second if winner == RUNNER else RUNNER
    lost = outcome["clusters"][loser]["automations"]["flux-system/ipc-workloads"]
    # The loser either pushed after the winner and was refused — go-git's non-fast-forward when the
    # advertisement already showed the winner's commit, its report-status error when the server
    # refused the ref update — or checked out after the winner's push and had nothing left to change.
    message = lost["ready"]["message"]
    refused = "failed to update source: failed to push to remote: "
    non_fast_forward = refused + "non-fast-forward update: refs/heads/main"
    assert message in {"repository up-to-date", non_fast_forward} or message.startswith(
        refused + "command error on refs/heads/main: "
    ), message


# --- the background loop ----------------------------------------------------------------------------------
def test_a_paused_loop_never_consumes_a_pushed_tag(hub: LabHandle) -> None:
    before = head(hub)
    push(hub, "v1.9.0")
    counters = loop_counters(hub)
    hub.control("POST", "/_lab/clock/advance", {"seconds": 900})  # three intervals: everything is due
    after = wait_for_loop_wakes(hub, after=counters["wakes"])
    assert after["cycles"] == counters["cycles"]  # it woke, and ran nothing
    assert head(hub) == before
    assert len(run_cycle(hub)["committed"]) == 1


def test_pausing_waits_for_a_background_cycle_in_flight(hub: LabHandle) -> None:
    """A pause never answers while a background cycle may still consume a tag pushed after it."""
    hub.control("POST", "/_lab/imageautomation/resume")
    push(hub, "v1.9.0")
    hub.control("POST", "/_lab/clock/advance", {"seconds": 900})
    hub.control("POST", "/_lab/imageautomation/pause")
    settled = head(hub)  # whatever the loop committed, it committed before the pause answered
    push(hub, "v1.9.1")
    wait_for_loop_wakes(hub, after=loop_counters(hub)["wakes"])
    assert head(hub) == settled
    [sha] = run_cycle(hub)["committed"]
    assert deployment_image(hub).endswith(":v1.9.1")
    assert head(hub) == sha


def test_the_simulator_runs_by_itself_on_the_objects_intervals(hub: LabHandle) -> None:
    login_server = hub.doc["acr_login_server"]
    run_cycle(hub)  # every object has just run: the next scan and run are 5 lab minutes away
    counters = loop_counters(hub)
    hub.control("POST", "/_lab/imageautomation/resume")
    push(hub, "v1.8.0")
    hub.control("POST", "/_lab/clock/advance", {"seconds": 120})
    # The loop wakes on the advance and finds nothing due yet: it looks, and runs no cycle.
    assert wait_for_loop_wakes(hub, after=counters["wakes"])["cycles"] == counters["cycles"]
    assert deployment_image(hub) == f"{login_server}/ipc/opcua-gateway:v1.4.2"
    hub.control("POST", "/_lab/clock/advance", {"seconds": 200})
    deadline = time.monotonic() + 30
    while loop_counters(hub)["cycles"] == counters["cycles"]:  # the scan came due: one cycle runs
        assert time.monotonic() < deadline, "the loop never ran the cycle that came due"
        time.sleep(0.05)
    assert deployment_image(hub) == f"{login_server}/ipc/opcua-gateway:v1.8.0"
    assert commits(hub)[0]["author"].startswith("fluxcdbot")
    assert hub.control("GET", "/_lab/imageautomation")["pushes"][-1]["committedBy"] == RUNNER


# --- without a runner -------------------------------------------------------------------------------------
def test_without_a_runner_nothing_runs_and_nothing_is_committed(tmp_path: Path) -> None:
    with LabProcess(tmp_path / "lab", clusters=2, subscriptions=1, azurite=False, runner=False) as lab:
        before = head(lab)
        push(lab, "v1.9.0")
        outcome = run_cycle(lab)
        assert outcome["committed"] == []
        assert outcome["runners"] == []
        assert head(lab) == before
