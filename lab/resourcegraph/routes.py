"""Resource Graph's route table, on ARM's listener (`management.azure.com/providers/Microsoft.ResourceGraph`).

ARM paths are case-insensitive (`/PROVIDERS/microsoft.resourcegraph/RESOURCES` is the same resource), so
the route is a case-insensitive pattern. It is added before ARM's catch-all route, which answers the rest.
Only `Resources` is served; ARG's other operations (`Operations_List`, shared `queries`, resource history)
fall through to ARM, which answers an unknown route as it does for any other.
"""

from __future__ import annotations

from aiohttp import web

from lab.resourcegraph.responses import GraphResponses

# Any method: ARM itself answers a GET on this path (405 MethodNotAllowed, after authentication).
RESOURCES_ROUTE = r"/{path:(?i:providers/microsoft\.resourcegraph/resources)}"


def add_graph_routes(app: web.Application, responses: GraphResponses) -> None:
    app.router.add_route("*", RESOURCES_ROUTE, responses.handle)
