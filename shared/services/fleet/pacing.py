"""Client-side pacing of ARM calls with a token bucket shared by every instance of the app.

Why shared: ARM's budget belongs to a subscription and the calling identity (writes: 200 burst,
10/s refill; reads: 250 / 25 per s), not to a process. In Azure the queue trigger runs on many
instances at once; a bucket per instance would let N instances spend N budgets and collect 429s. So
the bucket lives in one place every instance can reach — a Table row per (subscription, kind) — and
is taken from with compare-and-swap on the row's ETag, refilled by elapsed wall-clock time.

Cost and fairness: a process takes tokens in small chunks (up to `max_chunk`) and keeps them at
most `hold_s` before discarding them, so one storage round trip pays for a few ARM calls while no
instance can hoard a burst and spend it later in a clump ARM would reject.

Adapting: every ARM response reports what *ARM's* bucket still holds
(`x-ms-ratelimit-remaining-subscription-writes|reads`). When that is below what ours holds (someone
else with the same identity is spending), ours is lowered to match. A 429 `Retry-After` blocks the
bucket for every instance until it has passed.

Clocks: refill uses each instance's wall clock (NTP-synchronised in Azure); a negative elapsed time
(clock skew between instances) counts as zero, so skew can only slow pacing down, never speed it up.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace

from shared.config import Settings
from shared.ports import BucketRow, BucketStore, Clock, RateKind

log = logging.getLogger("fluxfleet.pacing")

# ARM's documented per-subscription, per-principal limits (request-limits-and-throttling.md).
ARM_WRITE_BURST = 200
ARM_WRITE_RATE = 10.0
ARM_READ_BURST = 250
ARM_READ_RATE = 25.0

# Tokens one storage round trip may take. Small, so instances share the refill fairly; >1 so a busy
# instance does not pay a Table write per ARM call.
DEFAULT_MAX_CHUNK = 5
# How long (s) a process may keep tokens it took before they are thrown away: long enough to use a
# chunk at ARM's pace, short enough that old tokens never add to a fresh burst.
DEFAULT_HOLD_S = 1.0
# Lower our bucket only when ARM reports this many tokens fewer than we think are left: tokens other
# processes took but have not spent yet explain small differences.
ADAPT_MARGIN = 3
# Floating-point slack on token counts, and the shortest wait (s): a clock with microsecond steps must
# still move forward while the bucket refills its last fraction of a token.
TOKEN_EPSILON = 1e-9
MIN_PAUSE_S = 0.001
# CAS attempts before giving up on adjusting a bucket after a response (the next response retries).
OBSERVE_ATTEMPTS = 3


@dataclass(frozen=True)
class BucketLimits:
    burst: float
    rate: float  # tokens per second

    def __post_init__(self) -> None:
        if self.burst < 1 or self.rate <= 0:
            raise ValueError(f"a token bucket needs burst >= 1 and rate > 0, got {self}")


@dataclass
class _Held:
    tokens: int = 0
    taken_at: float = 0.0


class SharedPacer:
    """Blocks each caller until the shared bucket of its subscription and kind allows one ARM call."""

    def __init__(
        self,
        *,
        store: BucketStore,
        clock: Clock,
        limits: Mapping[RateKind, BucketLimits],
        max_chunk: int = DEFAULT_MAX_CHUNK,
        hold_s: float = DEFAULT_HOLD_S,
        namespace: str = "arm",
    ) -> None:
        self._store = store
        self._clock = clock
        self._limits = dict(limits)
        self._max_chunk = max_chunk
        self._hold_s = hold_s
        self._namespace = namespace
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Our last sight of each row, so `observe` can compare without a storage read per response.
        self._last_seen: dict[str, BucketRow] = {}
        self.waited_s = 0.0  # total time callers spent waiting (for benchmarks and logs)

    def key(self, subscription: str, kind: RateKind) -> str:
        return f"{self._namespace}:{subscription.lower()}:{kind}"

    def acquire(self, *, subscription: str, kind: RateKind) -> float:
        """Take one token; returns the seconds waited."""
        key = self.key(subscription, kind)
        limits = self._limits[kind]
        waited = 0.0
        with self._lock_for(key):
            while True:
                now = self._clock.now().timestamp()
                held = self._held.setdefault(key, _Held())
                if held.tokens > 0 and now - held.taken_at <= self._hold_s:
                    held.tokens -= 1
                    self.waited_s += waited
                    return waited
                held.tokens = 0
                row = self._current(key, limits, now)
                if row is None:
                    continue  # lost a creation race: read again
                if row.blocked_until > now:
                    pause = row.blocked_until - now
                    self._clock.sleep(pause)
                    waited += pause
                    continue
                tokens = self._refilled(row, limits, now) + TOKEN_EPSILON
                if tokens < 1:
                    pause = max((1 - tokens) / limits.rate, MIN_PAUSE_S)
                    self._clock.sleep(pause)
                    waited += pause
                    continue
                take = min(math.floor(tokens), self._max_chunk)
                updated = self._store.replace(replace(row, tokens=tokens - take, updated=now))
                if updated is None:
                    continue  # another instance took tokens first
                self._last_seen[key] = updated
                held.tokens, held.taken_at = take - 1, now
                self.waited_s += waited
                return waited

    def observe(
        self,
        *,
        subscription: str,
        kind: RateKind,
        remaining: int | None,
        retry_after_s: float | None,
        throttled: bool,
    ) -> None:
        """Adapt to an ARM response (RateObserver)."""
        key = self.key(subscription, kind)
        limits = self._limits.get(kind)
        if limits is None:
            return
        if throttled:
            pause = retry_after_s if retry_after_s is not None else 1.0
            log.warning(
                "ARM throttled %s on subscription %s; pausing every instance for %.1f s",
                kind,
                subscription,
                pause,
                extra={"subscription": subscription},
            )
            self._adjust(key, limits, tokens=0.0, blocked_for=pause)
            with self._locks_guard:
                self._held.pop(key, None)
            return
        if remaining is None:
            return
        seen = self._last_seen.get(key)
        if seen is None:
            return
        now = self._clock.now().timestamp()
        if remaining < self._refilled(seen, limits, now) - ADAPT_MARGIN:
            self._adjust(key, limits, tokens=float(max(remaining, 0)), blocked_for=0.0)

    def _adjust(self, key: str, limits: BucketLimits, *, tokens: float, blocked_for: float) -> None:
        for _ in range(OBSERVE_ATTEMPTS):
            now = self._clock.now().timestamp()
            row = self._current(key, limits, now)
            if row is None:
                continue
            lowered = min(tokens, self._refilled(row, limits, now))
            updated = self._store.replace(
                replace(
                    row, tokens=lowered, updated=now, blocked_until=max(row.blocked_until, now + blocked_for)
                )
            )
            if updated is not None:
                self._last_seen[key] = updated
                return

    def _current(self, key: str, limits: BucketLimits, now: float) -> BucketRow | None:
        row = self._store.read(key)
        if row is None:
            # A new bucket starts full: ARM's does too, and `observe` corrects us if it is not.
            row = self._store.create(BucketRow(key=key, tokens=limits.burst, updated=now))
        if row is not None:
            self._last_seen[key] = row
        return row

    @staticmethod
    def _refilled(row: BucketRow, limits: BucketLimits, now: float) -> float:
        elapsed = max(0.0, now - row.updated)
        return min(limits.burst, row.tokens + elapsed * limits.rate)

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())


class MemoryBucketStore:
    """A `BucketStore` in memory: for one-process use (tests, the benchmark's baseline)."""

    def __init__(self) -> None:
        self._rows: dict[str, BucketRow] = {}
        self._version = 0
        self._lock = threading.Lock()

    def read(self, key: str) -> BucketRow | None:
        with self._lock:
            return self._rows.get(key)

    def create(self, row: BucketRow) -> BucketRow | None:
        with self._lock:
            if row.key in self._rows:
                return None
            return self._put(row)

    def replace(self, row: BucketRow) -> BucketRow | None:
        with self._lock:
            current = self._rows.get(row.key)
            if current is None or current.etag != row.etag:
                return None
            return self._put(row)

    def _put(self, row: BucketRow) -> BucketRow:
        self._version += 1
        stored = replace(row, etag=str(self._version))
        self._rows[row.key] = stored
        return stored


def limits_from_settings(settings: Settings) -> dict[RateKind, BucketLimits]:
    # ARM gives deletes a bucket of their own with the writes' size and refill (200 / 10 per s).
    writes = BucketLimits(burst=settings.arm_write_burst, rate=settings.arm_write_rate)
    return {
        "writes": writes,
        "deletes": writes,
        "reads": BucketLimits(burst=settings.arm_read_burst, rate=settings.arm_read_rate),
        # Resource Graph's per-principal quota (a fixed window in Azure): a bucket as large as the window
        # allows, refilling at its average rate. The quota headers keep it honest: a spent window blocks
        # the bucket until it resets (shared.adapters.resource_graph.GraphGate).
        "graph": BucketLimits(
            burst=settings.resource_graph_queries,
            rate=settings.resource_graph_queries / settings.resource_graph_window_seconds,
        ),
    }
