"""Fleet health (issue 13): why each panel is (not) converged, and one panel in full.

`GET /api/fleet/health` reads the fleet from Resource Graph (no per-panel ARM GET); `GET
/api/fleet/panels/{name}` reads one panel from ARM. The rules live in `shared.services.fleet.health`.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import handle_errors, json_response
from shared.container import get_container

log = logging.getLogger("fluxfleet.health")
bp = func.Blueprint()


@bp.route(route="fleet/health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_health(req: func.HttpRequest) -> func.HttpResponse:
    from shared.services.fleet.health_report import parse_health_query

    query = parse_health_query(req.params)
    return json_response(get_container().fleet_health.report(query))


# `{*panel}`: an ARM id has slashes (`/api/fleet/panels//subscriptions/…/connectedClusters/x` or with the
# id URL-encoded); a name has none.
@bp.route(route="fleet/panels/{*panel}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def fleet_panel(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(get_container().fleet_health.panel(req.route_params.get("panel") or ""))


# Every 15 minutes: remember each panel's cause (so `since` is real) and notify what appeared, once.
@bp.timer_trigger(arg_name="timer", schedule="0 */15 * * * *")
def fleet_health_snapshot(timer: func.TimerRequest) -> None:
    summary = get_container().health_snapshots.take()
    if summary["notified"]:
        log.warning("fleet health: new conditions %s", ", ".join(summary["notified"]))
