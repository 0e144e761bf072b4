"""Fault injection and the request log, as aiohttp middleware on every emulated service.

Faults are what tests and benchmarks use to prove the app copes with Azure on a bad day: a rule
matches `METHOD /path` by regex and answers with a status (429 with `Retry-After`, 5xx), adds latency,
or resets the connection, for a share (`rate`) of matching requests and at most `count` times.
The control API is never subject to faults.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# Enough history for a test to find its requests without the lab growing without bound.
REQUEST_LOG_SIZE = 20_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FaultRule:
    route: re.Pattern[str]
    status: int | None = None
    rate: float = 1.0
    latency_ms: int = 0
    reset: bool = False
    count: int | None = None  # None: unlimited
    retry_after: int = 1
    service: str | None = None  # None: any service
    hits: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "route": self.route.pattern,
            "status": self.status,
            "rate": self.rate,
            "latency_ms": self.latency_ms,
            "reset": self.reset,
            "count": self.count,
            "retry_after": self.retry_after,
            "service": self.service,
            "hits": self.hits,
        }


def parse_fault(body: dict[str, Any]) -> FaultRule:
    """Validate a control-API fault body; ValueError names the offending field."""
    try:
        route = re.compile(str(body["route"]))
    except KeyError as exc:
        raise ValueError("route is required") from exc
    except re.error as exc:
        raise ValueError(f"route is not a valid regex: {exc}") from exc
    status = body.get("status")
    if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
        raise ValueError("status must be an HTTP error status (400-599)")
    rate = float(body.get("rate", 1.0))
    if not 0.0 <= rate <= 1.0:
        raise ValueError("rate must be between 0 and 1")
    count = body.get("count")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError("count must be a positive integer")
    return FaultRule(
        route=route,
        status=status,
        rate=rate,
        latency_ms=int(body.get("latency_ms", 0)),
        reset=bool(body.get("reset", False)),
        count=count,
        retry_after=int(body.get("retry_after", 1)),
        service=body.get("service"),
    )


@dataclass
class RequestLog:
    entries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_SIZE))
    _seq: int = 0

    def record(self, entry: dict[str, Any]) -> None:
        self._seq += 1
        entry["seq"] = self._seq
        self.entries.append(entry)

    def since(self, seq: int = 0, *, service: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["seq"] > seq and (service is None or e["service"] == service)]

    def reset(self) -> None:
        self.entries.clear()


class Faults:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(0x5EED)  # deterministic: a test's fault pattern is repeatable

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self.rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def pick(self, service: str, key: str) -> FaultRule | None:
        with self._lock:
            for rule in self.rules:
                if rule.service not in (None, service) or not rule.route.search(key):
                    continue
                if rule.count is not None and rule.hits >= rule.count:
                    continue
                if self._random.random() >= rule.rate:
                    continue
                rule.hits += 1
                return rule
        return None


# The status text each service puts in its error envelope for an injected status.
_FAULT_CODES = {
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}

# How each service shapes an error body (the rest use ARM's `{"error": {"code", "message"}}`, which
# Key Vault shares). A client that parses errors must see the shape its service really sends.
FaultBody = Callable[[int, str, str], dict[str, Any]]
_FAULT_BODIES: dict[str, FaultBody] = {
    "acr": lambda status, code, message: {"errors": [{"code": code.upper(), "message": message}]},
    "devops": lambda status, code, message: {
        "$id": "1",
        "innerException": None,
        "message": message,
        "typeName": "Microsoft.VisualStudio.Services.WebApi.VssServiceException, "
        "Microsoft.VisualStudio.Services.WebApi",
        "typeKey": "VssServiceException",
        "errorCode": 0,
        "eventId": 3000,
    },
    "identity": lambda status, code, message: {"statusCode": status, "message": message},
}


def _arm_fault_body(_status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def fault_response(service: str, rule: FaultRule) -> web.Response:
    status = rule.status or 500
    code = _FAULT_CODES.get(status, "InjectedFault")
    message = f"Injected fault from the lab ({service})."
    render = _FAULT_BODIES.get(service, _arm_fault_body)
    headers = {"x-ms-request-id": "lab-fault", "Content-Type": "application/json; charset=utf-8"}
    if status in (429, 503):
        headers["Retry-After"] = str(rule.retry_after)
    return web.Response(status=status, text=json.dumps(render(status, code, message)), headers=headers)


def make_middleware(service: str, faults: Faults, log: RequestLog) -> Callable[..., Any]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        key = f"{request.method} {request.path}"
        rule = faults.pick(service, key)
        status = 0
        try:
            if rule is not None:
                if rule.latency_ms:
                    await asyncio.sleep(rule.latency_ms / 1000)
                if rule.reset:
                    status = -1
                    if request.transport is not None:
                        request.transport.abort()
                    raise ConnectionResetError("lab fault: connection reset")
                if rule.status:
                    response: web.StreamResponse = fault_response(service, rule)
                    status = response.status
                    return response
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            log.record(
                {
                    "service": service,
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string,
                    "status": status,
                    "fault": rule is not None,
                    "ms": round((time.monotonic() - started) * 1000, 2),
                }
            )

    return middleware
