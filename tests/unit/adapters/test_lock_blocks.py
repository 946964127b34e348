"""Lock messages exactly as people read them in Slack."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.adapters.slack.blocks.common import MAX_BLOCKS, MAX_SECTION, Rendered
from bot.adapters.slack.blocks.locks import (
    render_command_error,
    render_expired,
    render_held_by_other,
    render_lock_changed,
    render_lock_confirmation,
    render_lock_help,
    render_lock_list,
    render_locked,
    render_reminder,
    render_unlock_answer,
    render_unlocked,
)
from bot.adapters.slack.blocks.pipelines import Rendered as PipelineRendered
from bot.domain.locks import (
    LOCK_USAGE,
    UNLOCK_USAGE,
    CommandError,
    Created,
    HeldByOther,
    Lock,
    NotLocked,
    SetLock,
    Unchanged,
    Unlocked,
    Updated,
    decide_lock,
    parse_lock,
)
from tests.unit.adapters.hostile import HOSTILE, assert_inert

NOW = datetime(2025, 11, 24, 10, 0, tzinfo=UTC)
ALICE = "UALICE"
BOB = "UBOB"
FREEZE = Lock(
    env="production",
    holder=ALICE,
    since=NOW - timedelta(hours=2, minutes=5),
    reason="black friday freeze",
    expires_at=datetime(2025, 11, 24, 18, 0, tzinfo=UTC),
)
OPEN_ENDED = replace(FREEZE, reason="", expires_at=None)
# Slack shows each reader this time in their own zone; the fallback is UTC, labelled.
AT_18 = "<!date^1764007200^{date_short_pretty} {time}|2025-11-24 18:00 UTC>"
AT_20 = "<!date^1764014400^{date_short_pretty} {time}|2025-11-24 20:00 UTC>"
TOMORROW_9 = "<!date^1764061200^{date_short_pretty} {time}|2025-11-25 09:00 UTC>"
TOMORROW_8 = "<!date^1764057600^{date_short_pretty} {time}|2025-11-25 08:00 UTC>"


def one_line(rendered: Rendered) -> str:
    """The message's text, checked to be what its single section shows."""
    assert rendered.blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": rendered.text}}
    ]
    return rendered.text


def test_rendered_is_shared_with_the_pipeline_messages() -> None:
    assert PipelineRendered is Rendered


# --------------------------------------------------------------------------------------------
# Channel announcements


def test_locked() -> None:
    assert one_line(render_locked(FREEZE, now=NOW)) == (
        f":lock: *production* locked by <@UALICE> — black friday freeze · until {AT_18}"
    )


def test_locked_without_reason_nor_end() -> None:
    assert one_line(render_locked(OPEN_ENDED, now=NOW)) == (
        ":lock: *production* locked by <@UALICE> · until unlocked"
    )


def test_channel_messages_never_say_tomorrow() -> None:
    """They stay in the channel: "tomorrow" would be wrong the next day."""
    lock = replace(FREEZE, expires_at=datetime(2025, 11, 25, 9, 0, tzinfo=UTC))
    assert one_line(render_locked(lock, now=NOW)) == (
        f":lock: *production* locked by <@UALICE> — black friday freeze · until {TOMORROW_9}"
    )


def test_user_text_cannot_mention_link_or_format_the_message() -> None:
    lock = replace(FREEZE, reason="R&D <!channel> <https://evil|click>", holder="not an id")
    assert one_line(render_locked(lock, now=NOW)) == (
        ":lock: *production* locked by not an id"
        f" — R&amp;D &lt;!channel&gt; &lt;https://evil|click&gt; · until {AT_18}"
    )


def test_long_reasons_stay_on_one_line() -> None:
    lock = replace(FREEZE, reason="a\nb " + "x" * 1000)
    text = one_line(render_locked(lock, now=NOW))
    assert "\n" not in text
    assert text.startswith(":lock: *production* locked by <@UALICE> — a b xxx")
    assert text.endswith(f"x… · until {AT_18}")
    assert len(text) < 400 + len(AT_18)  # the reason is clipped to 300 characters


