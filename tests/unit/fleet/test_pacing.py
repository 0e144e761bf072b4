"""The shared token bucket: ARM's write budget holds across instances, adapts down, honours Retry-After."""

from __future__ import annotations

import pytest

from shared.ports import RateKind
from shared.services.fleet.pacing import BucketLimits, MemoryBucketStore, SharedPacer
from tests.unit.fleet.fakes import FakeClock

SUB = "sub-1"
BURST, RATE = 200, 10.0
HOLD_S = 1.0


def pacer(store: MemoryBucketStore, clock: FakeClock, **kwargs: float) -> SharedPacer:
    limits: dict[RateKind, BucketLimits] = {
        "writes": BucketLimits(burst=BURST, rate=RATE),
        "reads": BucketLimits(burst=250, rate=25.0),
    }
    return SharedPacer(store=store, clock=clock, limits=limits, hold_s=HOLD_S, **kwargs)  # type: ignore[arg-type]


def max_in_any_window(times: list[float], burst: float, rate: float) -> float:
    """The largest excess of sends over what a token bucket allows, over every window."""
    times = sorted(times)
    worst = float("-inf")
    for i, first in enumerate(times):
        for j in range(i, len(times)):
            allowed = burst + rate * (times[j] - first + HOLD_S)
            worst = max(worst, (j - i + 1) - allowed)
    return worst


def test_one_instance_sends_the_burst_then_the_refill_rate() -> None:
    clock = FakeClock()
    one = pacer(MemoryBucketStore(), clock)
    start = clock.monotonic()
    for _ in range(BURST + 100):
        one.acquire(subscription=SUB, kind="writes")
    elapsed = clock.monotonic() - start
    # 100 writes beyond the burst at 10/s: 10 s, give or take one token's wait.
    assert 9.8 <= elapsed <= 10.2


def test_instances_sharing_the_store_together_stay_within_one_budget() -> None:
    clock = FakeClock()
    store = MemoryBucketStore()
    instances = [pacer(store, clock) for _ in range(3)]
    sent: list[float] = []
    for i in range(600):
        instances[i % 3].acquire(subscription=SUB, kind="writes")
        sent.append(clock.monotonic())
    assert max_in_any_window(sent, BURST, RATE) <= 0
    # and they do not leave the budget unused: 400 beyond the burst take about 40 s, not 120
    assert sent[-1] - sent[0] <= 41


def test_subscriptions_and_kinds_have_separate_buckets() -> None:
    clock = FakeClock()
    shared = pacer(MemoryBucketStore(), clock)
    for _ in range(BURST):
        shared.acquire(subscription="sub-1", kind="writes")
    start = clock.monotonic()
    shared.acquire(subscription="sub-2", kind="writes")
    shared.acquire(subscription="sub-1", kind="reads")
    assert clock.monotonic() == start


def test_arm_reporting_fewer_tokens_left_slows_every_instance_down() -> None:
    clock = FakeClock()
    store = MemoryBucketStore()
    first, second = pacer(store, clock), pacer(store, clock)
    first.acquire(subscription=SUB, kind="writes")
    # Someone else spends the same identity's budget: ARM says only 5 writes are left.
    first.observe(subscription=SUB, kind="writes", remaining=5, retry_after_s=None, throttled=False)
    start = clock.monotonic()
    for _ in range(15):
        second.acquire(subscription=SUB, kind="writes")
    # 5 left now, the other 10 at 10/s.
    assert clock.monotonic() - start == pytest.approx(1.0, abs=0.15)


def test_a_429_retry_after_pauses_every_instance() -> None:
    clock = FakeClock()
    store = MemoryBucketStore()
    first, second = pacer(store, clock), pacer(store, clock)
    first.acquire(subscription=SUB, kind="writes")
    first.observe(subscription=SUB, kind="writes", remaining=None, retry_after_s=7, throttled=True)
    start = clock.monotonic()
    second.acquire(subscription=SUB, kind="writes")
    assert clock.monotonic() - start >= 7


def test_tokens_held_too_long_are_not_spent_later_in_a_clump() -> None:
    clock = FakeClock()
    store = MemoryBucketStore()
    one = pacer(store, clock, max_chunk=5)
    one.acquire(subscription=SUB, kind="writes")  # takes a chunk of 5, keeps 4
    clock.advance(HOLD_S + 0.5)
    row_before = store.read(one.key(SUB, "writes"))
    one.acquire(subscription=SUB, kind="writes")
    row_after = store.read(one.key(SUB, "writes"))
    assert row_before is not None
    assert row_after is not None
    assert row_after.etag != row_before.etag  # went back to the shared bucket instead of using old tokens


def test_limits_must_be_usable() -> None:
    with pytest.raises(ValueError, match="burst"):
        BucketLimits(burst=0, rate=1)
