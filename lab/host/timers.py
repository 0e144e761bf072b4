"""Timer triggers: NCRONTAB and TimeSpan schedules, schedule monitoring, and the listener singleton.

Follows the Functions timer extension (`TimerListener`, `ScheduleMonitor`):

- schedules are 6-field NCRONTAB (`{second} {minute} {hour} {day} {month} {day-of-week}`, a day must match
  both day fields as in NCrontab) or a TimeSpan interval (`hh:mm:ss`); `%NAME%` is read from app settings;
  times are in `WEBSITE_TIME_ZONE` (an IANA name) or UTC;
- with `useMonitor` (default: on for schedules of one minute or more) the last and next occurrence are
  kept — in Azure in a storage blob, here in `DIR/host-timers.json` — so a host that starts after a missed
  occurrence runs the function at once with `past_due` True; otherwise `runOnStartup` runs it at start;
- a timer runs in one host at a time: Azure holds a blob lease per timer listener, the lab an exclusive
  file lock in `DIR/host-locks/`; another host retries the lock every few seconds and takes over when the
  holder stops;
- invocations of one timer never overlap; an invocation that starts more than a second after its
  scheduled time is reported `past_due` (the lab's reading of "later than scheduled").

Timers run on real time, not lab time: the Functions host is not part of the emulated Azure.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from lab.host import triggers
from lab.host.errors import HostStartupError
from lab.host.hostconfig import parse_timespan
from lab.host.indexing import IndexedFunction
from lab.host.invocation import Invoker
from lab.host.settings import resolve_expression

log = logging.getLogger("lab.host.timers")

MONITOR_FILE = "host-timers.json"
LOCKS_DIR = "host-locks"
# Schedules firing more often than this are not monitored by default (the extension's rule).
MONITOR_MIN_INTERVAL = timedelta(minutes=1)
# An invocation starting this much after its scheduled time is reported past due.
PAST_DUE_TOLERANCE = timedelta(seconds=1)
# How often a host without the listener lock tries again. Azure polls every minute; the lab is quicker
# so a test that stops one of two hosts sees the other take over in seconds.
LISTENER_LOCK_RETRY_S = 5.0
# ScheduleStatus's "never": .NET's DateTime.MinValue.
NEVER = datetime(1, 1, 1, tzinfo=UTC)
NCRONTAB_FIELDS = 6


class Schedule(Protocol):
    def next_after(self, moment: datetime) -> datetime: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    zone: tzinfo

    def next_after(self, moment: datetime) -> datetime:
        local = moment.astimezone(self.zone)
        found: datetime = croniter(self.expression, local, day_or=False, second_at_beginning=True).get_next(
            datetime
        )
        return found.astimezone(UTC)

    def describe(self) -> str:
        return f"Cron: '{self.expression}'"


@dataclass(frozen=True)
class IntervalSchedule:
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.interval

    def describe(self) -> str:
        return f"Constant: {self.interval}"


def time_zone(settings: Mapping[str, str]) -> tzinfo:
    name = settings.get("WEBSITE_TIME_ZONE") or settings.get("TZ")
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HostStartupError(f"WEBSITE_TIME_ZONE {name!r} is not an IANA time zone name") from exc


def parse_schedule(expression: str, *, zone: tzinfo) -> Schedule:
    """A 6-field NCRONTAB expression or a TimeSpan; HostStartupError otherwise (as the host refuses it)."""
    text = expression.strip()
    if len(text.split()) == NCRONTAB_FIELDS:
        if not croniter.is_valid(text, second_at_beginning=True):
            raise HostStartupError(
                f"the schedule expression {expression!r} is not a valid NCRONTAB expression"
            )
        return CronSchedule(expression=text, zone=zone)
    try:
        interval = parse_timespan(text)
    except ValueError:
        raise HostStartupError(
            f"the schedule expression {expression!r} was not recognized as a 6-field NCRONTAB "
            "expression or a TimeSpan"
        ) from None
    if interval <= timedelta(0):
        raise HostStartupError(f"the TimeSpan schedule {expression!r} must be positive")
    return IntervalSchedule(interval=interval)


def schedule_interval(schedule: Schedule, *, now: datetime) -> timedelta:
    first = schedule.next_after(now)
    return schedule.next_after(first) - first


@dataclass(frozen=True)
class ScheduleStatus:
    last: datetime
    next: datetime
    last_updated: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "Last": self.last.isoformat(),
            "Next": self.next.isoformat(),
            "LastUpdated": self.last_updated.isoformat(),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ScheduleStatus:
        return cls(
            last=datetime.fromisoformat(doc["Last"]),
            next=datetime.fromisoformat(doc["Next"]),
            last_updated=datetime.fromisoformat(doc["LastUpdated"]),
        )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ScheduleMonitorStore:
    """`DIR/host-timers.json`: {"<host id>/<function>": ScheduleStatus}, shared by every host on the lab."""

    def __init__(self, lab_dir: Path) -> None:
        self._path = lab_dir / MONITOR_FILE
        self._lock = lab_dir / f".{MONITOR_FILE}.lock"

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self._path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def get(self, key: str) -> ScheduleStatus | None:
        with _file_lock(self._lock):
            raw = self._read().get(key)
        try:
            return ScheduleStatus.from_json(raw) if raw else None
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, key: str, status: ScheduleStatus) -> None:
        with _file_lock(self._lock):
            doc = self._read()
            doc[key] = status.to_json()
            tmp = self._path.with_name(f".{MONITOR_FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
            tmp.replace(self._path)


def check_past_due(
    *, now: datetime, schedule: Schedule, status: ScheduleStatus | None
) -> tuple[bool, ScheduleStatus]:
    """ScheduleMonitor.CheckPastDueAsync: was an occurrence missed while no host ran this timer?"""
    if status is None:
        return False, ScheduleStatus(last=NEVER, next=schedule.next_after(now), last_updated=now)
    basis = status.last if status.last != NEVER else status.last_updated
    expected = schedule.next_after(basis)
    if status.next != expected:  # the schedule changed since the status was recorded
        status = ScheduleStatus(last=status.last, next=expected, last_updated=now)
    return now > status.next, status


class ListenerLock:
    """The timer listener's singleton: an exclusive, non-blocking file lock held while the listener runs."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._handle: Any = None

    def try_acquire(self) -> bool:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        handle = self._path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def now_utc() -> datetime:
    return datetime.now(UTC)


