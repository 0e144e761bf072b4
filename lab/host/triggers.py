"""Trigger payloads into the objects the worker hands to functions, through azure.functions' own converters.

The worker receives typed data (`Datum`) from the host over gRPC and converts it with the converter
registered for the binding type (`azure/functions/http.py`, `timer.py`, `eventgrid.py`, `queue.py`).
Building the same `Datum`s and calling the same converters gives functions exactly what Azure gives
them: `func.HttpRequest`, `func.TimerRequest` with `past_due`, `func.EventGridEvent` or
`func.CloudEvent` (chosen by the payload: `specversion` means CloudEvents), `func.QueueMessage`.
Parameters annotated `str` or `bytes` get the raw payload, as the worker's generic binding does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.functions import eventgrid as eventgrid_binding
from azure.functions import http as http_binding
from azure.functions import queue as queue_binding
from azure.functions import timer as timer_binding
from azure.functions.meta import Datum

# HTTP 204: the host's answer when an HTTP function returns nothing.
NO_CONTENT = 204
HTTP_OK = 200


def _generic(payload: str | bytes, pytype: Any) -> Any:
    if pytype is bytes:
        return payload.encode("utf-8") if isinstance(payload, str) else payload
    return payload.decode("utf-8") if isinstance(payload, bytes) else payload


def http_request(
    *,
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    query: Iterable[tuple[str, str]],
    route_params: Mapping[str, str],
    body: bytes,
    pytype: Any,
) -> Any:
    """A `func.HttpRequest` as the worker builds it (repeated headers/params joined with ",")."""
    if pytype in (str, bytes):
        return _generic(body, pytype)
    joined_headers: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        joined_headers[key] = f"{joined_headers[key]}, {value}" if key in joined_headers else value
    joined_query: dict[str, str] = {}
    for name, value in query:
        joined_query[name] = f"{joined_query[name]},{value}" if name in joined_query else value
    datum = Datum(
        type="http",
        value={
            "method": Datum(method, "string"),
            "url": Datum(url, "string"),
            "headers": {name: Datum(value, "string") for name, value in joined_headers.items()},
            "query": {name: Datum(value, "string") for name, value in joined_query.items()},
            "params": {name: Datum(value, "string") for name, value in route_params.items()},
            "body": Datum(body, "bytes"),
        },
    )
    return http_binding.HttpRequestConverter.decode(datum, trigger_metadata=None)


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def http_result(value: Any) -> HttpResult:
    """Map what an HTTP function returned (HttpResponse, str or None) to the response the host sends."""
    if value is None:
        return HttpResult(status=NO_CONTENT, headers=(), body=b"")
    datum = http_binding.HttpResponseConverter.encode(value, expected_type=None)
    if datum.type == "string":
        return HttpResult(
            status=HTTP_OK,
            headers=(("Content-Type", "text/plain; charset=utf-8"),),
            body=str(datum.value).encode("utf-8"),
        )
    parts = datum.value
    headers: list[tuple[str, str]] = [(name, str(item.value)) for name, item in parts["headers"].items()]
    for cookie in parts.get("cookies") or []:
        headers.extend(("Set-Cookie", morsel.OutputString()) for morsel in cookie.values())
    body = parts["body"].value
    return HttpResult(
        status=int(parts["status_code"].value),
        headers=tuple(headers),
        body=body if isinstance(body, bytes) else str(body).encode("utf-8"),
    )


def timer_request(*, past_due: bool, schedule_status: Mapping[str, str] | None, pytype: Any) -> Any:
    """A `func.TimerRequest` from the TimerInfo JSON the host sends."""
    info = {
        "Schedule": {"AdjustForDST": True},
        "ScheduleStatus": dict(schedule_status) if schedule_status else None,
        "IsPastDue": past_due,
    }
    text = json.dumps(info)
    if pytype in (str, bytes):
        return _generic(text, pytype)
    return timer_binding.TimerRequestConverter.decode(Datum(text, "json"), trigger_metadata=None)


def event_grid_event(event: Mapping[str, Any], *, pytype: Any) -> Any:
    """`func.CloudEvent` when the event has `specversion`, else `func.EventGridEvent` (the worker's rule)."""
    text = json.dumps(event)
    if pytype in (str, bytes):
        return _generic(text, pytype)
    return eventgrid_binding.EventGridEventInConverter.decode(Datum(text, "json"), trigger_metadata=None)


def _iso(moment: datetime | None) -> Datum | None:
    return None if moment is None else Datum(moment.isoformat(), "string")


def queue_message(
    *,
    body: bytes,
    message_id: str | None,
    dequeue_count: int,
    insertion_time: datetime | None,
    expiration_time: datetime | None,
    next_visible_time: datetime | None,
    pop_receipt: str | None,
    pytype: Any,
) -> Any:
    """A `func.QueueMessage` with the host's trigger metadata (Id, DequeueCount, times, PopReceipt)."""
    try:
        payload: str | bytes = body.decode("utf-8")
        datum = Datum(payload, "string")
    except UnicodeDecodeError:
        payload = body
        datum = Datum(payload, "bytes")
    if pytype in (str, bytes):
        return _generic(payload, pytype)
    metadata: dict[str, Datum | None] = {
        "Id": None if message_id is None else Datum(message_id, "string"),
        "DequeueCount": Datum(dequeue_count, "int"),
        "InsertionTime": _iso(insertion_time),
        "ExpirationTime": _iso(expiration_time),
        "NextVisibleTime": _iso(next_visible_time),
        "PopReceipt": None if pop_receipt is None else Datum(pop_receipt, "string"),
    }
    present = {key: value for key, value in metadata.items() if value is not None}
    return queue_binding.QueueMessageInConverter.decode(datum, trigger_metadata=present)


def queue_output_messages(value: Any) -> list[bytes]:
    """The messages a queue output value stands for (str, bytes, QueueMessage, or a list of them)."""
    if value is None:
        return []
    datum = queue_binding.QueueMessageOutConverter.encode(value, expected_type=None)
    if datum.type == "string":
        return [str(datum.value).encode("utf-8")]
    if datum.type == "bytes":
        return [bytes(datum.value)]
    decoded = json.loads(datum.value)
    items = decoded if isinstance(decoded, list) else [decoded]
    messages: list[bytes] = []
    for item in items:
        # A QueueMessage object is sent as {"id", "body"}: the host enqueues its body.
        text = item["body"] if isinstance(item, dict) else str(item)
        messages.append(text.encode("utf-8"))
    return messages
