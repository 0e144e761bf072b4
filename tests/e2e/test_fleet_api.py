"""Fleet suspend/resume end to end: the app in the local host against the lab, checked in ground truth.

One lab (20 panels in 2 subscriptions: 2 canary, 6 early, 12 broad) and one host for the module;
each test leaves every panel resumed. The lab runs 60 × faster than real time: agents sync every 5 s,
Arc calls a panel Offline after 15 s, and lab.json scales the app's verify cadence to match (a check
0.5 s after each write, offline panels every 10 s). Tests also tick the agents through the control API
so the verify loop sees reports promptly.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lab.kit import HostProcess, LabHandle, LabProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TIME_SCALE = 60.0
# Small batches, so even these small operations fan out over several messages; enough checks for a
# slow CI machine (lab.json's verify cadence wins over anything set here).
HOST_ENV = {"FLUXFLEET_FLEET_VERIFY_MAX_CHECKS": "240", "FLUXFLEET_FLEET_BATCH_SIZE": "4"}
FINAL_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    with LabProcess(
        tmp_path_factory.mktemp("fleet-lab"), clusters=20, subscriptions=2, time_scale=TIME_SCALE
    ) as handle:
        yield handle


@pytest.fixture(scope="module")
def host(lab: LabHandle) -> Iterator[HostProcess]:
    with HostProcess(lab, env=HOST_ENV) as process:
        yield process


def truth(lab: LabHandle) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in lab.state()["clusters"]}


def ring(lab: LabHandle, name: str) -> list[str]:
    return sorted(n for n, c in truth(lab).items() if c["tags"].get("ring") == name)


@contextlib.contextmanager
def agents_ticking(lab: LabHandle, every_s: float = 0.5) -> Iterator[None]:
    """Make every online agent sync every `every_s` while the block runs (as time passing would)."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                lab.control("POST", "/_lab/agents/tick")
            stop.wait(every_s)

    worker = threading.Thread(target=tick, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(timeout=30)


def change(host: HostProcess, kind: str, body: dict[str, Any], **headers: str) -> Any:
    return host.call("POST", f"/api/fleet/{kind}", json=body, headers=headers)


def wait_final(host: HostProcess, lab: LabHandle, operation_id: str, *, done: Any = None) -> dict[str, Any]:
    """Tick the agents and poll the operation until it is final (and `done(doc)` holds, if given)."""
    deadline = time.monotonic() + FINAL_TIMEOUT_S
    with agents_ticking(lab):
        while True:
            doc: dict[str, Any] = host.call("GET", f"/api/operations/{operation_id}").json()
            if doc["status"] != "running" and (done is None or done(doc)):
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"operation not final in time: {doc['summary']}\n{host.log_text()[-3000:]}"
                )
            time.sleep(0.5)


