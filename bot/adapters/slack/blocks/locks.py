"""Lock messages: announcements in channels, and the answers only the person who typed sees.

One vocabulary for a glance: :lock: locked, :unlock: unlocked or open, :hourglass_flowing_sand:
expired, :bell: reminder. Every mention of a lock carries its age, so a freeze nobody remembers
looks old.

Times are Slack date tokens (``slack_date``): everyone, in the channel or in a private answer,
reads a lock's end in their own time zone, "today 6:00 PM", and Slack keeps words like "today"
right on the next day; clients that cannot format them show the UTC fallback, labelled. A time
typed in ``/lock`` is read in the typist's Slack time zone (``bot.domain.locks``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from bot.adapters.slack.blocks.common import (
    MAX_BLOCKS,
    MAX_NAME,
    MAX_SECTION,
    Rendered,
    clip,
    escape,
    mention,
    plain,
    render_command_error,
    section,
    slack_date,
)
from bot.domain.locks import (
    MAX_REASON,
    CommandError,
    Created,
    HeldByOther,
    Lock,
    LockDecision,
    Unchanged,
    UnlockDecision,
    Unlocked,
    Updated,
    format_age,
    in_force,
)

__all__ = [
    "EMOJI_EXPIRED",
    "EMOJI_LOCKED",
    "EMOJI_REMINDER",
    "EMOJI_UNLOCKED",
    "format_lock",
    "render_command_error",
    "render_expired",
    "render_held_by_other",
    "render_lock_changed",
    "render_lock_confirmation",
    "render_lock_help",
    "render_lock_list",
    "render_locked",
    "render_reminder",
    "render_unlock_answer",
    "render_unlocked",
]

EMOJI_LOCKED: Final = ":lock:"
EMOJI_UNLOCKED: Final = ":unlock:"
EMOJI_EXPIRED: Final = ":hourglass_flowing_sand:"
EMOJI_REMINDER: Final = ":bell:"

_HELP: Final = "\n".join(
    (
        "`/lock` — every environment and its lock",
        "`/lock <env> [for <duration> | until <time>] [reason…]` — lock an environment;"
        " lock it again to change the reason or the end",
        "• durations: `30m`, `2h`, `1d`, `1h30m`, `90 minutes` — at most 30 days",
        "• times, in your Slack time zone: `until 18:00`, `until 6pm`, `until tomorrow 09:00`,"
        " `until fri 17:00`",
        "• e.g. `/lock production for 2h black friday freeze`",
        "`/unlock <env>` — anyone may unlock; the channel is told, and so is the holder",
    )
)


def _one(text: str) -> Rendered:
    return Rendered(text=text, blocks=[section(text)])


def _env(name: str) -> str:
    return f"*{plain(name, MAX_NAME)}*"


def _reason(reason: str) -> str:
    return plain(" ".join(reason.split()), MAX_REASON)


def _until(expires_at: datetime | None) -> str:
    if expires_at is None:
        return "until unlocked"
    return f"until {slack_date(expires_at)}"


def _ago(lock: Lock, now: datetime) -> str:
    age = format_age(lock.age(now))
    return age if age == "just now" else f"{age} ago"


def _state(lock: Lock) -> str:
    """`` — reason · until <date>``: what a lock is for and how long it lasts."""
    why = f" — {_reason(lock.reason)}" if lock.reason else ""
    return f"{why} · {_until(lock.expires_at)}"


def format_lock(lock: Lock, *, now: datetime) -> str:
    """``:lock: *production* locked by <@U…> 2 h ago — reason · until <date>``."""
    return f"{EMOJI_LOCKED} {_held(lock, now=now)}"


def _held(lock: Lock, *, now: datetime) -> str:
    """``*production* locked by <@U…> 2 h ago — reason · until <date>``, for answers."""
    return f"{_env(lock.env)} locked by {mention(lock.holder)} {_ago(lock, now)}{_state(lock)}"


def _changes(lock: Lock, previous: Lock) -> str:
    """The lock's new state, each changed part followed by what it was."""
    parts = ""
    if lock.reason:
        parts += f" — {_reason(lock.reason)}"
        if lock.reason != previous.reason:
            was = _reason(previous.reason) if previous.reason else "no reason"
            parts += f" (was: {was})"
    parts += f" · {_until(lock.expires_at)}"
    if lock.expires_at != previous.expires_at:
        parts += f" (was {_until(previous.expires_at)})"
    return parts


