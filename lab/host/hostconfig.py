"""`host.json` as the Functions host reads it: the few sections the local host honours.

Only what changes observable behaviour is read: the HTTP route prefix and the Storage queue options
(`extensions.queues`). Defaults and limits are the queue extension's own (`QueuesOptions` in
Microsoft.Azure.WebJobs.Extensions.Storage.Queues 5.x) so an app tested here retries and poisons messages
exactly as it will in Azure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from lab.host.errors import HostStartupError

# The queue extension's defaults (QueuesOptions): 16 messages a poll, 5 attempts, retry at once,
# back off to one poll a minute on an empty queue, base64 message bodies.
DEFAULT_BATCH_SIZE = 16
# Azure Queue storage returns at most 32 messages per Get Messages call.
MAX_BATCH_SIZE = 32
DEFAULT_MAX_DEQUEUE_COUNT = 5
DEFAULT_MAX_POLLING_INTERVAL = timedelta(minutes=1)
# QueuePollingIntervals.Minimum: the fastest the listener ever polls (and the floor for the maximum).
MIN_POLLING_INTERVAL = timedelta(milliseconds=100)
DEFAULT_ROUTE_PREFIX = "api"

MessageEncoding = Literal["base64", "none"]

# .NET TimeSpan text: [d.]hh:mm[:ss[.fffffff]]
_TIMESPAN = re.compile(
    r"^(?:(?P<days>\d+)\.)?(?P<hours>\d{1,2}):(?P<minutes>\d{1,2})"
    r"(?::(?P<seconds>\d{1,2})(?:\.(?P<fraction>\d{1,7}))?)?$"
)


def parse_timespan(text: str) -> timedelta:
    """A .NET `TimeSpan` string (`00:00:30`, `1.00:00:00`, `00:00:00.500`); ValueError otherwise."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a TimeSpan (expected [d.]hh:mm[:ss[.fff]])")
    hours, minutes = int(match["hours"]), int(match["minutes"])
    seconds = int(match["seconds"] or 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"{text!r} is not a TimeSpan (hours 0-23, minutes and seconds 0-59)")
    fraction = float(f"0.{match['fraction']}") if match["fraction"] else 0.0
    return timedelta(days=int(match["days"] or 0), hours=hours, minutes=minutes, seconds=seconds + fraction)


@dataclass(frozen=True)
class QueuesOptions:
    """`extensions.queues` of host.json; every field as the Azure queue extension defines it."""

    batch_size: int = DEFAULT_BATCH_SIZE
    """Messages fetched per poll (and run in parallel) per function, 1-32."""
    new_batch_threshold: int = DEFAULT_BATCH_SIZE // 2
    """Fetch the next batch once at most this many messages are still being processed (batchSize/2)."""
    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT
    """Attempts before a failing message moves to `<queue>-poison`."""
    visibility_timeout: timedelta = timedelta(0)
    """How long a failed message stays invisible before its retry (0: retry at once)."""
    max_polling_interval: timedelta = DEFAULT_MAX_POLLING_INTERVAL
    """The longest wait between polls of an empty queue (the backoff ceiling)."""
    message_encoding: MessageEncoding = "base64"
    """How message bodies travel: base64 (the extension's default) or as plain text ("none")."""


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = DEFAULT_ROUTE_PREFIX
    """HTTP trigger routes live under `/{routePrefix}/` (host.json `extensions.http.routePrefix`)."""
    queues: QueuesOptions = field(default_factory=QueuesOptions)
    function_timeout: timedelta | None = None
    """host.json `functionTimeout`, reported but not enforced (see lab/docs/host.md)."""


def _duration(value: Any, *, name: str) -> timedelta:
    """A host.json duration: a TimeSpan string, or (the v1 format) a number of milliseconds."""
    if isinstance(value, bool):
        raise HostStartupError(f'host.json {name} must be a TimeSpan string such as "00:00:02"')
    if isinstance(value, (int, float)):
        return timedelta(milliseconds=value)
    if isinstance(value, str):
        try:
            return parse_timespan(value)
        except ValueError as exc:
            raise HostStartupError(f"host.json {name}: {exc}") from exc
    raise HostStartupError(f'host.json {name} must be a TimeSpan string such as "00:00:02"')


def _integer(value: Any, *, name: str, low: int, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise HostStartupError(f"host.json {name} must be an integer {bounds}")
    return value


def parse_queues_options(section: dict[str, Any]) -> QueuesOptions:
    batch_size = _integer(
        section.get("batchSize", DEFAULT_BATCH_SIZE),
        name="extensions.queues.batchSize",
        low=1,
        high=MAX_BATCH_SIZE,
    )
    threshold = _integer(
        section.get("newBatchThreshold", batch_size // 2), name="extensions.queues.newBatchThreshold", low=0
    )
    max_dequeue = _integer(
        section.get("maxDequeueCount", DEFAULT_MAX_DEQUEUE_COUNT),
        name="extensions.queues.maxDequeueCount",
        low=1,
    )
    visibility = _duration(
        section.get("visibilityTimeout", "00:00:00"), name="extensions.queues.visibilityTimeout"
    )
    polling = _duration(
        section.get("maxPollingInterval", "00:01:00"), name="extensions.queues.maxPollingInterval"
    )
    if polling < MIN_POLLING_INTERVAL:
        raise HostStartupError(
            "host.json extensions.queues.maxPollingInterval must not be less than 00:00:00.100"
        )
    encoding = str(section.get("messageEncoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise HostStartupError('host.json extensions.queues.messageEncoding must be "base64" or "none"')
    return QueuesOptions(
        batch_size=batch_size,
        new_batch_threshold=threshold,
        max_dequeue_count=max_dequeue,
        visibility_timeout=visibility,
        max_polling_interval=polling,
        message_encoding="base64" if encoding == "base64" else "none",
    )


def load_host_config(app_dir: Path) -> HostConfig:
    """Read `app_dir/host.json`; a missing file gives the defaults (the real host would create one)."""
    path = app_dir / "host.json"
    if not path.exists():
        return HostConfig()
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise HostStartupError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise HostStartupError(f"{path} must hold a JSON object")
    extensions = doc.get("extensions") or {}
    http = extensions.get("http") or {}
    prefix = http.get("routePrefix", DEFAULT_ROUTE_PREFIX)
    if not isinstance(prefix, str):
        raise HostStartupError("host.json extensions.http.routePrefix must be a string")
    timeout_text = doc.get("functionTimeout")
    timeout = _duration(timeout_text, name="functionTimeout") if timeout_text not in (None, "-1") else None
    return HostConfig(
        route_prefix=prefix.strip("/"),
        queues=parse_queues_options(extensions.get("queues") or {}),
        function_timeout=timeout,
    )
