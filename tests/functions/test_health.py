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


def call_deep() -> func.HttpResponse:
    from functions.health import get_health_deep

    user = get_health_deep.build().get_user_function()
    return user(func.HttpRequest("GET", "http://localhost/api/health/deep", body=b""))


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
    response = call_deep()
    body = json.loads(response.get_body())
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert body["dependencies"]["arm"]["status"] == "ok"
    assert body["dependencies"]["storage"]["status"] == "failed"
    assert "supersecretvalue" not in response.get_body().decode()


# --- deep health is keyed, shared and bounded (issue 12: finding 14) ----------------------------------
@pytest.mark.parametrize("runtime_with", [{"storage": broken}], indirect=True)
def test_anonymous_deep_health_is_refused_and_calls_no_dependency(runtime_with: Container) -> None:
    response = call_health("deep=true")
    assert response.status_code == 400
    assert json.loads(response.get_body())["field"] == "deep"
    assert "supersecretvalue" not in response.get_body().decode()


def test_the_deep_route_needs_a_function_key() -> None:
    from functions.health import get_health, get_health_deep

    assert get_health_deep.build().get_trigger().auth_level == func.AuthLevel.FUNCTION
    assert get_health.build().get_trigger().auth_level == func.AuthLevel.ANONYMOUS


def test_deep_answers_are_cached_and_one_run_at_a_time() -> None:
    import threading
    import time

    calls: list[float] = []
    gate = threading.Event()

    def slow() -> None:
        calls.append(time.monotonic())
        gate.wait(5)

    clock = [100.0]
    service = HealthService(
        settings=Settings.from_env({}), probes={"arm": slow}, monotonic=lambda: clock[0], cache_s=30.0
    )
    threads = [threading.Thread(target=service.check, kwargs={"deep": True}) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1, "eight concurrent deep checks share one probe run"
    clock[0] += 29
    service.check(deep=True)
    assert len(calls) == 1, "within 30 s the answer is reused"
    clock[0] += 2
    service.check(deep=True)
    assert len(calls) == 2


def test_a_hung_probe_is_not_started_again_while_it_still_runs() -> None:
    import threading

    release = threading.Event()
    started: list[int] = []

    def hung() -> None:
        started.append(1)
        release.wait(10)

    clock = [0.0]
    service = HealthService(
        settings=Settings.from_env({}),
        probes={"acr": hung},
        monotonic=lambda: clock[0],
        cache_s=30.0,
        timeout_s=0.2,
    )
    first = service.check(deep=True)
    assert first["dependencies"]["acr"]["status"] == "timeout"
    for _ in range(5):
        clock[0] += 31
        assert service.check(deep=True)["dependencies"]["acr"]["status"] == "timeout"
    assert len(started) == 1, "no pile of abandoned probe threads"
    release.set()
