"""Image check triggers: ACR pushes (Event Grid), follow-ups (queue), and the images API (HTTP).

Each handler turns its payload into a typed value and calls one `ImageChecks` method; the rules are
in `shared.services.images`. An event or message that can never succeed (malformed, or a permanent
error such as a missing permission) is logged and dropped, so Event Grid and the queue do not
retry it forever; transient errors are raised, so the host retries (Event Grid redelivers, the
queue message reappears).
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.events import event_envelope, queue_json
from functions.http import caller, handle_errors, json_response, query_int, read_json
from shared.container import get_container
from shared.errors import FluxfleetError
from shared.queues import IMAGE_FOLLOW_UP_QUEUE

# The request and event models load on first use, not when the host indexes the app (cold start).

log = logging.getLogger("fluxfleet.images")
bp = func.Blueprint()  # azure-functions ships no annotations here

# `GET /api/images/checks?limit=`: default and maximum.
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100


def _login_server() -> str | None:
    login_server: str | None = get_container().settings.acr_login_server
    return login_server


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
        get_container().images.handle_push(pushed)
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
@bp.queue_trigger(arg_name="msg", queue_name=IMAGE_FOLLOW_UP_QUEUE, connection="AzureWebJobsStorage")
def image_follow_up(msg: func.QueueMessage) -> None:
    from shared.models.images import CheckId, parse_follow_up_message

    body = queue_json(msg, what="follow-up")
    if body is None:
        return
    try:
        message = parse_follow_up_message(body)
    except ValueError as error:
        log.warning("malformed follow-up message dropped: %s", error)
        return
    try:
        get_container().images.follow_up(check_id=CheckId(message["checkId"]), attempt=message["attempt"])
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
    from shared.services.images.requests import parse_check_request

    ref = parse_check_request(read_json(req), default_registry=_login_server())
    container = get_container()
    who = caller(req, platform_auth=container.settings.platform_auth_enabled)
    record = container.images.preflight(ref=ref, requested_by=who)
    return json_response(record.to_document())


@bp.route(route="images/checks", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def image_checks_list(req: func.HttpRequest) -> func.HttpResponse:
    from shared.services.images.requests import parse_checks_query

    query = parse_checks_query(dict(req.params), default_registry=_login_server())
    limit = query_int(req, "limit", default=DEFAULT_LIST_LIMIT, maximum=MAX_LIST_LIMIT)
    records = get_container().images.list_checks(image=query.image, tag=query.tag, limit=limit)
    return json_response({"checks": [record.to_document() for record in records]})


@bp.route(route="images/checks/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def image_check_get(req: func.HttpRequest) -> func.HttpResponse:
    from shared.models.images import CheckId

    record = get_container().images.get_check(check_id=CheckId(req.route_params.get("id", "")))
    return json_response(record.to_document())


@bp.route(route="images", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def images_latest(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(
        {"policies": [status.to_document() for status in get_container().images.current_latest()]}
    )


@bp.route(route="images/runner", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def images_runner(req: func.HttpRequest) -> func.HttpResponse:
    """The image-automation runner checked: one, online, controllers on, API served, credential proven."""
    return json_response(get_container().runner_check.check().to_document())
