"""Resource Graph's per-user query quota: a fixed window per principal, and the headers that report it.

guidance-for-throttled-requests.md (MicrosoftDocs/azure-docs): "a user can send at most 15 queries within
every 5-second window without being throttled"; every answer carries `x-ms-user-quota-remaining` (queries
left in the window) and `x-ms-user-quota-resets-after` (`hh:mm:ss` until it resets; "In 3 seconds, the
values ... are reset to 15 and 00:00:05"), and each page of a paged query "takes one query quota". So the
window starts with a principal's first query and, when it ends, the next query starts a fresh one.

The window runs on the lab clock (like ARM's buckets), so `--time-scale` shortens it; the durations a client
is told are real seconds at the current time-scale, rounded up to whole seconds (at least 1 in
`Retry-After`), because that is what the client will sleep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The documented default quota (guidance-for-throttled-requests.md).
DEFAULT_QUERIES = 15
DEFAULT_WINDOW_S = 5.0


@dataclass(frozen=True)
class QuotaSettings:
    enabled: bool = True
    queries: int = DEFAULT_QUERIES
    window_s: float = DEFAULT_WINDOW_S  # lab seconds


@dataclass
class _Window:
    started_at: float  # lab elapsed seconds
    used: int


@dataclass(frozen=True)
class QuotaAdmission:
    allowed: bool
    remaining: int
    resets_after_s: int  # real whole seconds until the window resets

    def headers(self) -> dict[str, str]:
        return {
            "x-ms-user-quota-remaining": str(self.remaining),
            "x-ms-user-quota-resets-after": hh_mm_ss(self.resets_after_s),
        }


def hh_mm_ss(seconds: int) -> str:
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


class UserQuota:
    """One window per principal (object id); `admit` counts a query in it, or refuses it."""

    def __init__(self, settings: QuotaSettings | None = None) -> None:
        self.settings = settings or QuotaSettings()
        self._windows: dict[str, _Window] = {}

    def configure(self, settings: QuotaSettings) -> None:
        """New limits start with fresh windows, as after an idle period."""
        self.settings = settings
        self._windows.clear()

    def reset(self) -> None:
        self._windows.clear()

    def admit(self, principal: str, *, now: float, time_scale: float) -> QuotaAdmission:
        settings = self.settings
        window = self._windows.get(principal)
        if window is None or now >= window.started_at + settings.window_s:
            window = _Window(started_at=now, used=0)
            self._windows[principal] = window
        left_lab_s = window.started_at + settings.window_s - now
        resets_after = math.ceil(left_lab_s / time_scale)
        if not settings.enabled:
            # Off (for benchmarks): nothing is counted, so a header-reading client never waits.
            return QuotaAdmission(True, settings.queries, math.ceil(settings.window_s / time_scale))
        if window.used >= settings.queries:
            return QuotaAdmission(False, 0, max(1, resets_after))
        window.used += 1
        return QuotaAdmission(True, settings.queries - window.used, resets_after)
