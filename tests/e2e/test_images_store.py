"""The image checks' storage adapters (`TableCheckStore`, `QueueFollowUps`) against the lab's Azurite,
with the real `azure-data-tables` and `azure-storage-queue` clients the app builds."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.clients import AzureClients
from shared.adapters.image_store import QueueFollowUps, TableCheckStore
from shared.config import Settings
from shared.errors import Conflict
from shared.models.images import (
    CheckRecord,
    CommitId,
    FollowUp,
    ImageRef,
    MarkerChange,
    PanelOutcome,
    PolicyVerdict,
    Verdict,
    make_check_id,
)
from tests.labkit import LabHandle

pytestmark = pytest.mark.lab

IMAGE = "127.0.0.1:5000/ipc/opcua-gateway"
T0 = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clients(lab: LabHandle) -> Iterator[AzureClients]:
    with lab.applied_env():
        built = AzureClients(Settings.from_env(dict(os.environ)))
        yield built
        for name in ("tables", "queues"):
            if name in built.__dict__:  # only the clients a test built (cached_property)
                getattr(built, name).close()


@pytest.fixture
def store(clients: AzureClients) -> TableCheckStore:
    return TableCheckStore(service=clients.tables, table=f"ffimagetest{uuid.uuid4().hex[:8]}")


def record(
    tag: str, *, at: datetime = T0, reason: str = "ImagePolicy flux-system/opcua-gateway selects it"
) -> CheckRecord:
    marker = MarkerChange(
        "kubernetes/workloads/a/deployment.yaml", 33, "flux-system:a", f"{IMAGE}:v1", f"{IMAGE}:{tag}"
    )
    verdict = Verdict(
        ref=ImageRef(IMAGE, tag, "sha256:" + "a" * 64),
        verdict="will-roll-out",
        reason=reason,
        commit=CommitId("c" * 40),
        branch="main",
        policies=(
            PolicyVerdict(
                "flux-system/a", "flux-system/a", "will-roll-out", reason, selected=tag, markers=(marker,)
            ),
        ),
    )
    follow_up = FollowUp(
        status="done",
        attempts=2,
        outcome="committed-not-applied",
        reason="1 suspended",
        checked_at=at,
        commit=CommitId("d" * 40),
        panels_total=2,
        panels_applied=1,
        panel_states={"applied": 1, "suspended": 1},
        not_applied=(PanelOutcome("ipc-panel-0002", "suspended", "the Flux configuration is suspended"),),
    )
    check_id = make_check_id(canonical_image=IMAGE, created_at=at, salt=uuid.uuid4().hex[:8])
    return CheckRecord(check_id, verdict, "push", at, event_id=str(uuid.uuid4()), follow_up=follow_up)


def test_a_stored_check_reads_back_exactly(store: TableCheckStore) -> None:
    check = record("v1.5.0")
    assert store.create_check(record=check, image=IMAGE) is None
    stored = store.get_check(check_id=check.id)
    assert stored is not None
    assert stored.record.to_document() == check.to_document()


def test_storing_the_same_check_twice_returns_the_first(store: TableCheckStore) -> None:
    first = record("v1.5.0")
    store.create_check(record=first, image=IMAGE)
    again = store.create_check(record=replace(first, trigger="preflight"), image=IMAGE)
    assert again is not None
    assert again.record.trigger == "push"


def test_an_update_with_a_stale_etag_is_a_conflict(store: TableCheckStore) -> None:
    check = record("v1.5.0")
    store.create_check(record=check, image=IMAGE)
    stored = store.get_check(check_id=check.id)
    assert stored is not None
    store.update_check(record=check, image=IMAGE, etag=stored.etag)
    with pytest.raises(Conflict):
        store.update_check(record=check, image=IMAGE, etag=stored.etag)


def test_checks_are_listed_newest_first_by_image_and_tag(store: TableCheckStore) -> None:
    older, newer, other = (
        record("v1.5.0", at=T0),
        record("v1.5.0", at=T0 + timedelta(minutes=1)),
        record("v1.6.0", at=T0 + timedelta(minutes=2)),
    )
    for check in (older, newer, other):
        store.create_check(record=check, image=IMAGE)
    assert [check.id for check in store.list_checks(image=IMAGE, tag="v1.5.0", limit=10)] == [
        newer.id,
        older.id,
    ]
    assert [check.id for check in store.list_checks(image=IMAGE, tag=None, limit=2)] == [other.id, newer.id]


def test_a_document_larger_than_one_table_property_round_trips(store: TableCheckStore) -> None:
    check = record("v1.5.0", reason="x" * 100_000)  # a Table string property holds 64 KiB
    store.create_check(record=check, image=IMAGE)
    stored = store.get_check(check_id=check.id)
    assert stored is not None
    assert stored.record.verdict.reason == check.verdict.reason


def test_a_follow_up_is_queued_for_the_functions_trigger_with_its_delay(clients: AzureClients) -> None:
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy

    name = f"ff-image-test-{uuid.uuid4().hex[:8]}"
    follow_ups = QueueFollowUps(service=clients.queues, queue=name)
    check = record("v1.5.0")
    follow_ups.schedule(check_id=check.id, attempt=1, delay_s=0)
    follow_ups.schedule(check_id=check.id, attempt=2, delay_s=3600)
    settings = Settings.from_env(dict(os.environ))
    assert settings.storage_connection is not None
    with QueueClient.from_connection_string(
        settings.storage_connection, name, message_decode_policy=TextBase64DecodePolicy()
    ) as reader:
        visible = [json.loads(message.content) for message in reader.receive_messages(max_messages=32)]
        assert visible == [{"checkId": check.id, "attempt": 1}]
        assert reader.get_queue_properties().approximate_message_count == 2
