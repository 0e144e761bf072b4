"""The one HTTP intake every route uses: who is calling, may they, the body, the query, the answer.

A handler reads, in this order: on a fleet-changing route `authorize(req, settings)` (who is
calling, and may they) *before* anything of the body is looked at (an unauthorised caller learns
nothing about what would have been valid); then `read_json(req)` for the body (size, UTF-8, a JSON
object), `idempotency_key(req)` and `query_int(...)` for the query, each refusing bad input with a 4xx
`application/problem+json` that names the field; then it calls one service and answers with
`json_response`, or `accepted(...)` for a started operation (202, an absolute `statusUrl` and
`Location`, one `Retry-After`). `handle_errors` turns any domain error into its problem document;
anything else becomes a 500 without internals (the log has them, scrubbed).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import traceback
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from shared.config import Settings
from shared.errors import FluxfleetError, Forbidden, InvalidInput, PayloadTooLarge, safe_text
from shared.principals import request_principal

log = logging.getLogger("fluxfleet.http")

# Selections of a few thousand panel names fit well within this; anything larger is a mistake.
MAX_BODY_BYTES = 64 * 1024
# Longest Idempotency-Key accepted: a UUID or a pipeline run id fits many times over.
MAX_IDEMPOTENCY_KEY = 200
# Query numbers: ASCII digits, short enough that no page size or count is ever cut off.
_MAX_QUERY_DIGITS = 6
_WHOLE_NUMBER = re.compile(rf"[0-9]{{1,{_MAX_QUERY_DIGITS}}}")
# Enough of a traceback to find the fault.
MAX_TRACE_TEXT = 8000
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
    retry_after = getattr(error, "retry_after", None) or (POLL_AFTER_S if error.transient else None)
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
    """A whole-number query parameter from 1 to `maximum` (400 naming it otherwise).

    ASCII digits only, at most `_MAX_QUERY_DIGITS` of them: `str.isdigit()` also accepts `²` and other
    Unicode digits that `int()` then refuses, and a 5,000-digit number is nobody's page size.
    """
    raw = req.params.get(name)
    if raw is None or raw == "":
        return default
    if not _WHOLE_NUMBER.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise InvalidInput(name, f"must be a whole number from 1 to {maximum}")
    return int(raw)


# --- who is calling -----------------------------------------------------------------------------------
def caller(req: func.HttpRequest, *, platform_auth: bool) -> str:
    """Who is calling (see `shared.principals`): App Service authentication's principal when the platform
    has it on (`WEBSITE_AUTH_ENABLED`), else the id of the function key used, else `anonymous`.
    Client-sent principal headers are never believed on their own."""
    key: str | None = req.headers.get("x-functions-key") or req.params.get("code")
    return request_principal(req.headers, function_key=key, platform_auth=platform_auth)


def authorize(req: func.HttpRequest, settings: Settings, *, action: str) -> str:
    """The caller, or 403 unless they may `action` (`FLUXFLEET_ALLOWED_PRINCIPALS`; empty allows every
    caller the host let in). Principal names compare case-insensitively, as Entra treats them. Every
    fleet-changing route calls this before it looks at the body."""
    who = caller(req, platform_auth=settings.platform_auth_enabled)
    permitted = {principal.lower() for principal in settings.allowed_principals}
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
            # Not `log.exception`: the traceback's text is scrubbed like any remote text first, because
            # an exception raised deep in an SDK may carry what a request held.
            trace = safe_text(traceback.format_exc(), limit=MAX_TRACE_TEXT)
            log.error("unhandled error in %s: %s", handler.__name__, trace)
            error = FluxfleetError("an unexpected error occurred; the operation id and time are in the logs")
            return problem_response(error, instance=_path(req.url))

    return wrapper


def _path(url: str) -> str:
    return urlsplit(url).path
