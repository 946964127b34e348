"""Environment locks: a visible freeze that people see and automation respects (SPEC section 6).

A lock is one record per environment: who holds it, since when, why, and until when. Everything
here is pure. The lock service reads the environment's record, asks ``decide_lock`` or
``decide_unlock`` what a command means, stores what the decision holds and announces it; its
sweeper asks ``due_for_expiry`` and ``reminder_due``. The release flow asks ``in_force``.

An expired lock binds nobody even before the sweeper has removed it, so every decision treats it
as absent and hands it back (``expired``) for the service to announce, once.

Grammar of ``/lock`` (``parse_lock``)::

    /lock                          every environment and its lock (also ``/lock list``)
    /lock help                     usage
    /lock <env> [<expiry>] [reason…]
    /lock <env> [reason…] <expiry> an expiry clause at the very end counts too

    <expiry>:
      for <duration>               30m  2h  1d  1w  1h30m  "1h 30m"  "90 minutes"  1.5h
      <duration>                   the same, right after the env: /lock production 2h freeze
      until <time>                 18:00  6pm  "6:30 pm"  18h30  noon  midnight
      until <day> <time>           today, tomorrow, a weekday (mon … sunday), or 2025-11-24

Choices a user can notice:

- Times are in the user's Slack time zone (UTC when unknown). ``until 18:00`` is the next 18:00:
  today if it is still ahead, else tomorrow; a weekday likewise means its next occurrence that is
  still ahead. Days are counted on the calendar, so ``until tomorrow 09:00`` is 09:00 on the wall
  clock even across a DST change. A wall time the clocks skip (02:30 on the spring-forward night)
  is read as if they had not jumped (03:30); a time that happens twice is the first one.
- A duration is a duration only if the tokens fully match the syntax: ``/lock production 3
  engineers out`` and ``/lock production 2fa rollout`` are reasons. ``1m`` is one minute.
- After the env, ``for``/``until`` must be followed by a valid expiry, or the command is refused
  with the usage. At the end of a reason, a clause that does not parse is just part of the
  reason (``/lock production waiting for QA``); the confirmation shows what was understood.
- Between one minute and 30 days; a lock meant to last longer has no expiry and gets reminders.
- Env names are lower-cased here and checked against the catalog by the service. ``help`` and
  ``list`` (with anything after it) are words of the command, not environment names.
- Reasons keep any character (the renderers escape them); whitespace runs become one space, and
  they are cut at ``MAX_REASON`` characters.
- The holder locking again changes only what the command says: no reason keeps the reason, no
  expiry keeps the expiry (``/lock production for 2h`` extends a freeze without retyping why).
  Clearing either takes ``/unlock`` then ``/lock``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.domain.durations import take_duration
from bot.domain.errors import CommandError

__all__ = [
    "LOCK_USAGE",
    "MAX_LOCK",
    "MAX_REASON",
    "REMIND_EVERY",
    "UNLOCK_USAGE",
    "CommandError",
    "Created",
    "HeldByOther",
    "ListLocks",
    "Lock",
    "LockChange",
    "LockDecision",
    "LockHelp",
    "LockRequest",
    "NotLocked",
    "SetLock",
    "Unchanged",
    "UnlockDecision",
    "Unlocked",
    "Updated",
    "decide_lock",
    "decide_unlock",
    "due_for_expiry",
    "format_age",
    "format_until",
    "in_force",
    "parse_lock",
    "parse_unlock",
    "reminder_due",
    "user_zone",
]

LOCK_USAGE: Final = (
    "Usage: `/lock <env> [for <duration> | until <time>] [reason…]`"
    " — e.g. `/lock production for 2h black friday freeze`"
)
UNLOCK_USAGE: Final = "Usage: `/unlock <env>` — e.g. `/unlock production`"

MAX_LOCK: Final = timedelta(days=30)
"""Longest expiry: beyond it, a lock is meant to be open-ended and should be reminded of."""
REMIND_EVERY: Final = timedelta(hours=24)
MAX_REASON: Final = 300
"""Long enough for a sentence and a link; short enough for a one-line announcement."""

_QUOTED: Final = 40
_HELP_WORDS: Final = frozenset({"help", "-h", "--help", "?"})
_LIST_WORDS: Final = frozenset({"list", "ls"})
_KEYWORDS: Final = frozenset({"for", "until"})

_CLOCK = re.compile(r"(\d{1,2})(?::(\d{2}))?(am|pm)?")
_FRENCH_CLOCK = re.compile(r"(\d{1,2})h(\d{2})?")
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MERIDIEM: Final = frozenset({"am", "pm"})
_NAMED_TIMES: Final = {"noon": time(12), "midnight": time(0)}
_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NAMES: Final = {
    **{day: index for index, day in enumerate(_WEEKDAYS)},
    **{
        name: index
        for index, name in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
    "tues": 1,
    "thur": 3,
    "thurs": 3,
}
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


# --------------------------------------------------------------------------------------------
# The lock


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Lock:
    env: str
    holder: str
    """Slack user id."""
    since: datetime
    reason: str = ""
    expires_at: datetime | None = None
    """``None``: held until someone unlocks, with a reminder to the holder every day."""
    reminded_at: datetime | None = None

    def __post_init__(self) -> None:
        # Naive datetimes would compare by accident or raise deep inside a sweep: refuse them here.
        _require_aware("since", self.since)
        _require_aware("expires_at", self.expires_at)
        _require_aware("reminded_at", self.reminded_at)

    def age(self, now: datetime) -> timedelta:
        return max(now - self.since, timedelta(0))

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def reminded(self, now: datetime) -> Lock:
        return replace(self, reminded_at=now)


def in_force(lock: Lock | None, now: datetime) -> Lock | None:
    """The lock if it still binds: what the release flow and ``/whatsinprod`` ask about."""
    if lock is None or lock.expired(now):
        return None
    return lock


def due_for_expiry(lock: Lock, now: datetime) -> bool:
    return lock.expired(now)


def reminder_due(lock: Lock, now: datetime) -> bool:
    """A lock without end is easy to forget: nudge its holder after a day, then daily."""
    if lock.expires_at is not None or now - lock.since < REMIND_EVERY:
        return False
    return lock.reminded_at is None or now - lock.reminded_at >= REMIND_EVERY


# --------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class ListLocks:
    pass


@dataclass(frozen=True)
class LockHelp:
    pass


@dataclass(frozen=True, kw_only=True)
class SetLock:
    env: str
    expires_at: datetime | None
    """``None``: no expiry given (a new lock has none; an existing one keeps its own)."""
    reason: str
    """``""``: no reason given (a new lock has none; an existing one keeps its own)."""


LockRequest = ListLocks | LockHelp | SetLock


def parse_lock(text: str, *, now: datetime, tz: str | None) -> LockRequest:
    """Read ``/lock``'s text; ``tz`` is the user's Slack time zone (``"Europe/Paris"``)."""
    _require_aware("now", now)
    tokens = _words(text)
    if not tokens:
        return ListLocks()
    first = tokens[0].lower()
    if first in _HELP_WORDS:
        return LockHelp()
    if first in _LIST_WORDS:
        return ListLocks()
    if first in _KEYWORDS or _take_duration(tokens, 0) is not None:
        raise CommandError("Name the environment first.", usage=LOCK_USAGE)

    zone = user_zone(tz)
    rest = tokens[1:]
    expires_at, rest = _leading_expiry(rest, now=now, zone=zone)
    if expires_at is None:
        expires_at, rest = _trailing_expiry(rest, now=now, zone=zone)
    return SetLock(env=first, expires_at=expires_at, reason=_reason(rest))


def parse_unlock(text: str) -> str:
    """The environment to unlock. Nothing else is accepted: a stray word is more likely a typo
    than a reason, and unlocking the wrong environment is worse than retyping."""
    tokens = _words(text)
    if not tokens:
        raise CommandError("Name the environment to unlock.", usage=UNLOCK_USAGE)
    if tokens[0].lower() in _HELP_WORDS:
        raise CommandError(None, usage=UNLOCK_USAGE)
    if len(tokens) > 1:
        extra = _quote(" ".join(tokens[1:]))
        raise CommandError(
            f"`/unlock` takes only the environment, not {extra}.", usage=UNLOCK_USAGE
        )
    return tokens[0].lower()


def _quote(token: str) -> str:
    shown = token if len(token) <= _QUOTED else token[: _QUOTED - 1] + "…"
    return f"“{shown}”"


def _words(text: str) -> list[str]:
    """Split on any whitespace; other control characters count as spaces, never as text."""
    return "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text).split()


def _reason(tokens: list[str]) -> str:
    text = " ".join(tokens)
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 1].rstrip() + "…"
    return text


def _leading_expiry(
    tokens: list[str], *, now: datetime, zone: tzinfo
) -> tuple[datetime | None, list[str]]:
    """The expiry right after the env, strictly: a malformed one is an error, never a reason."""
    if not tokens:
        return None, tokens
    keyword = tokens[0].lower()
    if keyword == "for":
        if len(tokens) == 1:
            raise CommandError(
                "`for` needs a duration, like `30m`, `2h`, `1d` or `1h30m`.", usage=LOCK_USAGE
            )
        taken = _take_duration(tokens, 1)
        if taken is None:
            raise CommandError(_not_a_duration(tokens[1]), usage=LOCK_USAGE)
        minutes, end = taken
        return _after(minutes, tokens[1:end], now=now), tokens[end:]
    if keyword == "until":
        if [t.lower() for t in tokens[1:3]] == ["further", "notice"]:
            return None, tokens  # "until further notice": no end, and it reads well as a reason
        expires_at, end = _take_until(tokens, 1, now=now, zone=zone)
        return expires_at, tokens[end:]
    taken = _take_duration(tokens, 0)
    if taken is None:
        return None, tokens
    minutes, end = taken
    return _after(minutes, tokens[:end], now=now), tokens[end:]


def _trailing_expiry(
    tokens: list[str], *, now: datetime, zone: tzinfo
) -> tuple[datetime | None, list[str]]:
    """``… freeze until 18:00``: only a clause that parses and ends the text counts.

    A clause never contains ``for`` or ``until``, so only the last keyword can start one.
    """
    starts = [i for i, token in enumerate(tokens) if token.lower() in _KEYWORDS]
    if not starts:
        return None, tokens
    start = starts[-1]
    try:
        if tokens[start].lower() == "for":
            taken = _take_duration(tokens, start + 1)
            if taken is None or taken[1] != len(tokens):
                return None, tokens
            expires_at = _after(taken[0], tokens[start + 1 :], now=now)
        else:
            expires_at, end = _take_until(tokens, start + 1, now=now, zone=zone)
            if end != len(tokens):
                return None, tokens
    except CommandError:
        return None, tokens
    return expires_at, tokens[:start]


# --------------------------------------------------------------------------------------------
# Durations


def _not_a_duration(token: str) -> str:
    return (
        f"{_quote(token)} is not a duration: use minutes, hours, days or weeks, "
        "like `30m`, `2h`, `1d`, `1h30m` or `90 minutes`."
    )


def _take_duration(tokens: list[str], start: int) -> tuple[float, int] | None:
    """Minutes of the duration starting at ``tokens[start]`` (``durations``' grammar), and
    where it ends."""
    taken = take_duration(tokens, start)
    return None if taken is None else (taken[0].total_seconds() / 60, taken[1])


def _after(minutes: float, said: list[str], *, now: datetime) -> datetime:
    shown = _quote(" ".join(said))
    if minutes > MAX_LOCK.total_seconds() / 60:
        raise CommandError(
            f"{shown} is too long: a lock lasts at most 30 days"
            " (leave the duration out for a lock without end).",
            usage=LOCK_USAGE,
        )
    whole = round(minutes)
    if whole < 1:
        raise CommandError(
            f"{shown} is too short: a lock lasts at least a minute.", usage=LOCK_USAGE
        )
    return now + timedelta(minutes=whole)


# --------------------------------------------------------------------------------------------
# Times of day


@lru_cache(maxsize=256)
def user_zone(tz: str | None) -> tzinfo:
    """The user's time zone, or UTC when Slack gave none or one this system does not know.

    Returns ``datetime.UTC`` itself in that case, so that callers can tell (``is UTC``) and
    label times as UTC.
    """
    if not tz:
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return UTC


def _bad_time(token: str) -> CommandError:
    return CommandError(
        f"{_quote(token)} is not a time of day: use `18:00`, `6pm` or `18h30`.", usage=LOCK_USAGE
    )


def _take_clock(tokens: list[str], index: int) -> tuple[time, int]:
    if index >= len(tokens):
        raise CommandError(
            "`until` needs a time, like `until 18:00` or `until tomorrow 09:00`.",
            usage=LOCK_USAGE,
        )
    token = tokens[index].lower()
    if token in _NAMED_TIMES:
        return _NAMED_TIMES[token], index + 1
    used = 1
    match = _CLOCK.fullmatch(token)
    meridiem = match.group(3) if match else None
    if match and meridiem is None and index + 1 < len(tokens):
        following = tokens[index + 1].lower()
        if following in _MERIDIEM:
            meridiem, used = following, 2
    if match and (match.group(2) is not None or meridiem is not None):
        hour, minute = int(match.group(1)), int(match.group(2) or 0)
        if meridiem is not None:
            if not 1 <= hour <= 12:
                raise _bad_time(" ".join(tokens[index : index + used]))
            hour = hour % 12 + (12 if meridiem == "pm" else 0)
    else:
        french = _FRENCH_CLOCK.fullmatch(token)
        if french is None:
            raise _bad_time(tokens[index])
        hour, minute = int(french.group(1)), int(french.group(2) or 0)
    if hour > 23 or minute > 59:
        raise _bad_time(" ".join(tokens[index : index + used]))
    return time(hour, minute), index + used


def _wall(day: date, at: time, zone: tzinfo) -> datetime:
    """A wall-clock time in ``zone`` as a UTC instant; fold=0 gives the documented DST reading."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def _take_until(
    tokens: list[str], index: int, *, now: datetime, zone: tzinfo
) -> tuple[datetime, int]:
    today = now.astimezone(zone).date()
    word = tokens[index].lower() if index < len(tokens) else ""
    iso = _ISO_DATE.fullmatch(word)
    if word in ("today", "tomorrow") or word in _WEEKDAY_NAMES or iso:
        if index + 1 >= len(tokens):
            raise CommandError(
                f"{_quote('until ' + tokens[index])} needs a time, like `until tomorrow 09:00`.",
                usage=LOCK_USAGE,
            )
        at, end = _take_clock(tokens, index + 1)
        said = " ".join(tokens[index:end])
        if iso:
            try:
                day = date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
            except ValueError:
                raise CommandError(
                    f"{_quote(tokens[index])} is not a date: use `2025-11-24`.", usage=LOCK_USAGE
                ) from None
            try:
                expires_at = _wall(day, at, zone)
            except OverflowError:  # year 1 or 9999 shifted past the calendar: passed, or too far
                expires_at = (datetime.max if day > today else datetime.min).replace(tzinfo=UTC)
        elif word == "today":
            expires_at = _wall(today, at, zone)
        elif word == "tomorrow":
            expires_at = _wall(today + timedelta(days=1), at, zone)
        else:
            ahead = (_WEEKDAY_NAMES[word] - today.weekday()) % 7
            expires_at = _wall(today + timedelta(days=ahead), at, zone)
            if expires_at <= now:
                expires_at = _wall(today + timedelta(days=ahead + 7), at, zone)
    else:
        at, end = _take_clock(tokens, index)
        said = " ".join(tokens[index:end])
        expires_at = _wall(today, at, zone)
        if expires_at <= now:
            expires_at = _wall(today + timedelta(days=1), at, zone)
    if expires_at <= now:
        raise CommandError(f"{_quote(said)} has already passed.", usage=LOCK_USAGE)
    if expires_at - now > MAX_LOCK:
        raise CommandError(
            f"{_quote(said)} is too far: a lock lasts at most 30 days"
            " (leave the expiry out for a lock without end).",
            usage=LOCK_USAGE,
        )
    return expires_at, end


