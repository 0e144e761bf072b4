"""The one reader of Event Grid events and queue messages, for every non-HTTP trigger.

Event Grid delivers either schema, and the Python worker hands over a different object for each (an
`EventGridEvent`, or a CloudEvent-shaped object with `specversion`): `event_envelope` turns either into
the raw envelope of its schema (reference §7), so each capability parses one documented shape. Queue
messages are JSON objects; `queue_json` reads one, or returns None (logged) for a message that never can
be processed, so the host does not retry it into the poison queue.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import azure.functions as func

from shared.timestamps import format_time

log = logging.getLogger("fluxfleet.events")


def event_envelope(event: Any) -> dict[str, Any]:
    """The raw envelope of whichever event object the worker built (its schema decides)."""
    if hasattr(event, "specversion"):
        return {
            "specversion": event.specversion,
            "id": event.id,
            "type": event.type,
            "source": event.source,
            "subject": event.subject,
            "time": _when(event.time),
            "data": event.get_json(),
        }
    return {
        "id": event.id,
        "eventType": event.event_type,
        "topic": event.topic,
        "subject": event.subject,
        "eventTime": _when(event.event_time),
        "data": event.get_json(),
    }


def event_type(envelope: dict[str, Any]) -> str:
    """`eventType` (Event Grid schema) or `type` (CloudEvents)."""
    return str(envelope.get("eventType") or envelope.get("type") or "")


def event_time(envelope: dict[str, Any]) -> str | None:
    value = envelope.get("eventTime") or envelope.get("time")
    return str(value) if value else None


def queue_json(msg: func.QueueMessage, *, what: str) -> dict[str, Any] | None:
    """A queue message's JSON object; None (logged) when it is not one."""
    try:
        body = json.loads(msg.get_body())
    except ValueError:
        log.error("malformed %s message %s dropped: not JSON", what, msg.id)
        return None
    if not isinstance(body, dict):
        log.error("malformed %s message %s dropped: not a JSON object", what, msg.id)
        return None
    return body


def _when(value: datetime | None) -> str | None:
    return format_time(value) if isinstance(value, datetime) else None
