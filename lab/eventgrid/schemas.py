"""How Event Grid puts a system-topic event on the wire, in each delivery schema, and its validation event.

Event Grid schema: a JSON array holding one event (`id, topic, subject, eventType, eventTime, data,
dataVersion, metadataVersion "1"`), `Content-Type: application/json`. CloudEvents v1.0: one event object in
structured mode (`specversion, id, source, type, subject, time, data`), `Content-Type:
application/cloudevents+json` (Event Grid uses the batch content type only when batching is configured,
which the lab does not model). Both carry the `aeg-*` headers Event Grid documents.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from lab.core.events import TopicEvent

DeliverySchema = Literal["EventGridSchema", "CloudEventSchemaV1_0"]
EVENT_GRID_SCHEMA: DeliverySchema = "EventGridSchema"
CLOUD_EVENT_SCHEMA: DeliverySchema = "CloudEventSchemaV1_0"
SCHEMAS: frozenset[str] = frozenset({EVENT_GRID_SCHEMA, CLOUD_EVENT_SCHEMA})

EVENT_GRID_CONTENT_TYPE = "application/json; charset=utf-8"
CLOUD_EVENT_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
METADATA_VERSION = "1"
CLOUD_EVENTS_SPEC_VERSION = "1.0"
VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"
# The origin Event Grid names in the CloudEvents abuse-protection handshake.
WEBHOOK_REQUEST_ORIGIN = "eventgrid.azure.net"


class EventGridEventWire(TypedDict):
    id: str
    topic: str
    subject: str
    eventType: str
    eventTime: str
    data: dict[str, Any]
    dataVersion: str
    metadataVersion: str


class CloudEventWire(TypedDict):
    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: str
    data: dict[str, Any]


def event_time(moment: datetime) -> str:
    """Event Grid's timestamps: UTC, 7 fractional digits (.NET ticks) and `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def event_grid_event(event: TopicEvent) -> EventGridEventWire:
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": event_time(event.event_time),
        "data": event.data,
        "dataVersion": event.data_version,
        "metadataVersion": METADATA_VERSION,
    }


def cloud_event(event: TopicEvent) -> CloudEventWire:
    return {
        "specversion": CLOUD_EVENTS_SPEC_VERSION,
        "id": event.id,
        "source": event.topic,
        "type": event.event_type,
        "subject": event.subject,
        "time": event_time(event.event_time),
        "data": event.data,
    }


def rendered(event: TopicEvent, schema: DeliverySchema) -> dict[str, Any]:
    """The event as a subscriber in `schema` sees it (one element; Event Grid schema wraps it in an array)."""
    return dict(event_grid_event(event) if schema == EVENT_GRID_SCHEMA else cloud_event(event))


def notification(
    event: TopicEvent, *, schema: DeliverySchema, subscription: str, delivery_count: int
) -> tuple[object, dict[str, str]]:
    """(JSON body, headers) of one delivery attempt; `delivery_count` = attempts made before this one."""
    headers = {
        "aeg-event-type": "Notification",
        # Event Grid sends subscription names upper-cased ("to protect against differences in case handling").
        "aeg-subscription-name": subscription.upper(),
        "aeg-delivery-count": str(delivery_count),
    }
    if schema == EVENT_GRID_SCHEMA:
        headers.update(
            {
                "aeg-data-version": event.data_version,
                "aeg-metadata-version": METADATA_VERSION,
                "Content-Type": EVENT_GRID_CONTENT_TYPE,
            }
        )
        return [event_grid_event(event)], headers
    # For CloudEvents the metadata version is the spec version and there is no data version.
    headers.update(
        {"aeg-metadata-version": CLOUD_EVENTS_SPEC_VERSION, "Content-Type": CLOUD_EVENT_CONTENT_TYPE}
    )
    return cloud_event(event), headers


def validation_event(
    *, event_id: str, topic: str, code: str, url: str, at: datetime
) -> list[EventGridEventWire]:
    return [
        {
            "id": event_id,
            "topic": topic,
            "subject": "",
            "eventType": VALIDATION_EVENT_TYPE,
            "eventTime": event_time(at),
            "data": {"validationCode": code, "validationUrl": url},
            "dataVersion": "1",
            "metadataVersion": METADATA_VERSION,
        }
    ]


def validation_headers(subscription: str) -> dict[str, str]:
    return {
        "aeg-event-type": "SubscriptionValidation",
        "aeg-subscription-name": subscription.upper(),
        "aeg-delivery-count": "0",
        "aeg-data-version": "1",
        "aeg-metadata-version": METADATA_VERSION,
        "Content-Type": EVENT_GRID_CONTENT_TYPE,
    }
