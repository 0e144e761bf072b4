"""The Event Grid control API: create, list, delete webhook subscriptions; read deliveries and dead letters.

In Azure a subscription is created through ARM (`az eventgrid event-subscription create`); the lab offers the
same knobs as one JSON body on `POST /_lab/eventgrid/subscriptions`, validates them as Event Grid does (name
rules, retry-policy ranges, at most 10 delivery headers) and runs the webhook handshake before answering.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lab.core.events import TopicEvent
from lab.core.service import json_response, read_json
from lab.eventgrid.errors import EventGridError, InvalidRequest
from lab.eventgrid.models import DEFAULT_EVENT_TTL_MINUTES, DEFAULT_MAX_DELIVERY_ATTEMPTS, EventSubscription
from lab.eventgrid.schemas import EVENT_GRID_SCHEMA, SCHEMAS, DeliverySchema

if TYPE_CHECKING:
    from lab.eventgrid.service import EventGridService

# Event Grid's rules: names of 3-64 letters, digits and hyphens; retry policy 1-30 attempts and a
# 1-1440 minute time-to-live; up to 10 custom delivery headers.
SUBSCRIPTION_NAME = re.compile(r"^[A-Za-z0-9-]{3,64}$")
MAX_DELIVERY_ATTEMPTS = 30
MAX_EVENT_TTL_MINUTES = 1440
MAX_DELIVERY_HEADERS = 10

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def handles_errors(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except EventGridError as error:
            return error.response()

    return wrapped


def _bounded_int(body: Mapping[str, Any], key: str, *, default: int, upper: int) -> int:
    value = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= upper:
        raise InvalidRequest(f"{key} must be an integer between 1 and {upper}.")
    return value


def parse_subscription(
    body: object, *, topics: Mapping[str, str], groups: Mapping[str, list[str]] | None = None
) -> EventSubscription:
    """Validate a control-API body; InvalidRequest names the offending field."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    name = body.get("name")
    if not isinstance(name, str) or not SUBSCRIPTION_NAME.match(name):
        raise InvalidRequest("name must be 3-64 characters of letters, digits and hyphens.")
    topic = body.get("topic")
    if isinstance(topic, str) and groups and topic in groups:
        raise InvalidRequest(
            f"topic '{topic}' names {len(groups[topic])} system topics; an event subscription listens to "
            f"one: create one per topic ({', '.join(groups[topic])})."
        )
    if not isinstance(topic, str) or not (topic in topics or topic.startswith("/subscriptions/")):
        raise InvalidRequest(f"topic must be an ARM resource id or one of {sorted(topics)}.")
    endpoint = body.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        raise InvalidRequest("endpoint must be an http(s) URL.")
    schema = body.get("schema", EVENT_GRID_SCHEMA)
    if schema not in SCHEMAS:
        raise InvalidRequest(f"schema must be one of {sorted(SCHEMAS)}.")
    event_types = body.get("eventTypes") or []
    if not isinstance(event_types, list) or not all(isinstance(t, str) and t for t in event_types):
        raise InvalidRequest("eventTypes must be a list of event type names (empty: all).")
    filters = {key: body.get(key) or "" for key in ("subjectBeginsWith", "subjectEndsWith")}
    if not all(isinstance(value, str) for value in filters.values()):
        raise InvalidRequest("subjectBeginsWith and subjectEndsWith must be strings.")
    duplicate_rate = body.get("duplicateRate", 0.0)
    if (
        not isinstance(duplicate_rate, (int, float))
        or isinstance(duplicate_rate, bool)
        or not (0.0 <= duplicate_rate <= 1.0)
    ):
        raise InvalidRequest("duplicateRate must be a number between 0 and 1.")
    headers = body.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise InvalidRequest("headers must be an object of string values.")
    if len(headers) > MAX_DELIVERY_HEADERS:
        raise InvalidRequest(f"At most {MAX_DELIVERY_HEADERS} delivery headers are allowed.")
    resolved_schema: DeliverySchema = schema
    return EventSubscription(
        name=name,
        topic=topics.get(topic, topic),
        endpoint=endpoint,
        schema=resolved_schema,
        event_types=tuple(event_types),
        subject_begins_with=str(filters["subjectBeginsWith"]),
        subject_ends_with=str(filters["subjectEndsWith"]),
        max_delivery_attempts=_bounded_int(
            body, "maxDeliveryAttempts", default=DEFAULT_MAX_DELIVERY_ATTEMPTS, upper=MAX_DELIVERY_ATTEMPTS
        ),
        event_ttl_minutes=_bounded_int(
            body, "eventTimeToLiveInMinutes", default=DEFAULT_EVENT_TTL_MINUTES, upper=MAX_EVENT_TTL_MINUTES
        ),
        duplicate_rate=float(duplicate_rate),
        headers=dict(headers),
    )


