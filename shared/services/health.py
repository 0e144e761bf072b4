"""`GET /api/health`: which capabilities are configured and, on request, whether dependencies answer.

The shallow answer costs nothing (no I/O) so probes can call it often; `deep=True` calls each
configured dependency once, concurrently and with a time limit, and reports how each answered.
Nothing in the answer is a secret: settings are reported as configured or not, never by value. The
probes are given by the composition root (`shared.container`), each through the adapter that owns
its dependency (ARM's through the paced ARM boundary).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import shared
from shared.config import Settings
from shared.errors import safe_text

# A dependency slower than this is as good as down for a health probe.
PROBE_TIMEOUT_S = 10.0

# A probe calls its dependency once and raises when it does not answer; what it returns is ignored.
Probe = Callable[[], object]


@dataclass(frozen=True)
class HealthService:
    settings: Settings
    probes: dict[str, Probe]

    def check(self, *, deep: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "ok",
            "version": shared.__version__,
            "capabilities": self.settings.capabilities(),
        }
        if not deep:
            return body
        results = run_probes(self.probes, timeout_s=PROBE_TIMEOUT_S)
        body["dependencies"] = results
        if any(result["status"] != "ok" for result in results.values()):
            body["status"] = "degraded"
        return body


def run_probes(probes: dict[str, Probe], *, timeout_s: float) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    if not probes:
        return results

    def timed(probe: Probe) -> float:
        started = time.monotonic()
        probe()
        return (time.monotonic() - started) * 1000

    pool = ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="health")
    futures = {name: pool.submit(timed, probe) for name, probe in probes.items()}
    wait(futures.values(), timeout=timeout_s)
    for name, future in futures.items():
        if not future.done():
            results[name] = {"status": "timeout", "detail": f"no answer within {timeout_s:.0f} s"}
        elif (error := future.exception()) is not None:
            results[name] = {"status": "failed", "detail": f"{type(error).__name__}: {safe_text(error)}"}
        else:
            results[name] = {"status": "ok", "ms": round(future.result(), 1)}
    pool.shutdown(wait=False, cancel_futures=True)
    return results
