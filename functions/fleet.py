"""Fleet triggers: suspend/resume and operation reads (HTTP), the fan-out workers (queues), the sweeper.

Each handler takes its payload through the one intake (`functions.http`, `functions.events`), calls one
service of the worker's container, and maps the answer; the rules live in `shared.services.fleet`.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.events import queue_json
from functions.http import (
    accepted,
    authorize,
    handle_errors,
    idempotency_key,
    json_response,
    query_int,
    read_json,
    status_url,
)
from shared.container import get_container
from shared.queues import FLEET_APPLY_QUEUE, FLEET_VERIFY_QUEUE

log = logging.getLogger("fluxfleet.fleet")
bp = func.Blueprint()

# `GET /api/operations?limit=`: default and maximum.
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 200


@bp.route(route="fleet/suspend", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_suspend(req: func.HttpRequest) -> func.HttpResponse:
    return _change(req, kind="suspend")


@bp.route(route="fleet/resume", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_resume(req: func.HttpRequest) -> func.HttpResponse:
    return _change(req, kind="resume")


def _change(req: func.HttpRequest, *, kind: str) -> func.HttpResponse:
    from shared.services.fleet.requests import parse_change_request

    container = get_container()
    who = authorize(req, container.settings, action="change the fleet")
    request = parse_change_request(read_json(req))
    answer = container.fleet.request_change(
        kind=kind, request=request, requested_by=who, idempotency_key=idempotency_key(req)
    )
    if answer.operation_id is None:
        return json_response(answer.document)
    if answer.status == 202:
        return accepted(req, answer.operation_id, answer.document)
    return json_response(
        answer.document, status=answer.status, headers={"Location": status_url(req, answer.operation_id)}
    )


@bp.route(route="operations/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_get_operation(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(get_container().engine.get_operation(req.route_params["id"]))


@bp.route(route="operations/{id}/cancel", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_cancel_operation(req: func.HttpRequest) -> func.HttpResponse:
    """Stop a running operation: `{"reason"}` required; who, when and why are recorded on it."""
    container = get_container()
    who = authorize(req, container.settings, action="cancel fleet operations")
    body = read_json(req)
    document = container.engine.cancel(req.route_params["id"], reason=body.get("reason"), requested_by=who)
    return json_response(document)


@bp.route(route="operations", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_list_operations(req: func.HttpRequest) -> func.HttpResponse:
    limit = query_int(req, "limit", default=DEFAULT_LIST_LIMIT, maximum=MAX_LIST_LIMIT)
    operations = get_container().engine.list_operations(kind=req.params.get("kind") or None, limit=limit)
    return json_response({"operations": operations})


@bp.route(route="fleet", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_inventory(req: func.HttpRequest) -> func.HttpResponse:
    from shared.services.fleet.requests import parse_inventory_query

    selector = parse_inventory_query(req.params)
    return json_response(get_container().fleet.inventory(selector=selector))


@bp.queue_trigger(arg_name="msg", queue_name=FLEET_APPLY_QUEUE, connection="AzureWebJobsStorage")
def fleet_apply(msg: func.QueueMessage) -> None:
    message = queue_json(msg, what="fleet apply")
    if message is not None:
        get_container().engine.process_apply(message, dequeue_count=msg.dequeue_count or 1)


@bp.queue_trigger(arg_name="msg", queue_name=FLEET_VERIFY_QUEUE, connection="AzureWebJobsStorage")
def fleet_verify(msg: func.QueueMessage) -> None:
    message = queue_json(msg, what="fleet verify")
    if message is not None:
        get_container().engine.process_verify(message, dequeue_count=msg.dequeue_count or 1)


# Every 5 minutes: re-enqueue panels whose message was lost (see shared.services.fleet.progress).
@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *")
def fleet_sweep(timer: func.TimerRequest) -> None:
    count = get_container().engine.sweep()
    if count:
        log.warning("sweeper re-enqueued %d panels of stalled fleet operations", count)
