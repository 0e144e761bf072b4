"""The local Functions host (`python -m lab host`): the sample app's functions, reached as Azure reaches them.

The first part checks the host's pure rules (routes, schedules, settings, host.json, indexing) without
processes. The rest starts a small lab (3 panels, Azurite) and the host with tests/e2e/sample_app, then
drives it over HTTP, the Event Grid webhook, the admin API and real Azurite queues. The sample functions
append what they received to a JSON-lines file, which is how these tests see inside the host.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from lab.host.errors import FunctionLoadError, HostStartupError
from lab.host.eventgrid import parse_declarations, validation_code
from lab.host.hostconfig import load_host_config, parse_timespan
from lab.host.indexing import index_function
from lab.host.queues import BackoffDelay, decode_body, poison_queue_name
from lab.host.routing import RouteTemplateError, compile_route, precedence_key
from lab.host.settings import compose_app_settings, render_local_settings, resolve_expression
from lab.host.timers import NEVER, CronSchedule, ScheduleStatus, check_past_due, parse_schedule
from tests.e2e.hostkit import SAMPLE_APP, HostProcess
from tests.labkit import REPO_ROOT, LabHandle, LabProcess

YEARLY = "0 0 0 1 1 *"  # a schedule that does not fire during a test run


# --- pure rules -----------------------------------------------------------------------------------------


def test_route_template_binds_typed_optional_and_catch_all_parameters() -> None:
    route = compile_route("items/{id:int}/{name?}", prefix="api")
    assert route.match("/api/items/42/wid%20get") == {"id": "42", "name": "wid get"}
    assert route.match("/api/ITEMS/42") == {
        "id": "42"
    }  # literals are case-insensitive; absent optional omitted
    assert route.match("/api/items/forty-two") is None  # the int constraint refuses
    assert route.match("/api/items/42/a/b") is None
    catch_all = compile_route("files/{*path}", prefix="api")
    assert catch_all.match("/api/files/a/b/c.txt") == {"path": "a/b/c.txt"}
    defaulted = compile_route("pages/{page:int=1}", prefix="")
    assert defaulted.match("/pages") == {"page": "1"}
    assert compile_route("v/{major:range(1,3)}", prefix="api").match("/api/v/4") is None


def test_route_precedence_puts_literals_before_parameters_before_catch_alls() -> None:
    routes = [compile_route(template, prefix="api") for template in ("{*any}", "items/{id}", "items/special")]
    ordered = [route.template for route in sorted(routes, key=precedence_key)]
    assert ordered == ["items/special", "items/{id}", "{*any}"]


@pytest.mark.parametrize("template", ["a/{x:nosuch}", "{*rest}/tail", "a/{x?}/b", "{x}/{X}"])
def test_route_templates_azure_rejects_are_rejected(template: str) -> None:
    with pytest.raises(RouteTemplateError):
        compile_route(template, prefix="api")


def test_ncrontab_has_seconds_first_and_requires_both_day_fields() -> None:
    every_ten_seconds = parse_schedule("*/10 * * * * *", zone=UTC)
    start = datetime(2030, 1, 1, 0, 0, 3, tzinfo=UTC)
    assert every_ten_seconds.next_after(start) == datetime(2030, 1, 1, 0, 0, 10, tzinfo=UTC)
    # 13th of the month AND a Friday (NCrontab), not "13th OR Friday" (Vixie cron): 2030-09-13 is a Friday.
    friday_13th = parse_schedule("0 0 0 13 * Fri", zone=UTC)
    assert friday_13th.next_after(start) == datetime(2030, 9, 13, tzinfo=UTC)


def test_timespan_schedules_and_bad_expressions() -> None:
    interval = parse_schedule("00:05:00", zone=UTC)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    assert interval.next_after(start) == start + timedelta(minutes=5)
    assert parse_timespan("1.02:03:04.5") == timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    for expression in ("*/5 * * * *", "every minute", "00:00:00"):  # 5 fields: Azure refuses it too
        with pytest.raises(HostStartupError):
            parse_schedule(expression, zone=UTC)


def test_monitor_reports_past_due_only_after_a_missed_occurrence() -> None:
    schedule = CronSchedule(expression="0 */5 * * * *", zone=UTC)
    last = datetime(2030, 1, 1, 0, 5, tzinfo=UTC)
    status = ScheduleStatus(last=last, next=last + timedelta(minutes=5), last_updated=last)
    assert check_past_due(now=last + timedelta(minutes=3), schedule=schedule, status=status)[0] is False
    assert check_past_due(now=last + timedelta(minutes=11), schedule=schedule, status=status)[0] is True
    first_start, recorded = check_past_due(now=last, schedule=schedule, status=None)
    assert first_start is False
    assert recorded.last == NEVER
    assert recorded.next == last + timedelta(minutes=5)


def test_app_settings_precedence_is_lab_then_process_then_local_settings() -> None:
    settings = compose_app_settings(
        lab_env={"REQUESTS_CA_BUNDLE": "/lab/ca.pem"},
        process_env={"REQUESTS_CA_BUNDLE": "/shell/ca.pem", "SHARED": "from-shell"},
        local_settings={"SHARED": "from-file", "ONLY_LOCAL": "x", "FUNCTIONS_WORKER_RUNTIME": "node"},
    )
    assert settings.get("REQUESTS_CA_BUNDLE") == "/lab/ca.pem"
    assert settings.get("SHARED") == "from-shell"
    assert settings.get("ONLY_LOCAL") == "x"
    assert settings.get("FUNCTIONS_WORKER_RUNTIME") == "python"
    assert resolve_expression("%SHARED%-q", settings.values, where="t") == "from-shell-q"
    with pytest.raises(HostStartupError, match="MISSING"):
        resolve_expression("%MISSING%", settings.values, where="t")


def test_rendered_local_settings_point_core_tools_at_the_lab() -> None:
    doc = render_local_settings({"env": {"AzureWebJobsStorage": "UseLab", "FLUXFLEET_GIT_BRANCH": "main"}})
    assert doc["IsEncrypted"] is False
    assert doc["Values"]["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert doc["Values"]["AzureWebJobsStorage"] == "UseLab"


def test_host_json_queue_options_and_limits(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "queues": {"maxDequeueCount": 3, "visibilityTimeout": "00:00:30", "batchSize": 8}
                },
            }
        )
    )
    options = load_host_config(tmp_path).queues
    assert (options.max_dequeue_count, options.visibility_timeout, options.batch_size) == (
        3,
        timedelta(seconds=30),
        8,
    )
    assert options.new_batch_threshold == 4  # batchSize / 2
    assert options.max_polling_interval == timedelta(minutes=1)
    assert options.message_encoding == "base64"
    (tmp_path / "host.json").write_text(json.dumps({"extensions": {"queues": {"batchSize": 33}}}))
    with pytest.raises(HostStartupError, match="batchSize"):
        load_host_config(tmp_path)


def test_queue_body_encoding_backoff_and_poison_names() -> None:
    assert decode_body(base64.b64encode(b"hello").decode(), "base64") == b"hello"
    with pytest.raises(ValueError, match="base64"):
        decode_body("not base64!", "base64")
    assert poison_queue_name("work") == "work-poison"
    assert poison_queue_name("work-poison") is None
    backoff = BackoffDelay(minimum=timedelta(milliseconds=100), maximum=timedelta(seconds=2))
    delays = [backoff.next_delay(found_messages=False) for _ in range(10)]
    assert delays[0] == pytest.approx(0.1)
    assert delays[-1] == 2.0
    assert delays == sorted(delays)
    assert backoff.next_delay(found_messages=True) == pytest.approx(0.1)


def test_indexing_refuses_a_parameter_that_is_not_a_binding() -> None:
    app = func.FunctionApp()

    @app.route(route="x")
    def handler(req: func.HttpRequest, extra: str) -> func.HttpResponse:
        return func.HttpResponse("")

    with pytest.raises(FunctionLoadError, match="extra"):
        index_function(app.get_functions()[0])


def test_event_subscription_declarations_are_validated() -> None:
    good = parse_declarations(
        [
            {
                "name": "acr-pushes",
                "topic": "acr",
                "function": "f",
                "eventTypes": ["Microsoft.ContainerRegistry.ImagePushed"],
                "schema": "CloudEventSchemaV1_0",
            }
        ],
        source="t",
    )
    assert good[0].schema == "CloudEventSchemaV1_0"
    with pytest.raises(HostStartupError, match="schema"):
        parse_declarations([{"name": "abc", "topic": "acr", "function": "f", "schema": "Custom"}], source="t")
    assert validation_code([{"data": {"validationCode": "C0DE"}}]) == "C0DE"
    assert validation_code({"data": json.dumps({"validationCode": "C1"})}) == "C1"


# --- the host against a lab -----------------------------------------------------------------------------


class Records:
    """The JSON lines the sample functions append, read from the test process."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self, function: str | None = None) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [row for row in rows if function is None or row["function"] == function]

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], *, function: str, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.all(function)
            if predicate(rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"records of {function} never satisfied the condition: {rows}")
            time.sleep(0.05)


