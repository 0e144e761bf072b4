"""The app's error hierarchy, and the one mapping from `azure.core.exceptions` to it.

Permanent errors are the caller's or the world's fault and repeat if retried (bad input, not found,
conflict, forbidden); transient ones may pass (throttling, 5xx, timeouts, resets). HTTP handlers
map any of them to `application/problem+json` in one helper; queue, timer and Event Grid handlers
raise transient errors so the host retries, and record permanent ones.

Messages are built to be shown to callers and logged: they never carry a secret. Text copied from a
remote response is truncated and scrubbed (`safe_text`) because a service may echo a request back.
"""

from __future__ import annotations

import re
from typing import Any

# Enough of a remote error to understand it; long bodies are where echoed secrets hide.
MAX_REMOTE_TEXT = 300

_SECRETISH = re.compile(
    r"(?i)(bearer\s+[\w.\-~+/]+=*|basic\s+[\w+/]+=*|(?:pat|token|key|password|secret|sig|code)=[^&\s\"']+"
    r"|[a-z0-9]{52})"  # 52 chars of [a-z0-9] is the shape of an Azure DevOps PAT
)


def safe_text(text: object, *, limit: int = MAX_REMOTE_TEXT) -> str:
    """Remote text fit for a log line or a response: secrets redacted, length bounded."""
    value = _SECRETISH.sub("[redacted]", str(text))
    return value if len(value) <= limit else value[:limit] + "…"


class FluxfleetError(Exception):
    """Base of every error the app raises on purpose."""

    status = 500
    code = "InternalError"
    transient = False

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def problem(self) -> dict[str, Any]:
        """RFC 9457 fields for this error (the HTTP helper adds `instance`)."""
        body: dict[str, Any] = {
            "type": f"https://fluxfleet.dev/problems/{self.code}",
            "title": self.code,
            "status": self.status,
            "detail": self.message,
        }
        body.update({k: v for k, v in self.context.items() if v is not None})
        return body


class PermanentError(FluxfleetError):
    """Retrying will not help."""


class TransientError(FluxfleetError):
    """Retrying later may help; `retry_after` in seconds when the service said so."""

    status = 503
    code = "ServiceUnavailable"
    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after


class InvalidInput(PermanentError):
    status = 400
    code = "InvalidInput"

    def __init__(self, field: str, message: str, **context: Any) -> None:
        super().__init__(f"{field}: {message}", field=field, **context)
        self.field = field


class PayloadTooLarge(InvalidInput):
    status = 413
    code = "PayloadTooLarge"


class Unprocessable(InvalidInput):
    """Well-formed, but it names things that do not exist or selects nothing."""

    status = 422
    code = "Unprocessable"


class Unauthorized(PermanentError):
    status = 401
    code = "Unauthorized"


class Forbidden(PermanentError):
    status = 403
    code = "Forbidden"


class NotFound(PermanentError):
    status = 404
    code = "NotFound"


class Conflict(PermanentError):
    status = 409
    code = "Conflict"


class Throttled(TransientError):
    status = 429
    code = "Throttled"


class MissingSetting(PermanentError):
    status = 503
    code = "NotConfigured"

    def __init__(self, env_name: str) -> None:
        super().__init__(
            f"app setting {env_name} is required for this capability and is not set", setting=env_name
        )
        self.env_name = env_name


class InvalidSetting(PermanentError):
    status = 503
    code = "InvalidSetting"

    def __init__(self, env_name: str, reason: str) -> None:
        super().__init__(f"app setting {env_name} is invalid: {reason}", setting=env_name)


def from_azure_error(exc: BaseException, *, what: str) -> FluxfleetError:
    """Map an azure.core exception (or a transport error) to the app's hierarchy.

    `what` names the operation for the message ("GET flux configuration ipc-panel-0001"). Callers
    `raise from_azure_error(exc, what=...) from exc` so the cause stays chained for debugging.
    """
    from azure.core import exceptions as az  # lazy: keeps azure.core off the cold-start path

    status = getattr(exc, "status_code", None)
    reason = safe_text(getattr(exc, "message", None) or exc)
    detail = f"{what}: {reason}"
    if isinstance(exc, az.ClientAuthenticationError) or status == 401:
        return Unauthorized(detail)
    if status == 403:
        return Forbidden(detail)
    if isinstance(exc, az.ResourceNotFoundError) or status == 404:
        return NotFound(detail)
    if isinstance(exc, (az.ResourceExistsError, az.ResourceModifiedError)) or status in (409, 412):
        return Conflict(detail)
    if status == 429:
        return Throttled(detail, retry_after=_retry_after(exc))
    if status is not None and (status >= 500 or status == 408):
        return TransientError(detail, retry_after=_retry_after(exc))
    if isinstance(exc, (az.ServiceRequestError, az.ServiceResponseError, TimeoutError, ConnectionError)):
        return TransientError(detail)
    if status is not None and 400 <= status < 500:
        return PermanentError(detail)
    return TransientError(detail)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
