"""The lab clock: one notion of "now" shared by every emulated service.

Expiry (PATs, secrets, tokens' lab validity), Event Grid near-expiry events, agent sync intervals and
Arc's 48-hour delivery window all read this clock, so a benchmark can run the lab faster than real
time (`--time-scale`) and a test can jump ahead (`advance`) while every ratio between them stays true.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

# How often (real seconds) a sleeper re-checks the clock at most. An `advance` wakes sleepers at
# once; this bound only matters for very long sleeps at a high time-scale.
_MAX_REAL_WAIT_S = 1.0


class LabClock:
    """Lab time = start + real elapsed × scale + everything `advance`d."""

    def __init__(self, *, time_scale: float = 1.0, start: datetime | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._start_lab = start or datetime.now(UTC)
        self._start_real = time.monotonic()
        self._offset_s = 0.0
        self._lock = threading.Lock()
        self._waiters: set[asyncio.Event] = set()

    def now(self) -> datetime:
        return self._start_lab + timedelta(seconds=self.elapsed())

    def elapsed(self) -> float:
        """Lab seconds since the lab started."""
        with self._lock:
            offset = self._offset_s
        return (time.monotonic() - self._start_real) * self.time_scale + offset

    def timestamp(self) -> float:
        """Lab time as Unix seconds (what Key Vault attributes and PAT validity compare against)."""
        return self.now().timestamp()

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the lab clock only moves forward")
        with self._lock:
            self._offset_s += seconds
        for event in list(self._waiters):
            event.set()
        return self.now()

    def real_seconds(self, lab_seconds: float) -> float:
        """How long `lab_seconds` of lab time take in real time at the current scale."""
        return lab_seconds / self.time_scale

    async def sleep(self, lab_seconds: float) -> None:
        """Sleep for `lab_seconds` of lab time; returns early enough when the clock is advanced."""
        deadline = self.elapsed() + lab_seconds
        event = asyncio.Event()
        self._waiters.add(event)
        try:
            while (remaining := deadline - self.elapsed()) > 0:
                event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        event.wait(), timeout=min(self.real_seconds(remaining), _MAX_REAL_WAIT_S)
                    )
        finally:
            self._waiters.discard(event)


def iso(moment: datetime) -> str:
    """ARM's timestamp format: UTC, seconds precision with a `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def date_header_middleware(clock: LabClock) -> Any:
    """An aiohttp middleware that stamps every answer's `Date` with lab time.

    Azure's `Date` header is Azure's clock; in the lab that clock is the lab clock, so a client that
    reads "now" from the service it talks to (days until a secret's `exp`, ARM's 48-hour delivery
    window) sees the same time as the service, also after `POST /_lab/clock/advance`.
    """
    from email.utils import formatdate

    from aiohttp import web

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if not response.prepared:  # a streamed answer has sent its headers already
            response.headers["Date"] = formatdate(clock.timestamp(), usegmt=True)
        return response

    return middleware