# --------------------------------------------------------------------------------------------
# Decisions

LockChange = Literal["reason", "expiry"]


@dataclass(frozen=True, kw_only=True)
class Created:
    lock: Lock
    expired: Lock | None = None
    """A lapsed lock this one replaces, not yet announced as expired."""


@dataclass(frozen=True, kw_only=True)
class Updated:
    lock: Lock
    previous: Lock
    changed: frozenset[LockChange]


@dataclass(frozen=True, kw_only=True)
class Unchanged:
    lock: Lock


@dataclass(frozen=True, kw_only=True)
class HeldByOther:
    lock: Lock


LockDecision = Created | Updated | Unchanged | HeldByOther


@dataclass(frozen=True, kw_only=True)
class Unlocked:
    lock: Lock
    by: str

    @property
    def by_holder(self) -> bool:
        return self.by == self.lock.holder


@dataclass(frozen=True, kw_only=True)
class NotLocked:
    env: str
    expired: Lock | None = None
    """A lapsed lock found instead, not yet announced as expired."""


UnlockDecision = Unlocked | NotLocked


def _same_env(existing: Lock | None, env: str) -> None:
    if existing is not None and existing.env != env:
        raise ValueError(f"lock of {existing.env!r} given for environment {env!r}")


def decide_lock(
    existing: Lock | None, *, request: SetLock, user: str, now: datetime
) -> LockDecision:
    """What ``/lock <env>`` does to the env's lock. Someone else's lock is never replaced."""
    _same_env(existing, request.env)
    if existing is None or existing.expired(now):
        lock = Lock(
            env=request.env,
            holder=user,
            since=now,
            reason=request.reason,
            expires_at=request.expires_at,
        )
        return Created(lock=lock, expired=existing)
    if existing.holder != user:
        return HeldByOther(lock=existing)
    reason = request.reason or existing.reason
    expires_at = request.expires_at if request.expires_at is not None else existing.expires_at
    changed: set[LockChange] = set()
    if reason != existing.reason:
        changed.add("reason")
    if expires_at != existing.expires_at:
        changed.add("expiry")
    if not changed:
        return Unchanged(lock=existing)
    lock = replace(existing, reason=reason, expires_at=expires_at)
    return Updated(lock=lock, previous=existing, changed=frozenset(changed))


