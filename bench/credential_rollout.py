"""Credential rollout at fleet scale: a new Key Vault version reaches 1,000 lab panels, ring by ring.

A new PAT is stored as a Key Vault version (as `pat mint` does); Key Vault's `SecretNewVersionCreated`
reaches the app through Event Grid and the local Functions host; the app validates the PAT and rolls
it out canary → early → broad. The fleet-change engine starts a ring once the previous one is *settled*
(each panel proven — its agent fetched with the new PAT — or failed or pending-offline) and reached its
80 % success threshold. The benchmark prints:

(a) the time from the new version until ARM had accepted every write, against the throttle bound —
    the best any client could do under ARM's write throttle (burst 200, then 10/s) *and* the ring
    gates: a ring's agents report on their own sync schedule, phases spread evenly over the sync
    interval S, so the last panel of a ring reports S after its write. Target ≤ 1.15. The ratio to the
    plain throttle bound without rings is printed too, to show what the rings cost;
(b) the time until every online panel is proven, and what is left after the last write, against the
    agents' sync interval: a panel's first sync after its write is at most one interval later.

The lab runs at `TIME_SCALE` × real time, which scales ARM's refill, its LROs, the agents' sync
interval and Key Vault's clock alike, so the ratios are what they would be at real speed; the app's
own overheads (queue polling, convergence checks) run in real time and so are *over*-weighted here.
Figures are in lab seconds. Runs in about 4 minutes: `python bench/credential_rollout.py`. Last line:
{"panels", "ratio_to_throttle_bound", "ratio_to_unringed_throttle_bound", "proven_s",
"proven_after_last_write_to_sync_interval", ...}.
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
# Panels that are offline during the rollout (from the broad and early rings): they must not hold it up.
OFFLINE = 10
# 5 × real time: the 300 s sync interval is a minute, ARM refills 50 writes per real second. Higher
# scales shorten the run but let the app's real-time overheads (queue polling ≤ 2 s per stage) weigh
# more than they would in Azure.
TIME_SCALE = 5.0
WRITE_BURST = 200
WRITE_RATE_PER_LAB_S = 10.0
# The agents' sync interval in the lab's seeded configurations (Flux's and Arc's default: 5 minutes).
SYNC_INTERVAL_LAB_S = 300.0
RING_SHARES = {"canary": 0.1, "early": 0.3, "broad": 0.6}
RING_THRESHOLD = 0.8
# The lab's app settings (lab.json `env`, which win over these) already scale ARM's read and write budgets,
# the convergence-check delay (30 s / scale) and the offline recheck to the lab's clock.
HOST_ENV = {
    "FLUXFLEET_FLEET_BATCH_SIZE": "25",
    "FLUXFLEET_CREDENTIAL_RING_THRESHOLD": str(RING_THRESHOLD),
    # Enough convergence checks to outlast a sync interval whatever the time scale.
    "FLUXFLEET_FLEET_VERIFY_MAX_CHECKS": "120",
}
TIMEOUT_S = 600.0
PROGRESS_POLL_S = 3.0


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def panel_rows(lab: LabHandle, operation_id: str) -> list[Any]:
    """The operation's panel rows as the app stored them (Table storage)."""
    from shared.adapters.clients import AzureClients
    from shared.adapters.operation_store import TableOperationStore
    from shared.config import Settings

    settings = Settings.from_env(lab.env)
    return TableOperationStore(AzureClients(settings).tables).get_panels(operation_id)


def ring_bound_s(*, panels: int) -> tuple[float, float]:
    """(the ring-gated throttle bound, the plain throttle bound), in lab seconds.

    Writes go as fast as the token bucket allows; a ring's gate opens when its last panel has reported,
    one sync interval S after its write (evenly spread agent phases); the bucket refills meanwhile, up
    to its burst size. Offline panels are written too (ARM accepts a change for an offline cluster).
    """
    sizes = [round(panels * share) for share in RING_SHARES.values()]
    sizes[-1] = panels - sum(sizes[:-1])
    tokens, now = float(WRITE_BURST), 0.0
    for index, size in enumerate(sizes):
        from_bucket = min(tokens, size)
        tokens -= from_bucket
        now += (size - from_bucket) / WRITE_RATE_PER_LAB_S
        if index < len(sizes) - 1:
            gate = SYNC_INTERVAL_LAB_S
            now += gate
            tokens = min(WRITE_BURST, tokens + gate * WRITE_RATE_PER_LAB_S)
    return now, max(panels - WRITE_BURST, 0) / WRITE_RATE_PER_LAB_S


