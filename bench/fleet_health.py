"""Fleet health at 10,000 panels: `GET /api/fleet/health` (Resource Graph) next to the per-panel ARM bound.

The app runs in the local Functions host against a lab of 10,000 panels over 4 subscriptions; the
benchmark asks `GET /api/fleet/health` (the whole fleet, one page of 1,000 rows) twice — the first
answer includes the worker's first Resource Graph client and token — and reads from the lab's request
log what the app sent: Resource Graph queries (target ≤ 2 per 1,000 panels) and per-panel ARM requests
(target 0). The host's peak RSS is its `VmHWM` (target ≤ 300 MB).

Baseline, computed for the same fleet in the same run: reading the fleet the way `GET /api/fleet` did —
a paged connectedClusters list (100 a page) and one fluxConfigurations GET per panel — cannot go faster
than ARM's read limits allow (250 burst, 25/s refill per subscription and principal; subscriptions in
parallel): max over subscriptions of (reads − 250) / 25 seconds.
Last line: {"panels": 10000, "answer_s": ..., "per_panel_arm_bound_s": ..., ...}
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.kit import HostProcess, LabHandle, LabProcess  # noqa: E402 - needs the repo root on sys.path first

PANELS = int(os.environ.get("BENCH_PANELS", "10000"))
SUBSCRIPTIONS = 4
# ARM's documented read limits per subscription and principal, and its connectedClusters page size.
ARM_READ_BURST = 250
ARM_READ_RATE = 25.0
ARM_LIST_PAGE = 100
TARGET_QUERIES_PER_1000 = 2
TARGET_RSS_MB = 300


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def last_seq(lab: LabHandle) -> int:
    return max((r["seq"] for r in lab.control("GET", "/_lab/requests")["requests"]), default=0)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def per_panel_bound_s(lab: LabHandle) -> tuple[float, int]:
    """The per-panel ARM read pattern's lower bound for this fleet, and its request count."""
    per_subscription = Counter(c["subscription"] for c in lab.state()["clusters"])
    reads = {sub: n + math.ceil(n / ARM_LIST_PAGE) for sub, n in per_subscription.items()}
    bound = max(max(0, r - ARM_READ_BURST) / ARM_READ_RATE for r in reads.values())
    return bound, sum(reads.values())


def ask(host: HostProcess) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    response = host.call("GET", "/api/fleet/health", params={"limit": "1000"})
    elapsed = time.monotonic() - started
    if response.status_code != 200:
        raise SystemExit(f"GET /api/fleet/health answered {response.status_code}: {response.text[:500]}")
    return elapsed, response.json()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="fleet-health-") as state:
        log(f"starting the lab: {PANELS} panels over {SUBSCRIPTIONS} subscriptions")
        with LabProcess(Path(state), clusters=PANELS, subscriptions=SUBSCRIPTIONS) as lab:
            bound_s, bound_requests = per_panel_bound_s(lab)
            with HostProcess(lab) as host:
                assert host.process is not None
                seq = last_seq(lab)
                first_s, answer = ask(host)
                second_s, _ = ask(host)
                sent = lab.control("GET", f"/_lab/requests?since={seq}")["requests"]
                rss_mb = peak_rss_mb(host.process.pid)
    queries = sum(1 for r in sent if "microsoft.resourcegraph" in r["path"].lower())
    per_panel = sum(1 for r in sent if "/connectedclusters/" in r["path"].lower())
    total = answer["total"]
    per_1000 = queries / 2 / (total / 1000)  # two answers
    log(f"answer: {first_s:.2f} s (first), {second_s:.2f} s (warm), {total} panels; {answer['counts']}")
    log(f"Resource Graph queries: {queries} for 2 answers = {per_1000:.2f} per 1,000 panels (target ≤ 2)")
    log(f"per-panel ARM requests: {per_panel} (target 0)")
    log(f"host peak RSS: {rss_mb:.0f} MB (target ≤ {TARGET_RSS_MB})")
    log(f"baseline: one ARM GET per panel at ARM's read limits ≥ {bound_s:.0f} s ({bound_requests} requests)")
    print(
        json.dumps(
            {
                "panels": total,
                "subscriptions": SUBSCRIPTIONS,
                "answer_s": round(first_s, 2),
                "warm_answer_s": round(second_s, 2),
                "graph_queries_per_1000_panels": round(per_1000, 2),
                "per_panel_arm_requests": per_panel,
                "host_peak_rss_mb": round(rss_mb),
                "per_panel_arm_bound_s": round(bound_s, 1),
                "per_panel_arm_requests_baseline": bound_requests,
            }
        )
    )


if __name__ == "__main__":
    main()
