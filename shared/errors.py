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

# What a secret looks like in text a remote service (or an exception) wrote. Each pattern keeps the
# words around the secret, so an operator still reads what went wrong:
# - URL userinfo: `https://user:PAT@host` → `https://[redacted]@host`;
# - an Authorization header's credentials, and `name=value` pairs with a secret's name;
# - JSON pairs whose name is a secret's (`"token": "…"`, `"httpsKey": "…"`, `"client_secret": …`);
# - long runs that look like encoded secrets (see `_looks_encoded`): Azure DevOps PATs (52 characters
#   of base32, or the 84-character mixed-case format), base64 `httpsKey` values, JWT segments.
# Hex (commit shas, image digests), GUIDs, ARM ids and URLs are kept: they are how a reader finds things.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]+@")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[\w.\-~+/]+=*")
_SENSITIVE_NAMES = (
    r"(?:[\w-]*(?:token|passw(?:or)?d|secret|key|sig(?:nature)?|credentials?|authorization)"
    r"|pat|code)"
)
_QUERY_PAIR = re.compile(rf"(?i)\b({_SENSITIVE_NAMES})=[^&\s\"']+")
_JSON_PAIR = re.compile(rf'(?i)("{_SENSITIVE_NAMES}"\s*:\s*)"(?:[^"\\]|\\.)*"')
_ENCODED_RUN = re.compile(r"[A-Za-z0-9+/_-]{40,}={0,2}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_HASH_LENGTHS = (40, 64)  # SHA-1 and SHA-256 in hex: Git commits and OCI digests
_BASE32 = re.compile(r"[a-z2-7]{52,}|[A-Z2-7]{52,}")
# An encoded value is one long unbroken run; names and paths break into words shorter than this.
_MIN_ENCODED_WORD = 20


def _looks_encoded(run: str) -> bool:
    """A 40+ character run that is an encoded secret rather than a name, a path or a hash."""
    body = run.rstrip("=")
    if len(body) in _HASH_LENGTHS and _HEX.fullmatch(body):
        return False  # a commit sha or an image digest
    if _BASE32.fullmatch(body):
        return True  # a classic Azure DevOps PAT
    has_digit = any(ch.isdigit() for ch in body)
    mixed_case = any(ch.islower() for ch in body) and any(ch.isupper() for ch in body)
    if not (has_digit and mixed_case):
        return False  # lowercase names such as `ipc-panel-0001-workloads-kustomization`
    return max(len(word) for word in re.split(r"[/_-]", body)) >= _MIN_ENCODED_WORD


def _redact_run(match: re.Match[str]) -> str:
    return "[redacted]" if _looks_encoded(match.group(0)) else match.group(0)


def safe_text(text: object, *, limit: int = MAX_REMOTE_TEXT) -> str:
    """Remote text fit for a log line or a response: secrets redacted, length bounded."""
    value = _USERINFO.sub(r"\1[redacted]@", str(text))
    value = _AUTH_SCHEME.sub(r"\1 [redacted]", value)
    value = _JSON_PAIR.sub(r'\1"[redacted]"', value)
    value = _QUERY_PAIR.sub(r"\1=[redacted]", value)
    value = _ENCODED_RUN.sub(_redact_run, value)
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
    # Whether a retry after this spends one of a bounded number of attempts (a throttle does not).
    counts_as_attempt = True

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
    counts_as_attempt = False


class Busy(TransientError):
    """ARM's 409 on a write: the resource has another operation in progress (a suspend and a credential
    rollout touching one panel). It finishes on its own: retry later, as for a throttle."""

    status = 409
    code = "Busy"
    counts_as_attempt = False


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
        return Throttled(detail, retry_after=retry_after_of(exc))
    if status is not None and (status >= 500 or status == 408):
        return TransientError(detail, retry_after=retry_after_of(exc))
    if isinstance(exc, (az.ServiceRequestError, az.ServiceResponseError, TimeoutError, ConnectionError)):
        return TransientError(detail)
    if status is not None and 400 <= status < 500:
        return PermanentError(detail)
    return TransientError(detail)


def retry_after_of(exc: BaseException) -> float | None:
    """The `Retry-After` (seconds) of an azure-core error's response, when it has one."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
