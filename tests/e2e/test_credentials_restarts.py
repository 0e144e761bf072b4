"""A rollout survives a bad day: ARM and Key Vault faults, and the host killed in the middle of it.

The rollout is started over HTTP while the lab answers some ARM writes and reads with 503s and resets
and some Key Vault reads with 503s; then the host is killed (SIGKILL, no graceful stop) and a new one
is started on the same storage. Work travels as queue messages and state lives in Table storage, so the
new host finishes the rollout: every online factory panel proven on the current PAT in the lab's ground
truth, while the image-automation runner keeps its own write PAT. Rolling the same version out again
then writes nothing to ARM.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from tests.e2e.hostkit import HostProcess
from tests.labkit import LabHandle, LabProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

T = TypeVar("T")
PANELS = 12
ROLLOUT_TIMEOUT_S = 180.0
TICK_EVERY_S = 2.0
# Lab time runs 20 × real time, so the app's convergence checks (every 30 lab s, scaled by lab.json's
# settings, which win over the host's own) come every 1.5 s.
TIME_SCALE = 20.0
HOST_ENV = {
    "FLUXFLEET_FLEET_VERIFY_MAX_CHECKS": "80",
    # Small batches, so the kill lands between messages of one rollout.
    "FLUXFLEET_FLEET_BATCH_SIZE": "2",
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    with LabProcess(
        tmp_path_factory.mktemp("restarts-lab"), clusters=PANELS, subscriptions=1, time_scale=TIME_SCALE
    ) as handle:
        yield handle


def wait_for(
    what: str, probe: Callable[[], T | None], *, lab: LabHandle, timeout: float = ROLLOUT_TIMEOUT_S
) -> T:
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


def current_fingerprint(lab: LabHandle) -> str:
    with (
        lab.applied_env(),
        SecretClient(
            lab.doc["keyvault"]["url"], ManagedIdentityCredential(), verify_challenge_resource=False
        ) as client,
    ):
        value = client.get_secret("flux-gitops-pat").value
    assert value is not None
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def arm_patches(lab: LabHandle) -> int:
    entries = lab.control("GET", "/_lab/requests?service=arm")["requests"]
    return sum(
        1 for e in entries if e.get("method") == "PATCH" and "fluxConfigurations" in str(e.get("path"))
    )


def finished(host: HostProcess, operation_id: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        document: dict[str, Any] = host.call("GET", f"/api/operations/{operation_id}").json()
        return document if document["status"] != "running" else None

    return probe


def test_a_rollout_interrupted_by_faults_and_a_killed_host_resumes_to_completion(lab: LabHandle) -> None:
    faults = [
        {"service": "arm", "route": r"PATCH .*/fluxConfigurations/", "status": 503, "rate": 0.5, "count": 4},
        {"service": "arm", "route": r"GET .*/fluxConfigurations/", "reset": True, "rate": 0.2, "count": 3},
        {
            "service": "keyvault",
            "route": r"GET /secrets/flux-gitops-pat/[0-9a-f]+",
            "status": 503,
            "count": 2,
        },
    ]
    for fault in faults:
        lab.control("POST", "/_lab/faults", fault)
    first = HostProcess(lab, instance="restarts-1", env=HOST_ENV).start()
    try:
        started = first.call("POST", "/api/credentials/rollout", json={"reason": "rotation drill"})
        assert started.status_code == 202, started.text
        operation_id = started.json()["operationId"]
        # Let some of the work happen, then pull the plug.
        wait_for(
            "the first ARM writes",
            lambda: True if arm_patches(lab) >= 3 else None,
            lab=lab,
            timeout=60,
        )
    finally:
        first.kill()
    with HostProcess(lab, instance="restarts-2", env=HOST_ENV) as second:
        document = wait_for("the rollout to finish", finished(second, operation_id), lab=lab)
        assert document["status"] == "succeeded", document["clusters"]
        assert {c["state"] for c in document["clusters"]} == {"succeeded"}
        everything = lab.state()["clusters"]
        # The fleet PAT is for factory panels only: the image-automation runner keeps its own write PAT.
        truth = [c for c in everything if not c["runner"]]
        [runner] = [c for c in everything if c["runner"]]
        expected = current_fingerprint(lab)
        assert len(truth) == PANELS
        assert all(c["credential_fingerprint"] == expected for c in truth)
        assert all(c["last_fetch"]["ok"] for c in truth)
        assert not any(c["credential_can_push"] for c in truth)
        assert runner["credential_fingerprint"] != expected
        assert runner["credential_can_push"] is True
        assert {c["name"] for c in document["clusters"]} == {c["name"] for c in truth}
        assert second.call("GET", "/api/credentials").json()["panels"]["proven"] == PANELS

        lab.control("DELETE", "/_lab/faults")
        patches = arm_patches(lab)
        again = second.call("POST", "/api/credentials/rollout", json={"reason": "run it again"})
        assert again.status_code == 202, again.text
        repeat = wait_for("the repeated rollout", finished(second, again.json()["operationId"]), lab=lab)
        assert {c["state"] for c in repeat["clusters"]} == {"unchanged"}
        assert arm_patches(lab) == patches
