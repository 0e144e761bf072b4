"""Event Grid delivery from the lab's system topics to a real webhook, as Azure delivers it.

A plain HTTP receiver in the test process plays the subscriber (handshake and notifications). The module has a
lab of its own: the retry and expiry tests move the lab clock forward, which cannot be undone.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from tests.labkit import LabHandle, LabProcess

pytestmark = pytest.mark.lab

IMAGE_PUSHED = "Microsoft.ContainerRegistry.ImagePushed"
NEW_VERSION = "Microsoft.KeyVault.SecretNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.SecretNearExpiry"
EXPIRED = "Microsoft.KeyVault.SecretExpired"
DAY_S = 86_400
# How long a test waits for an event that should arrive (real seconds; deliveries take milliseconds).
ARRIVAL_TIMEOUT_S = 10.0
# How long a test watches for an event that must NOT arrive.
QUIET_PERIOD_S = 0.5


@dataclass(frozen=True)
class Received:
    method: str
    headers: dict[str, str]
    body: Any


class Receiver:
    """A webhook on 127.0.0.1 answering Event Grid's handshakes and recording every request."""

    def __init__(self, *, notification_status: int = 200, accept_handshake: bool = True) -> None:
        self.notification_status = notification_status
        self.accept_handshake = accept_handshake
        self.requests: list[Received] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _record(self, body: Any) -> None:
                with receiver._changed:
                    receiver.requests.append(Received(self.command, dict(self.headers.items()), body))
                    receiver._changed.notify_all()

            def _answer(
                self, status: int, body: object = None, headers: dict[str, str] | None = None
            ) -> None:
                payload = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_OPTIONS(self) -> None:
                self._record(None)
                if receiver.accept_handshake:
                    origin = self.headers.get("WebHook-Request-Origin", "")
                    self._answer(200, headers={"WebHook-Allowed-Origin": origin, "Allow": "POST, OPTIONS"})
                else:
                    self._answer(403)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")
                self._record(body)
                if self.headers.get("aeg-event-type") == "SubscriptionValidation":
                    if receiver.accept_handshake:
                        self._answer(200, {"validationResponse": body[0]["data"]["validationCode"]})
                    else:
                        self._answer(404)
                    return
                self._answer(receiver.notification_status)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/events?code=function-key"

    @property
    def notifications(self) -> list[Received]:
        with self._changed:
            return [r for r in self.requests if r.headers.get("aeg-event-type") == "Notification"]

    def wait_for_notifications(self, count: int) -> list[Received]:
        deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
        with self._changed:
            while len(self.notifications) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} notifications, got {len(self.notifications)}")
                self._changed.wait(remaining)
            return self.notifications

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def eg_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    state_dir: Path = tmp_path_factory.mktemp("eventgrid-lab")
    with LabProcess(state_dir, clusters=1, azurite=False) as handle:
        yield handle


@pytest.fixture
def lab(eg_lab: LabHandle) -> Iterator[LabHandle]:
    eg_lab.control("POST", "/_lab/reset")
    yield eg_lab
    eg_lab.control("POST", "/_lab/reset")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    webhook = Receiver()
    yield webhook
    webhook.close()


def subscribe(lab: LabHandle, receiver: Receiver, **options: Any) -> dict[str, Any]:
    body = {"name": "fluxfleet-events", "topic": "acr", "endpoint": receiver.url, **options}
    return dict(lab.control("POST", "/_lab/eventgrid/subscriptions", body, expect=201))


def advance(lab: LabHandle, seconds: float) -> None:
    lab.control("POST", "/_lab/clock/advance", {"seconds": seconds})


