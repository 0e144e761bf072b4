"""The one HTTP intake every route uses: who is calling, may they, the body, the query, the answer.

A handler reads, in this order: `caller(req)` and — on a fleet-changing route — `authorize(caller)`
*before* anything of the body is looked at (an unauthorised caller learns nothing about what would have
been valid); then `read_json(req)` for the body (size, UTF-8, a JSON object), `idempotency_key(req)` and
`query_int(...)` for the query, each refusing bad input with a 4xx `application/problem+json` that names
the field; then it calls one service and answers with `json_response`, or `accepted(...)` for a started
operation (202, an absolute `statusUrl` and `Location`, one `Retry-After`). `handle_errors` turns any
domain error into its problem document; anything else becomes a 500 without internals (the log has them).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from shared.errors import FluxfleetError, Forbidden, InvalidInput, PayloadTooLarge

log = logging.getLogger("fluxfleet.http")

# Selections of a few thousand panel names fit well within this; anything larger is a mistake.
MAX_BODY_BYTES = 64 * 1024
# Longest Idempotency-Key accepted: a UUID or a pipeline run id fits many times over.
MAX_IDEMPOTENCY_KEY = 200
# What a 202 suggests to pollers (s): about how long a small fleet's first panels take.
POLL_AFTER_S = 5

Handler = Callable[[func.HttpRequest], func.HttpResponse]


# --- answers ------------------------------------------------------------------------------------------
def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str), status_code=status, mimetype="application/json", headers=headers
    )


def problem_response(error: FluxfleetError, *, instance: str | None = None) -> func.HttpResponse:
    body = error.problem()
    if instance:
        body["instance"] = instance
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after:
        headers["Retry-After"] = str(int(retry_after + 0.999))
    return func.HttpResponse(
        json.dumps(body, default=str),
        status_code=error.status,
        mimetype="application/problem+json",
        headers=headers,
    )


def status_url(req: func.HttpRequest, operation_id: str) -> str:
    """The absolute URL of an operation's status, on the host the caller reached."""
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}/api/operations/{operation_id}"


def accepted(req: func.HttpRequest, operation_id: str, body: Mapping[str, Any]) -> func.HttpResponse:
    """202 for a started (or idempotently replayed) operation, pointing at its status document."""
    url = status_url(req, operation_id)
    return json_response(
        {**body, "operationId": operation_id, "statusUrl": url},
        status=202,
        headers={"Location": url, "Retry-After": str(POLL_AFTER_S)},
    )


# --- the request -------------------------------------------------------------------------------------
def read_json(req: func.HttpRequest) -> dict[str, Any]:
    """The body as a JSON object; 413 over MAX_BODY_BYTES, 400 when not a JSON object."""
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge("body", f"must be at most {MAX_BODY_BYTES} bytes, got {len(raw)}")
    if not raw.strip():
        raise InvalidInput("body", "a JSON object is required")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput("body", f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise InvalidInput("body", "is not UTF-8 text") from None
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object")
    return body


def idempotency_key(req: func.HttpRequest) -> str | None:
    """The `Idempotency-Key` header, validated: 1-200 printable characters, surrounding spaces trimmed."""
    raw = req.headers.get("Idempotency-Key")
    if raw is None:
        return None
    key = str(raw).strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InvalidInput("Idempotency-Key", f"must be 1-{MAX_IDEMPOTENCY_KEY} printable characters")
    return key


def query_int(req: func.HttpRequest, name: str, *, default: int, maximum: int) -> int:
    """A whole-number query parameter from 1 to `maximum` (400 naming it otherwise)."""
    raw = req.params.get(name) or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise InvalidInput(name, f"must be a whole number from 1 to {maximum}")
    return int(raw)


# --- who is calling -----------------------------------------------------------------------------------
def caller(req: func.HttpRequest) -> str:
    """Who is calling: the App Service authentication principal, else which function key was used.

    The worker is not told the key's *name*, so a key is identified by a short hash of it: stable,
    auditable, and useless to anyone reading the audit trail.
    """
    principal: str | None = req.headers.get("x-ms-client-principal-name")
    if principal:
        return principal.strip()[:200]
    key: str | None = req.headers.get("x-functions-key") or req.params.get("code")
    if key:
        return "function-key:" + hashlib.sha256(key.encode()).hexdigest()[:12]
    return "anonymous"


def authorize(who: str, *, allowed: tuple[str, ...], action: str) -> str:
    """403 unless `who` may change the fleet (`FLUXFLEET_ALLOWED_PRINCIPALS`; empty allows every
    authenticated caller). Principal names compare case-insensitively, as Entra treats them."""
    permitted = {principal.lower() for principal in allowed}
    if permitted and who.lower() not in permitted:
        raise Forbidden(f"{who} may not {action} (FLUXFLEET_ALLOWED_PRINCIPALS)")
    return who


def handle_errors(handler: Handler) -> Handler:
    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except FluxfleetError as exc:
            if exc.status >= 500:
                log.warning("request failed: %s", exc.message, extra={"code": exc.code})
            return problem_response(exc, instance=_path(req.url))
        except Exception:
            log.exception("unhandled error in %s", handler.__name__)
            error = FluxfleetError("an unexpected error occurred; the operation id and time are in the logs")
            return problem_response(error, instance=_path(req.url))

    return wrapper


def _path(url: str) -> str:
    return urlsplit(url).path
