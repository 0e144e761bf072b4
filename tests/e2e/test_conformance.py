"""Fleet conformance end to end: the app in the local Functions host, the lab behind it (issue 14).

The declaration is the repository's own `kubernetes/fleet/flux.yaml`, read by the app from the lab's Git
server at HEAD. Outcomes are checked in the lab's ground truth (what each panel's agent applied, with
which credential), never in what the app says about itself. The tests run in file order on one fleet:
4 configured panels, 3 connected to Arc with nothing on them (`--unconfigured 3`), no runner.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.kubernetesconfiguration.fluxconfigurations import (
    KubernetesConfigurationFluxConfigurationsMgmtClient,
)

from tests.e2e.hostkit import HostProcess
from tests.labkit import LabHandle, LabProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

T = TypeVar("T")
CONFIGURED = 4
UNCONFIGURED = 3
TIME_SCALE = 20.0
TIMEOUT_S = 120.0
TICK_EVERY_S = 2.0
CONFIG = "ipc-platform-config"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    with LabProcess(
        tmp_path_factory.mktemp("conformance-lab"),
        clusters=CONFIGURED,
        unconfigured=UNCONFIGURED,
        subscriptions=1,
        time_scale=TIME_SCALE,
        runner=False,
    ) as handle:
        yield handle


@pytest.fixture(scope="module", autouse=True)
def lab_environment(lab: LabHandle) -> Iterator[None]:
    with lab.applied_env():
        yield


@pytest.fixture(scope="module")
def host(lab: LabHandle) -> Iterator[HostProcess]:
    with HostProcess(lab, instance="conformance", env={"FLUXFLEET_FLEET_VERIFY_MAX_CHECKS": "80"}) as process:
        yield process


ANSWERS: list[str] = []


def call(host: HostProcess, method: str, path: str, **kwargs: Any) -> Any:
    response = host.call(method, path, **kwargs)
    ANSWERS.append(response.text)
    return response


def wait_for(what: str, probe: Callable[[], T | None], *, lab: LabHandle, timeout: float = TIMEOUT_S) -> T:
    deadline = time.monotonic() + timeout
    last_tick = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() - last_tick >= TICK_EVERY_S:
            lab.control("POST", "/_lab/agents/tick")
            last_tick = time.monotonic()
        value = probe()
        if value is not None:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def clusters(lab: LabHandle) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in lab.state()["clusters"]}


def unconfigured(lab: LabHandle) -> list[str]:
    return sorted(name for name, c in clusters(lab).items() if not c["onboarded"])


def pat(lab: LabHandle) -> str:
    client = SecretClient(
        lab.doc["keyvault"]["url"], ManagedIdentityCredential(), verify_challenge_resource=False
    )
    value = client.get_secret("flux-gitops-pat").value
    assert value is not None
    return value


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def final(host: HostProcess, lab: LabHandle, operation_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        document: dict[str, Any] = call(host, "GET", f"/api/operations/{operation_id}").json()
        return document if document["status"] != "running" else None

    return wait_for(f"operation {operation_id}", probe, lab=lab)


def report(host: HostProcess) -> dict[str, Any]:
    response = call(host, "GET", "/api/fleet/conformance")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def states(body: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["state"] for p in body["panels"]}


# --- the tests, in order -------------------------------------------------------------------------------
def test_the_pat_is_proven_first(lab: LabHandle, host: HostProcess) -> None:
    """Conformance creates configurations only with a PAT that passed preflight."""
    response = host.call(
        "POST", "/admin/functions/credentials_scheduled_check", key="master", json={"input": ""}
    )
    assert response.status_code == 202

    def passed() -> bool | None:
        current = call(host, "GET", "/api/credentials").json().get("current") or {}
        return True if (current.get("preflight") or {}).get("passed") else None

    wait_for("the preflight", passed, lab=lab)


def test_new_panels_are_reported_not_onboarded(lab: LabHandle, host: HostProcess) -> None:
    body = report(host)
    new = unconfigured(lab)
    assert len(new) == UNCONFIGURED
    assert {states(body)[name] for name in new} == {"not-onboarded"}
    assert body["total"] == CONFIGURED + UNCONFIGURED
    assert body["counts"]["not-onboarded"] == UNCONFIGURED
    assert body["declaration"]["path"] == "kubernetes/fleet/flux.yaml"


def test_a_dry_run_lists_what_would_change_and_writes_nothing(lab: LabHandle, host: HostProcess) -> None:
    new = unconfigured(lab)
    response = call(
        host,
        "POST",
        "/api/fleet/conform",
        json={"reason": "plan", "target": {"clusters": new}, "dryRun": True},
    )
    assert response.status_code == 200, response.text
    rows = response.json()["clusters"]
    assert {r["name"]: r["wouldChange"] for r in rows} == dict.fromkeys(new, True)
    assert all(any(d["field"] == "extension" for d in r["differences"]) for r in rows)
    assert unconfigured(lab) == new


def test_conform_onboards_new_panels_and_their_agents_apply_the_revision(
    lab: LabHandle, host: HostProcess
) -> None:
    new = unconfigured(lab)
    response = call(
        host,
        "POST",
        "/api/fleet/conform",
        json={"reason": "onboard the new panels", "target": {"clusters": new}},
        headers={"Idempotency-Key": "onboard-1"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["statusUrl"].startswith("http")
    document = final(host, lab, response.json()["operationId"])
    assert {c["name"]: c["state"] for c in document["clusters"]} == dict.fromkeys(new, "succeeded"), document
    truth = clusters(lab)
    revision = report(host)["declaration"]["revision"]
    for name in new:
        panel = truth[name]
        assert panel["onboarded"] is True
        assert panel["extension"]["type"] == "microsoft.flux"
        assert panel["configuration"]["kustomizations"] == {"workloads": "./kubernetes/workloads"}
        assert panel["credential_fingerprint"] == fingerprint(pat(lab))
        assert panel["last_fetch"]["ok"] is True
        assert revision in panel["applied_revision"], (panel["applied_revision"], revision)
    assert {states(report(host))[name] for name in new} == {"conformant"}


def test_a_hand_drifted_panel_is_reported_and_repaired_with_only_that_field(
    lab: LabHandle, host: HostProcess
) -> None:
    configured = sorted(
        name for name, c in clusters(lab).items() if c["extension"]["currentVersion"] == "1.16.3"
    )
    name = configured[0]
    panel = clusters(lab)[name]
    flux = KubernetesConfigurationFluxConfigurationsMgmtClient(
        ManagedIdentityCredential(), panel["subscription"], base_url=lab.endpoint("arm")
    )
    group = panel["resourceGroup"]
    args = (group, "Microsoft.Kubernetes", "connectedClusters", name, CONFIG)
    # `az k8s-configuration flux update --interval 30m`, and an undeclared field a PUT would reset.
    flux.flux_configurations.begin_update(
        *args,
        {
            "properties": {
                "gitRepository": {"syncIntervalInSeconds": 1800},
                "kustomizations": {"workloads": {"timeoutInSeconds": 900}},
            }
        },
    ).result()
    before = clusters(lab)[name]["credential_fingerprint"]
    row = next(p for p in report(host)["panels"] if p["name"] == name)
    assert row["state"] == "drifted"
    assert row["differences"] == [
        {"field": "configuration.gitRepository.syncIntervalInSeconds", "want": 300, "have": 1800}
    ]
    response = call(
        host, "POST", "/api/fleet/conform", json={"reason": "repair drift", "target": {"clusters": [name]}}
    )
    assert response.status_code == 202, response.text
    document = final(host, lab, response.json()["operationId"])
    assert document["clusters"][0]["state"] == "succeeded", document
    props = flux.flux_configurations.get(*args).as_dict()["properties"]
    assert props["gitRepository"]["syncIntervalInSeconds"] == 300
    assert props["kustomizations"]["workloads"]["timeoutInSeconds"] == 900  # not PUT: only the field
    assert clusters(lab)[name]["credential_fingerprint"] == before
    assert states(report(host))[name] == "conformant"


def test_a_new_cluster_is_onboarded_from_the_event_and_a_bench_is_left_alone(
    lab: LabHandle, host: HostProcess
) -> None:
    lab.control(
        "POST",
        "/_lab/clusters",
        {"name": "ipc-panel-9001", "tags": {"ring": "broad", "site": "lyon"}},
        expect=201,
    )
    lab.control("POST", "/_lab/clusters", {"name": "lab-bench-01"}, expect=201)

    def onboarded() -> dict[str, Any] | None:
        panel = clusters(lab)["ipc-panel-9001"]
        return panel if panel["onboarded"] and (panel["last_fetch"] or {}).get("ok") else None

    panel = wait_for("the event's onboarding", onboarded, lab=lab)
    assert panel["credential_fingerprint"] == fingerprint(pat(lab))
    operations = call(host, "GET", "/api/operations", params={"kind": "conform"}).json()["operations"]
    assert any("ipc-panel-9001" in op["reason"] for op in operations)
    assert clusters(lab)["lab-bench-01"]["onboarded"] is False
    assert "lab-bench-01" not in states(report(host))


def test_reset_needs_confirm_then_recreates_and_proves_a_fresh_fetch(
    lab: LabHandle, host: HostProcess
) -> None:
    name = sorted(clusters(lab))[0]
    refused = call(host, "POST", "/api/fleet/reset", json={"reason": "9.4", "target": {"clusters": [name]}})
    assert refused.status_code == 400
    assert refused.json()["field"] == "confirm"
    panel = clusters(lab)[name]
    flux = KubernetesConfigurationFluxConfigurationsMgmtClient(
        ManagedIdentityCredential(), panel["subscription"], base_url=lab.endpoint("arm")
    )
    args = (panel["resourceGroup"], "Microsoft.Kubernetes", "connectedClusters", name, CONFIG)
    created = flux.flux_configurations.get(*args).as_dict()["systemData"]["createdAt"]
    response = call(
        host,
        "POST",
        "/api/fleet/reset",
        json={"reason": "9.4", "target": {"clusters": [name]}, "confirm": True},
    )
    assert response.status_code == 202, response.text
    document = final(host, lab, response.json()["operationId"])
    assert document["clusters"][0]["state"] == "succeeded", document
    panel = clusters(lab)[name]
    recreated = flux.flux_configurations.get(*args).as_dict()
    assert recreated["systemData"]["createdAt"] > created  # deleted and created again, not patched
    assert recreated["properties"]["gitRepository"]["syncIntervalInSeconds"] == 300
    assert panel["config_generation"] == 1
    assert panel["configuration"] is not None
    assert panel["last_fetch"]["ok"] is True
    assert panel["credential_fingerprint"] == fingerprint(pat(lab))


def test_the_pat_never_appears_in_answers_or_logs(lab: LabHandle, host: HostProcess) -> None:
    value = pat(lab)
    import base64

    encoded = base64.b64encode(value.encode()).decode()
    for text in [*ANSWERS, host.log_text()]:
        assert value not in text
        assert encoded not in text