def test_reason_changed() -> None:
    lock = replace(FREEZE, reason="payment incident")
    assert one_line(render_lock_changed(lock, FREEZE, now=NOW)) == (
        ":lock: <@UALICE> updated the lock on *production* — payment incident"
        f" (was: black friday freeze) · until {AT_18}"
    )


def test_expiry_changed() -> None:
    lock = replace(FREEZE, expires_at=datetime(2025, 11, 24, 20, 0, tzinfo=UTC))
    assert one_line(render_lock_changed(lock, FREEZE, now=NOW)) == (
        ":lock: <@UALICE> updated the lock on *production* — black friday freeze"
        f" · until {AT_20} (was until {AT_18})"
    )


def test_reason_and_expiry_given_to_an_open_ended_lock() -> None:
    assert one_line(render_lock_changed(FREEZE, OPEN_ENDED, now=NOW)) == (
        ":lock: <@UALICE> updated the lock on *production* — black friday freeze"
        f" (was: no reason) · until {AT_18} (was until unlocked)"
    )


def test_unlocked_by_the_holder() -> None:
    assert one_line(render_unlocked(FREEZE, by=ALICE, now=NOW)) == (
        ":unlock: <@UALICE> unlocked *production* (locked for 2 h 5 min)"
    )


def test_unlocked_by_someone_else_mentions_the_holder() -> None:
    assert one_line(render_unlocked(FREEZE, by=BOB, now=NOW)) == (
        ":unlock: <@UBOB> unlocked *production* (locked by <@UALICE> for 2 h 5 min)"
    )


def test_expired_counts_up_to_the_expiry_even_when_announced_late() -> None:
    late = datetime(2025, 11, 24, 18, 3, tzinfo=UTC)
    assert one_line(render_expired(FREEZE, now=late)) == (
        ":hourglass_flowing_sand: *production* is open again: the lock by <@UALICE>"
        " (black friday freeze) expired after 10 h 5 min"
    )


def test_expired_without_reason() -> None:
    lock = replace(OPEN_ENDED, expires_at=NOW)
    assert one_line(render_expired(lock, now=NOW)) == (
        ":hourglass_flowing_sand: *production* is open again: the lock by <@UALICE>"
        " expired after 2 h 5 min"
    )


def test_reminder_to_the_holder() -> None:
    lock = replace(FREEZE, expires_at=None, since=NOW - timedelta(days=2, hours=1))
    assert one_line(render_reminder(lock, now=NOW)) == (
        ":bell: You have held the lock on *production* for 2 days (black friday freeze)"
        " — `/unlock production` when done, or give it an end with `/lock production for 1d`."
    )


def test_first_reminder_without_reason() -> None:
    lock = replace(OPEN_ENDED, since=NOW - timedelta(days=1))
    assert one_line(render_reminder(lock, now=NOW)) == (
        ":bell: You have held the lock on *production* for 1 day"
        " — `/unlock production` when done, or give it an end with `/lock production for 1d`."
    )


# --------------------------------------------------------------------------------------------
# Answers to one person


def test_lock_list_shows_every_env_in_promotion_order() -> None:
    staging = Lock(env="staging", holder=BOB, since=NOW - timedelta(seconds=20))
    rendered = render_lock_list([FREEZE, staging], now=NOW, envs=["dev", "staging", "production"])
    assert rendered.text == "2 of 3 environments locked: staging, production"
    assert rendered.blocks == [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": ":unlock: *dev* open\n"
                ":lock: *staging* locked by <@UBOB> just now · until unlocked\n"
                ":lock: *production* locked by <@UALICE> 2 h 5 min ago — black friday freeze"
                f" · until {AT_18}",
            },
        }
    ]


