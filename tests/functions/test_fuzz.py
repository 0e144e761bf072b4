"""Odd input never gets a 5xx (issue 12, finding 6): every trigger of the app, fuzzed.

Property-based (hypothesis) over every HTTP route, both Event Grid handlers in both schemas, and the
queue handlers, each called the way the worker calls it, over a container of in-memory fakes (no
transient fault is ever injected, so any 5xx or escaping exception is a bug, not bad luck). Examples
are bounded so the whole file stays a few seconds in `make test`; a failure prints the input that
caused it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.config import Settings
from shared.container import Container, set_container
from shared.services.fleet.health_report import FleetHealth
from shared.services.fleet.inventory import FleetInventory
from shared.services.fleet.service import FleetService
from shared.services.health import HealthService
from tests.functions.appkit import indexed_functions
from tests.functions.test_credentials_handlers import World as CredentialsWorld
from tests.unit.conformance.fakes import conformance_over_fakes
from tests.unit.fleet.fakes import SUB_A, SUB_B, make_panel, make_world
from tests.unit.images.fakes import LOGIN_SERVER, handler_world
from tests.unit.images.test_runner import runner_check_over_fakes

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same inputs on every run: a CI failure reproduces locally
)
FUNCTIONS = {f.get_function_name(): f for f in indexed_functions()}
HTTP = sorted(name for name, f in FUNCTIONS.items() if f.get_trigger().get_binding_name() == "httpTrigger")
QUEUES = sorted(name for name, f in FUNCTIONS.items() if f.get_trigger().get_binding_name() == "queueTrigger")
EVENT_GRID = sorted(
    name for name, f in FUNCTIONS.items() if f.get_trigger().get_binding_name() == "eventGridTrigger"
)

# Field names the app reads, so the fuzz reaches past "unknown field" into each field's validation.
FIELDS = [
    "reason", "target", "clusters", "tags", "groups", "all", "subscriptions", "dryRun", "waitSeconds",
    "version", "image", "tag", "registry", "repository", "configuration", "op", "panels", "stage", "v",
    "checkId", "attempt", "secret", "vaultName", "objectName", "id", "digest",
]  # fmt: skip
QUERY = ["limit", "image", "kind", "deep", "tags", "clusters", "group", "ring", "cursor", "all", "code"]
EVENT_TYPES = [
    "Microsoft.ContainerRegistry.ImagePushed",
    "Microsoft.ContainerRegistry.ImageDeleted",
    "Microsoft.KeyVault.SecretNewVersionCreated",
    "Microsoft.KeyVault.SecretNearExpiry",
    "Microsoft.KeyVault.SecretExpired",
    "Microsoft.EventGrid.SubscriptionValidationEvent",
]

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=6)
bodies = (
    json_objects.map(lambda o: json.dumps(o).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
    | st.just(b"")
)
# Odd values first: hypothesis tries earlier alternatives more, and these are where parsers break.
texts = st.sampled_from(["", " ", "²", "٣", "9" * 5000, "ring:canary", "true", "-1", "0", "\x00"]) | st.text(
    max_size=40
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Idempotency-Key": texts,
        "x-ms-client-principal": texts,
        "x-ms-client-principal-name": texts,
        "x-functions-key": texts,
    },
)


def health_over_fakes() -> FleetHealth:
    """Fleet health over a fake Resource Graph (tests/unit/fleet/test_health.py's fleet)."""
    from tests.unit.fleet.test_health import SUB, FakeGraph, NoArm, fleet

    return FleetHealth(
        graph=FakeGraph(fleet()), arm=NoArm(), subscriptions=[SUB], configuration="ipc-platform-config",
        head=lambda: None, ledger=NoArm, secret_name="flux-gitops-pat", operations=NoArm,  # type: ignore[arg-type]
    )  # fmt: skip


@contextlib.contextmanager
def app_over_fakes() -> Iterator[Container]:
    """Every service of the app over in-memory fakes, installed as the worker's container."""
    with handler_world() as images:
        env = {
            "FLUXFLEET_SUBSCRIPTION_IDS": f"{SUB_A},{SUB_B}",
            "FLUXFLEET_ACR_LOGIN_SERVER": LOGIN_SERVER,
        }
        config = Settings.from_env(env)
        fleet = make_world([make_panel(i, ring="canary" if i < 3 else "broad") for i in range(1, 5)])
        inventory = FleetInventory(
            reader=fleet.arm, subscriptions=config.subscription_ids, configuration=config.flux_configuration
        )
        fleet_service = FleetService(engine=fleet.engine, inventory=inventory)
        container = Container(
            config,
            engine=fleet.engine,
            fleet=fleet_service,
            conformance=conformance_over_fakes(directory=inventory, engine=fleet.engine, fleet=fleet_service),
            credentials=CredentialsWorld().service,
            images=images.service,
            health=HealthService(settings=config, probes={}),
            fleet_health=health_over_fakes(),
            runner_check=runner_check_over_fakes(inventory),
        )
        set_container(container)
        try:
            yield container
        finally:
            set_container(None)


@pytest.fixture(scope="module")
def app() -> Iterator[Container]:
    with app_over_fakes() as container:
        yield container


@pytest.mark.parametrize("name", HTTP)
@EXAMPLES
@given(
    body=bodies,
    params=st.fixed_dictionaries({}, optional=dict.fromkeys(QUERY, texts)),
    headers=headers,
    route_id=texts,
)
# The inputs of the findings, always tried first (then the generated ones).
@example(body=b"{}", params={"limit": "²"}, headers={}, route_id="x")
@example(body=b"{}", params={"limit": "9" * 5000}, headers={"Idempotency-Key": " " * 5000}, route_id="x")
def test_no_http_route_answers_5xx_to_odd_input(
    app: Container, name: str, *, body: bytes, params: dict[str, str], headers: dict[str, str], route_id: str
) -> None:
    function = FUNCTIONS[name]
    trigger = function.get_trigger()
    route = str(trigger.route)
    method = trigger.methods[0].value
    request = func.HttpRequest(
        method,
        "https://fluxfleet.example/api/" + route.replace("{id}", "x"),
        headers=headers,
        params=params,
        route_params={"id": route_id} if "{id}" in route else {},
        body=body if method == "POST" else b"",
    )
    response = function.get_user_function()(request)
    assert response.status_code < 500, (response.status_code, response.get_body()[:500])
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"
        problem = json.loads(response.get_body())
        assert problem["status"] == response.status_code


@pytest.mark.parametrize("name", QUEUES)
@EXAMPLES
@given(body=bodies)
def test_no_queue_handler_raises_on_an_odd_message(app: Container, name: str, body: bytes) -> None:
    message = func.QueueMessage(id="m1", body=body)
    FUNCTIONS[name].get_user_function()(message)


event_data = json_objects | st.fixed_dictionaries(
    {"target": st.dictionaries(st.sampled_from(["repository", "tag", "digest", "mediaType"]), texts)},
    optional={"action": texts, "request": st.dictionaries(st.sampled_from(["host", "method"]), texts)},
)


@pytest.mark.parametrize("name", EVENT_GRID)
@EXAMPLES
@given(
    schema=st.sampled_from(["eventgrid", "cloudevents"]),
    event_type=st.sampled_from(EVENT_TYPES) | st.text(max_size=30),
    data=event_data | json_values,
    subject=texts,
    topic=texts,
)
def test_no_event_grid_handler_raises_on_an_odd_event(
    app: Container, name: str, *, schema: str, event_type: str, data: Any, subject: str, topic: str
) -> None:
    when = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    event: Any
    if schema == "eventgrid":
        event = func.EventGridEvent(
            id="evt", data=data, topic=topic, subject=subject, event_type=event_type,
            event_time=when, data_version="1",
        )  # fmt: skip
    else:
        event = func.CloudEvent(
            id="evt", source=topic, type=event_type, specversion="1.0", data=data, time=when, subject=subject
        )
    FUNCTIONS[name].get_user_function()(event)
