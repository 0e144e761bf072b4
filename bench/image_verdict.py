"""Image verdict latency against the lab, and ImagePolicy selection against `sorted()`.

1. From event to stored verdict, warm: `ImageChecks.handle_push` (the Event Grid function's work:
   read the branch HEAD, list the registry's tags, judge, insert the check) over 200 pushes of new
   tags — timed until the check is stored (the follow-up message queued after that is reported
   separately) — against the one I/O a verdict cannot avoid, listing the repository's tags through
   the same ACR client, measured in the same iterations. Target: p50 ratio ≤ 1.5. Event Grid's own
   delivery is not included (it is Azure's, not the app's).
2. `select_latest` of a `>=1.0.0` semver policy over 10,000 tags against `sorted()` of the same
   list (the floor for anything that must look at every tag in order).

Last line: {"pushes", "verdict_p50_ms", "verdict_p99_ms", "list_tags_p50_ms", "list_tags_p99_ms",
"ratio_p50", "ratio_p99", "select_latest_ms", "sorted_ms", "select_ratio"}
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.labkit import LabProcess  # noqa: E402 - after the path set-up above

PUSHES = 200
WARM_UP_PUSHES = 10
REPOSITORY = "ipc/opcua-gateway"
# The selection benchmark: enough tags to dwarf per-call overhead, repeated for a stable median.
SELECTION_TAGS = 10_000
SELECTION_RUNS = 21
SEED = 8  # deterministic tag sets


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def bench_verdicts() -> dict[str, float]:
    from shared.config import Settings
    from shared.container import Container
    from shared.models.images import ImageRef, PushedImage

    with (
        tempfile.TemporaryDirectory(prefix="bench-images-") as state,
        LabProcess(Path(state), clusters=1, subscriptions=1) as lab,
        lab.applied_env(),
    ):
        settings = Settings.from_env(dict(os.environ))
        checks = Container(settings).images
        registry = checks._registry  # the same adapter and client the verdict uses
        store = checks._store
        stored_at: list[float] = []
        create = store.create_check

        def timed_create(**kwargs: object) -> object:
            existing = create(**kwargs)  # type: ignore[arg-type]
            stored_at.append(time.perf_counter())
            return existing

        store.create_check = timed_create  # type: ignore[method-assign]
        image = f"{lab.doc['acr_login_server']}/{REPOSITORY}"
        verdicts: list[float] = []
        listings: list[float] = []
        totals: list[float] = []
        for index in range(WARM_UP_PUSHES + PUSHES):
            tag = f"v1.5.{index}"
            lab.control("POST", "/_lab/acr/push", {"repository": REPOSITORY, "tag": tag}, expect=201)
            pushed = PushedImage(
                str(uuid.uuid4()), ImageRef(image, tag), datetime.now(UTC), "EventGridSchema"
            )
            started = time.perf_counter()
            registry.list_tags(repository=REPOSITORY)
            listed = time.perf_counter()
            outcome = checks.handle_push(pushed)
            judged = time.perf_counter()
            verdict = outcome.record.verdict
            if verdict.verdict != "will-roll-out":
                raise SystemExit(f"unexpected verdict {verdict.verdict}: {verdict.reason}")
            if index >= WARM_UP_PUSHES:
                listings.append((listed - started) * 1000)
                verdicts.append((stored_at[-1] - listed) * 1000)
                totals.append((judged - listed) * 1000)
    return {
        "pushes": PUSHES,
        "verdict_p50_ms": round(statistics.median(verdicts), 2),
        "verdict_p99_ms": round(percentile(verdicts, 0.99), 2),
        "list_tags_p50_ms": round(statistics.median(listings), 2),
        "list_tags_p99_ms": round(percentile(listings, 0.99), 2),
        "ratio_p50": round(statistics.median(verdicts) / statistics.median(listings), 3),
        "ratio_p99": round(percentile(verdicts, 0.99) / percentile(listings, 0.99), 3),
        "with_follow_up_queued_p50_ms": round(statistics.median(totals), 2),
    }


def selection_tags() -> list[str]:
    rng = random.Random(SEED)
    tags = []
    for _ in range(SELECTION_TAGS):
        version = f"{rng.randint(0, 3)}.{rng.randint(0, 40)}.{rng.randint(0, 200)}"
        roll = rng.random()
        if roll < 0.1:
            version += f"-rc.{rng.randint(1, 9)}"
        elif roll < 0.15:
            version = f"build-{rng.randint(0, 10**6)}"
        tags.append(("v" if rng.random() < 0.5 else "") + version)
    return tags


def bench_selection() -> dict[str, float]:
    from shared.image_policy import select_latest

    tags = selection_tags()
    spec = {"policy": {"semver": {"range": ">=1.0.0"}}}
    select_latest(spec, tags)  # warm the constraint cache
    selects, sorts = [], []
    for _ in range(SELECTION_RUNS):
        started = time.perf_counter()
        sorted(tags)
        sorted_at = time.perf_counter()
        select_latest(spec, tags)
        selected_at = time.perf_counter()
        sorts.append((sorted_at - started) * 1000)
        selects.append((selected_at - sorted_at) * 1000)
    return {
        "select_latest_ms": round(statistics.median(selects), 3),
        "sorted_ms": round(statistics.median(sorts), 3),
        "select_ratio": round(statistics.median(selects) / statistics.median(sorts), 2),
    }


def main() -> None:
    started = time.monotonic()
    result = {**bench_verdicts(), **bench_selection()}
    print(
        f"image verdicts over {PUSHES} warm pushes, selection over {SELECTION_TAGS} tags "
        f"({time.monotonic() - started:.1f} s)",
        file=sys.stderr,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
