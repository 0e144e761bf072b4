"""What every HTTP handler shares: JSON bodies, problem+json errors, the caller's identity.

Handlers stay about twenty lines: they call `read_json`, build a typed request, call one service,
and return `json_response`/`problem_response`. `handle_errors` turns any domain error into its
problem document; anything else becomes a 500 without internals (the log has them).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func

from shared.errors import FluxfleetError, InvalidInput, PayloadTooLarge

log = logging.getLogger("fluxfleet.http")

# Selections of a few thousand panel names fit well within this; anything larger is a mistake.
MAX_BODY_BYTES = 64 * 1024

Handler = Callable[[func.HttpRequest], func.HttpResponse]


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


def requested_by(req: func.HttpRequest) -> str:
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
    from urllib.parse import urlsplit

    return urlsplit(url).path
