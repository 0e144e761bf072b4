"""Onboarding: 1,000 new panels (`--unconfigured 1000`) get the fleet's Flux setup through the local host.

Prints, for one `POST /api/fleet/conform {"target": {"all": true}}` against the lab's real (time-scaled)
ARM throttling: the time from the API call until ARM had accepted every write (an extension PUT and a
Flux configuration PUT per panel), next to ARM's write-throttle bound for that many writes in the same run
((writes − 200 burst) / 10 per s), and the time until every panel's agent applied the revision. Each
panel's configuration can only be created once its extension's operation succeeded (ARM refuses it
before), so a panel needs two apply/verify rounds; and each round reads the extension and the
configuration (ARM's read budget is 25/s): the figure says how close that gets to the write bound.

The lab runs at `TIME_SCALE` × real time (ARM's refill, LROs, agents and the app's verify cadence alike).
`python -m bench.onboarding [--panels N]`. Last line: {"panels", "writes", "accepted_s", "bound_s",
"ratio_to_write_bound", "converged_s", "throttled"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lab.kit import HostProcess, LabHandle, LabProcess  # noqa: E402

PANELS = 1000
# ARM refills 4 × 10 writes per real second: the bound for 2,000 writes is (2000 − 200) / 40 = 45 s.
TIME_SCALE = 4.0
WRITE_BURST = 200
WRITE_RATE_PER_LAB_S = 10.0
READ_BURST = 250
READ_RATE_PER_LAB_S = 25.0
TIMEOUT_S = 900.0
POLL_S = 1.0


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def is_write(request: dict[str, Any]) -> bool:
    path = str(request["path"])
    return request["method"] == "PUT" and ("/extensions/" in path or "/fluxConfigurations/" in path)


def prove_pat(lab: LabHandle, host: HostProcess) -> None:
    """Conform creates configurations only with a PAT that passed preflight: run the daily check once."""
    host.call("POST", "/admin/functions/credentials_scheduled_check", key="master", json={"input": ""})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        current = host.call("GET", "/api/credentials").json().get("current") or {}
        if (current.get("preflight") or {}).get("passed"):
            return
        time.sleep(1)
    raise SystemExit("the PAT never passed preflight")


def run(lab: LabHandle, host: HostProcess, panels: int) -> dict[str, Any]:
    prove_pat(lab, host)
    lab.control("POST", "/_lab/arm/throttling", {"enabled": True})  # buckets restart full
    seq = max((r["seq"] for r in lab.control("GET", "/_lab/requests?service=arm")["requests"]), default=0)
    started = time.monotonic()
    response = host.call(
        "POST", "/api/fleet/conform", json={"reason": "bench: onboarding", "target": {"all": True}}
    )
    if response.status_code != 202:
        raise SystemExit(f"conform refused: {response.status_code} {response.text[:500]}")
    operation_id = response.json()["operationId"]
    log(f"operation {operation_id} started")
    accepted = throttled = reads = reads_at_accept = 0
    accepted_s = converged_s = None
    while time.monotonic() - started < TIMEOUT_S:
        for request in lab.control("GET", f"/_lab/requests?service=arm&since={seq}")["requests"]:
            seq = max(seq, request["seq"])
            throttled += request["status"] == 429
            reads += request["method"] == "GET"
            if is_write(request) and request["status"] in (200, 201):
                accepted += 1
        if accepted_s is None and accepted >= 2 * panels:
            accepted_s = time.monotonic() - started
            reads_at_accept = reads
            log(f"all {accepted} writes accepted after {accepted_s:.1f} s")
        document = host.call("GET", f"/api/operations/{operation_id}").json()
        if document["status"] != "running":
            converged_s = time.monotonic() - started
            log(f"operation {document['status']} after {converged_s:.1f} s: {document['summary']}")
            break
        lab.control("POST", "/_lab/agents/tick")
        time.sleep(POLL_S)
    bound = max(2 * panels - WRITE_BURST, 0) / (WRITE_RATE_PER_LAB_S * TIME_SCALE)
    # The same bound for the reads made until then (ARM: 250 burst, 25 per s): what actually paces it.
    read_bound = max(reads_at_accept - READ_BURST, 0) / (READ_RATE_PER_LAB_S * TIME_SCALE)
    return {
        "panels": panels,
        "writes": accepted,
        "accepted_s": round(accepted_s, 1) if accepted_s is not None else None,
        "bound_s": round(bound, 1),
        "ratio_to_write_bound": round(accepted_s / bound, 2) if accepted_s and bound else None,
        "reads": reads_at_accept,
        "read_bound_s": round(read_bound, 1),
        "converged_s": round(converged_s, 1) if converged_s is not None else None,
        "throttled": throttled,
        "time_scale": TIME_SCALE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", type=int, default=PANELS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="onboarding-") as state:
        log(f"starting the lab: {args.panels} unconfigured panels, time scale {TIME_SCALE}")
        with (
            LabProcess(
                Path(state),
                clusters=1,
                unconfigured=args.panels,
                subscriptions=1,
                time_scale=TIME_SCALE,
                runner=False,
            ) as lab,
            HostProcess(lab, instance="onboarding", env={"FLUXFLEET_FLEET_VERIFY_MAX_CHECKS": "200"}) as host,
        ):
            figures = run(lab, host, args.panels)
    log(
        f"{figures['writes']} writes accepted in {figures['accepted_s']} s; ARM's write bound for them "
        f"{figures['bound_s']} s (ratio {figures['ratio_to_write_bound']}); ARM's read bound for the "
        f"{figures['reads']} reads until then {figures['read_bound_s']} s; every agent applied it after "
        f"{figures['converged_s']} s; {figures['throttled']} requests answered 429"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
