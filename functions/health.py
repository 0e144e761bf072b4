"""`GET /api/health[?deep=true]`: version, configured capabilities, and (deep) dependency probes."""

from __future__ import annotations

import azure.functions as func

from functions.http import handle_errors, json_response
from shared.container import get_container

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def get_health(req: func.HttpRequest) -> func.HttpResponse:
    deep = req.params.get("deep", "false").lower() in ("true", "1")
    body = get_container().health.check(deep=deep)
    return json_response(body, status=200 if body["status"] == "ok" else 503)
