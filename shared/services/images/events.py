"""ACR `ImagePushed` events, in the Event Grid schema or CloudEvents 1.0, read into a `PushedImage`.

Registry events reach the app through Event Grid in whichever schema the subscription chose, and the
Functions worker hands over whichever one the payload is (reference §7), so both are read here from
their raw envelope. Only `Microsoft.ContainerRegistry.ImagePushed` with a tag is a push to judge;
other event types (deletes, chart pushes) are `IgnoredEvent`, anything unreadable is
`MalformedEvent` (permanent: retrying the same bytes cannot help). Field names follow the ACR
event schema (`data.target.repository`, `.tag`, `.digest`, `data.request.host`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from shared.errors import PermanentError
from shared.models.images import ImageRef, PushedImage, parse_iso

IMAGE_PUSHED = "Microsoft.ContainerRegistry.ImagePushed"
# Longest value kept from an event field in an error message: enough to recognise it.
_MAX_FIELD_ECHO = 120


class AcrTarget(TypedDict, total=False):
    mediaType: str
    size: int
    digest: str
    length: int
    repository: str
    tag: str


class AcrRequest(TypedDict, total=False):
    id: str
    host: str
    method: str
    useragent: str


class AcrEventData(TypedDict, total=False):
    id: str
    timestamp: str
    action: str
    location: str
    target: AcrTarget
    request: AcrRequest


class MalformedEvent(PermanentError):
    status = 400
    code = "MalformedEvent"


class IgnoredEvent(PermanentError):
    """A well-formed event that is not a tagged image push; logged and dropped."""

    status = 202
    code = "IgnoredEvent"


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MalformedEvent(f"{what} is missing or not a string")
    return value.strip()


def _when(raw: object) -> datetime:
    if isinstance(raw, str) and raw:
        try:
            return parse_iso(raw)
        except ValueError:
            pass
    return datetime.now(UTC)


def parse_push_event(envelope: Mapping[str, Any], *, default_registry: str | None) -> PushedImage:
    """The push in an Event Grid or CloudEvents envelope (a dict with the schema's own keys).

    `default_registry` names the image when the event has no `request.host` (ACR omits `request`
    for some pushes, e.g. through a connected registry); it is the configured login server.
    """
    cloud_event = "specversion" in envelope
    schema: Literal["EventGridSchema", "CloudEventSchemaV1_0"] = (
        "CloudEventSchemaV1_0" if cloud_event else "EventGridSchema"
    )
    event_id = _text(envelope.get("id"), "event id")
    event_type = envelope.get("type" if cloud_event else "eventType")
    if event_type != IMAGE_PUSHED:
        raise IgnoredEvent(
            f"event {event_id[:_MAX_FIELD_ECHO]} of type {str(event_type)[:_MAX_FIELD_ECHO]} "
            "is not an image push",
            event_id=event_id,
        )
    data = envelope.get("data")
    if not isinstance(data, Mapping):
        raise MalformedEvent(f"event {event_id[:_MAX_FIELD_ECHO]} has no data object", event_id=event_id)
    target = data.get("target")
    if not isinstance(target, Mapping):
        raise MalformedEvent(f"event {event_id[:_MAX_FIELD_ECHO]} has no data.target", event_id=event_id)
    repository = _text(target.get("repository"), "data.target.repository")
    tag = target.get("tag")
    if tag is None or tag == "":
        raise IgnoredEvent(
            f"event {event_id[:_MAX_FIELD_ECHO]} pushed {repository[:_MAX_FIELD_ECHO]} by digest only; "
            "no tag to judge",
            event_id=event_id,
        )
    tag = _text(tag, "data.target.tag")
    request = data.get("request")
    host = request.get("host") if isinstance(request, Mapping) else None
    registry = host if isinstance(host, str) and host.strip() else default_registry
    if not registry:
        raise MalformedEvent(
            f"event {event_id[:_MAX_FIELD_ECHO]} names no registry (data.request.host)", event_id=event_id
        )
    digest = target.get("digest")
    when = envelope.get("time" if cloud_event else "eventTime") or data.get("timestamp")
    return PushedImage(
        event_id=event_id,
        ref=ImageRef(
            image=f"{registry.strip().lower()}/{repository}",
            tag=tag,
            digest=digest if isinstance(digest, str) and digest else None,
        ),
        pushed_at=_when(when),
        schema=schema,
    )
