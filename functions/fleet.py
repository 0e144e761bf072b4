"""Fleet triggers: suspend/resume and operation reads (HTTP), the fan-out workers (queues), the sweeper.

Each handler parses its trigger payload, calls one service method, and maps the answer; the rules live
in `shared.services.fleet_ops` (requests, who may call) and `shared.services.fleet_changes` (the engine).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import azure.functions as func

from functions.http import handle_errors, json_response, read_json, requested_by
from shared.errors import InvalidInput
from shared.runtime import get_runtime
from shared.services.fleet_queues import APPLY_QUEUE, VERIFY_QUEUE

if TYPE_CHECKING:  # the services load on first use, not when the host indexes the app (cold start)
    from shared.services.fleet_changes import FleetChangeEngine
    from shared.services.fleet_ops import FleetOps

log = logging.getLogger("fluxfleet.fleet")
bp = func.Blueprint()

# Longest Idempotency-Key accepted: a UUID or a pipeline run id fits many times over.
MAX_IDEMPOTENCY_KEY = 200
# `GET /api/operations?limit=`: default and maximum.
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 200
# What a 202 suggests to pollers (s): about how long a small fleet's first panels take.
POLL_AFTER_S = 5


def _ops() -> FleetOps:
    from shared.services import fleet_ops

    # Built from the worker's one engine; not nested inside `runtime.service` (it is not re-entrant).
    engine = _engine()
    service: FleetOps = get_runtime().service(
        "fleet_ops", lambda runtime: fleet_ops.FleetOps(engine=engine, settings=runtime.settings)
    )
    return service


def _engine() -> FleetChangeEngine:
    from shared.services import fleet_changes

    engine: FleetChangeEngine = get_runtime().service(
        "fleet_changes", fleet_changes.from_runtime
    )
    return engine


@bp.route(route="fleet/suspend", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_suspend(req: func.HttpRequest) -> func.HttpResponse:
    return _change(req, kind="suspend")


@bp.route(route="fleet/resume", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_resume(req: func.HttpRequest) -> func.HttpResponse:
    return _change(req, kind="resume")


def _change(req: func.HttpRequest, *, kind: str) -> func.HttpResponse:
    ops = _ops()
    caller = requested_by(req)
    ops.authorize(caller)
    from shared.services.fleet_ops import parse_change_request

    request = parse_change_request(read_json(req))
    answer = ops.request_change(
        kind=kind, request=request, requested_by=caller, idempotency_key=_idempotency_key(req)
    )
    if answer.operation_id is None:
        return json_response(answer.document)
    url = status_url(req, answer.operation_id)
    if answer.status == 202:
        return json_response(
            {**answer.document, "statusUrl": url},
            status=202,
            headers={"Location": url, "Retry-After": str(POLL_AFTER_S)},
        )
    return json_response(answer.document, status=answer.status, headers={"Location": url})


@bp.route(route="operations/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_get_operation(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(_engine().get_operation(req.route_params["id"]))


@bp.route(route="operations", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_list_operations(req: func.HttpRequest) -> func.HttpResponse:
    kind = req.params.get("kind") or None
    raw_limit = req.params.get("limit", str(DEFAULT_LIST_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIST_LIMIT:
        raise InvalidInput("limit", f"must be a whole number from 1 to {MAX_LIST_LIMIT}")
    operations = _engine().list_operations(kind=kind, limit=int(raw_limit))
    return json_response({"operations": operations})


@bp.route(route="fleet", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_inventory(req: func.HttpRequest) -> func.HttpResponse:
    from shared.services.fleet_ops import parse_inventory_query

    selector = parse_inventory_query(req.params)
    return json_response(_ops().inventory(selector=selector))


@bp.queue_trigger(arg_name="msg", queue_name=APPLY_QUEUE, connection="AzureWebJobsStorage")
def fleet_apply(msg: func.QueueMessage) -> None:
    message = _message(msg)
    if message is not None:
        _engine().process_apply(message, dequeue_count=msg.dequeue_count or 1)


@bp.queue_trigger(arg_name="msg", queue_name=VERIFY_QUEUE, connection="AzureWebJobsStorage")
def fleet_verify(msg: func.QueueMessage) -> None:
    message = _message(msg)
    if message is not None:
        _engine().process_verify(message, dequeue_count=msg.dequeue_count or 1)


# Every 5 minutes: re-enqueue panels whose message was lost (see FleetChangeEngine.sweep).
@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *")
def fleet_sweep(timer: func.TimerRequest) -> None:
    count = _engine().sweep()
    if count:
        log.warning("sweeper re-enqueued %d panels of stalled fleet operations", count)


def _message(msg: func.QueueMessage) -> dict[str, Any] | None:
    try:
        body = json.loads(msg.get_body())
    except ValueError:
        log.error("fleet queue message %s is not JSON; dropped", msg.id)
        return None
    if not isinstance(body, dict):
        log.error("fleet queue message %s is not a JSON object; dropped", msg.id)
        return None
    return body


def _idempotency_key(req: func.HttpRequest) -> str | None:
    raw = req.headers.get("Idempotency-Key")
    if raw is None:
        return None
    key = str(raw).strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InvalidInput("Idempotency-Key", f"must be 1-{MAX_IDEMPOTENCY_KEY} printable characters")
    return key


def status_url(req: func.HttpRequest, operation_id: str) -> str:
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}/api/operations/{operation_id}"
