"""/lock and /unlock as people type them, and what the bot decides: tables, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.errors import PitcrewError
from bot.domain.locks import (
    LOCK_USAGE,
    MAX_REASON,
    UNLOCK_USAGE,
    CommandError,
    Created,
    HeldByOther,
    ListLocks,
    Lock,
    LockChange,
    LockHelp,
    NotLocked,
    SetLock,
    Unchanged,
    Unlocked,
    Updated,
    decide_lock,
    decide_unlock,
    due_for_expiry,
    format_age,
    format_until,
    in_force,
    parse_lock,
    parse_unlock,
    reminder_due,
    user_zone,
)

NOW = datetime(2025, 11, 24, 10, 0, tzinfo=UTC)
"""Monday 24 November 2025, 10:00 UTC: 11:00 in Paris, 05:00 in New York, 19:00 in Tokyo."""
ALICE = "UALICE"
BOB = "UBOB"


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def lock(**changes: object) -> Lock:
    base = Lock(
        env="production",
        holder=ALICE,
        since=NOW - timedelta(hours=2),
        reason="black friday freeze",
        expires_at=utc(2025, 11, 24, 18, 0),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# /lock grammar


@pytest.mark.parametrize(
    ("text", "expires_in", "reason"),
    [
        ("production", None, ""),
        ("  PRODUCTION  ", None, ""),
        ("production black friday freeze", None, "black friday freeze"),
        ("production for 30m", timedelta(minutes=30), ""),
        ("production for 2h freeze", timedelta(hours=2), "freeze"),
        ("production for 1d", timedelta(days=1), ""),
        ("production for 1w", timedelta(weeks=1), ""),
        ("production for 30d", timedelta(days=30), ""),
        ("production for 1h30m", timedelta(minutes=90), ""),
        ("production for 1h 30m", timedelta(minutes=90), ""),
        ("production for 1.5h", timedelta(minutes=90), ""),
        ("production for 90 minutes", timedelta(minutes=90), ""),
        ("production for 90min", timedelta(minutes=90), ""),
        ("production for 2hrs", timedelta(hours=2), ""),
        ("production FOR 2H Freeze", timedelta(hours=2), "Freeze"),
        ("production for 1 hour 30 minutes rollout", timedelta(minutes=90), "rollout"),
        # Without "for", right after the env, as in SPEC's example.
        ("production 2h black friday freeze", timedelta(hours=2), "black friday freeze"),
        ("production 1d12h", timedelta(hours=36), ""),
        ("production 2 hours freeze", timedelta(hours=2), "freeze"),
        # Reasons that start like a number are reasons.
        ("production 3 engineers out", None, "3 engineers out"),
        ("production 2fa rollout", None, "2fa rollout"),
        ("production 5xx storm", None, "5xx storm"),
        ("production 2024 audit", None, "2024 audit"),
        ("production 30m1h oops", None, "30m1h oops"),
        # A duration stops where the units stop decreasing.
        ("production for 2h 3 engineers out", timedelta(hours=2), "3 engineers out"),
        ("production for 2h 2h", timedelta(hours=2), "2h"),
        # An expiry at the end counts only when it parses; otherwise it is words of the reason.
        ("production deploys paused for 2h", timedelta(hours=2), "deploys paused"),
        ("production waiting for QA", None, "waiting for QA"),
        ("production for 1h waiting for QA", timedelta(hours=1), "waiting for QA"),
        ("production freeze for 40d", None, "freeze for 40d"),
        ("production freeze until 25:00", None, "freeze until 25:00"),
        ("production freeze until", None, "freeze until"),
        ("production freeze until 18:00", timedelta(hours=8), "freeze"),
    ],
)
def test_lock_grammar(text: str, expires_in: timedelta | None, reason: str) -> None:
    expires_at = NOW + expires_in if expires_in is not None else None
    assert parse_lock(text, now=NOW, tz=None) == SetLock(
        env="production", expires_at=expires_at, reason=reason
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ListLocks()),
        ("   \n ", ListLocks()),
        ("list", ListLocks()),
        ("LIST all", ListLocks()),
        ("help", LockHelp()),
        ("Help me", LockHelp()),
        ("--help", LockHelp()),
    ],
)
def test_listing_and_help(text: str, expected: object) -> None:
    assert parse_lock(text, now=NOW, tz="Europe/Paris") == expected


def test_reasons_keep_what_people_typed_but_not_its_layout() -> None:
    text = "production R&D <b>  `rm -rf` \t naïve 🎄\nfreeze\x00now \x1b end"
    request = parse_lock(text, now=NOW, tz=None)
    assert isinstance(request, SetLock)
    assert request.reason == "R&D <b> `rm -rf` naïve 🎄 freeze now end"


def test_long_reasons_are_cut() -> None:
    request = parse_lock("production " + "word " * 200, now=NOW, tz=None)
    assert isinstance(request, SetLock)
    assert len(request.reason) == MAX_REASON
    assert request.reason.endswith("word…")


@pytest.mark.parametrize(
    ("text", "tz", "expires_at"),
    [
        ("until 18:00", None, utc(2025, 11, 24, 18, 0)),
        ("until 18:00", "UTC", utc(2025, 11, 24, 18, 0)),
        ("until 18:00", "Europe/Paris", utc(2025, 11, 24, 17, 0)),
        ("until 09:00", "America/New_York", utc(2025, 11, 24, 14, 0)),
        # Already past today in the user's zone: tomorrow.
        ("until 18:00", "Asia/Tokyo", utc(2025, 11, 25, 9, 0)),
        ("until 10:00", None, utc(2025, 11, 25, 10, 0)),
        ("until 9:30", "Europe/Paris", utc(2025, 11, 25, 8, 30)),
        ("until 6pm", "Europe/Paris", utc(2025, 11, 24, 17, 0)),
        ("until 6:30pm", "Europe/Paris", utc(2025, 11, 24, 17, 30)),
        ("until 6 PM", "Europe/Paris", utc(2025, 11, 24, 17, 0)),
        ("until 12am", "Europe/Paris", utc(2025, 11, 24, 23, 0)),
        ("until 12pm", "Europe/Paris", utc(2025, 11, 24, 11, 0)),
        ("until 18h30", "Europe/Paris", utc(2025, 11, 24, 17, 30)),
        ("until 18h", "Europe/Paris", utc(2025, 11, 24, 17, 0)),
        ("until noon", "Europe/Paris", utc(2025, 11, 24, 11, 0)),
        ("until midnight", "Europe/Paris", utc(2025, 11, 24, 23, 0)),
        ("until today 18:00", "Europe/Paris", utc(2025, 11, 24, 17, 0)),
        ("until tomorrow 09:00", "Europe/Paris", utc(2025, 11, 25, 8, 0)),
        ("until Tomorrow 9am", "America/New_York", utc(2025, 11, 25, 14, 0)),
        ("until fri 17:00", "Europe/Paris", utc(2025, 11, 28, 16, 0)),
        ("until friday 17:00", "Europe/Paris", utc(2025, 11, 28, 16, 0)),
        # Today is Monday: Monday noon is still ahead, Monday 09:00 is next week's.
        ("until monday 12:00", "Europe/Paris", utc(2025, 11, 24, 11, 0)),
        ("until mon 09:00", "Europe/Paris", utc(2025, 12, 1, 8, 0)),
        ("until 2025-12-20 18:00", "Europe/Paris", utc(2025, 12, 20, 17, 0)),
        # A zone this system does not know: UTC rather than a refusal.
        ("until 18:00", "Mars/Olympus", utc(2025, 11, 24, 18, 0)),
        ("until 18:00", "", utc(2025, 11, 24, 18, 0)),
    ],
)
def test_until_is_read_in_the_users_time_zone(
    text: str, tz: str | None, expires_at: datetime
) -> None:
    request = parse_lock(f"production {text} release", now=NOW, tz=tz)
    assert request == SetLock(env="production", expires_at=expires_at, reason="release")


@pytest.mark.parametrize(
    ("now", "text", "tz", "expires_at"),
    [
        # Paris springs forward on 2025-03-30 at 02:00: "tomorrow 18:00" is 18:00 CEST,
        # 19 hours after 21:00 CET the evening before, not 24 hours after anything.
        (utc(2025, 3, 29, 20, 0), "until 18:00", "Europe/Paris", utc(2025, 3, 30, 16, 0)),
        (utc(2025, 3, 29, 20, 0), "until tomorrow 09:00", "Europe/Paris", utc(2025, 3, 30, 7, 0)),
        # 02:30 does not exist that night: read as if the clocks had not jumped (03:30 CEST).
        (utc(2025, 3, 29, 20, 0), "until 02:30", "Europe/Paris", utc(2025, 3, 30, 1, 30)),
        # Paris falls back on 2025-10-26 at 03:00: 02:30 happens twice, the first one counts.
        (utc(2025, 10, 25, 22, 0), "until 02:30", "Europe/Paris", utc(2025, 10, 26, 0, 30)),
        (utc(2025, 10, 25, 22, 0), "until 18:00", "Europe/Paris", utc(2025, 10, 26, 17, 0)),
        # New York falls back on 2025-11-02; "sun 09:00" is 09:00 EST.
        (utc(2025, 10, 31, 16, 0), "until sun 09:00", "America/New_York", utc(2025, 11, 2, 14, 0)),
    ],
)
def test_until_across_daylight_saving_changes(
    now: datetime, text: str, tz: str, expires_at: datetime
) -> None:
    request = parse_lock(f"production {text}", now=now, tz=tz)
    assert request == SetLock(env="production", expires_at=expires_at, reason="")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("for 2h", "Name the environment first."),
        ("until 18:00", "Name the environment first."),
        ("2h production", "Name the environment first."),
        ("production for", "`for` needs a duration, like `30m`, `2h`, `1d` or `1h30m`."),
        ("production for soon", "“soon” is not a duration"),
        ("production for 5y", "“5y” is not a duration"),
        ("production for 30s", "“30s” is not a duration"),
        ("production for 30", "“30” is not a duration"),
        ("production for -2h", "“-2h” is not a duration"),
        ("production for 0m", "“0m” is too short: a lock lasts at least a minute."),
        ("production 0h freeze", "“0h” is too short"),
        ("production for 31d", "“31d” is too long: a lock lasts at most 30 days"),
        ("production for 4 weeks 3 days", "“4 weeks 3 days” is too long"),
        ("production 45d freeze", "“45d” is too long"),
        ("production for 99999999999999999999999999d", "is too long"),
        ("production until", "`until` needs a time"),
        ("production until soon", "“soon” is not a time of day"),
        ("production until 18", "“18” is not a time of day"),
        ("production until 25:00", "“25:00” is not a time of day: use `18:00`, `6pm` or `18h30`."),
        ("production until 24:00", "“24:00” is not a time of day"),
        ("production until 12:60", "“12:60” is not a time of day"),
        ("production until 13pm", "“13pm” is not a time of day"),
        ("production until 0 am", "“0 am” is not a time of day"),
        ("production until tomorrow", "“until tomorrow” needs a time"),
        ("production until friday", "“until friday” needs a time"),
        ("production until today 09:00", "“today 09:00” has already passed."),
        ("production until 2025-11-01 09:00", "“2025-11-01 09:00” has already passed."),
        ("production until 2026-01-30 09:00", "“2026-01-30 09:00” is too far"),
        ("production until 2026-02-30 09:00", "“2026-02-30” is not a date"),
    ],
)
def test_bad_lock_commands_get_the_reason_and_the_usage(text: str, problem: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_lock(text, now=NOW, tz=None)
    assert caught.value.problem is not None
    assert problem in caught.value.problem
    assert caught.value.usage == LOCK_USAGE
    assert str(caught.value) == f"{caught.value.problem}\n{LOCK_USAGE}"
    assert isinstance(caught.value, PitcrewError)


def test_long_typos_are_quoted_short() -> None:
    with pytest.raises(CommandError) as caught:
        parse_lock("production for " + "x" * 500, now=NOW, tz=None)
    assert caught.value.problem == (
        f"“{'x' * 39}…” is not a duration: use minutes, hours, days or weeks,"
        " like `30m`, `2h`, `1d`, `1h30m` or `90 minutes`."
    )


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_lock("production", now=NOW.replace(tzinfo=None), tz=None)


def test_unknown_zones_fall_back_to_utc() -> None:
    assert user_zone(None) is UTC
    assert user_zone("Europe") is UTC
    assert user_zone("../../etc/passwd") is UTC
    assert user_zone("Europe/Paris") is not UTC


# --------------------------------------------------------------------------------------------
# /unlock grammar


@pytest.mark.parametrize(("text", "env"), [("production", "production"), (" Staging ", "staging")])
def test_unlock_grammar(text: str, env: str) -> None:
    assert parse_unlock(text) == env


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "Name the environment to unlock."),
        ("production please", "`/unlock` takes only the environment, not “please”."),
        ("help", None),
    ],
)
def test_bad_unlock_commands(text: str, problem: str | None) -> None:
    with pytest.raises(CommandError) as caught:
        parse_unlock(text)
    assert caught.value.problem == problem
    assert caught.value.usage == UNLOCK_USAGE


# --------------------------------------------------------------------------------------------
# Decisions


def set_lock(reason: str = "", expires_at: datetime | None = None) -> SetLock:
    return SetLock(env="production", expires_at=expires_at, reason=reason)


def test_locking_an_open_env_creates_a_lock() -> None:
    decision = decide_lock(None, request=set_lock("freeze"), user=BOB, now=NOW)
    assert decision == Created(
        lock=Lock(env="production", holder=BOB, since=NOW, reason="freeze", expires_at=None)
    )


def test_an_expired_lock_counts_as_absent_and_is_handed_back_to_announce() -> None:
    lapsed = lock(expires_at=NOW - timedelta(minutes=1))
    later = NOW + timedelta(hours=1)
    decision = decide_lock(lapsed, request=set_lock("mine", later), user=BOB, now=NOW)
    assert decision == Created(
        lock=Lock(env="production", holder=BOB, since=NOW, reason="mine", expires_at=later),
        expired=lapsed,
    )


def test_someone_elses_lock_is_shown_not_replaced() -> None:
    held = lock()
    decision = decide_lock(held, request=set_lock("mine"), user=BOB, now=NOW)
    assert decision == HeldByOther(lock=held)


@pytest.mark.parametrize(
    ("request_", "reason", "expires_at", "changed"),
    [
        (set_lock("release freeze"), "release freeze", utc(2025, 11, 24, 18, 0), {"reason"}),
        (
            set_lock(expires_at=utc(2025, 11, 24, 20, 0)),
            "black friday freeze",
            utc(2025, 11, 24, 20, 0),
            {"expiry"},
        ),
        (
            set_lock("release freeze", utc(2025, 11, 24, 20, 0)),
            "release freeze",
            utc(2025, 11, 24, 20, 0),
            {"reason", "expiry"},
        ),
    ],
)
def test_the_holder_locking_again_updates_what_the_command_says(
    request_: SetLock, reason: str, expires_at: datetime, changed: set[LockChange]
) -> None:
    held = lock(reminded_at=NOW - timedelta(hours=1))
    decision = decide_lock(held, request=request_, user=ALICE, now=NOW)
    assert decision == Updated(
        lock=replace(held, reason=reason, expires_at=expires_at),
        previous=held,
        changed=frozenset(changed),
    )
    assert decision.lock.since == held.since


@pytest.mark.parametrize(
    "request_",
    [
        set_lock(),
        set_lock("black friday freeze"),
        set_lock(expires_at=utc(2025, 11, 24, 18, 0)),
    ],
)
def test_the_holder_locking_again_with_nothing_new_changes_nothing(request_: SetLock) -> None:
    held = lock()
    assert decide_lock(held, request=request_, user=ALICE, now=NOW) == Unchanged(lock=held)


def test_a_decision_about_another_envs_lock_is_a_bug() -> None:
    with pytest.raises(ValueError, match="staging"):
        decide_lock(lock(env="staging"), request=set_lock(), user=ALICE, now=NOW)
    with pytest.raises(ValueError, match="staging"):
        decide_unlock(lock(env="staging"), env="production", user=ALICE, now=NOW)


def test_unlocking() -> None:
    held = lock()
    by_holder = decide_unlock(held, env="production", user=ALICE, now=NOW)
    by_other = decide_unlock(held, env="production", user=BOB, now=NOW)
    assert by_holder == Unlocked(lock=held, by=ALICE)
    assert by_holder.by_holder
    assert by_other == Unlocked(lock=held, by=BOB)
    assert not by_other.by_holder


def test_unlocking_an_open_env() -> None:
    assert decide_unlock(None, env="production", user=BOB, now=NOW) == NotLocked(env="production")
    lapsed = lock(expires_at=NOW)
    assert decide_unlock(lapsed, env="production", user=BOB, now=NOW) == NotLocked(
        env="production", expired=lapsed
    )


# --------------------------------------------------------------------------------------------
# Expiry and reminders


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (utc(2025, 11, 24, 17, 59), False),
        (utc(2025, 11, 24, 18, 0), True),
        (utc(2025, 11, 25, 9, 0), True),
    ],
)
def test_expiry(now: datetime, due: bool) -> None:
    held = lock()
    assert due_for_expiry(held, now) is due
    assert held.expired(now) is due
    assert (in_force(held, now) is None) is due


def test_no_expiry_never_expires() -> None:
    held = lock(expires_at=None)
    assert not due_for_expiry(held, NOW + timedelta(days=365))
    assert in_force(held, NOW + timedelta(days=365)) == held
    assert in_force(None, NOW) is None


@pytest.mark.parametrize(
    ("held_for", "expires", "reminded_ago", "due"),
    [
        (timedelta(hours=23, minutes=59), False, None, False),
        (timedelta(hours=24), False, None, True),
        (timedelta(days=3), True, None, False),
        (timedelta(days=2), False, timedelta(hours=23), False),
        (timedelta(days=2), False, timedelta(hours=24), True),
        (timedelta(days=9), False, timedelta(days=1, minutes=1), True),
    ],
)
def test_reminders_daily_for_locks_without_end(
    held_for: timedelta, expires: bool, reminded_ago: timedelta | None, due: bool
) -> None:
    held = lock(
        since=NOW - held_for,
        expires_at=NOW + timedelta(days=1) if expires else None,
        reminded_at=NOW - reminded_ago if reminded_ago is not None else None,
    )
    assert reminder_due(held, NOW) is due


def test_a_reminder_waits_another_day() -> None:
    held = lock(since=NOW - timedelta(days=1), expires_at=None)
    assert reminder_due(held, NOW)
    reminded = held.reminded(NOW)
    assert not reminder_due(reminded, NOW + timedelta(hours=23))
    assert reminder_due(reminded, NOW + timedelta(hours=24))


def test_locks_refuse_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="since"):
        lock(since=datetime(2025, 11, 24, 10, 0))
    with pytest.raises(ValueError, match="expires_at"):
        lock(expires_at=datetime(2025, 11, 24, 10, 0))


# --------------------------------------------------------------------------------------------
# Words


@pytest.mark.parametrize(
    ("delta", "words"),
    [
        (timedelta(seconds=-5), "just now"),
        (timedelta(seconds=59), "just now"),
        (timedelta(minutes=1), "1 min"),
        (timedelta(minutes=5, seconds=59), "5 min"),
        (timedelta(hours=1), "1 h"),
        (timedelta(hours=2, minutes=5), "2 h 5 min"),
        (timedelta(hours=23, minutes=59), "23 h 59 min"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=1, hours=4, minutes=30), "1 day 4 h"),
        (timedelta(days=2, hours=23), "2 days"),
        (timedelta(days=3), "3 days"),
        (timedelta(days=40), "40 days"),
    ],
)
def test_format_age(delta: timedelta, words: str) -> None:
    assert format_age(delta) == words
    assert lock(since=NOW - delta).age(NOW) == max(delta, timedelta(0))


@pytest.mark.parametrize(
    ("expires_at", "tz", "relative", "words"),
    [
        (utc(2025, 11, 24, 18, 0), None, True, "until 18:00"),
        (utc(2025, 11, 24, 18, 0), "Europe/Paris", True, "until 19:00"),
        (utc(2025, 11, 25, 9, 0), None, True, "until tomorrow 09:00"),
        (utc(2025, 11, 25, 9, 0), None, False, "until Tue 25 Nov 09:00"),
        # 23:30 UTC is already tomorrow in Paris, still today in New York.
        (utc(2025, 11, 24, 23, 30), "Europe/Paris", True, "until tomorrow 00:30"),
        (utc(2025, 11, 24, 23, 30), "America/New_York", True, "until 18:30"),
        (utc(2025, 12, 1, 8, 0), "Europe/Paris", True, "until Mon 1 Dec 09:00"),
        (utc(2026, 1, 2, 8, 0), None, True, "until Fri 2 Jan 2026 08:00"),
    ],
)
def test_format_until(expires_at: datetime, tz: str | None, relative: bool, words: str) -> None:
    assert format_until(expires_at, now=NOW, tz=tz, relative=relative) == words


def test_until_further_notice_means_no_end_and_stays_the_reason() -> None:
    now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    assert parse_lock("production until further notice", now=now, tz="Europe/Paris") == SetLock(
        env="production", expires_at=None, reason="until further notice"
    )
