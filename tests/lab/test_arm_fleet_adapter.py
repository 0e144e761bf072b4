"""The fleet adapters with the real SDKs against the lab: ARM (connectedClusters, fluxConfigurations with
LROs and throttling headers), Table storage (rows, ETags, locks, idempotency, buckets) and Queues."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.arm_fleet import ArmFleet
from shared.adapters.clients import AzureClients
from shared.adapters.operation_store import TableBucketStore, TableOperationStore
from shared.adapters.work_queue import StorageWorkQueue
from shared.config import Settings
from shared.errors import NotFound, PermanentError
from shared.models import ClusterId, OperationId, PanelState
from shared.ports import BucketRow, ConcurrentUpdate, OperationRecord, PanelRecord
from tests.labkit import LabHandle

pytestmark = pytest.mark.lab

CONFIG = "ipc-platform-config"


class Observed:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def observe(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


@pytest.fixture(scope="module")
def clients(lab: LabHandle) -> Iterator[AzureClients]:
    with lab.applied_env():
        settings = Settings.from_env(lab.env)
        yield AzureClients(settings)


@pytest.fixture
def arm(clients: AzureClients) -> tuple[ArmFleet, Observed]:
    observed = Observed()
    return ArmFleet(clients, observer=observed), observed


def test_listing_panels_matches_the_labs_fleet(lab: LabHandle, arm: tuple[ArmFleet, Observed]) -> None:
    fleet, _ = arm
    truth = {c["name"]: c for c in lab.state()["clusters"]}
    panels = fleet.list_panels(subscriptions=Settings.from_env(lab.env).subscription_ids)
    assert sorted(p.name for p in panels) == sorted(truth)
    for panel in panels:
        expected = truth[panel.name]
        assert panel.id.lower() == expected["id"].lower()
        assert panel.resource_group == expected["resourceGroup"]
        assert dict(panel.tags) == expected["tags"]
        assert panel.connectivity in ("Connected", "Connecting", "Offline")


def test_reading_a_flux_configuration_gives_the_agents_report(
    lab: LabHandle, arm: tuple[ArmFleet, Observed]
) -> None:
    fleet, observed = arm
    panel = fleet.list_panels(subscriptions=[Settings.from_env(lab.env).subscription_ids[0]])[0]
    state = fleet.get_flux_state(panel=panel, configuration=CONFIG)
    assert state is not None
    assert state.compliance_state == "Compliant"
    assert state.git_repository is not None
    assert state.git_repository.ready is True
    assert state.source_synced_commit_id
    assert state.source_synced_commit_id.startswith("main/")
    assert state.status_updated_at is not None
    assert state.modified_at is not None
    assert any(call["kind"] == "reads" and call["remaining"] is not None for call in observed.calls)
    assert fleet.get_flux_state(panel=panel, configuration="no-such-config") is None


def test_a_missing_cluster_is_not_found(lab: LabHandle, arm: tuple[ArmFleet, Observed]) -> None:
    fleet, _ = arm
    sub = Settings.from_env(lab.env).subscription_ids[0]
    ghost = ClusterId(
        f"/subscriptions/{sub}/resourceGroups/rg-ipc-platform-arc/providers/Microsoft.Kubernetes/connectedClusters/ghost"
    )
    with pytest.raises(NotFound):
        fleet.get_panel(panel_id=ghost)


def test_a_patch_is_accepted_on_arms_clock_and_its_lro_shows_in_provisioning_state(
    lab_clean: LabHandle, arm: tuple[ArmFleet, Observed]
) -> None:
    fleet, observed = arm
    panel = fleet.list_panels(subscriptions=[Settings.from_env(lab_clean.env).subscription_ids[0]])[0]
    lab_now = datetime.fromisoformat(lab_clean.control("GET", "/_lab/clock")["now"].replace("Z", "+00:00"))
    write = fleet.begin_patch(panel=panel, configuration=CONFIG, patch={"suspend": True})
    assert abs(write.accepted_at - lab_now) < timedelta(minutes=1)
    assert write.changed
    state = fleet.get_flux_state(panel=panel, configuration=CONFIG)
    assert state is not None
    assert state.suspended
    assert state.provisioning_state in ("Updating", "Succeeded")
    deadline = time.monotonic() + 30
    while state is not None and state.provisioning_state != "Succeeded" and time.monotonic() < deadline:
        time.sleep(0.5)
        state = fleet.get_flux_state(panel=panel, configuration=CONFIG)
    assert state is not None
    assert state.provisioning_state == "Succeeded"
    again = fleet.begin_patch(panel=panel, configuration=CONFIG, patch={"suspend": True})
    assert not again.changed  # ARM's 200: it already held exactly this
    writes = [c for c in observed.calls if c["kind"] == "writes"]
    assert writes
    assert writes[0]["remaining"] is not None
    assert not writes[0]["throttled"]
    assert fleet.stats.writes == 2


def test_a_429_is_reported_to_the_pacer_and_retried(
    lab_clean: LabHandle, arm: tuple[ArmFleet, Observed]
) -> None:
    fleet, observed = arm
    panel = fleet.list_panels(subscriptions=[Settings.from_env(lab_clean.env).subscription_ids[0]])[1]
    lab_clean.control(
        "POST",
        "/_lab/faults",
        {
            "route": "^PATCH .*/fluxConfigurations/",
            "status": 429,
            "count": 1,
            "retry_after": 1,
            "service": "arm",
        },
    )
    assert fleet.begin_patch(panel=panel, configuration=CONFIG, patch={"suspend": True}).changed
    throttled = [c for c in observed.calls if c["throttled"]]
    assert throttled
    assert throttled[0]["kind"] == "writes"
    assert throttled[0]["retry_after_s"] == 1
    assert fleet.stats.writes_throttled == 1
    assert fleet.stats.writes == 2


def test_a_permanent_arm_error_is_mapped(lab_clean: LabHandle, arm: tuple[ArmFleet, Observed]) -> None:
    fleet, _ = arm
    panel = fleet.list_panels(subscriptions=[Settings.from_env(lab_clean.env).subscription_ids[0]])[2]
    lab_clean.control(
        "POST",
        "/_lab/faults",
        {"route": "^PATCH .*/fluxConfigurations/", "status": 400, "count": 1, "service": "arm"},
    )
    with pytest.raises(PermanentError):
        fleet.begin_patch(panel=panel, configuration=CONFIG, patch={"suspend": True})


class CountingPacer:
    """Counts the tokens taken (pacing itself is tested in tests/unit/fleet/test_pacing.py)."""

    def __init__(self) -> None:
        self.acquired: list[tuple[str, str]] = []

    def acquire(self, *, subscription: str, kind: str) -> float:
        self.acquired.append((subscription.lower(), kind))
        return 0.0


def test_every_arm_request_takes_a_token_of_its_subscription_and_kind_first(
    lab_clean: LabHandle, clients: AzureClients
) -> None:
    """The ARM boundary paces every HTTP request it sends — each page of a list, each read, each write,
    and the retries azure-core makes on its own — whoever asks (engine, inventory, images, health)."""
    pacer = CountingPacer()
    fleet = ArmFleet(clients, pacer=pacer)
    subscriptions = Settings.from_env(lab_clean.env).subscription_ids
    since = max(
        (e["seq"] for e in lab_clean.control("GET", "/_lab/requests?service=arm")["requests"]), default=0
    )
    panels = fleet.list_panels(subscriptions=subscriptions)
    by_subscription = {sub: next(p for p in panels if p.subscription == sub) for sub in subscriptions}
    for panel in by_subscription.values():
        assert fleet.get_flux_state(panel=panel, configuration=CONFIG) is not None
    lab_clean.control(
        "POST",
        "/_lab/faults",
        {
            "route": "^PATCH .*/fluxConfigurations/",
            "status": 503,
            "count": 1,
            "retry_after": 1,
            "service": "arm",
        },
    )
    for panel in by_subscription.values():
        fleet.begin_patch(panel=panel, configuration=CONFIG, patch={"suspend": True})
    fleet.probe(subscription=subscriptions[0])
    sent = lab_clean.control("GET", f"/_lab/requests?service=arm&since={since}")["requests"]
    assert len(pacer.acquired) == len(sent)
    writes = [a for a in pacer.acquired if a[1] == "writes"]
    # Two PATCHes, one of them retried by azure-core after the injected 503: three writes, three tokens.
    assert sorted(set(writes)) == sorted((sub.lower(), "writes") for sub in subscriptions)
    assert len(writes) == 3
    assert sum(1 for a in pacer.acquired if a[1] == "reads") >= 4


# --- storage ----------------------------------------------------------------------------------------------


def _operation(op_id: str) -> OperationRecord:
    now = datetime.now(UTC)
    return OperationRecord(
        id=OperationId(op_id),
        kind="suspend",
        status="running",
        reason="adapter test",
        requested_by="tests",
        created_at=now,
        updated_at=now,
        configuration=CONFIG,
        params={},
        selection={"clusters": ["x" * 40_000]},  # longer than one Table string property
        stage_names=("all",),
        stage_thresholds=(0.0,),
        total=2,
    )


def _panel(op_id: str, name: str) -> PanelRecord:
    return PanelRecord(
        operation_id=OperationId(op_id),
        key=f"sub:rg:{name}",
        panel_id=ClusterId(
            f"/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Kubernetes/connectedClusters/{name}"
        ),
        name=name,
        subscription="sub",
        resource_group="rg",
        stage=0,
        state=PanelState.QUEUED,
        tags={"ring": "canary"},
        updated_at=datetime.now(UTC),
    )


def test_operation_rows_round_trip_and_lose_races_by_etag(clients: AzureClients) -> None:
    store = TableOperationStore(clients.tables)
    op_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-adaptertest"
    store.create_operation(_operation(op_id), [_panel(op_id, "a"), _panel(op_id, "b")])

    record = store.get_operation(op_id)
    assert record is not None
    assert record.selection == {"clusters": ["x" * 40_000]}
    assert store.list_operations(kind="suspend", limit=1)[0].id == op_id
    updated = store.replace_operation(replace(record, status="succeeded"))
    with pytest.raises(ConcurrentUpdate):
        store.replace_operation(record)  # stale ETag
    assert updated.etag != record.etag

    rows = store.get_panels(op_id, keys=["sub:rg:b", "sub:rg:a"])
    assert sorted(r.name for r in rows) == ["a", "b"]
    assert rows[0].tags == {"ring": "canary"}
    assert store.has_unsettled(op_id, stage=0)
    first = rows[0]
    store.replace_panel(replace(first, state=PanelState.SUCCEEDED))
    with pytest.raises(ConcurrentUpdate):
        store.replace_panel(replace(first, state=PanelState.FAILED))
    store.replace_panel(replace(rows[1], state=PanelState.SKIPPED))
    assert not store.has_unsettled(op_id)


def test_locks_refuse_a_running_owner_and_pass_from_a_finished_one(clients: AzureClients) -> None:
    store = TableOperationStore(clients.tables)
    running = {"op-1": True, "op-2": False}
    group = f"lock-test-{datetime.now(UTC):%H%M%S%f}"
    assert (
        store.take_locks(group=group, operation_id="op-1", keys=["p1", "p2"], is_running=running.get) is None
    )
    assert (
        store.take_locks(group=group, operation_id="op-2", keys=["p2", "p3"], is_running=running.get)
        == "op-1"
    )
    assert store.lock_owner(group=group, key="p3") is None  # nothing taken when refused
    running["op-1"] = False
    assert (
        store.take_locks(group=group, operation_id="op-2", keys=["p2", "p3"], is_running=running.get) is None
    )
    assert store.lock_owner(group=group, key="p2") == "op-2"


def test_an_idempotency_key_maps_to_its_first_operation(clients: AzureClients) -> None:
    store = TableOperationStore(clients.tables)
    key = f"key-{datetime.now(UTC).timestamp()}"
    assert store.claim_idempotency(scope="test", key=key, request_hash="h1", operation_id="op-a") is None
    assert store.claim_idempotency(scope="test", key=key, request_hash="h2", operation_id="op-b") == (
        "op-a",
        "h1",
    )
    store.release_idempotency(scope="test", key=key, operation_id="op-b")  # not its owner: no effect
    assert store.claim_idempotency(scope="test", key=key, request_hash="h3", operation_id="op-c") == (
        "op-a",
        "h1",
    )
    store.release_idempotency(scope="test", key=key, operation_id="op-a")
    assert store.claim_idempotency(scope="test", key=key, request_hash="h2", operation_id="op-b") is None


def test_bucket_rows_are_compare_and_swap(clients: AzureClients) -> None:
    buckets = TableBucketStore(clients.tables)
    key = f"arm:test-{datetime.now(UTC).timestamp()}:writes"
    created = buckets.create(BucketRow(key=key, tokens=200, updated=1.0))
    assert created is not None
    assert buckets.create(BucketRow(key=key, tokens=1, updated=1.0)) is None
    taken = buckets.replace(BucketRow(key=key, tokens=195, updated=2.0, etag=created.etag))
    assert taken is not None
    assert buckets.replace(BucketRow(key=key, tokens=190, updated=3.0, etag=created.etag)) is None
    stored = buckets.read(key)
    assert stored is not None
    assert stored.tokens == 195


def test_queue_messages_are_base64_json_and_delays_hide_them(clients: AzureClients) -> None:
    from azure.storage.queue import QueueClient

    queue_name = f"ff-test-{int(datetime.now(UTC).timestamp())}"
    work = StorageWorkQueue(clients.queues)
    work.send(queue=queue_name, message={"v": 1, "op": "x", "panels": ["a"]})
    work.send(queue=queue_name, message={"v": 1, "op": "later", "panels": []}, delay_s=60)
    raw = QueueClient.from_connection_string(clients.settings.require("storage_connection"), queue_name)
    messages = list(raw.receive_messages(max_messages=10))
    assert len(messages) == 1  # the delayed one is invisible
    assert json.loads(base64.b64decode(messages[0].content)) == {"op": "x", "panels": ["a"], "v": 1}
    raw.delete_queue()


def test_a_write_refused_with_409_because_another_operation_runs_is_transient_and_free(
    lab_clean: LabHandle, arm: tuple[ArmFleet, Observed]
) -> None:
    """Issue 12, finding 8: a suspend and a credential rollout touching one panel must not fail it."""
    from shared.errors import Busy

    fleet, _ = arm
    panel = fleet.list_panels(subscriptions=Settings.from_env(lab_clean.env).subscription_ids)[0]
    lab_clean.control(
        "POST",
        "/_lab/faults",
        {"route": "^PATCH .*/fluxConfigurations/", "status": 409, "count": 1, "service": "arm"},
    )
    with pytest.raises(Busy) as raised:
        fleet.begin_patch(panel=panel, configuration=CONFIG, patch={"suspend": True})
    assert raised.value.transient
    assert not raised.value.counts_as_attempt
    fleet.begin_patch(panel=panel, configuration=CONFIG, patch={"suspend": True})  # the fault is spent


def test_an_abandoned_idempotency_claim_is_taken_over_only_while_it_still_names_the_dead_request(
    clients: AzureClients,
) -> None:
    store = TableOperationStore(clients.tables)
    key = f"key-{datetime.now(UTC).timestamp()}"
    assert store.claim_idempotency(scope="test", key=key, request_hash="h1", operation_id="op-dead") is None
    taken = {"abandoned_id": "op-other", "operation_id": "op-new", "request_hash": "h2"}
    assert not store.take_over_idempotency(scope="test", key=key, **taken)
    taken["abandoned_id"] = "op-dead"
    assert store.take_over_idempotency(scope="test", key=key, **taken)
    assert not store.take_over_idempotency(scope="test", key=key, **taken), "only once"
    assert store.claim_idempotency(scope="test", key=key, request_hash="h3", operation_id="op-x") == (
        "op-new",
        "h2",
    )
