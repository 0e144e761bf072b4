"""A small function app that exercises every trigger the local host emulates, for tests/e2e/test_host.py.

Each function appends one JSON line to the file named by the `SAMPLE_RECORDS` app setting, so a test
(in another process) can see what the host handed to the function: the object's type, `past_due`,
`dequeue_count`, event fields, route parameters. Schedules and the work queue's name are `%SETTING%`
expressions so each test chooses them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

_write_lock = threading.Lock()


def record(function: str, **fields: Any) -> None:
    path = os.environ.get("SAMPLE_RECORDS")
    if not path:
        return
    line = json.dumps({"function": function, "pid": os.getpid(), **fields}, default=str)
    with _write_lock, open(path, "a") as handle:
        handle.write(line + "\n")


@app.route(route="ping", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong")


@app.route(route="items/{id:int}/{name?}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    body = req.get_body().decode("utf-8")
    doc = {
        "method": req.method,
        "url": req.url,
        "route_params": dict(req.route_params),
        "params": dict(req.params),
        "body": body,
        "sample_header": req.headers.get("x-sample"),
    }
    return func.HttpResponse(
        json.dumps(doc), status_code=200, mimetype="application/json", headers={"x-echo": "yes"}
    )


@app.route(route="secret", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> str:
    return "admin ok"


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("the sample function fails on purpose")


@app.route(route="async/{who}", auth_level=func.AuthLevel.ANONYMOUS)
async def hello_async(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params['who']}")


@app.route(route="work", methods=["POST"])
@app.queue_output(arg_name="out", queue_name="%SAMPLE_WORK_QUEUE%", connection="AzureWebJobsStorage")
def enqueue(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set(req.get_body().decode("utf-8"))
    return func.HttpResponse(status_code=202)


@app.timer_trigger(schedule="%SAMPLE_TICK_SCHEDULE%", arg_name="timer", use_monitor=False)
def tick(timer: func.TimerRequest) -> None:
    record("tick", past_due=timer.past_due, type=type(timer).__name__)


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True, use_monitor=False)
def on_startup(timer: func.TimerRequest) -> None:
    record("on_startup", past_due=timer.past_due)


@app.timer_trigger(schedule="%SAMPLE_MONITORED_SCHEDULE%", arg_name="timer", use_monitor=True)
def monitored(timer: func.TimerRequest) -> None:
    # schedule_status is on the concrete TimerRequest the worker passes, not on the abstract type.
    record("monitored", past_due=timer.past_due, schedule_status=getattr(timer, "schedule_status", None))


@app.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    if isinstance(event, func.CloudEvent):
        record(
            "on_event",
            type=type(event).__name__,
            id=event.id,
            event_type=event.type,
            source=event.source,
            subject=event.subject,
            data=event.get_json(),
        )
    else:
        record(
            "on_event",
            type=type(event).__name__,
            id=event.id,
            event_type=event.event_type,
            topic=event.topic,
            subject=event.subject,
            data=event.get_json(),
        )
    if event.subject == "fail":
        raise ValueError("the sample event handler fails on purpose")


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_WORK_QUEUE%", connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage) -> None:
    body = msg.get_json()
    record("work", body=body, dequeue_count=msg.dequeue_count, id=msg.id, started=time.time())
    time.sleep(float(body.get("sleep", 0)))
    record("work_done", body=body)


@app.queue_trigger(arg_name="msg", queue_name="sample-doomed", connection="AzureWebJobsStorage")
def doomed(msg: func.QueueMessage) -> None:
    record("doomed", body=msg.get_body().decode("utf-8"), dequeue_count=msg.dequeue_count, id=msg.id)
    raise RuntimeError("this message always fails")
