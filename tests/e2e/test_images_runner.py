"""The runner check end to end (issue 15): `GET /api/images/runner` in the local host against the lab.

The app reads the lab through the real SDKs: the connectedClusters list (ARM), the runner's microsoft.flux
extension (ARM), the automation secret's versions (Key Vault), the credential ledger (Azurite) and the
repository at HEAD (Azure DevOps Git REST). The seeded runner `ipc-automation-hub` (microsoft.flux 1.23.3,
both image controllers enabled) is ok once the automation credential is proven on it by a rollout; taken
offline through the lab's control API, Arc reports it `Offline` after 15 lab minutes and the check says
`runner-offline`; a lab seeded without a runner says `runner-not-configured`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from tests.e2e.hostkit import HostProcess
from tests.labkit import LabHandle, LabProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

T = TypeVar("T")
RUNNER = "ipc-automation-hub"
# Event Grid, preflight and the first ARM writes take a second or two in the lab; a one-cluster rollout
# proven by an agent tick well within a minute.
ROLLOUT_TIMEOUT_S = 90.0
TICK_EVERY_S = 2.0
# Arc keeps `Connected` for 15 minutes after the last heartbeat (lab/docs/arm.md, Connectivity).
OFFLINE_AFTER_S = 16 * 60


def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float, tick: LabHandle) -> T:
    """Poll `probe`, making every online agent sync meanwhile (the rollout's proof is a fetch)."""
    deadline = time.monotonic() + timeout
    last_tick = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() - last_tick >= TICK_EVERY_S:
            tick.control("POST", "/_lab/agents/tick")
            last_tick = time.monotonic()
        value = probe()
        if value is not None:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def runner_report(host: HostProcess) -> dict[str, Any]:
    response = host.call("GET", "/api/images/runner")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def codes(report: dict[str, Any]) -> list[str]:
    return [problem["code"] for problem in report["problems"]]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    with LabProcess(tmp_path_factory.mktemp("runner-lab"), clusters=2, subscriptions=1) as handle:
        yield handle


@pytest.fixture(scope="module")
def host(lab: LabHandle) -> Iterator[HostProcess]:
    with HostProcess(lab, instance="runner") as process:
        yield process


def test_the_route_needs_a_function_key(host: HostProcess) -> None:
    assert host.call("GET", "/api/images/runner", key=None).status_code == 401


def test_the_seeded_runner_is_ok_once_its_automation_credential_is_proven(
    lab: LabHandle, host: HostProcess
) -> None:
    before = runner_report(host)
    # Nothing has rolled the automation PAT out yet, so the app has no proof of it on the runner.
    assert codes(before) == ["automation-credential-not-proven"], before
    facts = before["runner"]
    truth = next(c for c in lab.state()["clusters"] if c["name"] == RUNNER)
    assert facts["name"] == RUNNER
    assert facts["id"].lower() == truth["id"].lower()
    assert facts["connectivity"] == "Connected"
    assert facts["extension"]["version"] == truth["extension"]["version"] == "1.23.3"
    assert facts["extension"]["imageControllers"] == {
        "image-automation-controller": True,
        "image-reflector-controller": True,
    }

    started = host.call(
        "POST", "/api/credentials/rollout", json={"reason": "prove the runner", "purpose": "automation"}
    )
    assert started.status_code == 202, started.text
    operation_id = started.json()["operationId"]

    def finished() -> dict[str, Any] | None:
        document: dict[str, Any] = host.call("GET", f"/api/operations/{operation_id}").json()
        return document if document["status"] != "running" else None

    document = wait_for("the automation rollout", finished, timeout=ROLLOUT_TIMEOUT_S, tick=lab)
    assert [(c["name"], c["state"]) for c in document["clusters"]] in (
        [(RUNNER, "succeeded")],
        [(RUNNER, "unchanged")],
    ), document

    after = runner_report(host)
    assert after["ok"] is True, after
    assert after["problems"] == []
    assert after["runner"]["credential"]["state"] == "proven"
    assert after["runner"]["credential"]["version"] == after["runner"]["credential"]["currentVersion"]


def test_a_runner_arc_stops_hearing_from_is_offline_with_its_last_contact(
    lab: LabHandle, host: HostProcess
) -> None:
    lab.control("POST", f"/_lab/clusters/{RUNNER}/connectivity", {"online": False}, expect=200)
    lab.control("POST", "/_lab/clock/advance", {"seconds": OFFLINE_AFTER_S})
    report = runner_report(host)
    assert report["ok"] is False
    assert "runner-offline" in codes(report), report
    problem = next(p for p in report["problems"] if p["code"] == "runner-offline")
    assert problem["connectivity"] == "Offline"
    assert problem["lastConnectivityTime"]
    assert problem["lastConnectivityTime"] in problem["message"]
    lab.control("POST", f"/_lab/clusters/{RUNNER}/connectivity", {"online": True}, expect=200)


def test_a_fleet_without_a_tagged_runner_is_runner_not_configured(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with (
        LabProcess(tmp_path_factory.mktemp("no-runner-lab"), clusters=2, runner=False) as bare,
        HostProcess(bare, instance="no-runner") as process,
    ):
        report = runner_report(process)
    assert report["ok"] is False
    assert codes(report) == ["runner-not-configured"]
    assert report["runner"] is None
    assert "fluxfleet-role: image-automation" in report["problems"][0]["message"]