def sample_env(records: Path, **overrides: str) -> dict[str, str]:
    env = {
        "SAMPLE_RECORDS": str(records),
        "SAMPLE_TICK_SCHEDULE": YEARLY,
        "SAMPLE_MONITORED_SCHEDULE": YEARLY,
        "SAMPLE_WORK_QUEUE": "sample-work",
    }
    env.update(overrides)
    return env


def queue(lab: LabHandle, name: str, *, encoded: bool = True) -> QueueClient:
    policies: dict[str, Any] = (
        {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}
        if encoded
        else {}
    )
    client = QueueClient.from_connection_string(lab.env["AzureWebJobsStorage"], name, **policies)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


@pytest.fixture(scope="module")
def host_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A small lab of the module's own (Azurite on: queues need storage); 3 panels start in seconds."""
    with LabProcess(tmp_path_factory.mktemp("hostlab"), clusters=3) as handle:
        yield handle


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Records:
    return Records(tmp_path_factory.mktemp("records") / "records.jsonl")


@pytest.fixture(scope="module")
def sample_host(host_lab: LabHandle, records: Records) -> Iterator[HostProcess]:
    with HostProcess(
        host_lab,
        app_dir=SAMPLE_APP,
        env=sample_env(records.path),
        subscriptions=SAMPLE_APP / "event-subscriptions.json",
    ) as host:
        yield host


