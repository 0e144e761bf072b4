"""`GET /api/health` and `GET /api/health/deep`: is the app configured, and do its dependencies answer?

The shallow answer costs nothing (no I/O) and is anonymous, so platform probes can call it often. The
deep answer calls each configured dependency (ARM through the paced ARM boundary, Key Vault, Storage,
ACR) and so needs a function key, and is shared: one probe run at a time per worker, its answer cached
for `CACHE_S`. A caller polling deep health every second costs the dependencies one call each per
30 s, not one per request; and a probe that hangs is never started again while it still runs, so
abandoned probe threads cannot pile up. Nothing in either answer is a secret: settings are reported as
configured or not, and dependency errors are scrubbed (`safe_text`). The probes are given by the
composition root (`shared.container`), each through the adapter that owns its dependency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import shared
from shared.config import Settings
from shared.errors import safe_text

# A dependency slower than this is as good as down for a health probe.
PROBE_TIMEOUT_S = 10.0
# How long one deep answer is reused (s): dependencies change state on this scale, callers poll faster.
CACHE_S = 30.0

# A probe calls its dependency once and raises when it does not answer; what it returns is ignored.
Probe = Callable[[], object]


class HealthService:
    def __init__(
        self,
        *,
        settings: Settings,
        probes: dict[str, Probe],
        monotonic: Callable[[], float] = time.monotonic,
        cache_s: float = CACHE_S,
        timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.probes = probes
        self._monotonic = monotonic
        self._cache_s = cache_s
        self._timeout_s = timeout_s
        self._lock = threading.Lock()  # one deep run at a time; others wait for and share its answer
        self._cached: tuple[float, dict[str, dict[str, Any]]] | None = None
        self._running: dict[str, tuple[float, Future[float]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(probes)), thread_name_prefix="health")

    def check(self, *, deep: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "ok",
            "version": shared.__version__,
            "capabilities": self.settings.capabilities(),
        }
        if not deep:
            return body
        checked_at, results = self._deep_results()
        body["dependencies"] = results
        body["checkedSecondsAgo"] = round(self._monotonic() - checked_at, 1)
        if any(result["status"] != "ok" for result in results.values()):
            body["status"] = "degraded"
        return body

    def _deep_results(self) -> tuple[float, dict[str, dict[str, Any]]]:
        with self._lock:
            now = self._monotonic()
            if self._cached is not None and now - self._cached[0] < self._cache_s:
                return self._cached
            self._cached = (now, self._run_probes())
            return self._cached

    def _run_probes(self) -> dict[str, dict[str, Any]]:
        started = self._monotonic()
        for name, probe in self.probes.items():
            previous = self._running.get(name)
            if previous is None or previous[1].done():
                self._running[name] = (started, self._pool.submit(_timed, probe))
        wait([future for _, future in self._running.values()], timeout=self._timeout_s)
        results: dict[str, dict[str, Any]] = {}
        for name, (since, future) in self._running.items():
            if not future.done():
                waited = self._monotonic() - since
                results[name] = {"status": "timeout", "detail": f"no answer for {waited:.0f} s"}
            elif (error := future.exception()) is not None:
                results[name] = {"status": "failed", "detail": f"{type(error).__name__}: {safe_text(error)}"}
            else:
                results[name] = {"status": "ok", "ms": round(future.result(), 1)}
        return results


def _timed(probe: Probe) -> float:
    started = time.monotonic()
    probe()
    return (time.monotonic() - started) * 1000
