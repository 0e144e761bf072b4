"""The one timestamp format fluxfleet writes: RFC 3339, UTC, milliseconds, `Z` (`2026-08-20T10:15:30.123Z`).

Why one fixed-width format: release pipelines and people compare these strings, sort them, and paste
them into queries; a fixed width makes lexical order the chronological order, and milliseconds keep
the order of events inside one second (ARM accepting a write, the agent reporting it) visible. Every
document the API serves, every row stored and every message queued uses `format_time`; `parse_time`
reads it back and also reads what Azure sends (any RFC 3339 / ISO 8601 precision, `Z` or an offset).
"""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    """`2026-08-20T10:15:30.123Z`; a naive datetime is taken to be UTC."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_optional(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def parse_time(value: object) -> datetime | None:
    """An aware UTC datetime from RFC 3339 text (any precision; ARM sends 7 fractional digits), or None
    for an empty or unreadable value."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    date, sep, rest = text.partition("T")
    if sep and "." in rest:
        # Python's parser takes at most 6 fractional digits; Azure sends up to 7.
        clock, _, fraction = rest.partition(".")
        digits = len(fraction) - len(fraction.lstrip("0123456789"))
        text = f"{date}T{clock}.{fraction[: min(digits, 6)]}{fraction[digits:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