@pytest.mark.e2e
def test_timer_function_runs_now_through_the_admin_endpoint(
    sample_host: HostProcess, records: Records
) -> None:
    before = len(records.all("tick"))
    refused = sample_host.call("POST", "/admin/functions/tick", key="function", json={"input": ""})
    assert refused.status_code == 401  # the admin API takes the master key only
    response = sample_host.call("POST", "/admin/functions/tick", key="master", json={"input": ""})
    assert response.status_code == 202
    rows = records.wait_for(lambda rows: len(rows) > before, function="tick")
    assert rows[-1]["type"] == "TimerRequest"
    assert rows[-1]["past_due"] is False
    assert "function=tick trigger=admin" in sample_host.log_text()


@pytest.mark.e2e
def test_run_on_startup_timer_runs_once_in_the_host_holding_its_lock(
    sample_host: HostProcess, records: Records
) -> None:
    rows = records.wait_for(lambda rows: len(rows) >= 1, function="on_startup")
    assert [row["past_due"] for row in rows] == [False]
    assert "function=on_startup trigger=timer:RunOnStartup" in sample_host.log_text()


@pytest.mark.e2e
def test_http_route_refuses_a_missing_or_wrong_key(sample_host: HostProcess) -> None:
    missing = sample_host.call("GET", "/api/items/7", key=None)
    assert missing.status_code == 401
    assert missing.content == b""
    wrong = sample_host.call("GET", "/api/items/7", key=None, headers={"x-functions-key": "not-the-key"})
    assert wrong.status_code == 401
    assert sample_host.call("GET", "/api/items/7").status_code == 200
    assert sample_host.call("GET", "/api/items/7", key="master").status_code == 200
    by_query = sample_host.call("GET", "/api/items/7", key=None, params={"code": sample_host.function_key})
    assert by_query.status_code == 200