class TimerListener:
    def __init__(
        self,
        *,
        function: IndexedFunction,
        schedule: Schedule,
        use_monitor: bool,
        run_on_startup: bool,
        monitor: ScheduleMonitorStore,
        lock: ListenerLock,
        monitor_key: str,
        invoker: Invoker,
    ) -> None:
        self.function = function
        self.schedule = schedule
        self.use_monitor = use_monitor
        self.run_on_startup = run_on_startup
        self._monitor = monitor
        self._lock = lock
        self._key = monitor_key
        self._invoker = invoker
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._status: ScheduleStatus | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"timer-listener:{self.function.name}")

    def request_stop(self) -> None:
        """Schedule nothing more; an invocation already running goes on (the host bounds the wait)."""
        self._stopping.set()

    async def finish(self, *, timeout: float) -> None:
        if self._task is not None:
            _, pending = await asyncio.wait({self._task}, timeout=timeout)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._lock.release()

    async def _sleep_until(self, moment: datetime) -> bool:
        """Sleep until `moment`; False if the listener is stopping."""
        delay = (moment - now_utc()).total_seconds()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        return not self._stopping.is_set()

    async def _acquire(self) -> bool:
        told = False
        while not self._stopping.is_set():
            if self._lock.try_acquire():
                if told:
                    log.info("timer %s: took over its listener lock", self.function.name)
                return True
            if not told:
                log.info(
                    "timer %s runs in another host; this host takes over when that one stops",
                    self.function.name,
                )
                told = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=LISTENER_LOCK_RETRY_S)
        return False

    async def _run(self) -> None:
        if not await self._acquire():
            return
        now = now_utc()
        past_due = False
        status: ScheduleStatus | None = None
        if self.use_monitor:
            status = await asyncio.to_thread(self._monitor.get, self._key)
            past_due, status = check_past_due(now=now, schedule=self.schedule, status=status)
            await asyncio.to_thread(self._monitor.put, self._key, status)
        self._status = status or ScheduleStatus(
            last=NEVER, next=self.schedule.next_after(now), last_updated=NEVER
        )
        log.info(
            "timer %s: %s, next occurrence %s",
            self.function.name,
            self.schedule.describe(),
            self._status.next.isoformat(),
        )
        if past_due:
            await self._invoke(scheduled=self._status.next, reason="IsPastDue", force_past_due=True)
        elif self.run_on_startup:
            await self._invoke(scheduled=None, reason="RunOnStartup")
        while not self._stopping.is_set():
            scheduled = self._status.next
            if not await self._sleep_until(scheduled):
                return
            await self._invoke(scheduled=scheduled, reason="timer")

    async def _invoke(self, *, scheduled: datetime | None, reason: str, force_past_due: bool = False) -> None:
        fired = now_utc()
        status = self._status if self.use_monitor else None
        pytype = self.function.trigger_pytype

        def make_trigger(started: datetime) -> Any:
            late = scheduled is not None and started - scheduled > PAST_DUE_TOLERANCE
            return triggers.timer_request(
                past_due=force_past_due or late,
                schedule_status=status.to_json() if status else None,
                pytype=pytype,
            )

        await self._invoker.invoke(
            self.function,
            trigger_label=f"timer:{reason}" if reason != "timer" else "timer",
            make_trigger=make_trigger,
        )
        # As the extension: a timer firing early counts from its scheduled time, so it never fires twice.
        basis = fired
        assert self._status is not None
        if reason == "timer" and self._status.next > fired:
            basis = self._status.next
        self._status = ScheduleStatus(last=basis, next=self.schedule.next_after(basis), last_updated=basis)
        if self.use_monitor:
            await asyncio.to_thread(self._monitor.put, self._key, self._status)


def build_timer_listener(
    function: IndexedFunction,
    *,
    settings: Mapping[str, str],
    lab_dir: Path,
    host_id: str,
    monitor: ScheduleMonitorStore,
    invoker: Invoker,
) -> TimerListener:
    trigger = function.trigger
    expression = resolve_expression(
        str(trigger.get("schedule", "")), settings, where=f"{function.name}.schedule"
    )
    schedule = parse_schedule(expression, zone=time_zone(settings))
    use_monitor = trigger.get("useMonitor")
    if use_monitor is None:
        use_monitor = schedule_interval(schedule, now=now_utc()) >= MONITOR_MIN_INTERVAL
    safe_name = "".join(char if char.isalnum() or char in "-_" else "_" for char in function.name)
    return TimerListener(
        function=function,
        schedule=schedule,
        use_monitor=bool(use_monitor),
        run_on_startup=bool(trigger.get("runOnStartup", False)),
        monitor=monitor,
        lock=ListenerLock(lab_dir / LOCKS_DIR / f"{host_id}.{safe_name}.listener.lock"),
        monitor_key=f"{host_id}/{function.name}",
        invoker=invoker,
    )
