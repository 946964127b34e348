"""Durations as people type them (``2h``, ``1h30m``, ``90 minutes``) and as messages say them.

One grammar for the catalog (``access.max: 8h``) and for commands (``/access production orders
for 2h``), so that what the catalog allows reads the same as what a person asks for:

- compact: a number and a unit, repeated with units in decreasing order: ``30m``, ``2h``,
  ``1h30m``, ``1.5h``, ``1d``, ``1w``;
- spelled: ``90 minutes``, ``2 hours``, ``1 h 30 min`` (the same units, as separate words).

Units: ``m``/``min``/``minute(s)``, ``h``/``hr``/``hour(s)``, ``d``/``day(s)``, ``w``/``week(s)``.
``1m`` is one minute (months are no unit of a duration here). Seconds are not a unit people
type for access or freezes, so there are none. Anything else is not a duration: ``2fa`` is a
word, ``3 engineers`` too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Final

__all__ = ["format_duration", "parse_duration", "take_duration"]

_UNIT_MINUTES: Final = {
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 1),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 60),
    **dict.fromkeys(("d", "day", "days"), 24 * 60),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), 7 * 24 * 60),
}
_LONGEST: Final = timedelta.max // timedelta(minutes=1)
_NUMBER: Final = re.compile(r"\d+(?:\.\d+)?")
_COMPACT: Final = re.compile(r"(?:\d+(?:\.\d+)?[a-z]+)+")
_COMPACT_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([a-z]+)")


def _compact(token: str) -> list[tuple[float, int]] | None:
    """``1h30m`` → [(1, 60), (30, 1)]; units must be known and in decreasing order."""
    if not _COMPACT.fullmatch(token):
        return None
    parts: list[tuple[float, int]] = []
    for number, unit in _COMPACT_PART.findall(token):
        minutes = _UNIT_MINUTES.get(unit)
        if minutes is None or (parts and minutes >= parts[-1][1]):
            return None
        parts.append((float(number), minutes))
    return parts


def take_duration(tokens: Sequence[str], start: int = 0) -> tuple[timedelta, int] | None:
    """The duration that starts at ``tokens[start]`` and the index just after it; ``None``
    when no duration starts there.

    Greedy over ``2h``, ``1h30m`` and ``90 minutes``, but only while units decrease, so that
    ``2h 3 engineers`` stops after ``2h``. Rounded to the minute.
    """
    index = start
    total = 0.0
    smallest = math.inf
    while index < len(tokens):
        token = tokens[index].lower()
        parts = _compact(token)
        used = 1
        if parts is None and _NUMBER.fullmatch(token) and index + 1 < len(tokens):
            unit = _UNIT_MINUTES.get(tokens[index + 1].lower())
            if unit is not None:
                parts, used = [(float(token), unit)], 2
        if parts is None or parts[0][1] >= smallest:
            break
        total += sum(number * unit for number, unit in parts)
        smallest = parts[-1][1]
        index += used
    if index == start:
        return None
    # ``99999999999999999999d`` is a duration, far too long: the longest one there is (so
    # is a number of 400 digits, which reads as infinity)
    return timedelta(minutes=round(min(total, _LONGEST))), index


def parse_duration(text: str) -> timedelta | None:
    """The whole of ``text`` as a duration (``"8h"``, ``"1h 30m"``), else ``None``."""
    tokens = text.split()
    taken = take_duration(tokens)
    if taken is None or taken[1] != len(tokens):
        return None
    return taken[0]


def format_duration(delta: timedelta) -> str:
    """``8 h``, ``1 h 30 min``, ``45 min``, ``2 days``, ``1 day 4 h``: what a message says of
    a duration (rounded down to the minute; under a minute is ``less than a minute``)."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    day_word = "day" if days == 1 else "days"
    return f"{days} {day_word} {hours} h" if hours else f"{days} {day_word}"