def test_lock_list_treats_expired_locks_as_open_and_keeps_strays() -> None:
    lapsed = replace(FREEZE, expires_at=NOW)
    stray = Lock(env="old-qa", holder=BOB, since=NOW - timedelta(days=3))
    rendered = render_lock_list([lapsed, stray], now=NOW, envs=["production"])
    assert rendered.text == "1 of 2 environments locked: old-qa"
    assert rendered.blocks[0]["text"]["text"] == (
        ":unlock: *production* open\n:lock: *old-qa* locked by <@UBOB> 3 days ago · until unlocked"
    )


def test_lock_list_when_nothing_is_locked() -> None:
    rendered = render_lock_list([], now=NOW, envs=["staging", "production"])
    assert rendered.text == "No environment is locked."
    assert (
        rendered.blocks[0]["text"]["text"] == ":unlock: *staging* open\n:unlock: *production* open"
    )


def test_a_long_lock_list_is_split_within_slacks_limits() -> None:
    envs = [f"env-{i:03}" for i in range(400)]
    locks = [replace(FREEZE, env=env, reason="x" * 300) for env in envs]
    rendered = render_lock_list(locks, now=NOW, envs=envs)
    texts = [block["text"]["text"] for block in rendered.blocks]
    assert len(rendered.blocks) <= MAX_BLOCKS
    assert all(len(text) <= MAX_SECTION for text in texts)
    assert texts[0].startswith(":lock: *env-000* locked by <@UALICE>")
    shown = sum(text.count(":lock:") for text in texts)
    assert texts[-1] == f"… and {400 - shown} more"


def test_held_by_someone_else() -> None:
    assert one_line(render_held_by_other(FREEZE, now=NOW)) == (
        ":lock: *production* locked by <@UALICE> 2 h 5 min ago — black friday freeze"
        f" · until {AT_18}\n"
        "Your lock was not set: ask <@UALICE>, or `/unlock production` first (they will be told)."
    )


def test_confirmations() -> None:
    created = Created(
        lock=Lock(env="production", holder=BOB, since=NOW, expires_at=FREEZE.expires_at)
    )
    assert one_line(render_lock_confirmation(created, now=NOW)) == (
        f":lock: You locked *production* · until {AT_18}"
    )
    updated = Updated(
        lock=replace(FREEZE, expires_at=datetime(2025, 11, 25, 9, 0, tzinfo=UTC)),
        previous=FREEZE,
        changed=frozenset({"expiry"}),
    )
    assert one_line(render_lock_confirmation(updated, now=NOW)) == (
        ":lock: You updated your lock on *production* — black friday freeze"
        f" · until {TOMORROW_9} (was until {AT_18})"
    )
    assert one_line(render_lock_confirmation(Unchanged(lock=OPEN_ENDED), now=NOW)) == (
        ":lock: You already hold the lock on *production* · until unlocked — nothing changed."
    )
    held = render_lock_confirmation(HeldByOther(lock=FREEZE), now=NOW)
    assert held == render_held_by_other(FREEZE, now=NOW)


def test_what_was_typed_is_what_is_confirmed() -> None:
    """From the command to the answer: "9am" is read in the typist's zone (Paris: 08:00 UTC),
    and shown to each reader in theirs."""
    request = parse_lock("production until tomorrow 9am release <v2>", now=NOW, tz="Europe/Paris")
    assert isinstance(request, SetLock)
    created = decide_lock(None, request=request, user=BOB, now=NOW)
    assert one_line(render_lock_confirmation(created, now=NOW)) == (
        f":lock: You locked *production* — release &lt;v2&gt; · until {TOMORROW_8}"
    )


@pytest.mark.parametrize(
    ("decision", "text"),
    [
        (Unlocked(lock=FREEZE, by=ALICE), ":unlock: You unlocked *production*."),
        (
            Unlocked(lock=FREEZE, by=BOB),
            ":unlock: You unlocked *production* (locked by <@UALICE> for 2 h 5 min);"
            " the announcement mentions them.",
        ),
        (NotLocked(env="production"), ":unlock: *production* is not locked."),
        (
            NotLocked(
                env="production", expired=replace(FREEZE, expires_at=NOW - timedelta(minutes=5))
            ),
            ":unlock: *production* is not locked: the lock by <@UALICE> expired 5 min ago.",
        ),
    ],
)
def test_unlock_answers(decision: Unlocked | NotLocked, text: str) -> None:
    assert one_line(render_unlock_answer(decision, now=NOW)) == text