def test_pushing_an_image_delivers_exactly_its_image_pushed_event(lab: LabHandle, receiver: Receiver) -> None:
    subscribe(lab, receiver, eventTypes=[IMAGE_PUSHED], headers={"x-functions-key": "k"})
    handshake = receiver.requests[0]
    assert handshake.headers["aeg-event-type"] == "SubscriptionValidation"
    assert handshake.body[0]["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"

    pushed = lab.control(
        "POST", "/_lab/acr/push", {"repository": "ipc/opcua-gateway", "tag": "v1.9.0"}, expect=201
    )

    [delivery] = receiver.wait_for_notifications(1)
    [event] = delivery.body
    assert event["id"] == pushed["eventId"]
    assert event["eventType"] == IMAGE_PUSHED
    assert event["subject"] == "ipc/opcua-gateway:v1.9.0"
    assert event["topic"] == lab.doc["eventgrid"]["topics"]["acr"]
    assert (event["dataVersion"], event["metadataVersion"]) == ("2.0", "1")
    target = event["data"]["target"]
    assert (target["repository"], target["tag"], target["digest"]) == (
        "ipc/opcua-gateway",
        "v1.9.0",
        pushed["digest"],
    )
    assert event["data"]["request"]["host"] == lab.doc["acr_login_server"]
    assert event["data"]["action"] == "push"
    headers = delivery.headers
    assert headers["aeg-subscription-name"] == "FLUXFLEET-EVENTS"
    assert headers["aeg-delivery-count"] == "0"
    assert headers["x-functions-key"] == "k"
    assert headers["Content-Type"].startswith("application/json")
    time.sleep(QUIET_PERIOD_S)
    assert len(receiver.notifications) == 1


def test_cloud_events_subscription_gets_the_options_handshake_and_one_structured_event(
    lab: LabHandle, receiver: Receiver
) -> None:
    subscribe(lab, receiver, schema="CloudEventSchemaV1_0")
    handshake = receiver.requests[0]
    assert handshake.method == "OPTIONS"
    assert handshake.headers["WebHook-Request-Origin"] == "eventgrid.azure.net"

    pushed = lab.control("POST", "/_lab/acr/push", {"repository": "ipc/health-monitor", "tag": "v1.0.8"})

    [delivery] = receiver.wait_for_notifications(1)
    event = delivery.body
    assert isinstance(event, dict), "CloudEvents are delivered one per request, not in an array"
    assert (event["specversion"], event["id"], event["type"]) == ("1.0", pushed["eventId"], IMAGE_PUSHED)
    assert event["source"] == lab.doc["eventgrid"]["topics"]["acr"]
    assert event["subject"] == "ipc/health-monitor:v1.0.8"
    assert event["data"]["target"]["digest"] == pushed["digest"]
    assert delivery.headers["Content-Type"].startswith("application/cloudevents+json")


@pytest.mark.parametrize("schema", ["EventGridSchema", "CloudEventSchemaV1_0"])
def test_a_failed_handshake_rejects_the_subscription_with_the_reason(lab: LabHandle, schema: str) -> None:
    webhook = Receiver(accept_handshake=False)
    try:
        with pytest.raises(AssertionError, match="Url validation") as failure:
            subscribe(lab, webhook, schema=schema)
        assert "function-key" not in str(failure.value), "the endpoint's query (a function key) leaked"
        assert lab.control("GET", "/_lab/eventgrid/subscriptions")["subscriptions"] == []
    finally:
        webhook.close()


def test_a_failing_receiver_is_retried_on_event_grids_schedule_then_dead_lettered(lab: LabHandle) -> None:
    webhook = Receiver(notification_status=500)
    try:
        subscribe(lab, webhook, maxDeliveryAttempts=3)
        pushed = lab.control("POST", "/_lab/acr/push", {"repository": "ipc/log-forwarder", "tag": "v1.3.0"})
        webhook.wait_for_notifications(1)
        time.sleep(QUIET_PERIOD_S)
        assert len(webhook.notifications) == 1, "retried before Event Grid's first 10 s step"

        advance(lab, 10)
        second = webhook.wait_for_notifications(2)[1]
        advance(lab, 30)
        third = webhook.wait_for_notifications(3)[2]
        assert (second.headers["aeg-delivery-count"], third.headers["aeg-delivery-count"]) == ("1", "2")

        deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
        while not (dead := lab.control("GET", "/_lab/eventgrid/deadletters")["deadletters"]):
            assert time.monotonic() < deadline, "no dead letter recorded"
            time.sleep(0.05)
        [record] = dead
        assert record["id"] == pushed["eventId"]
        assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
        assert (record["deliveryAttempts"], record["lastHttpStatusCode"]) == (3, 500)
        attempts = lab.control("GET", f"/_lab/eventgrid/deliveries?eventId={pushed['eventId']}")["deliveries"]
        assert [(a["attempt"], a["status"]) for a in attempts] == [(1, 500), (2, 500), (3, 500)]
    finally:
        webhook.close()


def test_a_bad_request_from_the_receiver_is_dead_lettered_at_once(lab: LabHandle) -> None:
    webhook = Receiver(notification_status=400)
    try:
        subscribe(lab, webhook)
        lab.control("POST", "/_lab/acr/push", {"repository": "ipc/log-forwarder", "tag": "v1.3.1"})
        webhook.wait_for_notifications(1)
        advance(lab, 60)
        time.sleep(QUIET_PERIOD_S)
        assert len(webhook.notifications) == 1, "a 400 must not be retried"
        [record] = lab.control("GET", "/_lab/eventgrid/deadletters")["deadletters"]
        assert record["deadLetterReason"] == "UndeliverableDueToHttpBadRequest"
        assert (record["deliveryAttempts"], record["lastDeliveryOutcome"]) == (1, "BadRequest")
    finally:
        webhook.close()


def test_subject_and_type_filters_select_the_events_delivered(lab: LabHandle, receiver: Receiver) -> None:
    subscribe(lab, receiver, subjectBeginsWith="IPC/OPCUA-", eventTypes=[IMAGE_PUSHED])
    lab.control("POST", "/_lab/acr/push", {"repository": "ipc/health-monitor", "tag": "v2.0.0"})
    lab.control("POST", "/_lab/acr/push", {"repository": "ipc/opcua-simulator", "tag": "v2.0.0"})
    [delivery] = receiver.wait_for_notifications(1)
    assert delivery.body[0]["subject"] == "ipc/opcua-simulator:v2.0.0"
    time.sleep(QUIET_PERIOD_S)
    assert len(receiver.notifications) == 1


def test_a_duplicate_rate_of_one_delivers_every_event_twice_with_the_same_id(
    lab: LabHandle, receiver: Receiver
) -> None:
    subscribe(lab, receiver, duplicateRate=1.0)
    lab.control("POST", "/_lab/acr/push", {"repository": "ipc/motion-gateway", "tag": "v1.4.0"})
    first, second = receiver.wait_for_notifications(2)
    assert first.body[0]["id"] == second.body[0]["id"]


def test_a_deleted_subscription_receives_nothing(lab: LabHandle, receiver: Receiver) -> None:
    subscribe(lab, receiver)
    lab.control("DELETE", "/_lab/eventgrid/subscriptions/fluxfleet-events", expect=204)
    lab.control("POST", "/_lab/acr/push", {"repository": "ipc/motion-gateway", "tag": "v1.4.1"})
    time.sleep(QUIET_PERIOD_S)
    assert receiver.notifications == []


def test_setting_a_secret_delivers_secret_new_version_created(lab: LabHandle, receiver: Receiver) -> None:
    subscribe(lab, receiver, topic="keyvault")
    with lab.applied_env():
        client = SecretClient(
            lab.doc["keyvault"]["url"], ManagedIdentityCredential(), verify_challenge_resource=False
        )
        secret = client.set_secret("flux-gitops-pat", "rotated-pat-value")

    [delivery] = receiver.wait_for_notifications(1)
    [event] = delivery.body
    assert (event["eventType"], event["subject"]) == (NEW_VERSION, "flux-gitops-pat")
    assert event["topic"] == lab.doc["keyvault"]["id"]
    assert event["data"]["Version"] == secret.properties.version
    assert event["data"]["Id"] == secret.id
    assert (event["data"]["VaultName"], event["data"]["ObjectType"]) == ("kv-ipc-fluxfleet", "Secret")
    assert "rotated-pat-value" not in json.dumps(event)


def test_advancing_the_clock_delivers_near_expiry_then_expired_once_each(
    lab: LabHandle, receiver: Receiver
) -> None:
    subscribe(lab, receiver, topic="keyvault", eventTypes=[NEAR_EXPIRY, EXPIRED])
    pat = lab.state()["keyvault"]["secrets"]["flux-gitops-pat"]
    [version] = pat["versions"]
    now = datetime.strptime(lab.control("GET", "/_lab/clock")["now"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC
    )
    seconds_to_expiry = version["exp"] - now.timestamp()
    assert seconds_to_expiry > 30 * DAY_S, "the seeded PAT should not be near expiry yet"

    advance(lab, seconds_to_expiry - 29 * DAY_S)
    [near] = receiver.wait_for_notifications(1)
    advance(lab, 30 * DAY_S)
    expired = receiver.wait_for_notifications(2)[1]
    advance(lab, 30 * DAY_S)
    time.sleep(QUIET_PERIOD_S)

    assert [n.body[0]["eventType"] for n in receiver.notifications] == [NEAR_EXPIRY, EXPIRED]
    for delivery in (near, expired):
        data = delivery.body[0]["data"]
        assert (data["ObjectName"], data["Version"], data["EXP"]) == (
            "flux-gitops-pat",
            version["version"],
            version["exp"],
        )
