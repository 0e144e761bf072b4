"""Event subscriptions, the delivery log and dead letters (the Event Grid backend, after moto).

A subscription names a source topic (an ARM id: the vault, the registry), a webhook endpoint, filters
(event types, subject prefix/suffix, case-insensitive as Event Grid's defaults) and a retry policy. The
backend also keeps what Azure hides and tests need: every delivery attempt and every dead-lettered event.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lab.core.events import TopicEvent
from lab.eventgrid.errors import SubscriptionNotFound
from lab.eventgrid.schemas import DeliverySchema

# Event Grid's retry policy defaults (and maxima): 30 attempts, events live 1440 minutes (24 hours).
DEFAULT_MAX_DELIVERY_ATTEMPTS = 30
DEFAULT_EVENT_TTL_MINUTES = 1440
# Enough history for a test or benchmark to find its deliveries without the lab growing without bound.
DELIVERY_LOG_SIZE = 20_000


@dataclass(frozen=True)
class EventSubscription:
    name: str
    topic: str
    endpoint: str = field(repr=False)  # may carry a function key in its query string: never shown whole
    schema: DeliverySchema
    event_types: tuple[str, ...] = ()
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS
    event_ttl_minutes: int = DEFAULT_EVENT_TTL_MINUTES
    duplicate_rate: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # static delivery headers (secrets)
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)  # tells a re-created subscription apart

    @property
    def endpoint_base_url(self) -> str:
        """The endpoint without its query string, as Event Grid shows it (`endpointBaseUrl`)."""
        parts = urlsplit(self.endpoint)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    def matches(self, event: TopicEvent) -> bool:
        if event.topic.lower() != self.topic.lower():
            return False
        if self.event_types and event.event_type.lower() not in {t.lower() for t in self.event_types}:
            return False
        subject = event.subject.lower()
        return subject.startswith(self.subject_begins_with.lower()) and subject.endswith(
            self.subject_ends_with.lower()
        )

    def describe(self) -> dict[str, Any]:
        """The subscription without secrets: the endpoint's query string and header values are left out."""
        return {
            "name": self.name,
            "topic": self.topic,
            "endpointBaseUrl": self.endpoint_base_url,
            "schema": self.schema,
            "eventTypes": list(self.event_types),
            "subjectBeginsWith": self.subject_begins_with,
            "subjectEndsWith": self.subject_ends_with,
            "maxDeliveryAttempts": self.max_delivery_attempts,
            "eventTimeToLiveInMinutes": self.event_ttl_minutes,
            "duplicateRate": self.duplicate_rate,
            "headers": sorted(self.headers),
            "provisioningState": "Succeeded",
        }


@dataclass(frozen=True)
class DeliveryRecord:
    event_id: str
    event_type: str
    subscription: str
    attempt: int  # 1 for the first attempt
    status: int | None  # HTTP status, None when no response came back
    outcome: str  # "Delivered" or Event Grid's lastDeliveryOutcome for a failure
    time: str
    duplicate: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "eventType": self.event_type,
            "subscription": self.subscription,
            "attempt": self.attempt,
            "status": self.status,
            "outcome": self.outcome,
            "time": self.time,
            "duplicate": self.duplicate,
        }


class EventGridBackend:
    def __init__(self) -> None:
        self.subscriptions: dict[str, EventSubscription] = {}
        self.deliveries: deque[DeliveryRecord] = deque(maxlen=DELIVERY_LOG_SIZE)
        self.dead_letters: list[dict[str, Any]] = []

    # --- event subscriptions (ARM operation ids) ------------------------------------------------------
    def create_or_update(self, subscription: EventSubscription) -> bool:
        """Store `subscription`; True if it is new."""
        created = subscription.name.lower() not in self.subscriptions
        self.subscriptions[subscription.name.lower()] = subscription
        return created

    def get(self, name: str) -> EventSubscription:
        found = self.subscriptions.get(name.lower())
        if found is None:
            raise SubscriptionNotFound.named(name)
        return found

    def list_subscriptions(self) -> list[EventSubscription]:
        return sorted(self.subscriptions.values(), key=lambda s: s.name.lower())

    def delete(self, name: str) -> None:
        self.get(name)
        del self.subscriptions[name.lower()]

    def is_current(self, subscription: EventSubscription) -> bool:
        live = self.subscriptions.get(subscription.name.lower())
        return live is not None and live.uid == subscription.uid

    def matching(self, event: TopicEvent) -> list[EventSubscription]:
        return [s for s in self.list_subscriptions() if s.matches(event)]

    # --- what happened ----------------------------------------------------------------------------
    def record_delivery(self, record: DeliveryRecord) -> None:
        self.deliveries.append(record)

    def record_dead_letter(self, record: dict[str, Any]) -> None:
        self.dead_letters.append(record)

    def reset(self) -> None:
        self.subscriptions.clear()
        self.deliveries.clear()
        self.dead_letters.clear()