def test_help() -> None:
    assert one_line(render_lock_help()) == (
        "`/lock` — every environment and its lock\n"
        "`/lock &lt;env&gt; [for &lt;duration&gt; | until &lt;time&gt;] [reason…]`"
        " — lock an environment; lock it again to change the reason or the end\n"
        "• durations: `30m`, `2h`, `1d`, `1h30m`, `90 minutes` — at most 30 days\n"
        "• times, in your Slack time zone: `until 18:00`, `until 6pm`, `until tomorrow 09:00`,"
        " `until fri 17:00`\n"
        "• e.g. `/lock production for 2h black friday freeze`\n"
        "`/unlock &lt;env&gt;` — anyone may unlock; the channel is told, and so is the holder"
    )


def test_command_errors_are_escaped() -> None:
    with pytest.raises(CommandError) as caught:
        parse_lock("production for <@U1>", now=NOW, tz=None)
    assert one_line(render_command_error(caught.value)) == (
        ":warning: “&lt;@U1&gt;” is not a duration: use minutes, hours, days or weeks,"
        " like `30m`, `2h`, `1d`, `1h30m` or `90 minutes`.\n"
        "Usage: `/lock &lt;env&gt; [for &lt;duration&gt; | until &lt;time&gt;] [reason…]`"
        " — e.g. `/lock production for 2h black friday freeze`"
    )
    assert LOCK_USAGE.startswith("Usage: `/lock <env>")


def test_usage_alone() -> None:
    assert one_line(render_command_error(CommandError(None, usage=UNLOCK_USAGE))) == (
        "Usage: `/unlock &lt;env&gt;` — e.g. `/unlock production`"
    )


# --------------------------------------------------------------------------------------------
# Hostile text from people


def test_control_and_bidi_characters_are_removed_from_the_reason() -> None:
    lock = replace(FREEZE, reason="black\x00 friday\x1b[5m \u202eezeerf")
    assert one_line(render_locked(lock, now=NOW)) == (
        f":lock: *production* locked by <@UALICE> — black friday[5m ezeerf · until {AT_18}"
    )


@pytest.mark.parametrize("evil", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_lock_text_comes_out_as_text(evil: str) -> None:
    lock = replace(FREEZE, env=evil, holder=evil, reason=evil)
    other = replace(lock, reason=f"{evil} again", holder=BOB)
    lapsed = replace(lock, expires_at=NOW - timedelta(minutes=5))
    mentions = (f"@{BOB}",)
    for rendered in (
        render_locked(lock, now=NOW),
        render_lock_changed(lock, other, now=NOW),
        render_unlocked(lock, by=evil, now=NOW),
        render_unlocked(lock, by=BOB, now=NOW),
        render_expired(lock, now=NOW),
        render_reminder(lock, now=NOW),
        render_lock_list([lock], now=NOW, envs=[evil, "production"]),
        render_held_by_other(lock, now=NOW),
        render_lock_confirmation(Created(lock=lock), now=NOW),
        render_lock_confirmation(
            Updated(lock=lock, previous=other, changed=frozenset({"reason"})), now=NOW
        ),
        render_lock_confirmation(Unchanged(lock=lock), now=NOW),
        render_lock_confirmation(HeldByOther(lock=lock), now=NOW),
        render_unlock_answer(Unlocked(lock=lock, by=BOB), now=NOW),
        render_unlock_answer(NotLocked(env=evil, expired=lapsed), now=NOW),
        render_command_error(CommandError(evil, usage=evil)),
    ):
        assert_inert(rendered, mentions=mentions)
