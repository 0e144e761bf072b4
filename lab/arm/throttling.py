"""ARM's token-bucket throttling, per region, subscription, principal and operation type.

ARM's current model (request-limits-and-throttling.md, 2025): each (subscription, principal,
operation type) has a bucket — reads 250 burst refilling 25/s, writes and deletes 200 burst
refilling 10/s — and each (subscription, operation type) has a global bucket 15x that size shared
by every principal. A request needs a token from both. Refill is computed from the *lab* clock, so
`--time-scale` speeds it up with everything else; the `Retry-After` a client is told is in *real*
seconds at the current time-scale (whole seconds, rounded up, at least 1), because that is what the
client will sleep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

OperationKind = Literal["reads", "writes", "deletes"]
OPERATION_KINDS: tuple[OperationKind, ...] = ("reads", "writes", "deletes")
# The singular ARM uses in the 429 message ("Number of 'read' requests ...").
OPERATION_WORD: dict[OperationKind, str] = {"reads": "read", "writes": "write", "deletes": "delete"}


@dataclass(frozen=True)
class BucketLimit:
    burst: float
    per_second: float


# Per (subscription, principal): ARM's published defaults.
DEFAULT_LIMITS: dict[OperationKind, BucketLimit] = {
    "reads": BucketLimit(burst=250, per_second=25),
    "writes": BucketLimit(burst=200, per_second=10),
    "deletes": BucketLimit(burst=200, per_second=10),
}
# The global per-subscription bucket is 15x the per-principal one.
DEFAULT_GLOBAL_MULTIPLIER = 15.0


def operation_kind(method: str) -> OperationKind:
    if method in ("GET", "HEAD", "OPTIONS"):
        return "reads"
    if method == "DELETE":
        return "deletes"
    return "writes"


@dataclass
class TokenBucket:
    limit: BucketLimit
    tokens: float
    updated_at: float  # lab elapsed seconds

    def refill(self, now: float) -> None:
        if now > self.updated_at:
            self.tokens = min(self.limit.burst, self.tokens + (now - self.updated_at) * self.limit.per_second)
            self.updated_at = now

    def seconds_until_token(self) -> float:
        """Lab seconds until one whole token is available (0 if there is one now)."""
        missing = 1.0 - self.tokens
        return 0.0 if missing <= 0 else missing / self.limit.per_second


@dataclass(frozen=True)
class Admission:
    allowed: bool
    kind: OperationKind
    remaining: int
    global_remaining: int
    retry_after_lab_s: float = 0.0


@dataclass(frozen=True)
class ThrottleSettings:
    enabled: bool = True
    limits: tuple[tuple[OperationKind, BucketLimit], ...] = tuple(DEFAULT_LIMITS.items())
    global_multiplier: float = DEFAULT_GLOBAL_MULTIPLIER

    def limit(self, kind: OperationKind) -> BucketLimit:
        return dict(self.limits)[kind]

    def global_limit(self, kind: OperationKind) -> BucketLimit:
        base = self.limit(kind)
        return BucketLimit(
            burst=base.burst * self.global_multiplier, per_second=base.per_second * self.global_multiplier
        )

    def with_limit(self, kind: OperationKind, limit: BucketLimit) -> ThrottleSettings:
        merged = dict(self.limits)
        merged[kind] = limit
        return replace(self, limits=tuple(merged.items()))


class Throttle:
    """The buckets; `admit` takes a token from both the principal's and the global bucket, or none."""

    def __init__(self, settings: ThrottleSettings | None = None) -> None:
        self.settings = settings or ThrottleSettings()
        self._principal: dict[tuple[str, ...], TokenBucket] = {}  # (subscription, principal, kind)
        self._global: dict[tuple[str, ...], TokenBucket] = {}  # (subscription, kind)

    def configure(self, settings: ThrottleSettings) -> None:
        """New limits start from full buckets (as after an idle period)."""
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        self._principal.clear()
        self._global.clear()

    def admit(self, *, subscription: str, principal: str, kind: OperationKind, now: float) -> Admission:
        sub = subscription.lower()
        own = self._bucket(self._principal, (sub, principal, kind), self.settings.limit(kind), now)
        shared = self._bucket(self._global, (sub, kind), self.settings.global_limit(kind), now)
        if not self.settings.enabled:
            return Admission(True, kind, int(own.tokens), int(shared.tokens))
        if own.tokens >= 1 and shared.tokens >= 1:
            own.tokens -= 1
            shared.tokens -= 1
            return Admission(True, kind, int(own.tokens), int(shared.tokens))
        wait = max(own.seconds_until_token(), shared.seconds_until_token())
        return Admission(False, kind, int(own.tokens), int(shared.tokens), retry_after_lab_s=wait)

    @staticmethod
    def _bucket(
        store: dict[tuple[str, ...], TokenBucket], key: tuple[str, ...], limit: BucketLimit, now: float
    ) -> TokenBucket:
        bucket = store.get(key)
        if bucket is None or bucket.limit != limit:
            bucket = TokenBucket(limit=limit, tokens=limit.burst, updated_at=now)
            store[key] = bucket
        else:
            bucket.refill(now)
        return bucket


def retry_after_real_seconds(lab_seconds: float, time_scale: float) -> int:
    """What a client should sleep, in real whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(lab_seconds / time_scale))


def ratelimit_headers(admission: Admission) -> dict[str, str]:
    return {
        f"x-ms-ratelimit-remaining-subscription-{admission.kind}": str(admission.remaining),
        f"x-ms-ratelimit-remaining-subscription-global-{admission.kind}": str(admission.global_remaining),
    }
