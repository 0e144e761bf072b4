"""ACR's front-end headers, as recorded registry responses carry them.

The `/acr/v1` API answers (errors and challenges included) expose the registry headers to browsers
(`Access-Control-Expose-Headers`), say `Docker-Distribution-Api-Version: registry/2.0` and send HSTS
and nosniff; the token endpoints instead report `x-ms-ratelimit-remaining-calls-per-second`.
"""

from __future__ import annotations

import pytest
import requests

from tests.labkit import LabHandle

pytestmark = pytest.mark.lab

EXPOSED = ["Docker-Content-Digest", "WWW-Authenticate", "Link", "X-Ms-Correlation-Request-Id"]


def test_a_registry_challenge_carries_the_front_end_headers(lab: LabHandle) -> None:
    response = requests.get(
        f"{lab.env['FLUXFLEET_ACR_ENDPOINT']}/acr/v1/_catalog", verify=lab.ca_bundle, timeout=10
    )

    assert response.status_code == 401
    assert response.raw.headers.getlist("Access-Control-Expose-Headers") == EXPOSED
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Ms-Correlation-Request-Id"]


def test_the_token_endpoints_report_the_rate_limit_and_not_the_registry_api_version(lab: LabHandle) -> None:
    response = requests.post(
        f"{lab.env['FLUXFLEET_ACR_ENDPOINT']}/oauth2/token",
        data={"grant_type": "refresh_token", "service": lab.doc["acr_login_server"], "refresh_token": "x"},
        verify=lab.ca_bundle,
        timeout=10,
    )

    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert float(response.headers["x-ms-ratelimit-remaining-calls-per-second"]) > 0
    assert "Docker-Distribution-Api-Version" not in response.headers