# --------------------------------------------------------------------------------------------
# Channel announcements


def render_locked(lock: Lock, *, now: datetime) -> Rendered:
    return _one(f"{EMOJI_LOCKED} {_env(lock.env)} locked by {mention(lock.holder)}{_state(lock)}")


def render_lock_changed(lock: Lock, previous: Lock, *, now: datetime) -> Rendered:
    return _one(
        f"{EMOJI_LOCKED} {mention(lock.holder)} updated the lock on {_env(lock.env)}"
        f"{_changes(lock, previous)}"
    )


def render_unlocked(lock: Lock, *, by: str, now: datetime) -> Rendered:
    """Unlocking someone else's lock mentions them: they must learn their freeze is gone."""
    held = format_age(lock.age(now))
    if by == lock.holder:
        return _one(f"{EMOJI_UNLOCKED} {mention(by)} unlocked {_env(lock.env)} (locked for {held})")
    return _one(
        f"{EMOJI_UNLOCKED} {mention(by)} unlocked {_env(lock.env)}"
        f" (locked by {mention(lock.holder)} for {held})"
    )


def render_expired(lock: Lock, *, now: datetime) -> Rendered:
    """Counts the lock's life up to its expiry, not up to a late sweep."""
    end = min(now, lock.expires_at) if lock.expires_at is not None else now
    why = f" ({_reason(lock.reason)})" if lock.reason else ""
    return _one(
        f"{EMOJI_EXPIRED} {_env(lock.env)} is open again: the lock by {mention(lock.holder)}"
        f"{why} expired after {format_age(lock.age(end))}"
    )


def render_reminder(lock: Lock, *, now: datetime) -> Rendered:
    """Written to the holder alone; it offers both ways out, since either stops the reminders."""
    env = plain(lock.env, MAX_NAME)
    why = f" ({_reason(lock.reason)})" if lock.reason else ""
    return _one(
        f"{EMOJI_REMINDER} You have held the lock on {_env(lock.env)} for"
        f" {format_age(lock.age(now))}{why} — `/unlock {env}` when done,"
        f" or give it an end with `/lock {env} for 1d`."
    )


# --------------------------------------------------------------------------------------------
# Answers to the person who typed the command


def render_lock_list(locks: Sequence[Lock], *, now: datetime, envs: Sequence[str]) -> Rendered:
    """Every environment, open ones too, so that "not listed" never has to mean "open".

    Locks of environments no longer in the catalog are listed last rather than hidden.
    """
    live = {lock.env: lock for lock in locks if in_force(lock, now) is not None}
    names = list(dict.fromkeys(envs)) + sorted(set(live) - set(envs))
    lines = [
        f"{EMOJI_LOCKED} {_held(live[name], now=now)}"
        if name in live
        else f"{EMOJI_UNLOCKED} {_env(name)} open"
        for name in names
    ]
    locked = [name for name in names if name in live]
    if not names:
        text = "No environments are defined."
    elif not locked:
        text = "No environment is locked."
    else:
        text = f"{len(locked)} of {len(names)} environments locked: " + plain(
            ", ".join(locked), MAX_REASON
        )
    return Rendered(text=text, blocks=_sections(lines) if lines else [section(text)])