def run(host: HostProcess, lab: LabHandle, kind: str, target: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = change(host, kind, {"reason": f"e2e {kind}", "target": target, **extra})
    assert response.status_code in (200, 202), response.text
    body = response.json()
    return wait_final(host, lab, body.get("operationId") or body["id"])


def test_suspending_the_canary_ring_stops_exactly_those_panels_applying_revisions(
    host: HostProcess, lab: LabHandle
) -> None:
    canary = ring(lab, "canary")
    response = change(
        host, "suspend", {"reason": "release 2026.08.3", "target": {"tags": {"ring": "canary"}}}
    )
    assert response.status_code == 202
    body = response.json()
    assert response.headers["Location"] == body["statusUrl"]

    doc = wait_final(host, lab, body["operationId"])
    assert doc["status"] == "succeeded"
    assert sorted(c["name"] for c in doc["clusters"]) == canary
    assert all(c["state"] == "succeeded" for c in doc["clusters"])
    assert doc["reason"] == "release 2026.08.3"
    assert doc["requestedBy"].startswith("function-key:")

    before = truth(lab)
    sha = lab.control(
        "POST", "/_lab/devops/files", {"files": {"kubernetes/e2e-marker.txt": "freeze test\n"}}
    )["sha"]
    lab.control("POST", "/_lab/agents/tick")
    after = truth(lab)
    for name, panel in after.items():
        if name in canary:
            assert panel["suspended"] is True
            assert panel["applied_revision"] == before[name]["applied_revision"] != sha
        else:
            assert panel["suspended"] is False
            assert panel["applied_revision"] == sha

    resumed = run(host, lab, "resume", {"tags": {"ring": "canary"}})
    assert resumed["status"] == "succeeded"
    lab.control("POST", "/_lab/agents/tick")
    assert all(truth(lab)[name]["applied_revision"] == sha for name in canary)


def test_a_suspend_within_wait_seconds_answers_with_the_final_document(
    host: HostProcess, lab: LabHandle
) -> None:
    target = {"clusters": ring(lab, "early")[:2]}
    with agents_ticking(lab):
        response = change(host, "suspend", {"reason": "quick freeze", "target": target, "waitSeconds": 60})
    assert response.status_code == 200
    doc = response.json()
    assert doc["status"] == "succeeded"
    assert response.headers["Location"].endswith(doc["id"])
    run(host, lab, "resume", target)


def test_an_offline_panel_ends_pending_offline_then_succeeds_when_it_reconnects(
    host: HostProcess, lab: LabHandle
) -> None:
    offline, online = ring(lab, "broad")[:2]
    lab.control("POST", f"/_lab/clusters/{offline}/connectivity", {"online": False})
    lab.control("POST", "/_lab/clock/advance", {"seconds": 16 * 60})  # Arc says Offline after 15 minutes
    try:
        response = change(
            host, "suspend", {"reason": "offline test", "target": {"clusters": [offline, online]}}
        )
        operation_id = response.json()["operationId"]
        doc = wait_final(host, lab, operation_id)
        states = {c["name"]: c for c in doc["clusters"]}
        assert doc["status"] == "partially-succeeded"
        assert states[offline]["state"] == "pending-offline"
        assert "offline" in states[offline]["detail"]
        assert states[online]["state"] == "succeeded"
        assert truth(lab)[offline]["suspended"] is False  # ARM holds it; the panel has not received it
    finally:
        lab.control("POST", f"/_lab/clusters/{offline}/connectivity", {"online": True})

    doc = wait_final(host, lab, operation_id, done=lambda d: d["status"] == "succeeded")
    assert {c["name"]: c["state"] for c in doc["clusters"]} == {offline: "succeeded", online: "succeeded"}
    assert truth(lab)[offline]["suspended"] is True
    run(host, lab, "resume", {"clusters": [offline, online]})


def test_injected_429s_5xx_and_resets_end_with_every_panel_terminal_or_tracked(
    host: HostProcess, lab: LabHandle
) -> None:
    early = ring(lab, "early")
    faults = [
        {
            "route": "^PATCH .*/fluxConfigurations/",
            "status": 429,
            "count": 3,
            "retry_after": 1,
            "service": "arm",
        },
        {"route": "^PATCH .*/fluxConfigurations/", "status": 503, "count": 2, "service": "arm"},
        {"route": "^PATCH .*/fluxConfigurations/", "reset": True, "count": 2, "service": "arm"},
        {"route": "^GET .*/fluxConfigurations/", "status": 500, "count": 2, "service": "arm"},
    ]
    for fault in faults:
        lab.control("POST", "/_lab/faults", fault)
    try:
        doc = run(host, lab, "suspend", {"tags": {"ring": "early"}})
    finally:
        lab.control("DELETE", "/_lab/faults")
    assert doc["summary"]["total"] == len(early)
    assert doc["summary"]["in-progress"] == 0
    assert {c["state"] for c in doc["clusters"]} <= {
        "succeeded",
        "unchanged",
        "pending-offline",
        "failed",
        "skipped",
    }
    assert doc["status"] == "succeeded", doc["clusters"]
    assert all(truth(lab)[name]["suspended"] for name in early)
    run(host, lab, "resume", {"tags": {"ring": "early"}})


def test_dry_run_shows_the_plan_and_changes_nothing(host: HostProcess, lab: LabHandle) -> None:
    before = truth(lab)
    response = change(host, "suspend", {"reason": "plan", "target": {"all": True}, "dryRun": True})
    assert response.status_code == 200
    plan = response.json()
    assert plan["total"] == len(before)
    assert plan["wouldChange"] == len(before)
    assert all(c["current"]["complianceState"] == "Compliant" for c in plan["clusters"])
    after = truth(lab)
    assert {n: c["config_generation"] for n, c in after.items()} == {
        n: c["config_generation"] for n, c in before.items()
    }


BIG = "x" * (65 * 1024)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"reason": "r", "target": {"tags": {"ring": "canary"}}, "surprise": True}, 400, "surprise"),
        ({"reason": "", "target": {"tags": {"ring": "canary"}}}, 400, "reason"),
        ({"reason": "r", "target": {"tags": {"ring": 1}}}, 400, "target.tags"),
        ({"reason": "r", "target": {"all": True, "subscriptions": ["x"]}}, 400, "target.all"),
        ({"reason": "r", "target": {}}, 400, "target"),
        ({"reason": "r", "target": {"tags": {"ring": "canary"}}, "waitSeconds": 500}, 400, "waitSeconds"),
        ({"reason": "r", "target": {"clusters": ["ipc-panel-9999", "nope"]}}, 422, "target.clusters"),
        ({"reason": "r", "target": {"tags": {"ring": "canary", "site": "atlantis"}}}, 422, "target"),
        ({"reason": BIG, "target": {"all": True}}, 413, "body"),
    ],
)
def test_every_bad_input_gets_its_4xx_and_changes_nothing(
    host: HostProcess, lab: LabHandle, body: dict[str, Any], status: int, field: str
) -> None:
    before = {n: c["config_generation"] for n, c in truth(lab).items()}
    operations = host.call("GET", "/api/operations?limit=200").json()["operations"]
    response = change(host, "suspend", body)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["field"] == field
    assert {n: c["config_generation"] for n, c in truth(lab).items()} == before
    assert host.call("GET", "/api/operations?limit=200").json()["operations"] == operations


