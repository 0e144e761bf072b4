"""`GET /api/health` through the real handler with a real `azure.functions.HttpRequest`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import azure.functions as func
import pytest

from shared.config import Settings
from shared.container import Container, set_container
from shared.services.health import HealthService


@pytest.fixture
def runtime_with(request: pytest.FixtureRequest) -> Iterator[Container]:
    settings = Settings.from_env(
        {
            "FLUXFLEET_SUBSCRIPTION_IDS": "sub-1",
            "AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=c2VjcmV0LWtleQ==;",
            "FLUXFLEET_KEYVAULT_URL": "https://kv.vault.azure.net",
        }
    )
    container = Container(settings, health=HealthService(settings=settings, probes=request.param))
    set_container(container)
    yield container
    set_container(None)


def call_health(query: str = "") -> func.HttpResponse:
    from functions.health import get_health

    params = dict(p.split("=", 1) for p in query.split("&") if p)
    user = get_health.build().get_user_function()
    return user(func.HttpRequest("GET", f"http://localhost/api/health?{query}", body=b"", params=params))


def broken() -> None:
    raise ConnectionError("refused by 10.0.0.1 with key=supersecretvalue")


@pytest.mark.parametrize("runtime_with", [{}], indirect=True)
def test_shallow_health_names_configured_capabilities_without_values(runtime_with: Container) -> None:
    response = call_health()
    body = json.loads(response.get_body())
    assert response.status_code == 200
    assert body["capabilities"] == {"fleet": True, "credentials": False, "images": False}
    assert "c2VjcmV0LWtleQ" not in response.get_body().decode()
    assert "dependencies" not in body


@pytest.mark.parametrize("runtime_with", [{"arm": lambda: None, "storage": broken}], indirect=True)
def test_deep_health_reports_each_dependency_and_degrades_on_failure(runtime_with: Container) -> None:
    response = call_health("deep=true")
    body = json.loads(response.get_body())
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert body["dependencies"]["arm"]["status"] == "ok"
    assert body["dependencies"]["storage"]["status"] == "failed"
    assert "supersecretvalue" not in response.get_body().decode()
