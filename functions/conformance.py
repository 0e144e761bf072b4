"""Conformance triggers: the report, conform and reset (HTTP), onboarding (Event Grid ResourceWriteSuccess).

Each handler takes its payload through the one intake (`functions.http`, `functions.events`), calls the
conformance service, and maps the answer; the rules live in `shared.services.conformance`.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.events import event_envelope
from functions.http import (
    accepted,
    authorize,
    handle_errors,
    idempotency_key,
    json_response,
    read_json,
    status_url,
)
from shared.container import get_container
from shared.errors import FluxfleetError

log = logging.getLogger("fluxfleet.conformance")
bp = func.Blueprint()


@bp.route(route="fleet/conformance", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_conformance(req: func.HttpRequest) -> func.HttpResponse:
    from shared.services.fleet.requests import parse_inventory_query

    selector = parse_inventory_query(req.params)
    return json_response(get_container().conformance.report(selector=selector))


@bp.route(route="fleet/conform", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_conform(req: func.HttpRequest) -> func.HttpResponse:
    from shared.services.conformance.requests import parse_conform_request

    container = get_container()
    who = authorize(req, container.settings, action="change the fleet")
    request, _ = parse_conform_request(read_json(req), with_confirm=False)
    answer = container.conformance.conform(
        request=request, requested_by=who, idempotency_key=idempotency_key(req)
    )
    return _answer(req, answer)


@bp.route(route="fleet/reset", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_reset(req: func.HttpRequest) -> func.HttpResponse:
    from shared.services.conformance.requests import parse_conform_request

    container = get_container()
    who = authorize(req, container.settings, action="change the fleet")
    request, confirm = parse_conform_request(read_json(req), with_confirm=True)
    answer = container.conformance.reset(
        request=request, confirm=confirm, requested_by=who, idempotency_key=idempotency_key(req)
    )
    return _answer(req, answer)


def _answer(req: func.HttpRequest, answer: object) -> func.HttpResponse:
    from shared.services.fleet.service import ChangeAnswer

    assert isinstance(answer, ChangeAnswer)
    if answer.operation_id is None:
        return json_response(answer.document)
    if answer.status == 202:
        return accepted(req, answer.operation_id, answer.document)
    return json_response(
        answer.document, status=answer.status, headers={"Location": status_url(req, answer.operation_id)}
    )


@bp.function_name("fleet_cluster_connected")
@bp.event_grid_trigger(arg_name="event")
def fleet_cluster_connected(event: func.EventGridEvent) -> None:
    from shared.services.conformance.requests import parse_cluster_event

    connected = parse_cluster_event(event_envelope(event))
    if connected is None:
        log.info("event %s is not a connected cluster write; ignored", getattr(event, "id", "?"))
        return
    try:
        operation = get_container().conformance.onboard(
            cluster_id=connected.cluster_id, event_id=connected.event_id
        )
    except FluxfleetError as error:
        if error.transient:
            raise
        log.error(
            "onboarding %s failed for good: %s",
            connected.cluster_id,
            error.message,
            extra={"event_id": connected.event_id, "code": error.code},
        )
        return
    if operation:
        log.info(
            "onboarding %s: operation %s",
            connected.cluster_id,
            operation,
            extra={"event_id": connected.event_id},
        )


# Hourly, at minute 7: onboard governed panels whose connect event was missed (see the service's sweep).
@bp.timer_trigger(arg_name="timer", schedule="0 7 * * * *")
def fleet_conformance_sweep(timer: func.TimerRequest) -> None:
    operation = get_container().conformance.sweep()
    if operation:
        log.warning("conformance sweep found panels not onboarded: operation %s", operation)