@pytest.mark.e2e
def test_http_request_carries_route_params_query_headers_and_body(sample_host: HostProcess) -> None:
    response = sample_host.call(
        "POST", "/api/items/42/widget", params={"x": "1"}, data=b'{"a": 1}', headers={"x-sample": "here"}
    )
    assert response.status_code == 200
    assert response.headers["x-echo"] == "yes"
    echo = response.json()
    assert echo["route_params"] == {"id": "42", "name": "widget"}
    assert echo["params"] == {"x": "1"}
    assert echo["body"] == '{"a": 1}'
    assert echo["sample_header"] == "here"
    assert echo["method"] == "POST"
    assert echo["url"].endswith("/api/items/42/widget?x=1")
    assert "name" not in sample_host.call("GET", "/api/items/42").json()["route_params"]
    assert sample_host.call("GET", "/api/items/not-a-number").status_code == 404
    assert sample_host.call("DELETE", "/api/items/42").status_code == 404  # method not in the route's list


@pytest.mark.e2e
def test_auth_levels_anonymous_and_admin(sample_host: HostProcess) -> None:
    assert sample_host.call("GET", "/api/ping", key=None).text == "pong"
    assert sample_host.call("GET", "/api/secret").status_code == 401  # a function key is not enough
    admin = sample_host.call("GET", "/api/secret", key="master")
    assert admin.status_code == 200
    assert admin.text == "admin ok"


@pytest.mark.e2e
def test_a_failing_function_gets_500_and_the_host_keeps_serving(sample_host: HostProcess) -> None:
    failed = sample_host.call("GET", "/api/boom")
    assert failed.status_code == 500
    assert failed.content == b""
    assert sample_host.call("GET", "/api/async/world", key=None).text == "hello world"  # async functions too
    assert "function=boom trigger=http" in sample_host.log_text()
    assert "outcome=failed error=RuntimeError" in sample_host.log_text()


@pytest.mark.e2e
def test_event_grid_events_reach_the_function_in_both_schemas(
    sample_host: HostProcess, records: Records
) -> None:
    marker = uuid.uuid4().hex
    webhook = "/runtime/webhooks/eventgrid?functionName=on_event"
    grid_events = [
        {
            "id": f"{marker}-{index}",
            "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r",
            "subject": "ipc/app:v1.0.0",
            "eventType": "Microsoft.ContainerRegistry.ImagePushed",
            "eventTime": "2030-01-01T00:00:00Z",
            "dataVersion": "1.0",
            "metadataVersion": "1",
            "data": {"action": "push"},
        }
        for index in (1, 2)
    ]
    response = sample_host.call(
        "POST", webhook, key="eventgrid", json=grid_events, headers={"aeg-event-type": "Notification"}
    )
    assert response.status_code == 202
    cloud_event = {
        "specversion": "1.0",
        "id": f"{marker}-3",
        "source": "/subscriptions/x/vaults/kv",
        "type": "Microsoft.KeyVault.SecretNewVersionCreated",
        "subject": "flux-gitops-pat",
        "time": "2030-01-01T00:00:00Z",
        "data": {"ObjectName": "flux-gitops-pat"},
    }
    response = sample_host.call(
        "POST",
        webhook,
        key="eventgrid",
        data=json.dumps(cloud_event),
        headers={
            "aeg-event-type": "Notification",
            "Content-Type": "application/cloudevents+json; charset=utf-8",
        },
    )
    assert response.status_code == 202
    rows = records.wait_for(lambda rows: sum(marker in row["id"] for row in rows) == 3, function="on_event")
    mine = {row["id"]: row for row in rows if marker in row["id"]}
    assert mine[f"{marker}-1"]["type"] == "EventGridEvent"
    assert mine[f"{marker}-2"]["event_type"] == "Microsoft.ContainerRegistry.ImagePushed"
    assert mine[f"{marker}-3"]["type"] == "CloudEvent"
    assert mine[f"{marker}-3"]["event_type"] == "Microsoft.KeyVault.SecretNewVersionCreated"
    assert mine[f"{marker}-3"]["data"] == {"ObjectName": "flux-gitops-pat"}


