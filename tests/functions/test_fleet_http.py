"""The fleet handlers with real `azure.functions` objects, over an engine built on in-memory fakes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from shared.config import Settings
from shared.container import Container, set_container
from shared.services.fleet.inventory import FleetInventory
from shared.services.fleet.service import FleetService
from tests.unit.fleet.fakes import SUB_A, SUB_B, World, make_panel, make_world

KEY = "the-function-key"


@pytest.fixture
def world() -> Iterator[World]:
    panels = [make_panel(i, ring="canary" if i <= 2 else "broad") for i in range(1, 6)]
    built = make_world(panels)
    install(built, {})
    yield built
    set_container(None)


def install(world: World, extra: dict[str, str]) -> None:
    settings = Settings.from_env({"FLUXFLEET_SUBSCRIPTION_IDS": f"{SUB_A},{SUB_B}", **extra})
    inventory = FleetInventory(
        reader=world.arm, subscriptions=settings.subscription_ids, configuration=settings.flux_configuration
    )
    fleet = FleetService(engine=world.engine, inventory=inventory)
    set_container(Container(settings, engine=world.engine, fleet=fleet))


def call(
    handler: Any,
    method: str,
    path: str,
    *,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    route_params: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], func.HttpResponse]:
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    request = func.HttpRequest(
        method,
        f"https://fluxfleet.example{path}",
        headers={"x-functions-key": KEY, **(headers or {})},
        params=params or {},
        route_params=route_params or {},
        body=payload,
    )
    response = handler.build().get_user_function()(request)
    text = response.get_body().decode()
    return response.status_code, json.loads(text) if text else {}, response


def suspend(body: Any = None, **kwargs: Any) -> tuple[int, dict[str, Any], func.HttpResponse]:
    from functions.fleet import fleet_suspend

    return call(fleet_suspend, "POST", "/api/fleet/suspend", body=body, **kwargs)


GOOD = {"reason": "release 42", "target": {"tags": {"ring": "canary"}}}


def test_a_suspend_answers_202_with_a_status_url_and_location(world: World) -> None:
    status, body, response = suspend(GOOD)
    assert status == 202
    assert body["status"] == "running"
    assert body["statusUrl"] == f"https://fluxfleet.example/api/operations/{body['operationId']}"
    assert response.headers["Location"] == body["statusUrl"]
    record = world.store.get_operation(body["operationId"])
    assert record is not None
    assert record.requested_by.startswith("function-key:")
    assert KEY not in record.requested_by


def test_the_operation_is_readable_and_listed(world: World) -> None:
    from functions.fleet import fleet_get_operation, fleet_list_operations

    _, started, _ = suspend(GOOD)
    world.queue.run(world.engine, between=world.arm.tick)
    status, doc, _ = call(
        fleet_get_operation, "GET", "/api/operations/x", route_params={"id": started["operationId"]}
    )
    assert status == 200
    assert doc["status"] == "succeeded"
    assert {c["name"] for c in doc["clusters"]} == {"ipc-panel-0001", "ipc-panel-0002"}
    status, listing, _ = call(fleet_list_operations, "GET", "/api/operations", params={"kind": "suspend"})
    assert status == 200
    assert [op["id"] for op in listing["operations"]] == [started["operationId"]]
    status, _, _ = call(fleet_get_operation, "GET", "/api/operations/nope", route_params={"id": "nope"})
    assert status == 404


def test_wait_seconds_answers_200_with_the_final_document_when_it_finishes(world: World) -> None:
    world.arm.sim("ipc-panel-0001").suspended = True
    world.arm.sim("ipc-panel-0002").suspended = True
    # Both panels are already suspended: the workers finish within the wait (the fake clock runs them).
    original_sleep = world.clock.sleep

    def sleep_and_work(seconds: float) -> None:
        world.queue.run(world.engine, max_messages=5)
        original_sleep(seconds)

    world.clock.sleep = sleep_and_work  # type: ignore[method-assign]
    status, doc, response = suspend({**GOOD, "waitSeconds": 30})
    assert status == 200
    assert doc["status"] == "succeeded"
    assert doc["summary"]["unchanged"] == 2
    assert response.headers["Location"].endswith(doc["id"])


def test_dry_run_answers_200_and_writes_nothing(world: World) -> None:
    status, doc, _ = suspend({**GOOD, "dryRun": True})
    assert status == 200
    assert doc["dryRun"] is True
    assert doc["wouldChange"] == 2
    assert world.store.operations == {}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({**GOOD, "extra": 1}, 400, "extra"),
        ({**GOOD, "reason": ""}, 400, "reason"),
        ({**GOOD, "target": {"all": True, "tags": {"ring": "canary"}}}, 400, "target.all"),
        ({**GOOD, "target": {"clusters": ["ipc-panel-0404"]}}, 422, "target.clusters"),
        ({**GOOD, "target": {"tags": {"ring": "nowhere"}}}, 422, "target"),
        ({**GOOD, "target": {"subscriptions": ["not-ours"]}}, 422, "target.subscriptions"),
    ],
)
def test_bad_requests_get_problem_json_naming_the_field_and_change_nothing(
    world: World, body: dict[str, Any], status: int, field: str
) -> None:
    got, problem, response = suspend(body)
    assert got == status
    assert response.mimetype == "application/problem+json"
    assert problem["field"] == field
    assert world.store.operations == {}
    assert world.arm.patch_count() == 0


def test_a_body_over_64_kib_is_413(world: World) -> None:
    status, problem, _ = suspend(raw=json.dumps({**GOOD, "reason": "x" * 70_000}).encode())
    assert status == 413
    assert problem["field"] == "body"
    assert world.store.operations == {}


def test_unknown_names_are_listed(world: World) -> None:
    _, problem, _ = suspend({**GOOD, "target": {"clusters": ["ipc-panel-0001", "typo-1", "typo-2"]}})
    assert problem["unknown"] == ["typo-1", "typo-2"]


def test_idempotency_key_replays_and_conflicts(world: World) -> None:
    headers = {"Idempotency-Key": "build-77"}
    _, first, _ = suspend(GOOD, headers=headers)
    status, again, _ = suspend(GOOD, headers=headers)
    assert status == 202
    assert again["operationId"] == first["operationId"]
    status, problem, _ = suspend({**GOOD, "reason": "other"}, headers=headers)
    assert status == 409
    assert problem["operationId"] == first["operationId"]
    assert len(world.store.operations) == 1


def test_an_overlapping_operation_is_409_naming_the_running_one(world: World) -> None:
    from functions.fleet import fleet_resume

    _, first, _ = suspend(GOOD)
    status, problem, _ = call(
        fleet_resume, "POST", "/api/fleet/resume", body={**GOOD, "target": {"clusters": ["ipc-panel-0002"]}}
    )
    assert status == 409
    assert problem["operationId"] == first["operationId"]


def test_only_allowed_principals_may_change_the_fleet(world: World) -> None:
    install(world, {"FLUXFLEET_ALLOWED_PRINCIPALS": "release-bot@contoso.com"})
    status, problem, _ = suspend(GOOD)
    assert status == 403
    assert problem["title"] == "Forbidden"
    status, _, _ = suspend(GOOD, headers={"x-ms-client-principal-name": "release-bot@contoso.com"})
    assert status == 403, "a plain name header is anyone's to send while platform authentication is off"
    install(
        world, {"FLUXFLEET_ALLOWED_PRINCIPALS": "release-bot@contoso.com", "WEBSITE_AUTH_ENABLED": "True"}
    )
    claims = [{"typ": "preferred_username", "val": "Release-Bot@contoso.com"}]
    header = base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()
    status, _, _ = suspend(GOOD, headers={"x-ms-client-principal": header})
    assert status == 202


def test_the_inventory_lists_panels_with_their_flux_state(world: World) -> None:
    from functions.fleet import fleet_inventory

    world.arm.sim("ipc-panel-0001").suspended = True
    status, doc, _ = call(fleet_inventory, "GET", "/api/fleet", params={"tags": "ring:canary"})
    assert status == 200
    assert [c["name"] for c in doc["clusters"]] == ["ipc-panel-0001", "ipc-panel-0002"]
    first = doc["clusters"][0]
    assert first["configurationExists"] is True
    assert first["suspended"] is True
    assert first["complianceState"] == "Compliant"
    assert doc["suspended"] == 1
    status, problem, _ = call(fleet_inventory, "GET", "/api/fleet", params={"clusters": "nope"})
    assert status == 422
    assert problem["unknown"] == ["nope"]


def test_the_apply_worker_processes_its_message_and_drops_garbage(world: World) -> None:
    from functions.fleet import fleet_apply

    suspend(GOOD)
    queue, message, _ = world.queue.sent[0]
    worker = fleet_apply.build().get_user_function()
    worker(func.QueueMessage(body=json.dumps(message).encode()))
    assert world.arm.patch_count() == 2
    worker(func.QueueMessage(body=b"not json"))  # logged and dropped, not retried forever
    assert world.arm.patch_count() == 2
    assert queue == "ff-fleet-apply"


@pytest.mark.parametrize("limit", ["²", "٣", "9" * 5000, "-1", "1e3"])
def test_an_odd_operations_limit_is_a_400_naming_it_never_a_500(world: World, limit: str) -> None:
    from functions.fleet import fleet_list_operations

    status, problem, _ = call(fleet_list_operations, "GET", "/api/operations", params={"limit": limit})
    assert (status, problem["field"]) == (400, "limit")


# --- cancel (issue 12: finding 11) ---------------------------------------------------------------------
def cancel(operation_id: str, body: Any, **kwargs: Any) -> tuple[int, dict[str, Any], func.HttpResponse]:
    from functions.fleet import fleet_cancel_operation

    return call(
        fleet_cancel_operation,
        "POST",
        f"/api/operations/{operation_id}/cancel",
        body=body,
        route_params={"id": operation_id},
        **kwargs,
    )


def test_cancelling_a_running_operation_skips_its_unsettled_panels_and_frees_them(world: World) -> None:
    _, started, _ = suspend(GOOD)
    operation_id = started["operationId"]
    status, problem, _ = cancel(operation_id, {})
    assert (status, problem["field"]) == (400, "reason")
    status, doc, _ = cancel(operation_id, {"reason": "wrong ring selected"})
    assert status == 200
    assert doc["status"] == "cancelled"
    assert doc["cancelledBy"].startswith("function-key:")
    assert all(c["state"] == "skipped" for c in doc["clusters"])
    assert all(
        c["detail"].startswith(f"cancelled by {doc['cancelledBy']}: wrong ring selected")
        for c in doc["clusters"]
    )
    # Its locks are free: the same panels can be changed again at once.
    status, again, _ = suspend({**GOOD, "reason": "the right change"})
    assert status == 202, again
    # And the queued work of the cancelled operation does nothing.
    world.queue.run(world.engine, between=world.arm.tick)
    assert world.engine.get_operation(operation_id)["status"] == "cancelled"
    status, _, _ = cancel(operation_id, {"reason": "again"})
    assert status == 200, "cancelling twice is harmless"


def test_cancelling_an_unknown_or_finished_operation_says_so(world: World) -> None:
    assert cancel("20260101T000000Z-0000000000", {"reason": "x"})[0] == 404
    _, started, _ = suspend(GOOD)
    world.queue.run(world.engine, between=world.arm.tick)
    status, problem, _ = cancel(started["operationId"], {"reason": "too late"})
    assert status == 409
    assert "already ended" in problem["detail"]
