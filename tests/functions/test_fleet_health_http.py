"""The fleet health routes with real `azure.functions` objects, over the service on in-memory fakes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from shared.config import Settings
from shared.container import Container, set_container
from shared.services.fleet.health_report import FleetHealth
from tests.unit.fleet.test_health import SUB, FakeGraph, NoArm, fleet


@pytest.fixture(autouse=True)
def installed() -> Iterator[None]:
    service = FleetHealth(
        graph=FakeGraph(fleet()),
        arm=NoArm(),
        subscriptions=[SUB],
        configuration="ipc-platform-config",
        head=lambda: None,
        ledger=NoArm,
        secret_name="flux-gitops-pat",
        operations=NoArm,  # type: ignore[arg-type]
    )
    settings = Settings.from_env({"FLUXFLEET_SUBSCRIPTION_IDS": SUB})
    set_container(Container(settings, fleet_health=service))
    yield
    set_container(None)


Answer = tuple[int, dict[str, Any], func.HttpResponse]


def call(
    handler: Any,
    path: str,
    *,
    params: dict[str, str] | None = None,
    route_params: dict[str, str] | None = None,
) -> Answer:
    request = func.HttpRequest(
        "GET",
        f"https://fluxfleet.example{path}",
        headers={"x-functions-key": "k"},
        params=params or {},
        route_params=route_params or {},
        body=b"",
    )
    response = handler.build().get_user_function()(request)
    return response.status_code, json.loads(response.get_body().decode()), response


def test_the_health_route_answers_counts_and_a_page() -> None:
    from functions.fleet_health import fleet_health

    status, body, _ = call(fleet_health, "/api/fleet/health", params={"limit": "2"})

    assert status == 200
    assert body["total"] == 9
    assert body["counts"]["offline"] == 1
    assert len(body["panels"]) == 2
    assert body["nextCursor"]


def test_a_bad_limit_is_a_problem_naming_the_field() -> None:
    from functions.fleet_health import fleet_health

    status, body, response = call(fleet_health, "/api/fleet/health", params={"limit": "abc"})

    assert status == 400
    assert body["field"] == "limit"
    assert response.mimetype == "application/problem+json"


def test_an_unknown_panel_is_a_404_problem() -> None:
    from functions.fleet_health import fleet_panel

    status, body, response = call(
        fleet_panel, "/api/fleet/panels/ipc-panel-9999", route_params={"panel": "ipc-panel-9999"}
    )

    assert status == 404
    assert response.mimetype == "application/problem+json"
    assert "ipc-panel-9999" in body["detail"]