def _sections(lines: Sequence[str]) -> list[dict[str, Any]]:
    """Lines packed into as few sections as Slack's limits allow; never cut a lock in half."""
    blocks: list[dict[str, Any]] = []
    current: list[str] = []
    size = 0
    for index, line in enumerate(lines):
        line = clip(line, MAX_SECTION)
        if current and size + 1 + len(line) > MAX_SECTION:
            blocks.append(section("\n".join(current)))
            current, size = [], 0
            if len(blocks) == MAX_BLOCKS - 1:
                blocks.append(section(f"… and {len(lines) - index} more"))
                return blocks
        size += len(line) + (1 if current else 0)
        current.append(line)
    blocks.append(section("\n".join(current)))
    return blocks


def render_held_by_other(lock: Lock, *, now: datetime) -> Rendered:
    """Says plainly that nothing was set, and the two ways forward."""
    return _one(
        f"{EMOJI_LOCKED} {_held(lock, now=now)}\n"
        f"Your lock was not set: ask {mention(lock.holder)},"
        f" or `/unlock {plain(lock.env, MAX_NAME)}` first (they will be told)."
    )


def render_lock_confirmation(decision: LockDecision, *, now: datetime) -> Rendered:
    match decision:
        case Created(lock=lock):
            return _one(f"{EMOJI_LOCKED} You locked {_env(lock.env)}{_state(lock)}")
        case Updated(lock=lock, previous=previous):
            changes = _changes(lock, previous)
            return _one(f"{EMOJI_LOCKED} You updated your lock on {_env(lock.env)}{changes}")
        case Unchanged(lock=lock):
            return _one(
                f"{EMOJI_LOCKED} You already hold the lock on {_env(lock.env)}{_state(lock)}"
                " — nothing changed."
            )
        case HeldByOther(lock=lock):
            return render_held_by_other(lock, now=now)


def render_unlock_answer(decision: UnlockDecision, *, now: datetime) -> Rendered:
    if isinstance(decision, Unlocked):
        lock = decision.lock
        if decision.by_holder:
            return _one(f"{EMOJI_UNLOCKED} You unlocked {_env(lock.env)}.")
        return _one(
            f"{EMOJI_UNLOCKED} You unlocked {_env(lock.env)}"
            f" (locked by {mention(lock.holder)} for {format_age(lock.age(now))});"
            " the announcement mentions them."
        )
    lapsed = decision.expired
    if lapsed is None or lapsed.expires_at is None:
        return _one(f"{EMOJI_UNLOCKED} {_env(decision.env)} is not locked.")
    ended = format_age(now - lapsed.expires_at)
    return _one(
        f"{EMOJI_UNLOCKED} {_env(decision.env)} is not locked: the lock by"
        f" {mention(lapsed.holder)} expired {ended if ended == 'just now' else ended + ' ago'}."
    )


def render_lock_help() -> Rendered:
    return _one(escape(_HELP))


class LockBlocks:
    """The renderers, as the lock service's ``LockViews`` port."""

    def locked(self, lock: Lock, *, now: datetime) -> Rendered:
        return render_locked(lock, now=now)

    def changed(self, lock: Lock, previous: Lock, *, now: datetime) -> Rendered:
        return render_lock_changed(lock, previous, now=now)

    def unlocked(self, lock: Lock, *, by: str, now: datetime) -> Rendered:
        return render_unlocked(lock, by=by, now=now)

    def expired(self, lock: Lock, *, now: datetime) -> Rendered:
        return render_expired(lock, now=now)

    def reminder(self, lock: Lock, *, now: datetime) -> Rendered:
        return render_reminder(lock, now=now)

    def listing(self, locks: Sequence[Lock], *, now: datetime, envs: Sequence[str]) -> Rendered:
        return render_lock_list(locks, now=now, envs=envs)

    def confirmation(self, decision: LockDecision, *, now: datetime) -> Rendered:
        return render_lock_confirmation(decision, now=now)

    def unlock_answer(self, decision: UnlockDecision, *, now: datetime) -> Rendered:
        return render_unlock_answer(decision, now=now)

    def help(self) -> Rendered:
        return render_lock_help()

    def error(self, error: CommandError) -> Rendered:
        return render_command_error(error)
