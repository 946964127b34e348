"""Schedules: cron slots in a time zone, for the autopilot's promotions and freezes (SPEC 13).

A schedule is a five-field cron expression (minute hour day month weekday) read in an IANA time
zone. Its slots are worked out by cronsim, which follows Debian cron across DST changes, so a
schedule in ``Europe/Rome`` fires when the people in Rome expect it:

- ``0 9 * * 1`` is 09:00 on the wall clock every Monday: 08:00 UTC in winter, 07:00 UTC in
  summer;
- a time the clocks skip (``30 2 * * *`` on the spring-forward night) fires once, at the first
  minute that exists (03:00);
- a time that happens twice (``30 2 * * *`` on the fall-back night) fires once, the first time;
- an expression with ``*`` in its minute or hour field (``*/30 * * * *``) follows real time:
  both repeated half-hours of the fall-back night fire.

A slot is an instant (UTC), and the instant names it: the scheduler fires a slot once across
replicas and restarts by setting a marker keyed by it. The domain says which slot is due
(``due_slot``): the latest one not later than now, if it is less than ``grace`` old — so a slot
missed while no replica ran still fires at start when it is less late than that, and an older
one never does. A freeze is due for as long as its window lasts (``window_at``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

__all__ = [
    "MAX_FREEZE",
    "MISSED_SLOT_GRACE",
    "Schedule",
    "ScheduleError",
    "check_cron",
    "check_zone",
    "describe_next",
    "due_slot",
    "format_duration",
    "last_slot",
    "next_slot",
    "parse_duration",
    "window_at",
]

MISSED_SLOT_GRACE: Final = timedelta(hours=1)
"""A slot missed while no replica ran still fires at start when it is less late than this."""
MAX_FREEZE: Final = timedelta(days=7)
"""A scheduled freeze lasts at most a week: a longer one is a lock someone should hold by hand."""

_FIELDS: Final = ("minute", "hour", "day of month", "month", "day of week")
_DURATION: Final = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")
_UNITS: Final = (timedelta(weeks=1), timedelta(days=1), timedelta(hours=1), timedelta(minutes=1))
_REFERENCE: Final = datetime(2024, 1, 1, tzinfo=UTC)


class ScheduleError(ValueError):
    """A cron expression, time zone or duration that cannot be used; the message says why."""


def check_cron(expression: str) -> str:
    """``expression`` if it is a five-field cron schedule that fires at least once."""
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            f'"{expression}" is not a cron schedule: it needs 5 fields (minute hour day month'
            f' weekday, like "0 9 * * 1"), not {len(fields)}'
        )
    try:
        iterator = CronSim(expression, _REFERENCE)
    except CronSimError as exc:
        raise ScheduleError(
            f'"{expression}" is not a cron schedule: {_cron_problem(exc)}'
        ) from None
    try:
        next(iterator)
    except StopIteration:
        raise ScheduleError(f'"{expression}" never fires (no such date)') from None
    return expression


def _cron_problem(exc: CronSimError) -> str:
    """cronsim says "Bad hour"; a person reads which field and how to write it."""
    text = str(exc)
    for name in ("second", "minute", "hour", "day-of-month", "month", "day-of-week"):
        if text.lower() == f"bad {name}":
            return f"its {name.replace('-', ' ')} field is not valid"
    return text[:1].lower() + text[1:] if text else "it does not parse"


def check_zone(name: str) -> str:
    """``name`` if it is an IANA time zone this system knows (``Europe/Rome``)."""
    try:
        _zone(name)
    except ScheduleError:
        close = _close_zones(name)
        hint = f' (did you mean "{close[0]}"?)' if close else ' (an IANA name like "Europe/Rome")'
        raise ScheduleError(f'unknown time zone "{name}"{hint}') from None
    return name


def _close_zones(name: str) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, sorted(available_timezones()), n=1, cutoff=0.6)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    if name.strip() != name or not name or ".." in name or name.startswith("/"):
        raise ScheduleError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"unknown time zone {name!r}") from None


def parse_duration(text: str) -> timedelta:
    """``63h``, ``2d``, ``1h30m``, ``1w``: weeks, days, hours and minutes, largest first."""
    compact = text.strip().lower().replace(" ", "")
    match = _DURATION.fullmatch(compact)
    if not compact or match is None:
        raise ScheduleError(
            f'"{text}" is not a duration: write it like "63h", "2d", "90m" or "1h30m"'
        )
    total = sum(
        (int(amount) * unit for amount, unit in zip(match.groups(), _UNITS, strict=True) if amount),
        timedelta(0),
    )
    if total < timedelta(minutes=1):
        raise ScheduleError(f'"{text}" is too short: at least a minute')
    return total


def format_duration(delta: timedelta) -> str:
    """``63h``, ``2d``, ``1h30m``: the catalog's own way of writing a duration."""
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days and not hours and not minutes:
        return f"{days}d"
    hours += days * 24
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") or "0m"


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """A cron expression in a time zone."""

    cron: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        check_cron(self.cron)
        check_zone(self.timezone)

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    @property
    def key(self) -> str:
        """What names this schedule in slot markers: its expression and zone."""
        return f"{'_'.join(self.cron.split())}@{self.timezone}"


def _aware(name: str, value: datetime) -> None:
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {value!r}")


def next_slot(schedule: Schedule, after: datetime) -> datetime:
    """The first slot strictly after ``after``, in UTC."""
    _aware("after", after)
    local = after.astimezone(schedule.zone)
    return next(CronSim(schedule.cron, local)).astimezone(UTC)


def last_slot(schedule: Schedule, at: datetime) -> datetime | None:
    """The latest slot not later than ``at``, in UTC (``None``: none in the last 50 years)."""
    _aware("at", at)
    # cronsim steps back a second before looking: start just after ``at`` so that a slot at
    # exactly ``at`` counts.
    start = at.replace(microsecond=0) + timedelta(seconds=1)
    try:
        return next(
            CronSim(schedule.cron, start.astimezone(schedule.zone), reverse=True)
        ).astimezone(UTC)
    except StopIteration:
        return None


def due_slot(
    schedule: Schedule, now: datetime, *, grace: timedelta = MISSED_SLOT_GRACE
) -> datetime | None:
    """The slot to fire at ``now``: the latest one, if it is less than ``grace`` old."""
    slot = last_slot(schedule, now)
    if slot is None or now - slot >= grace:
        return None
    return slot


def window_at(
    schedule: Schedule, now: datetime, *, duration: timedelta
) -> tuple[datetime, datetime] | None:
    """The window (start, end) that ``now`` falls in: a freeze that started at the latest slot
    and has not ended. A window that started while no replica ran is still in force."""
    slot = last_slot(schedule, now)
    if slot is None or now >= slot + duration:
        return None
    return slot, slot + duration


def describe_next(schedule: Schedule, now: datetime) -> str:
    """``Mon 30 Mar 2026 09:00 CEST (Europe/Rome)``: the next slot, in the schedule's own zone,
    as ``pitcrew check`` shows it."""
    local = next_slot(schedule, now).astimezone(schedule.zone)
    return f"{local:%a %d %b %Y %H:%M} {local.tzname()} ({schedule.timezone})"
