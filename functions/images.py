"""Image check triggers: ACR pushes (Event Grid), follow-ups (queue), and the images API (HTTP).

Each handler turns its payload into a typed value and calls one `ImageChecks` method; the rules are
in `shared.services.images`. An event or message that can never succeed (malformed, or a permanent
error such as a missing permission) is logged and dropped, so Event Grid and the queue do not
retry it forever; transient errors are raised, so the host retries (Event Grid redelivers, the
queue message reappears).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import azure.functions as func

from functions.http import handle_errors, json_response, read_json, requested_by
from shared.errors import FluxfleetError
from shared.runtime import get_runtime
from shared.services.images import FOLLOW_UP_QUEUE

if TYPE_CHECKING:
    from shared.services.images.service import ImageChecks

# The request and event models load on first use, not when the host indexes the app (cold start).

log = logging.getLogger("fluxfleet.images")
bp = func.Blueprint()  # azure-functions ships no annotations here


def _checks() -> ImageChecks:
    from shared.services.images.wiring import from_runtime

    service: ImageChecks = get_runtime().service("images", from_runtime)
    return service


def _login_server() -> str | None:
    login_server: str | None = get_runtime().settings.acr_login_server
    return login_server


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def event_envelope(event: Any) -> dict[str, Any]:
    """The raw envelope of whichever event object the worker built (its schema decides, reference §7)."""
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


@bp.function_name("image_pushed")
@bp.event_grid_trigger(arg_name="event")
def image_pushed(event: func.EventGridEvent) -> None:
    from shared.services.images.events import IgnoredEvent, MalformedEvent, parse_push_event

    try:
        pushed = parse_push_event(event_envelope(event), default_registry=_login_server())
    except IgnoredEvent as ignored:
        log.info("event ignored: %s", ignored.message, extra={"event_id": ignored.context.get("event_id")})
        return
    except MalformedEvent as malformed:
        log.warning("malformed event rejected: %s", malformed.message)
        return
    try:
        _checks().handle_push(pushed)
    except FluxfleetError as error:
        if error.transient:
            raise
        log.error(
            "image check of %s failed for good: %s",
            pushed.ref,
            error.message,
            extra={"event_id": pushed.event_id, "code": error.code},
        )


@bp.function_name("image_follow_up")
@bp.queue_trigger(arg_name="msg", queue_name=FOLLOW_UP_QUEUE, connection="AzureWebJobsStorage")
def image_follow_up(msg: func.QueueMessage) -> None:
    from shared.services.images.model import CheckId
    from shared.services.images.ports import parse_follow_up_message

    try:
        message = parse_follow_up_message(msg.get_body().decode("utf-8", errors="replace"))
    except ValueError as error:
        log.warning("malformed follow-up message dropped: %s", error)
        return
    try:
        _checks().follow_up(check_id=CheckId(message["checkId"]), attempt=message["attempt"])
    except FluxfleetError as error:
        if error.transient:
            raise
        log.error(
            "follow-up of %s failed for good: %s",
            message["checkId"],
            error.message,
            extra={"check_id": message["checkId"], "code": error.code},
        )


@bp.route(route="images/check", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def image_check(req: func.HttpRequest) -> func.HttpResponse:
    from shared.services.images.api import parse_check_request

    ref = parse_check_request(read_json(req), default_registry=_login_server())
    record = _checks().preflight(ref=ref, requested_by=requested_by(req))
    return json_response(record.to_document())


@bp.route(route="images/checks", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def image_checks_list(req: func.HttpRequest) -> func.HttpResponse:
    from shared.services.images.api import parse_checks_query

    query = parse_checks_query(dict(req.params), default_registry=_login_server())
    records = _checks().list_checks(image=query.image, tag=query.tag, limit=query.limit)
    return json_response({"checks": [record.to_document() for record in records]})


@bp.route(route="images/checks/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def image_check_get(req: func.HttpRequest) -> func.HttpResponse:
    from shared.services.images.model import CheckId

    record = _checks().get_check(check_id=CheckId(req.route_params.get("id", "")))
    return json_response(record.to_document())


@bp.route(route="images", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def images_latest(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"policies": [status.to_document() for status in _checks().current_latest()]})
