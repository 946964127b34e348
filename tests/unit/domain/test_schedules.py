"""Slots of the autopilot's schedules, in Europe/Rome across both DST changes of 2026 (29 March,
spring forward at 02:00; 25 October, fall back at 03:00), and which slot is due when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.schedules import (
    Schedule,
    ScheduleError,
    check_cron,
    check_zone,
    describe_next,
    due_slot,
    format_duration,
    last_slot,
    next_slot,
    parse_duration,
    window_at,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def rome(cron: str) -> Schedule:
    return Schedule(cron=cron, timezone="Europe/Rome")


def slots(schedule: Schedule, start: datetime, count: int) -> list[str]:
    found, at = [], start
    for _ in range(count):
        at = next_slot(schedule, at)
        found.append(at.strftime("%a %d %b %H:%M"))
    return found


@pytest.mark.parametrize(
    ("cron", "start", "expected"),
    [
        pytest.param(
            "0 9 * * 1",
            utc(2026, 3, 16),
            ["Mon 16 Mar 08:00", "Mon 23 Mar 08:00", "Mon 30 Mar 07:00", "Mon 06 Apr 07:00"],
            id="Monday 09:00: 08:00 UTC in winter, 07:00 UTC in summer",
        ),
        pytest.param(
            "0 9 * * 1",
            utc(2026, 10, 19),
            ["Mon 19 Oct 07:00", "Mon 26 Oct 08:00"],
            id="Monday 09:00 back on winter time",
        ),
        pytest.param(
            "30 2 * * *",
            utc(2026, 3, 27, 12),
            ["Sat 28 Mar 01:30", "Sun 29 Mar 01:00", "Mon 30 Mar 00:30"],
            id="02:30 does not exist on 29 March: once, at 03:00 when the clocks jump",
        ),
        pytest.param(
            "30 2 * * *",
            utc(2026, 10, 23, 12),
            ["Sat 24 Oct 00:30", "Sun 25 Oct 00:30", "Mon 26 Oct 01:30"],
            id="02:30 happens twice on 25 October: once, the first time",
        ),
        pytest.param(
            "*/30 * * * *",
            utc(2026, 10, 25, 0, 10),
            [
                "Sun 25 Oct 00:30",
                "Sun 25 Oct 01:00",
                "Sun 25 Oct 01:30",
                "Sun 25 Oct 02:00",
                "Sun 25 Oct 02:30",
            ],
            id="every half hour follows real time through the repeated hour",
        ),
        pytest.param(
            "0 18 * * 5",
            utc(2026, 3, 19),
            ["Fri 20 Mar 17:00", "Fri 27 Mar 17:00", "Fri 03 Apr 16:00"],
            id="Friday 18:00, before and after the change",
        ),
    ],
)
def test_slots_in_rome(cron: str, start: datetime, expected: list[str]) -> None:
    assert slots(rome(cron), start, len(expected)) == expected


def test_utc_is_the_default_zone() -> None:
    assert next_slot(Schedule(cron="0 9 * * 1"), utc(2026, 3, 29)) == utc(2026, 3, 30, 9)


MONDAY = utc(2026, 3, 30, 7)  # 09:00 in Rome, summer time


@pytest.mark.parametrize(
    ("now", "due"),
    [
        pytest.param(MONDAY, MONDAY, id="at the slot"),
        pytest.param(MONDAY + timedelta(seconds=30), MONDAY, id="a tick later"),
        pytest.param(MONDAY + timedelta(minutes=59), MONDAY, id="missed, 59 min late"),
        pytest.param(MONDAY + timedelta(hours=1), None, id="missed, an hour late: never"),
        pytest.param(MONDAY - timedelta(seconds=1), None, id="a second early"),
        pytest.param(utc(2026, 3, 30, 8), None, id="09:00 UTC is not 09:00 in Rome"),
    ],
)
def test_due_slot(now: datetime, due: datetime | None) -> None:
    assert due_slot(rome("0 9 * * 1"), now) == due


def test_last_slot_counts_a_slot_at_the_very_moment() -> None:
    assert last_slot(rome("0 9 * * 1"), MONDAY) == MONDAY
    assert last_slot(rome("0 9 * * 1"), MONDAY - timedelta(microseconds=1)) == utc(2026, 3, 23, 8)


FRIDAY = utc(2026, 3, 20, 17)  # 18:00 in Rome, winter time


@pytest.mark.parametrize(
    ("now", "window"),
    [
        pytest.param(FRIDAY, (FRIDAY, FRIDAY + timedelta(hours=63)), id="it begins"),
        pytest.param(
            FRIDAY + timedelta(hours=30),
            (FRIDAY, FRIDAY + timedelta(hours=63)),
            id="Pitcrew was down at 18:00: still in force on Saturday",
        ),
        pytest.param(FRIDAY + timedelta(hours=63), None, id="it has ended"),
        pytest.param(FRIDAY - timedelta(minutes=1), None, id="not yet"),
        pytest.param(
            utc(2026, 3, 27, 17),
            (utc(2026, 3, 27, 17), utc(2026, 3, 30, 8)),
            id="63 h across the change: Monday 10:00 on the new clock",
        ),
    ],
)
def test_freeze_window(now: datetime, window: tuple[datetime, datetime] | None) -> None:
    assert window_at(rome("0 18 * * 5"), now, duration=timedelta(hours=63)) == window


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("0 9 * *", '"0 9 * *" is not a cron schedule: it needs 5 fields'),
        ("0 0 9 * * 1", '"0 0 9 * * 1" is not a cron schedule: it needs 5 fields'),
        ("0 25 * * 1", '"0 25 * * 1" is not a cron schedule: its hour field is not valid'),
        ("61 9 * * 1", '"61 9 * * 1" is not a cron schedule: its minute field is not valid'),
        ("0 9 * * mon-x", "its day of week field is not valid"),
        ("0 9 31 2 *", '"0 9 31 2 *" is not a cron schedule: its day of month field is not valid'),
    ],
)
def test_cron_expressions_that_are_refused(expression: str, problem: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        check_cron(expression)
    assert problem in str(caught.value)


@pytest.mark.parametrize("expression", ["0 9 * * 1", "*/15 * * * *", "0 18 * * FRI", "0 0 1 1 *"])
def test_cron_expressions_that_are_accepted(expression: str) -> None:
    assert check_cron(expression) == expression


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("Europe/Roma", 'unknown time zone "Europe/Roma" (did you mean "Europe/Rome"?)'),
        ("Mars/Olympus", 'unknown time zone "Mars/Olympus" (an IANA name like "Europe/Rome")'),
        ("../etc/passwd", 'unknown time zone "../etc/passwd"'),
    ],
)
def test_unknown_time_zones(name: str, problem: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        check_zone(name)
    assert str(caught.value).startswith(problem)


@pytest.mark.parametrize(
    ("text", "duration", "written"),
    [
        ("63h", timedelta(hours=63), "63h"),
        ("2d", timedelta(days=2), "2d"),
        ("1h30m", timedelta(minutes=90), "1h30m"),
        ("1w", timedelta(days=7), "7d"),
        ("90m", timedelta(minutes=90), "1h30m"),
        ("1d 12h", timedelta(hours=36), "36h"),
    ],
)
def test_durations(text: str, duration: timedelta, written: str) -> None:
    assert parse_duration(text) == duration
    assert format_duration(duration) == written


@pytest.mark.parametrize("text", ["", "63", "h", "3 hours", "30m2h", "0m", "-1h"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("schedule", "now", "shown"),
    [
        (rome("0 9 * * 1"), utc(2026, 3, 27), "Mon 30 Mar 2026 09:00 CEST (Europe/Rome)"),
        (rome("0 9 * * 1"), utc(2026, 3, 20), "Mon 23 Mar 2026 09:00 CET (Europe/Rome)"),
        (Schedule(cron="0 18 * * 5"), utc(2026, 3, 27), "Fri 27 Mar 2026 18:00 UTC (UTC)"),
    ],
)
def test_describe_next(schedule: Schedule, now: datetime, shown: str) -> None:
    assert describe_next(schedule, now) == shown
