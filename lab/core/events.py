"""An in-process event bus: services publish Azure events, Event Grid delivery subscribes.

Key Vault and ACR publish here the events that Azure would publish to their Event Grid system topics;
the Event Grid emulation fans them out to subscriptions. Publishing never blocks the publisher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class TopicEvent:
    """One event as a system topic emits it, before any schema is chosen."""

    id: str
    topic: str  # ARM id of the source resource (vault, registry)
    subject: str
    event_type: str
    event_time: datetime
    data: dict[str, Any]
    data_version: str = "1"
    extra: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[TopicEvent], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self.published: list[TopicEvent] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def publish(self, event: TopicEvent) -> None:
        self.published.append(event)
        for listener in list(self._listeners):
            listener(event)

    def reset(self) -> None:
        self.published.clear()
