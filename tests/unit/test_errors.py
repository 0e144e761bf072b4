"""The error hierarchy and the one mapping from azure.core."""

from __future__ import annotations

import base64

import pytest
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


# --- secrets in remote text (issue 12: finding 13) ----------------------------------------------------
NEW_PAT = "3kFq9ZxV7mT2pLw8Rc4Yb6Nh1Ds5Gj0AZDOa1B2c3D4e5F6g7H8i9J0kL1mN2oP3qR4sT5uV6wX7yZ8aB9cD0eF1gH2"[:84]
CLASSIC_PAT = "q7z4mwk2s3x5v6b7n2m3q4w5e6r7t2y3u4i5o6p7a2s3d4f5g6h7"
HTTPS_KEY = base64.b64encode(NEW_PAT.encode()).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"PAT {NEW_PAT} was refused",
        f"PAT {CLASSIC_PAT} was refused",
        f'{{"configurationProtectedSettings": {{"httpsKey": "{HTTPS_KEY}"}}}}',
        f"echo of body: {HTTPS_KEY}",
        f'{{"token": "{CLASSIC_PAT[:20]}", "other": 1}}',
        f'{{"access_token":"{CLASSIC_PAT[:12]}"}}',
        f"fetch https://git:{CLASSIC_PAT[:16]}@dev.azure.com/ipc-org/p/_git/r failed",
        f"fetch https://{NEW_PAT[:30]}@dev.azure.com/ipc-org/p/_git/r failed",
    ],
    ids=["84-char-pat", "52-char-pat", "base64-httpsKey", "bare-base64", "json-token", "json-access-token",
         "url-user-and-pat", "url-pat-only"],
)
def test_every_current_secret_shape_is_redacted(text: str) -> None:
    scrubbed = safe_text(text, limit=10_000)
    for secret in (NEW_PAT, CLASSIC_PAT, HTTPS_KEY):
        for piece in (secret, secret[-20:], secret[:12], CLASSIC_PAT[:12], NEW_PAT[:16]):
            assert piece not in scrubbed, scrubbed
    assert "[redacted]" in scrubbed


def test_what_a_reader_needs_is_kept() -> None:
    text = (
        "commit 4f1c0e9a7b2d3c4e5f60718293a4b5c6d7e8f901 image sha256:"
        + "ab" * 32
        + " on /subscriptions/5b5c0000-0000-4000-8000-000000000001/resourceGroups/rg-ipc-site-munich"
        "/providers/Microsoft.Kubernetes/connectedClusters/ipc-panel-0001 path ./kubernetes/workloads"
        " kustomization ipc-platform-config-workloads-kustomization-0001 at https://dev.azure.com/ipc-org/p"
    )
    assert safe_text(text, limit=10_000) == text