def new_version(lab: LabHandle) -> tuple[str, datetime]:
    """Mint a PAT in the lab's Azure DevOps and store it in Key Vault as `pat mint` does."""
    from azure.identity import ManagedIdentityCredential
    from azure.keyvault.secrets import SecretClient

    minted = lab.control("POST", "/_lab/devops/pats", {"scope": "vso.code", "days": 90})
    with (
        lab.applied_env(),
        SecretClient(
            lab.doc["keyvault"]["url"], ManagedIdentityCredential(), verify_challenge_resource=False
        ) as client,
    ):
        created = client.set_secret(
            "flux-gitops-pat",
            minted["token"],
            expires_on=datetime.fromisoformat(minted["validTo"].replace("Z", "+00:00")),
            tags={"authorizationId": minted["authorizationId"], "scope": "vso.code"},
        )
    return str(created.properties.version), datetime.now(UTC)


def wait_for_operation(host: HostProcess, version: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = host.call("GET", "/api/credentials").json()
        rollout = body.get("rollout") or {}
        if body["current"]["version"] == version and rollout.get("operationId"):
            return str(rollout["operationId"])
        time.sleep(0.5)
    raise SystemExit("the new version did not start a rollout within a minute")


def run(lab: LabHandle, host: HostProcess, *, time_scale: float) -> dict[str, Any]:
    # A fresh lab: ARM's buckets are full. (No `/_lab/reset`: it drops the host's Event Grid subscriptions.)
    version, created = new_version(lab)
    operation_id = wait_for_operation(host, version)
    log(f"version {version[:8]}… → operation {operation_id}")
    online = PANELS - OFFLINE
    started = time.monotonic()
    writes_done: datetime | None = None
    while True:
        rows = panel_rows(lab, operation_id)
        accepted = [row.accepted_local for row in rows if row.accepted_local is not None]
        proven = [row for row in rows if row.state.value == "succeeded"]
        if writes_done is None and len(accepted) >= PANELS:
            writes_done = max(accepted)
            log(f"every ARM write accepted ({len(accepted)})")
        if len(proven) >= online and writes_done is not None:
            break
        if time.monotonic() - started > TIMEOUT_S:
            raise SystemExit(f"after {TIMEOUT_S:.0f} s: {len(accepted)} writes, {len(proven)} proven")
        log(f"{len(accepted)} writes accepted, {len(proven)} panels proven")
        time.sleep(PROGRESS_POLL_S)
    proven_at = max(row.updated_at for row in proven if row.updated_at is not None)
    fingerprints = {c["credential_fingerprint"] for c in lab.state()["clusters"] if c["online"]}
    if len(fingerprints) != 1:
        raise SystemExit(f"online panels hold {len(fingerprints)} different PATs")

    def lab_s(moment: datetime) -> float:
        return (moment - created).total_seconds() * time_scale

    return {
        "writes_s": lab_s(writes_done),
        "proven_s": lab_s(proven_at),
        "proven_after_last_write_s": (proven_at - writes_done).total_seconds() * time_scale,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=TIME_SCALE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="credential-rollout-") as state:
        log(f"starting the lab: {PANELS} panels ({OFFLINE} offline), time scale {args.time_scale}")
        with (
            LabProcess(
                Path(state), clusters=PANELS, subscriptions=1, offline=OFFLINE, time_scale=args.time_scale
            ) as lab,
            HostProcess(lab, env=HOST_ENV) as host,
        ):
            figures = run(lab, host, time_scale=args.time_scale)
    bound, plain_bound = ring_bound_s(panels=PANELS)
    ratio = figures["writes_s"] / bound
    plain = figures["writes_s"] / plain_bound
    tail = figures["proven_after_last_write_s"] / SYNC_INTERVAL_LAB_S
    log(
        f"(a) every write accepted {figures['writes_s']:.0f} lab s after the new version; ring-gated "
        f"throttle bound {bound:.0f} s → {ratio:.3f} (target ≤ 1.15); plain throttle bound "
        f"{plain_bound:.0f} s → {plain:.2f}"
    )
    log(
        f"(b) every online panel proven after {figures['proven_s']:.0f} lab s, "
        f"{figures['proven_after_last_write_s']:.0f} s after the last write = {tail:.2f} × the sync interval "
        f"({SYNC_INTERVAL_LAB_S:.0f} s)"
    )
    print(
        json.dumps(
            {
                "panels": PANELS,
                "offline": OFFLINE,
                "ratio_to_throttle_bound": round(ratio, 3),
                "ratio_to_unringed_throttle_bound": round(plain, 3),
                "writes_s": round(figures["writes_s"], 1),
                "ring_gated_throttle_bound_s": round(bound, 1),
                "throttle_bound_s": round(plain_bound, 1),
                "proven_s": round(figures["proven_s"], 1),
                "proven_after_last_write_to_sync_interval": round(tail, 3),
                "sync_interval_s": SYNC_INTERVAL_LAB_S,
                "time_scale": args.time_scale,
            }
        )
    )


if __name__ == "__main__":
    main()
