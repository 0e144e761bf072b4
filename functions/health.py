"""`GET /api/health` (anonymous, no I/O) and `GET /api/health/deep` (function key; dependency probes)."""

from __future__ import annotations

import azure.functions as func

from functions.http import handle_errors, json_response
from shared.container import get_container
from shared.errors import InvalidInput

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def get_health(req: func.HttpRequest) -> func.HttpResponse:
    if "deep" in req.params:
        # Deep probes call ARM, Key Vault, Storage and ACR: not for anonymous callers.
        raise InvalidInput("deep", "deep health needs a function key: GET /api/health/deep")
    body = get_container().health.check(deep=False)
    return json_response(body)


@bp.route(route="health/deep", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@handle_errors
def get_health_deep(req: func.HttpRequest) -> func.HttpResponse:
    body = get_container().health.check(deep=True)
    return json_response(body, status=200 if body["status"] == "ok" else 503)
