"""Durations as people type them and as messages say them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.domain.durations import format_duration, parse_duration, take_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8h", timedelta(hours=8)),
        ("30m", timedelta(minutes=30)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("90 minutes", timedelta(minutes=90)),
        ("2 hours", timedelta(hours=2)),
        ("1.5h", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        ("1m", timedelta(minutes=1)),  # a minute, never a month
        ("2H", timedelta(hours=2)),
        ("8", None),  # a bare number is not a duration
        ("2fa", None),
        ("30m1h", None),  # units go down
        ("", None),
        ("8h and more", None),
        ("PT8H", None),
    ],
)
def test_parse_duration(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["2h", "db", "is", "down"], (timedelta(hours=2), 1)),
        (["2h", "3", "engineers", "out"], (timedelta(hours=2), 1)),  # units stop decreasing
        (["1", "h", "30", "min", "now"], (timedelta(minutes=90), 4)),
        (["now"], None),
        ([], None),
    ],
)
def test_take_duration_stops_where_the_duration_ends(
    tokens: list[str], expected: tuple[timedelta, int] | None
) -> None:
    assert take_duration(tokens) == expected


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=20), "less than a minute"),
        (timedelta(minutes=45), "45 min"),
        (timedelta(hours=8), "8 h"),
        (timedelta(hours=1, minutes=30, seconds=59), "1 h 30 min"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=2, hours=4), "2 days 4 h"),
    ],
)
def test_format_duration(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text


def test_an_absurdly_long_duration_is_the_longest_there_is_not_a_crash() -> None:
    taken = take_duration(["99999999999999999999999999d", "reason"])
    assert taken is not None
    assert taken[1] == 1
    assert taken[0] > timedelta(days=10**8)


@pytest.mark.parametrize(
    "tokens", [["9" * 400 + "m"], ["2h", "9" * 400 + "m"], ["9" * 400, "days"]]
)
def test_a_number_too_long_for_a_float_is_the_longest_duration_not_a_crash(
    tokens: list[str],
) -> None:
    taken = take_duration(tokens)
    assert taken is not None
    assert taken[0] > timedelta(days=10**8)
