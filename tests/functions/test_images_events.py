"""The Event Grid and queue triggers of image checks, called with real `azure.functions` objects."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from shared.errors import TransientError, Unauthorized
from tests.unit.images.fakes import LOGIN_SERVER, HandlerWorld, handler_world

TOPIC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/ipcplatformacr"
WHEN = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def world() -> Iterator[HandlerWorld]:
    with handler_world() as installed:
        yield installed


def push_data(tag: str, repository: str = "ipc/opcua-gateway") -> dict[str, Any]:
    return {
        "id": "d1",
        "timestamp": "2026-09-01T12:00:00Z",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 1,
            "digest": "sha256:" + "1" * 64,
            "length": 1,
            "repository": repository,
            "tag": tag,
        },
        "request": {"id": "r1", "host": LOGIN_SERVER, "method": "PUT", "useragent": "docker"},
    }


def grid_event(tag: str, event_id: str = "evt-1", **overrides: Any) -> func.EventGridEvent:
    fields: dict[str, Any] = {
        "id": event_id,
        "data": push_data(tag),
        "topic": TOPIC,
        "subject": f"ipc/opcua-gateway:{tag}",
        "event_type": "Microsoft.ContainerRegistry.ImagePushed",
        "event_time": WHEN,
        "data_version": "2.0",
    }
    fields.update(overrides)
    return func.EventGridEvent(**fields)


def cloud_event(tag: str, event_id: str = "evt-2") -> func.CloudEvent:
    return func.CloudEvent(
        id=event_id,
        source=TOPIC,
        type="Microsoft.ContainerRegistry.ImagePushed",
        specversion="1.0",
        data=push_data(tag),
        time=WHEN,
        subject=f"ipc/opcua-gateway:{tag}",
    )


def deliver(event: Any) -> None:
    from functions.images import image_pushed

    image_pushed.build().get_user_function()(event)


def follow_up(body: bytes) -> None:
    from functions.images import image_follow_up

    image_follow_up.build().get_user_function()(func.QueueMessage(id="m1", body=body))


def test_an_event_grid_push_stores_its_verdict(world: HandlerWorld) -> None:
    deliver(grid_event("v1.5.0"))
    [(record, _etag)] = world.store.checks.values()
    assert (record.verdict.ref.tag, record.verdict.verdict) == ("v1.5.0", "will-roll-out")
    assert record.event_id == "evt-1"


def test_a_cloud_event_push_is_judged_the_same_way(world: HandlerWorld) -> None:
    deliver(cloud_event("v1.0.0"))
    [(record, _etag)] = world.store.checks.values()
    assert record.verdict.verdict == "not-latest"


def test_duplicate_deliveries_give_one_verdict(world: HandlerWorld) -> None:
    deliver(grid_event("v1.5.0"))
    deliver(grid_event("v1.5.0"))
    deliver(grid_event("v1.5.0"))
    assert len(world.store.checks) == 1
    assert len(world.queue.messages) == 1


def test_a_malformed_event_is_rejected_with_a_log_line_and_no_crash(
    world: HandlerWorld, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fluxfleet.images"):
        deliver(grid_event("v1.5.0", data={"target": "nonsense"}))
    assert world.store.checks == {}
    assert any("malformed event rejected" in record.getMessage() for record in caplog.records)


def test_other_event_types_are_ignored(world: HandlerWorld) -> None:
    deliver(grid_event("v1.5.0", event_type="Microsoft.ContainerRegistry.ImageDeleted"))
    assert world.store.checks == {}


def test_a_transient_failure_is_raised_so_event_grid_redelivers(world: HandlerWorld) -> None:
    def down(*, repository: str) -> list[str]:
        raise TransientError("registry unavailable")

    world.registry.list_tags = down  # type: ignore[method-assign]
    with pytest.raises(TransientError):
        deliver(grid_event("v1.5.0"))
    assert world.store.checks == {}  # nothing stored: the redelivery will be processed


def test_a_permanent_failure_is_logged_and_not_retried(
    world: HandlerWorld, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(*, branch: str) -> str:
        raise Unauthorized("the app identity is not a member of the organization")

    world.repo.head_commit = refused  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="fluxfleet.images"):
        deliver(grid_event("v1.5.0"))
    assert any("failed for good" in record.getMessage() for record in caplog.records)


def test_a_follow_up_message_runs_the_follow_up(world: HandlerWorld) -> None:
    deliver(grid_event("v1.5.0"))
    [(record, _etag)] = world.store.checks.values()
    follow_up(f'{{"checkId": "{record.id}", "attempt": 1}}'.encode())
    updated, _ = world.store.checks[record.id]
    assert updated.follow_up is not None
    assert updated.follow_up.attempts == 1


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"checkId": "x", "attempt": 1}', b'{"checkId": 1}'])
def test_a_malformed_follow_up_message_is_dropped(
    world: HandlerWorld, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fluxfleet.images"):
        follow_up(body)
    assert any("malformed follow-up" in record.getMessage() for record in caplog.records)