def decide_unlock(existing: Lock | None, *, env: str, user: str, now: datetime) -> UnlockDecision:
    """Anyone may unlock (SPEC section 6); whether it was the holder decides who is told."""
    _same_env(existing, env)
    if existing is None:
        return NotLocked(env=env)
    if existing.expired(now):
        return NotLocked(env=env, expired=existing)
    return Unlocked(lock=existing, by=user)


# --------------------------------------------------------------------------------------------
# Words for people


def format_age(delta: timedelta) -> str:
    """Coarse on purpose: a lock's age is read at a glance, and minutes stop mattering."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    if days == 1:
        return f"1 day {hours} h" if hours else "1 day"
    return f"{days} days"


def format_until(
    expires_at: datetime, *, now: datetime, tz: str | None, relative: bool = True
) -> str:
    """``until 18:00``, ``until tomorrow 09:00``, ``until Mon 24 Nov 09:00``: 24-hour clock and
    English words whatever the server's locale.

    ``relative=False`` never says "tomorrow", for messages that stay in a channel and are read
    the next day.
    """
    zone = user_zone(tz)
    local = expires_at.astimezone(zone)
    today = now.astimezone(zone).date()
    clock = f"{local:%H:%M}"
    if local.date() == today:
        return f"until {clock}"
    if relative and local.date() == today + timedelta(days=1):
        return f"until tomorrow {clock}"
    day = f"{_WEEKDAYS[local.weekday()].title()} {local.day} {_MONTHS[local.month - 1]}"
    if local.year != today.year:
        day += f" {local.year}"
    return f"until {day} {clock}"
