"""The lab's control API (`/_lab/...`): what tests, benchmarks and the demo use to steer the lab.

Separate from the emulated Azure routes (its own listener, no faults). Services add their own
routes; these are the ones every service shares: reset, faults, clock, request log, state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from lab.core.clock import iso
from lab.core.faults import parse_fault
from lab.core.service import json_response, read_json

if TYPE_CHECKING:
    from lab.server import Lab


def add_core_control_routes(app: web.Application, lab: Lab) -> None:
    async def reset(_: web.Request) -> web.Response:
        lab.reset()
        return json_response({"reset": True})

    async def add_fault(request: web.Request) -> web.Response:
        body = await read_json(request)
        try:
            rule = parse_fault(body)
        except ValueError as exc:
            return json_response({"error": str(exc)}, status=400)
        lab.faults.add(rule)
        return json_response(rule.describe(), status=201)

    async def list_faults(_: web.Request) -> web.Response:
        return json_response({"faults": [rule.describe() for rule in lab.faults.rules]})

    async def clear_faults(_: web.Request) -> web.Response:
        lab.faults.clear()
        return json_response({"faults": []})

    async def get_clock(_: web.Request) -> web.Response:
        return json_response({"now": iso(lab.clock.now()), "time_scale": lab.clock.time_scale})

    async def advance_clock(request: web.Request) -> web.Response:
        body = await read_json(request)
        seconds = body.get("seconds")
        if not isinstance(seconds, (int, float)) or seconds < 0:
            return json_response({"error": "seconds must be a non-negative number"}, status=400)
        now = lab.clock.advance(float(seconds))
        return json_response({"now": iso(now)})

    async def request_log(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        entries = lab.requests.since(since, service=request.query.get("service"))
        return json_response({"requests": entries})

    async def state(_: web.Request) -> web.Response:
        doc: dict[str, object] = {"now": iso(lab.clock.now())}
        for service in lab.services.values():
            doc.update(service.ground_truth())
        return json_response(doc)

    app.router.add_post("/_lab/reset", reset)
    app.router.add_post("/_lab/faults", add_fault)
    app.router.add_get("/_lab/faults", list_faults)
    app.router.add_delete("/_lab/faults", clear_faults)
    app.router.add_get("/_lab/clock", get_clock)
    app.router.add_post("/_lab/clock/advance", advance_clock)
    app.router.add_get("/_lab/requests", request_log)
    app.router.add_get("/_lab/state", state)
