"""Event Grid's routes: the control API on the lab's control listener, the validationUrl on its own."""

from __future__ import annotations

from aiohttp import web

from lab.eventgrid.responses import ControlResponses, handles_errors


def add_control_routes(app: web.Application, responses: ControlResponses) -> None:
    r = responses
    table = [
        ("POST", "/_lab/eventgrid/subscriptions", r.create_or_update_subscription),
        ("GET", "/_lab/eventgrid/subscriptions", r.list_subscriptions),
        ("DELETE", "/_lab/eventgrid/subscriptions/{name}", r.delete_subscription),
        ("GET", "/_lab/eventgrid/deliveries", r.deliveries),
        ("GET", "/_lab/eventgrid/deadletters", r.dead_letters),
        ("POST", "/_lab/eventgrid/events", r.publish_event),
    ]
    for method, path, handler in table:
        app.router.add_route(method, path, handles_errors(handler))


def add_validation_routes(app: web.Application, responses: ControlResponses) -> None:
    # Event Grid's validationUrl: `.../eventsubscriptions/{name}/validate?id=&t=&apiVersion=&token=`.
    app.router.add_get("/eventsubscriptions/{name}/validate", handles_errors(responses.validate_by_url))