class ControlResponses:
    def __init__(self, service: EventGridService) -> None:
        self.service = service
        self.backend = service.backend

    async def create_or_update_subscription(self, request: web.Request) -> web.StreamResponse:
        subscription = parse_subscription(
            await read_json(request), topics=self.service.topics(), groups=self.service.topic_groups()
        )
        await self.service.deliverer.validate(subscription, topic=subscription.topic)
        created = self.backend.create_or_update(subscription)
        return json_response(subscription.describe(), status=201 if created else 200)

    async def list_subscriptions(self, _: web.Request) -> web.StreamResponse:
        return json_response({"subscriptions": [s.describe() for s in self.backend.list_subscriptions()]})

    async def delete_subscription(self, request: web.Request) -> web.StreamResponse:
        self.backend.delete(request.match_info["name"])
        return web.Response(status=204)

    async def deliveries(self, request: web.Request) -> web.StreamResponse:
        subscription, event_id = request.query.get("subscription"), request.query.get("eventId")
        records = [
            r.describe()
            for r in self.backend.deliveries
            if (subscription is None or r.subscription.lower() == subscription.lower())
            and (event_id is None or r.event_id == event_id)
        ]
        return json_response({"deliveries": records})

    async def dead_letters(self, request: web.Request) -> web.StreamResponse:
        subscription = request.query.get("subscription")
        records = [
            r
            for r in self.backend.dead_letters
            if subscription is None or str(r["subscription"]).lower() == subscription.lower()
        ]
        return json_response({"deadletters": records})

    async def publish_event(self, request: web.Request) -> web.StreamResponse:
        """Publish a custom event to a topic (for tests of handlers of events no lab service raises)."""
        body = await read_json(request)
        topics = self.service.topics()
        topic = body.get("topic")
        if not isinstance(topic, str) or not (topic in topics or topic.startswith("/subscriptions/")):
            raise InvalidRequest(f"topic must be an ARM resource id or one of {sorted(topics)}.")
        for key in ("subject", "eventType"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise InvalidRequest(f"{key} is required.")
        data = body.get("data", {})
        if not isinstance(data, dict):
            raise InvalidRequest("data must be an object.")
        event = TopicEvent(
            id=str(body.get("id") or self.service.new_event_id()),
            topic=topics.get(topic, topic),
            subject=body["subject"],
            event_type=body["eventType"],
            event_time=self.service.lab.clock.now(),
            data=data,
            data_version=str(body.get("dataVersion", "1")),
        )
        self.service.lab.events.publish(event)
        return json_response({"eventId": event.id}, status=202)

    async def validate_by_url(self, request: web.Request) -> web.StreamResponse:
        """The validationUrl a receiver may GET instead of echoing the code (manual validation)."""
        if self.service.deliverer.mark_validated(request.query.get("id", ""), request.query.get("token", "")):
            return web.Response(
                text="Webhook successfully validated as a part of the subscription validation."
            )
        return web.Response(status=400, text="The validation request is invalid or has expired.")
