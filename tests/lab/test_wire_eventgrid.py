"""Event Grid's documented retry schedule, as the lab's delivery follows it.

learn.microsoft.com/azure/event-grid/delivery-and-retry: after a failed attempt Event Grid retries
after 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 to 24 hours, until the
maximum attempts (30 by default) or the event's time-to-live (24 h by default) runs out. A receiver
that is down for a day therefore sees about a dozen attempts, not one an hour. (Pure: no lab needed;
the delivery loop that uses this schedule is exercised in test_eventgrid.py.)
"""

from __future__ import annotations

from lab.eventgrid.delivery import retry_delay

MINUTE, HOUR = 60, 3600
DOCUMENTED = [10, 30, MINUTE, 5 * MINUTE, 10 * MINUTE, 30 * MINUTE, HOUR, 3 * HOUR, 6 * HOUR]
# Event Grid's default time-to-live, and the attempts its schedule fits in it (the first one included).
DEFAULT_TTL_S = 24 * HOUR
ATTEMPTS_WITHIN_DEFAULT_TTL = 11


def test_retries_follow_the_documented_schedule_then_every_twelve_hours() -> None:
    delays = [retry_delay(attempts_made) for attempts_made in range(1, 13)]

    assert delays[: len(DOCUMENTED)] == DOCUMENTED
    assert delays[len(DOCUMENTED) :] == [12 * HOUR] * 3


def test_a_receiver_down_for_a_day_sees_eleven_attempts_within_the_default_time_to_live() -> None:
    elapsed, attempts = 0.0, 1
    while elapsed + retry_delay(attempts) <= DEFAULT_TTL_S:
        elapsed += retry_delay(attempts)
        attempts += 1

    assert attempts == ATTEMPTS_WITHIN_DEFAULT_TTL
