"""Scale-out: two local hosts on one queue share one ARM write budget; a host restart loses no panel.

One lab of 260 panels in one subscription, with ARM's real throttling (200 writes burst, 10/s): a
fleet-wide suspend needs more writes than the burst, so instances that each paced on their own would
spend the budget twice and collect 429s. Run with the shared Table-storage bucket, the lab sees (next
to) none, and the writes take as long as ARM's bucket says they must.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lab.kit import HostProcess, LabHandle, LabProcess
from tests.e2e.test_fleet_api import HOST_ENV, agents_ticking, truth

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PANELS = 260
WRITE_BURST, WRITE_RATE = 200, 10.0
HOST_ENV_SCALE = {**HOST_ENV, "FLUXFLEET_FLEET_BATCH_SIZE": "10"}
ACCEPT_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    # Factory panels only: the write budget and restarts are what is measured, not the image-automation
    # runner (which `all` would select as the 261st cluster).
    with LabProcess(
        tmp_path_factory.mktemp("scale-lab"), clusters=PANELS, subscriptions=1, runner=False
    ) as handle:
        yield handle


def arm_requests(lab: LabHandle) -> list[dict[str, Any]]:
    return list(lab.control("GET", "/_lab/requests?service=arm")["requests"])


def patches(lab: LabHandle) -> list[dict[str, Any]]:
    return [r for r in arm_requests(lab) if r["method"] == "PATCH" and "/fluxConfigurations/" in r["path"]]


def wait_accepted(host: HostProcess, operation_id: str, expected: int) -> dict[str, Any]:
    """Until ARM accepted the change on every panel (or the panel settled otherwise)."""
    deadline = time.monotonic() + ACCEPT_TIMEOUT_S
    while True:
        doc: dict[str, Any] = host.call("GET", f"/api/operations/{operation_id}").json()
        accepted = sum(
            1 for c in doc["clusters"] if c["acceptedAt"] or c["state"] not in ("queued", "applying")
        )
        if accepted >= expected:
            return doc
        if time.monotonic() > deadline:
            raise AssertionError(f"only {accepted}/{expected} accepted: {doc['summary']}")
        time.sleep(0.5)


def wait_final(host: HostProcess, lab: LabHandle, operation_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + ACCEPT_TIMEOUT_S
    with agents_ticking(lab, every_s=1.0):
        while True:
            doc: dict[str, Any] = host.call("GET", f"/api/operations/{operation_id}").json()
            if doc["status"] != "running":
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"not final in time: {doc['summary']}")
            time.sleep(0.5)


def test_two_hosts_on_one_queue_share_the_write_budget_without_429s(lab: LabHandle) -> None:
    assert lab.control("GET", "/_lab/arm/throttling")["enabled"] is True
    lab.control("POST", "/_lab/reset")
    with (
        HostProcess(lab, instance="host-a", env=HOST_ENV_SCALE) as first,
        HostProcess(lab, instance="host-b", env=HOST_ENV_SCALE) as second,
    ):
        started = time.monotonic()
        response = first.call(
            "POST", "/api/fleet/suspend", json={"reason": "scale-out", "target": {"all": True}}
        )
        assert response.status_code == 202
        operation_id = response.json()["operationId"]
        doc = wait_accepted(second, operation_id, PANELS)
        elapsed = time.monotonic() - started

        writes = patches(lab)
        throttled = sum(1 for r in writes if r["status"] == 429)
        assert len(writes) - throttled == PANELS
        assert throttled <= PANELS // 100, f"{throttled} 429s for {len(writes)} writes"
        # ARM's bucket bounds the pace: the writes beyond the burst cannot go faster than the refill.
        assert elapsed >= (PANELS - WRITE_BURST) / WRITE_RATE * 0.9
        # Both hosts did the work.
        assert "function=fleet_apply" in first.log_text()
        assert "function=fleet_apply" in second.log_text()
        assert doc["summary"]["total"] == PANELS
        final = wait_final(first, lab, operation_id)
    assert final["status"] == "succeeded"
    assert final["summary"]["succeeded"] == PANELS


def test_a_host_restart_mid_operation_loses_no_panel_and_patches_none_twice(lab: LabHandle) -> None:
    lab.control("POST", "/_lab/reset")
    names = sorted(truth(lab))[:40]
    # Slow ARM down so the operation is still running when the host goes away.
    lab.control(
        "POST",
        "/_lab/faults",
        {"route": "^PATCH .*/fluxConfigurations/", "latency_ms": 700, "service": "arm"},
    )
    env = {**HOST_ENV, "FLUXFLEET_FLEET_BATCH_SIZE": "4"}
    first = HostProcess(lab, instance="host-before", env=env).start()
    try:
        response = first.call(
            "POST", "/api/fleet/suspend", json={"reason": "restart", "target": {"clusters": names}}
        )
        operation_id = response.json()["operationId"]
        deadline = time.monotonic() + 60
        while len(patches(lab)) < 5:  # some panels written, most not yet
            assert time.monotonic() < deadline, "no write reached ARM"
            time.sleep(0.1)
    finally:
        assert first.stop() == 0
    done_before = len(patches(lab))
    assert done_before < len(names)

    with HostProcess(lab, instance="host-after", env=env) as second:
        lab.control("DELETE", "/_lab/faults")
        doc = wait_final(second, lab, operation_id)
        assert "function=fleet_apply" in second.log_text()

    assert doc["status"] == "succeeded", doc["summary"]
    assert doc["summary"]["succeeded"] == len(names)
    per_panel = collections.Counter(
        r["path"].split("/connectedClusters/")[1].split("/")[0] for r in patches(lab)
    )
    assert sorted(per_panel) == names
    assert set(per_panel.values()) == {1}, per_panel
    ground = truth(lab)
    assert all(ground[name]["suspended"] for name in names)
