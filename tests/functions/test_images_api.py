"""The images HTTP API through the real handlers with real `azure.functions.HttpRequest`s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from tests.unit.images.fakes import GATEWAY_IMAGE, LOGIN_SERVER, HandlerWorld, handler_world


@pytest.fixture
def world() -> Iterator[HandlerWorld]:
    with handler_world() as installed:
        yield installed


def call(
    name: str,
    method: str,
    path: str,
    *,
    body: Any = None,
    params: dict[str, str] | None = None,
    route_params: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, str]:
    import functions.images as handlers

    handler = getattr(handlers, name).build().get_user_function()
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    request = func.HttpRequest(
        method,
        f"http://localhost/api/{path}",
        body=data,
        params=params or {},
        route_params=route_params or {},
        headers={"x-functions-key": "k1"},
    )
    response = handler(request)
    text = response.get_body().decode()
    return response.status_code, json.loads(text) if text else None, response.mimetype


def test_preflight_answers_the_verdict_for_an_unpushed_tag(world: HandlerWorld) -> None:
    status, body, _ = call(
        "image_check", "POST", "images/check", body={"image": GATEWAY_IMAGE, "tag": "v2.0.0"}
    )
    assert status == 200
    assert body["verdict"] == "will-roll-out"
    assert body["markers"][0]["new"] == f"{GATEWAY_IMAGE}:v2.0.0"
    assert body["trigger"] == "preflight"
    assert body["requestedBy"].startswith("function-key:")
    assert set(body) >= {"id", "image", "tag", "verdict", "reason", "markers", "eta", "followUp"}


def test_preflight_of_a_prerelease_says_which_rule_filters_it(world: HandlerWorld) -> None:
    _, body, _ = call(
        "image_check", "POST", "images/check", body={"image": GATEWAY_IMAGE, "tag": "v2.0.0-rc.1"}
    )
    assert body["verdict"] == "filtered-out"
    assert body["policies"][0]["rule"] == "range"


def test_a_repository_without_registry_means_the_configured_registry(world: HandlerWorld) -> None:
    _, body, _ = call(
        "image_check", "POST", "images/check", body={"image": "ipc/opcua-gateway", "tag": "v1.0.0"}
    )
    assert body["image"] == f"{LOGIN_SERVER}/ipc/opcua-gateway"
    assert body["verdict"] == "not-latest"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"image": GATEWAY_IMAGE}, "tag"),
        ({"tag": "v1"}, "image"),
        ({"image": f"{GATEWAY_IMAGE}:v1", "tag": "v1"}, "image"),
        ({"image": GATEWAY_IMAGE, "tag": "bad tag"}, "tag"),
        ({"image": GATEWAY_IMAGE, "tag": "v1", "dryRun": True}, "dryRun"),
        ({"image": "Upper/Case", "tag": "v1"}, "image"),
    ],
)
def test_bad_input_is_a_400_problem_naming_the_field(
    world: HandlerWorld, body: dict[str, Any], field: str
) -> None:
    status, problem, mimetype = call("image_check", "POST", "images/check", body=body)
    assert status == 400
    assert mimetype == "application/problem+json"
    assert problem["field"] == field
    assert world.store.checks == {}


def test_an_oversized_body_is_413(world: HandlerWorld) -> None:
    status, _, _ = call("image_check", "POST", "images/check", raw=b"{" + b" " * 70_000 + b"}")
    assert status == 413


def test_checks_are_listed_by_image_and_tag_and_read_by_id(world: HandlerWorld) -> None:
    _, first, _ = call("image_check", "POST", "images/check", body={"image": GATEWAY_IMAGE, "tag": "v2.0.0"})
    call("image_check", "POST", "images/check", body={"image": GATEWAY_IMAGE, "tag": "v1.0.0"})
    status, listed, _ = call(
        "image_checks_list", "GET", "images/checks", params={"image": GATEWAY_IMAGE, "tag": "v2.0.0"}
    )
    assert status == 200
    assert [check["id"] for check in listed["checks"]] == [first["id"]]
    status, one, _ = call(
        "image_check_get", "GET", f"images/checks/{first['id']}", route_params={"id": first["id"]}
    )
    assert status == 200
    assert one == first


def test_listing_needs_an_image_and_a_sane_limit(world: HandlerWorld) -> None:
    assert call("image_checks_list", "GET", "images/checks")[0] == 400
    status, problem, _ = call(
        "image_checks_list", "GET", "images/checks", params={"image": GATEWAY_IMAGE, "limit": "0"}
    )
    assert (status, problem["field"]) == (400, "limit")


def test_an_unknown_check_is_404(world: HandlerWorld) -> None:
    status, problem, _ = call("image_check_get", "GET", "images/checks/nope", route_params={"id": "nope"})
    assert status == 404
    assert problem["status"] == 404


def test_images_shows_the_latest_per_policy(world: HandlerWorld) -> None:
    world.registry.tags["ipc/opcua-gateway"].append("v1.9.0")
    status, body, _ = call("images_latest", "GET", "images")
    assert status == 200
    gateway = next(item for item in body["policies"] if item["policy"] == "flux-system/opcua-gateway")
    assert gateway["latest"] == "v1.9.0"
    assert gateway["inGit"] == [f"{GATEWAY_IMAGE}:v1.4.2"]
    assert gateway["upToDate"] is False


@pytest.mark.parametrize("limit", ["²", "٣", "9" * 5000, " 5", "5 ", "+5", "0x10"])
def test_an_odd_limit_is_a_400_naming_it_never_a_500(world: HandlerWorld, limit: str) -> None:
    status, problem, _ = call(
        "image_checks_list", "GET", "images/checks", params={"image": GATEWAY_IMAGE, "limit": limit}
    )
    assert (status, problem["field"]) == (400, "limit")