@pytest.mark.e2e
def test_event_grid_webhook_handshakes_keys_and_failures(sample_host: HostProcess) -> None:
    webhook = "/runtime/webhooks/eventgrid?functionName=on_event"
    validation = [
        {
            "id": "v",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "subject": "",
            "data": {"validationCode": "512d38b6"},
            "eventTime": "2030-01-01T00:00:00Z",
            "dataVersion": "2",
            "topic": "t",
        }
    ]
    answer = sample_host.call(
        "POST",
        webhook,
        key="eventgrid",
        json=validation,
        headers={"aeg-event-type": "SubscriptionValidation"},
    )
    assert answer.status_code == 200
    assert answer.json() == {"validationResponse": "512d38b6"}
    options = sample_host.call(
        "OPTIONS", webhook, key="eventgrid", headers={"WebHook-Request-Origin": "eventgrid.azure.net"}
    )
    assert options.status_code == 200
    assert options.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert sample_host.call("POST", webhook, key=None, json=[]).status_code == 401
    assert sample_host.call("POST", webhook, key="function", json=[]).status_code == 401
    assert sample_host.call("POST", webhook, key="eventgrid", json=[]).status_code == 400  # no aeg-event-type
    unknown = sample_host.call(
        "POST",
        "/runtime/webhooks/eventgrid?functionName=nope",
        key="eventgrid",
        json=[],
        headers={"aeg-event-type": "Notification"},
    )
    assert unknown.status_code == 404
    failing = {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "s", "type": "t", "subject": "fail"}
    retry = sample_host.call(
        "POST", webhook, key="eventgrid", json=[failing], headers={"aeg-event-type": "Notification"}
    )
    assert retry.status_code == 500  # so Event Grid retries the delivery


@pytest.mark.e2e
def test_an_acr_push_reaches_the_function_through_the_declared_subscription(
    host_lab: LabHandle, sample_host: HostProcess, records: Records
) -> None:
    subscriptions = host_lab.control("GET", "/_lab/eventgrid/subscriptions")["subscriptions"]
    assert "sample-acr-pushes" in [item["name"] for item in subscriptions]
    tag = f"v1.0.{int(time.time())}"
    host_lab.control("POST", "/_lab/acr/push", {"repository": "ipc/sample", "tag": tag}, expect=201)

    def pushed_tag(row: dict[str, Any]) -> Any:
        return ((row.get("data") or {}).get("target") or {}).get("tag")

    rows = records.wait_for(lambda rows: any(pushed_tag(row) == tag for row in rows), function="on_event")
    pushed = next(row for row in rows if pushed_tag(row) == tag)
    assert pushed["type"] == "CloudEvent"
    assert pushed["event_type"] == "Microsoft.ContainerRegistry.ImagePushed"


@pytest.mark.e2e
def test_queue_output_binding_feeds_the_queue_trigger(sample_host: HostProcess, records: Records) -> None:
    marker = uuid.uuid4().hex
    assert sample_host.call("POST", "/api/work", data=json.dumps({"marker": marker})).status_code == 202
    rows = records.wait_for(
        lambda rows: any(row["body"].get("marker") == marker for row in rows), function="work", timeout=10
    )
    received = next(row for row in rows if row["body"].get("marker") == marker)
    assert received["dequeue_count"] == 1
    assert received["id"]


@pytest.mark.e2e
def test_a_message_that_always_fails_ends_in_the_poison_queue(
    host_lab: LabHandle, sample_host: HostProcess, records: Records
) -> None:
    marker = uuid.uuid4().hex
    queue(host_lab, "sample-doomed").send_message(marker)
    poison = queue(host_lab, "sample-doomed-poison")
    deadline = time.monotonic() + 20
    while not any(message.content == marker for message in poison.peek_messages(max_messages=32)):
        assert time.monotonic() < deadline, "the message never reached sample-doomed-poison"
        time.sleep(0.1)
    attempts = [row["dequeue_count"] for row in records.all("doomed") if row["body"] == marker]
    assert attempts == [1, 2, 3]  # host.json maxDequeueCount 3, then straight to the poison queue
    assert all(message.content != marker for message in queue(host_lab, "sample-doomed").peek_messages(32))


