"""The error hierarchy and the one mapping from azure.core."""

from __future__ import annotations

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError

from shared.errors import NotFound, Throttled, TransientError, from_azure_error, safe_text


class _Response:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status_code = status
        self.headers = headers
        self.reason = "x"

    def text(self) -> str:
        return ""


def test_not_found_maps_to_not_found() -> None:
    error = from_azure_error(ResourceNotFoundError("gone"), what="GET config")
    assert isinstance(error, NotFound)
    assert error.message.startswith("GET config: ")


def test_throttling_keeps_retry_after() -> None:
    exc = HttpResponseError(message="slow down", response=_Response(429, {"Retry-After": "7"}))  # type: ignore[arg-type]
    error = from_azure_error(exc, what="PATCH")
    assert isinstance(error, Throttled)
    assert error.retry_after == 7.0


def test_transport_errors_are_transient() -> None:
    assert isinstance(from_azure_error(ServiceRequestError("reset"), what="GET"), TransientError)


def test_remote_text_is_scrubbed_of_credentials() -> None:
    pat = "a" * 52
    text = safe_text(f"auth failed for Authorization: Basic Z2l0OnNlY3JldA== token={pat} {pat}")
    assert pat not in text
    assert "Z2l0OnNlY3JldA" not in text
