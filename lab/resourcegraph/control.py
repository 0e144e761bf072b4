"""Control routes for Resource Graph: ground truth, lag, catching up, throttling.

- `GET /_lab/resourcegraph` — settings, the index (visible rows per table, changes not yet visible), query
  counts per principal and the last queries with their text and the rows they returned (no secret can
  appear: ARG shows what ARM shows, and ARM never returns protected settings);
- `POST /_lab/resourcegraph/lag` `{"seconds": n}` — how many lab seconds ARG lags ARM (0: none);
- `POST /_lab/resourcegraph/catch-up` — ARG catches up with ARM now (every queued change becomes visible);
- `POST /_lab/resourcegraph/throttling` `{"enabled": bool, "queries": n, "window_seconds": s}` — switch the
  per-user quota off/on or resize it (windows restart); `GET` shows it; a lab reset restores 15 per 5 s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lab.core.service import json_response, read_json
from lab.resourcegraph.quota import QuotaSettings

if TYPE_CHECKING:
    from lab.resourcegraph.service import ResourceGraphService


def add_graph_control_routes(app: web.Application, service: ResourceGraphService) -> None:
    async def state(_: web.Request) -> web.Response:
        return json_response(service.truth())

    async def set_lag(request: web.Request) -> web.Response:
        body = await read_json(request)
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            return json_response({"error": "seconds must be a non-negative number"}, status=400)
        service.index.set_lag(float(seconds))
        return json_response(service.index.stats())

    async def catch_up(_: web.Request) -> web.Response:
        published = service.index.catch_up()
        return json_response({"published": published, **service.index.stats()})

    async def get_throttling(_: web.Request) -> web.Response:
        return json_response(describe_throttling(service.quota.settings))

    async def set_throttling(request: web.Request) -> web.Response:
        body = await read_json(request)
        try:
            settings = parse_throttling(body, service.quota.settings)
        except ValueError as exc:
            return json_response({"error": str(exc)}, status=400)
        service.quota.configure(settings)
        return json_response(describe_throttling(settings))

    app.router.add_get("/_lab/resourcegraph", state)
    app.router.add_post("/_lab/resourcegraph/lag", set_lag)
    app.router.add_post("/_lab/resourcegraph/catch-up", catch_up)
    app.router.add_get("/_lab/resourcegraph/throttling", get_throttling)
    app.router.add_post("/_lab/resourcegraph/throttling", set_throttling)


def describe_throttling(settings: QuotaSettings) -> dict[str, Any]:
    return {"enabled": settings.enabled, "queries": settings.queries, "window_seconds": settings.window_s}


def parse_throttling(body: object, current: QuotaSettings) -> QuotaSettings:
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    settings = current
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise ValueError("enabled must be true or false")
        settings = replace(settings, enabled=body["enabled"])
    if "queries" in body:
        queries = body["queries"]
        if isinstance(queries, bool) or not isinstance(queries, int) or queries < 1:
            raise ValueError("queries must be a positive integer")
        settings = replace(settings, queries=queries)
    if "window_seconds" in body:
        window = body["window_seconds"]
        if isinstance(window, bool) or not isinstance(window, (int, float)) or window <= 0:
            raise ValueError("window_seconds must be a positive number")
        settings = replace(settings, window_s=float(window))
    return settings