@pytest.mark.e2e
def test_a_host_restarted_mid_work_loses_nothing(host_lab: LabHandle, tmp_path: Path) -> None:
    records = Records(tmp_path / "restart.jsonl")
    queue_name = f"restart-{uuid.uuid4().hex[:8]}"
    env = sample_env(records.path, SAMPLE_WORK_QUEUE=queue_name, PYTHON_THREADPOOL_THREAD_COUNT="2")
    work = queue(host_lab, queue_name)
    total = 12
    for number in range(total):
        work.send_message(json.dumps({"n": number, "sleep": 0.25}))
    first = HostProcess(host_lab, app_dir=SAMPLE_APP, env=env, instance="restart-a").start()
    records.wait_for(lambda rows: len(rows) >= 3, function="work_done")
    assert first.stop() == 0  # graceful: in-flight invocations finish before exit
    done_by_first = {row["body"]["n"] for row in records.all("work_done")}
    assert done_by_first < set(range(total)), "the first host finished everything: no restart mid-work"
    assert "abandoning" not in first.log_text()
    with HostProcess(host_lab, app_dir=SAMPLE_APP, env=env, instance="restart-b"):
        rows = records.wait_for(
            lambda rows: {row["body"]["n"] for row in rows} == set(range(total)),
            function="work_done",
            timeout=30,
        )
    assert len(rows) == total  # each message completed exactly once across the restart
    assert work.peek_messages(max_messages=32) == []


@pytest.mark.e2e
def test_a_monitored_timer_that_missed_its_schedule_runs_past_due_after_restart(
    host_lab: LabHandle, tmp_path: Path
) -> None:
    app_dir = tmp_path / "app"  # a copy: its own host id, so the module's host does not hold this timer
    shutil.copytree(SAMPLE_APP, app_dir)
    records = Records(tmp_path / "timers.jsonl")
    env = sample_env(records.path, SAMPLE_MONITORED_SCHEDULE="* * * * * *", SAMPLE_WORK_QUEUE="timer-test")
    with HostProcess(host_lab, app_dir=app_dir, env=env, instance="timer-a"):
        first = records.wait_for(lambda rows: len(rows) >= 1, function="monitored")
    assert first[0]["past_due"] is False
    time.sleep(1.5)  # at least one occurrence passes with no host running the timer
    seen = len(records.all("monitored"))
    with HostProcess(host_lab, app_dir=app_dir, env=env, instance="timer-b"):
        rows = records.wait_for(lambda rows: len(rows) > seen, function="monitored")
    assert rows[seen]["past_due"] is True
    assert rows[seen]["schedule_status"]["Last"] != NEVER.isoformat()


@pytest.mark.e2e
def test_two_hosts_on_one_queue_complete_each_message_once(host_lab: LabHandle, tmp_path: Path) -> None:
    records = Records(tmp_path / "shared.jsonl")
    queue_name = f"shared-{uuid.uuid4().hex[:8]}"
    env = sample_env(records.path, SAMPLE_WORK_QUEUE=queue_name)
    work = queue(host_lab, queue_name)
    total = 16
    with (
        HostProcess(host_lab, app_dir=SAMPLE_APP, env=env, instance="shared-a"),
        HostProcess(host_lab, app_dir=SAMPLE_APP, env=env, instance="shared-b"),
    ):
        for number in range(total):
            work.send_message(json.dumps({"n": number, "sleep": 0.05}))
        rows = records.wait_for(lambda rows: len(rows) >= total, function="work_done")
        time.sleep(0.5)  # a duplicate delivery would show up now
        rows = records.all("work_done")
    assert sorted(row["body"]["n"] for row in rows) == list(range(total))


@pytest.mark.e2e
def test_an_app_that_cannot_be_indexed_stops_the_host_with_the_reason(
    host_lab: LabHandle, tmp_path: Path
) -> None:
    (tmp_path / "function_app.py").write_text(
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n"
        "@app.route(route='x')\n"
        "def handler(req: func.HttpRequest, extra: str) -> func.HttpResponse:\n"
        "    return func.HttpResponse('')\n"
    )
    host = HostProcess(host_lab, app_dir=tmp_path, instance="broken")
    with pytest.raises(RuntimeError, match="cannot load the handler function"):
        host.start()
    assert host.stop() == 1


@pytest.mark.e2e
def test_settings_command_renders_local_settings_for_core_tools(host_lab: LabHandle) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lab", "settings", "--lab", str(host_lab.state_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        text=True,
    )
    values = json.loads(result.stdout)["Values"]
    assert values["AzureWebJobsStorage"] == host_lab.env["AzureWebJobsStorage"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
