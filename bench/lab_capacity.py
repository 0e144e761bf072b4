"""Lab capacity: ARM GETs per second a 10,000-panel lab serves, against its trivial clock endpoint.

The lab must never be the bottleneck of the app's benchmarks, so with 10,000 panels (agents
running, fetching from the Git server on their 5-minute interval as in steady state) it must serve
at least 300 ARM GETs/s on this 2-core machine. Throttling is switched off through the control API
(`POST /_lab/arm/throttling {"enabled": false}`): ARM's per-principal read bucket refills at 25/s,
which is what the *app* must respect, not what the lab can serve.

The load is the app's read pattern — a connectedClusters GET and a fluxConfigurations GET per
panel, panels picked round-robin over the whole fleet — from keep-alive HTTPS connections with a
real lab token. The baseline is the same client against `GET /_lab/clock` (control listener, no
auth, no model), measured in the same run: the gap between the two is the cost of ARM itself.
Last line: {"panels": 10000, "arm_gets_per_s": ..., "baseline_clock_gets_per_s": ..., ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path

import aiohttp
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.labkit import LabHandle, LabProcess  # noqa: E402 - needs the repo root on sys.path first

# The bar from the issue: the lab serves at least this many ARM GETs/s with 10,000 panels.
TARGET_GETS_PER_S = 300
# Requests in flight at once: about what the app's fan-out keeps open against ARM.
DEFAULT_CONCURRENCY = 16
# Warm-up before each measurement (connections, token, caches).
WARMUP_S = 1.0


async def hammer(
    *, urls: Callable[[int], str], headers: dict[str, str], ca: str, seconds: float, concurrency: int
) -> tuple[float, int]:
    """Run `concurrency` workers for `seconds`; returns (requests/s, non-200 answers)."""
    context = ssl.create_default_context(cafile=ca)
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
    sequence = count()
    done = errors = 0
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker(until: float, counting: bool) -> None:
            nonlocal done, errors
            while time.monotonic() < until:
                async with session.get(urls(next(sequence))) as response:
                    await response.read()
                    if counting:
                        done += 1
                        errors += response.status != 200

        warm_until = time.monotonic() + WARMUP_S
        await asyncio.gather(*(worker(warm_until, False) for _ in range(concurrency)))
        started = time.monotonic()
        await asyncio.gather(*(worker(started + seconds, True) for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return done / elapsed, errors


def arm_token(lab: LabHandle) -> str:
    env = lab.env
    response = requests.get(
        env["IDENTITY_ENDPOINT"],
        timeout=30,
        params={"api-version": "2019-08-01", "resource": "https://management.azure.com"},
        headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def measure(
    lab: LabHandle, *, panels: int, seconds: float, concurrency: int, seed_s: float
) -> dict[str, object]:
    lab.control("POST", "/_lab/arm/throttling", {"enabled": False}, expect=200)
    clusters = lab.state()["clusters"]
    assert len(clusters) == panels, f"expected {panels} panels, the lab has {len(clusters)}"
    arm = lab.endpoint("arm")
    cluster_urls = [f"{arm}{c['id']}?api-version=2026-05-01" for c in clusters]
    flux_urls = [
        f"{arm}{c['id']}/providers/Microsoft.KubernetesConfiguration/fluxConfigurations"
        f"/ipc-platform-config?api-version=2025-04-01"
        for c in clusters
    ]

    def arm_url(n: int) -> str:
        index = (n // 2) % len(clusters)
        return cluster_urls[index] if n % 2 == 0 else flux_urls[index]

    clock_url = lab.endpoint("control") + "/_lab/clock"
    headers = {"Authorization": f"Bearer {arm_token(lab)}"}
    arm_rate, arm_errors = asyncio.run(
        hammer(urls=arm_url, headers=headers, ca=lab.ca_bundle, seconds=seconds, concurrency=concurrency)
    )
    clock_rate, _ = asyncio.run(
        hammer(
            urls=lambda _: clock_url, headers={}, ca=lab.ca_bundle, seconds=seconds, concurrency=concurrency
        )
    )
    return {
        "panels": panels,
        "arm_gets_per_s": round(arm_rate, 1),
        "baseline_clock_gets_per_s": round(clock_rate, 1),
        "arm_vs_baseline": round(arm_rate / clock_rate, 3),
        "arm_errors": arm_errors,
        "target_gets_per_s": TARGET_GETS_PER_S,
        "meets_target": arm_rate >= TARGET_GETS_PER_S,
        "seed_s": round(seed_s, 2),
        "concurrency": concurrency,
        "seconds": seconds,
        "throttling": 'off (POST /_lab/arm/throttling {"enabled": false})',
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", type=int, default=10_000)
    parser.add_argument("--subscriptions", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lab-capacity-") as state_dir:
        started = time.monotonic()
        with LabProcess(
            Path(state_dir), clusters=args.panels, subscriptions=args.subscriptions, azurite=False
        ) as lab:
            seed_s = time.monotonic() - started
            print(
                f"lab with {args.panels} panels up in {seed_s:.1f} s; measuring {args.seconds:.0f} s each",
                file=sys.stderr,
            )
            result = measure(
                lab, panels=args.panels, seconds=args.seconds, concurrency=args.concurrency, seed_s=seed_s
            )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
