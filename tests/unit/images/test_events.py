"""ACR ImagePushed events in both Event Grid schemas, and what is ignored or rejected."""

from __future__ import annotations

from typing import Any

import pytest

from shared.services.images.events import IgnoredEvent, MalformedEvent, parse_push_event

DATA: dict[str, Any] = {
    "id": "c25f0b4c-0000-4000-8000-000000000001",
    "timestamp": "2026-09-01T12:00:00.468Z",
    "action": "push",
    "location": "westeurope",
    "target": {
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "size": 1153,
        "digest": "sha256:" + "5" * 64,
        "length": 1153,
        "repository": "ipc/opcua-gateway",
        "tag": "v1.5.0",
    },
    "request": {"id": "9f8f", "host": "IPCPlatformACR.azurecr.io", "method": "PUT", "useragent": "docker"},
}


def event_grid(**overrides: Any) -> dict[str, Any]:
    event = {
        "id": "evt-1",
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r",
        "subject": "ipc/opcua-gateway:v1.5.0",
        "eventType": "Microsoft.ContainerRegistry.ImagePushed",
        "eventTime": "2026-09-01T12:00:01Z",
        "dataVersion": "2.0",
        "metadataVersion": "1",
        "data": DATA,
    }
    event.update(overrides)
    return event


def cloud_event(**overrides: Any) -> dict[str, Any]:
    event = {
        "id": "evt-2",
        "source": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r",
        "subject": "ipc/opcua-gateway:v1.5.0",
        "type": "Microsoft.ContainerRegistry.ImagePushed",
        "time": "2026-09-01T12:00:02Z",
        "specversion": "1.0",
        "data": DATA,
    }
    event.update(overrides)
    return event


def test_event_grid_schema_push_names_registry_repository_tag_and_digest() -> None:
    pushed = parse_push_event(event_grid(), default_registry=None)
    assert pushed.ref.image == "ipcplatformacr.azurecr.io/ipc/opcua-gateway"
    assert (pushed.ref.tag, pushed.ref.digest) == ("v1.5.0", "sha256:" + "5" * 64)
    assert pushed.event_id == "evt-1"
    assert pushed.schema == "EventGridSchema"
    assert pushed.pushed_at.isoformat() == "2026-09-01T12:00:01+00:00"


def test_cloud_events_schema_push_is_read_the_same_way() -> None:
    pushed = parse_push_event(cloud_event(), default_registry=None)
    assert pushed.ref.image == "ipcplatformacr.azurecr.io/ipc/opcua-gateway"
    assert pushed.schema == "CloudEventSchemaV1_0"
    assert pushed.pushed_at.isoformat() == "2026-09-01T12:00:02+00:00"


def test_without_request_host_the_configured_registry_names_the_image() -> None:
    data = {key: value for key, value in DATA.items() if key != "request"}
    pushed = parse_push_event(event_grid(data=data), default_registry="127.0.0.1:5000")
    assert pushed.ref.image == "127.0.0.1:5000/ipc/opcua-gateway"


@pytest.mark.parametrize(
    "event_type", ["Microsoft.ContainerRegistry.ImageDeleted", "Microsoft.ContainerRegistry.ChartPushed"]
)
def test_other_event_types_are_ignored(event_type: str) -> None:
    with pytest.raises(IgnoredEvent):
        parse_push_event(event_grid(eventType=event_type), default_registry=None)


def test_a_push_by_digest_only_is_ignored() -> None:
    data = {**DATA, "target": {key: value for key, value in DATA["target"].items() if key != "tag"}}
    with pytest.raises(IgnoredEvent, match="by digest"):
        parse_push_event(cloud_event(data=data), default_registry=None)


@pytest.mark.parametrize(
    "event",
    [
        event_grid(id=None),
        event_grid(data="not an object"),
        event_grid(data={"target": "x"}),
        event_grid(data={"target": {"tag": "v1"}}),
        event_grid(data={**DATA, "request": {}}),
    ],
    ids=["no-id", "data-not-object", "target-not-object", "no-repository", "no-registry"],
)
def test_malformed_events_are_rejected_as_permanent(event: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse_push_event(event, default_registry=None)
    assert caught.value.transient is False
