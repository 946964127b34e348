"""/lock and /unlock through signed slash commands to the running bot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox

from .conftest import drained, eventually


class Clock:
    """Shared by every replica of a test, so that time can pass without waiting."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def bot(make_bot: Callable[..., Pitcrew], clock: Clock) -> AsyncIterator[Pitcrew]:
    pitcrew = make_bot(clock=clock)
    await pitcrew.start()
    yield pitcrew
    await pitcrew.stop()


@pytest.fixture
async def slash(slack: SlackSandbox) -> AsyncIterator[Callable[..., Any]]:
    async with aiohttp.ClientSession() as http:

        async def send(bot: Pitcrew, command: str, text: str, *, user: str = "alice") -> str:
            """Type a command in #payments-deploys; return the private answer."""
            before = len(slack.ephemerals())
            body, headers = slack.slash_command(
                command=command, text=text, user=user, channel="payments-deploys"
            )
            async with http.post(f"{bot.url}/slack/events", data=body, headers=headers) as r:
                assert r.status == 200
                assert await r.text() == ""  # acknowledged at once, answered privately
            await eventually(lambda: len(slack.ephemerals()) > before)
            return slack.read(slack.ephemerals()[-1])

        yield send


async def test_lock_list_change_and_unlock_by_the_holder(
    bot: Pitcrew, slack: SlackSandbox, slash: Callable[..., Any]
) -> None:
    answer = await slash(bot, "/lock", "production for 2h black friday freeze")
    assert answer.startswith(":lock: You locked *production*")
    assert "black friday freeze" in answer
    await eventually(lambda: slack.messages("releases"))
    [announcement] = slack.messages("releases")
    assert slack.read(announcement).startswith(":lock: *production* locked by @alice")
    assert "black friday freeze" in slack.read(announcement)

    listing = await slash(bot, "/lock", "", user="bob")
    assert listing == (
        ":unlock: *staging* open\n"
        ":lock: *production* locked by @alice just now — black friday freeze · until "
        + listing.rsplit("until ", 1)[1]
    )

    answer = await slash(bot, "/lock", "production code freeze for the launch")
    assert answer.startswith(":lock: You updated your lock on *production*")
    await eventually(lambda: len(slack.messages("releases")) == 2)
    assert "code freeze for the launch" in slack.read(slack.messages("releases")[1])

    answer = await slash(bot, "/unlock", "production")
    assert ":unlock:" in answer
    await eventually(lambda: len(slack.messages("releases")) == 3)
    assert slack.messages("releases")[2].text.startswith(
        ":unlock: <@U0ALICE> unlocked *production*"
    )
    # Announced in the env's channel only: team channels are not spammed.
    assert slack.messages("payments-deploys") == []

    assert bot.store is not None
    audit = await bot.store.redis.xrange("audit")
    actions = [fields[b"action"].decode() for _, fields in audit]
    assert actions == ["command", "lock", "command", "command", "lock-change", "command", "unlock"]


async def test_someone_elses_lock_is_shown_and_unlocking_it_tells_the_holder(
    bot: Pitcrew, slack: SlackSandbox, slash: Callable[..., Any]
) -> None:
    await slash(bot, "/lock", "staging migrating the database")
    answer = await slash(bot, "/lock", "staging my turn", user="bob")
    assert "@alice" in answer
    assert "migrating the database" in answer
    assert not answer.startswith(":lock: You")

    answer = await slash(bot, "/unlock", "staging", user="bob")
    assert ":unlock:" in answer
    # staging has no channel of its own: every team channel hears about it.
    for channel in ("payments-deploys", "search-deploys"):
        await eventually(lambda ch=channel: len(slack.messages(ch)) == 2)
        assert slack.read(slack.messages(channel)[1]).startswith(
            ":unlock: @bob unlocked *staging* (locked by @alice"
        )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("production for soon", "soon"),
        ("production for 0m", "0m"),
        ("production until 25:00", "25:00"),
        ("production for 45d", "30 days"),
        ("prod for 2h", "no environment prod — environments are staging, production"),
    ],
)
async def test_bad_lock_commands_get_the_usage_and_lock_nothing(
    bot: Pitcrew, slack: SlackSandbox, slash: Callable[..., Any], text: str, problem: str
) -> None:
    answer = await slash(bot, "/lock", text)
    assert problem in answer
    assert "Usage: `/lock <env> [for <duration> | until <time>] [reason…]`" in answer
    assert bot.locks is not None
    assert await bot.locks.locks() == {}
    assert slack.all_messages() == []


async def test_expiry_is_announced_once_with_two_replicas(
    make_bot: Callable[..., Pitcrew], slack: SlackSandbox, slash: Callable[..., Any], clock: Clock
) -> None:
    first, second = make_bot(clock=clock, lease_ttl=1.0), make_bot(clock=clock, lease_ttl=1.0)
    await first.start()
    await second.start()
    try:
        await slash(first, "/lock", "production for 30m load test")
        await slash(second, "/lock", "staging for 30m load test")
        clock.offset = timedelta(minutes=31)
        await eventually(lambda: len(slack.messages("releases")) == 2, within=15)
        await eventually(lambda: len(slack.messages("payments-deploys")) == 2, within=15)
        await eventually(lambda: drained(first))
        # Both replicas keep sweeping a while longer: nothing more is said.
        clock.offset = timedelta(minutes=45)
        await eventually(lambda: drained(second))
    finally:
        await first.stop()
        await second.stop()
    expired = [
        m for m in slack.all_messages() if slack.read(m).startswith(":hourglass_flowing_sand:")
    ]
    assert sorted(
        slack.channel_id(c) for c in ("releases", "payments-deploys", "search-deploys")
    ) == sorted(m.channel for m in expired)


async def test_a_lock_survives_a_restart_of_the_bot(
    make_bot: Callable[..., Pitcrew], slack: SlackSandbox, slash: Callable[..., Any]
) -> None:
    bot = make_bot()
    await bot.start()
    await slash(bot, "/lock", "production incident 4521")
    await bot.stop()

    bot = make_bot()
    await bot.start()
    try:
        listing = await slash(bot, "/lock", "", user="bob")
        assert "incident 4521" in listing
        assert "@alice" in listing
    finally:
        await bot.stop()


async def test_a_forgotten_lock_reminds_its_holder_daily(
    bot: Pitcrew, slack: SlackSandbox, slash: Callable[..., Any], clock: Clock
) -> None:
    await slash(bot, "/lock", "production until further notice")
    clock.offset = timedelta(hours=25)
    await eventually(lambda: slack.messages("U0ALICE"), within=15)
    clock.offset = timedelta(hours=30)
    assert bot.locks is not None
    await bot.locks.sweep()
    clock.offset = timedelta(hours=49)
    await eventually(lambda: len(slack.messages("U0ALICE")) == 2, within=15)
    assert slack.read(slack.messages("U0ALICE")[0]).startswith(
        ":bell: You have held the lock on *production* for 1 day"
    )