def test_a_missing_function_key_is_refused(host: HostProcess) -> None:
    response = host.call(
        "POST", "/api/fleet/suspend", key=None, json={"reason": "r", "target": {"all": True}}
    )
    assert response.status_code == 401


def test_idempotent_retries_and_overlaps(host: HostProcess, lab: LabHandle) -> None:
    target = {"clusters": ring(lab, "broad")[2:4]}
    body = {"reason": "retry-safe", "target": target}
    first = change(host, "suspend", body, **{"Idempotency-Key": "pipeline-run-17"})
    again = change(host, "suspend", body, **{"Idempotency-Key": "pipeline-run-17"})
    assert again.json()["operationId"] == first.json()["operationId"]
    other = change(host, "suspend", {**body, "reason": "different"}, **{"Idempotency-Key": "pipeline-run-17"})
    assert other.status_code == 409
    overlapping = change(
        host, "resume", {"reason": "too early", "target": {"clusters": target["clusters"][:1]}}
    )
    if overlapping.status_code == 409:  # the suspend may already have finished on a fast machine
        assert overlapping.json()["operationId"] == first.json()["operationId"]
    wait_final(host, lab, first.json()["operationId"])
    run(host, lab, "resume", target)


def test_the_inventory_shows_each_panels_flux_state(host: HostProcess, lab: LabHandle) -> None:
    seq = max((r["seq"] for r in lab.control("GET", "/_lab/requests")["requests"]), default=0)
    response = host.call("GET", "/api/fleet?tags=ring:canary")
    sent = lab.control("GET", f"/_lab/requests?since={seq}")["requests"]
    # Issue 13: the inventory comes from Resource Graph, not one ARM GET per panel.
    assert [r["path"] for r in sent if "/fluxconfigurations/" in r["path"].lower()] == []
    assert [r for r in sent if "microsoft.resourcegraph" in r["path"].lower()] != []
    assert response.status_code == 200
    doc = response.json()
    assert sorted(c["name"] for c in doc["clusters"]) == ring(lab, "canary")
    for entry in doc["clusters"]:
        assert entry["configurationExists"] is True
        assert entry["suspended"] is False
        assert entry["connectivity"] == "Connected"
        assert entry["sourceSyncedCommitId"].startswith("main/")
    assert host.call("GET", "/api/fleet?clusters=nope").status_code == 422
