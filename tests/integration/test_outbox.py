"""The Slack outbox through the real bot: one message per key, updated in place, whatever Slack
answers meanwhile."""

from __future__ import annotations

import itertools
import time

import pytest

from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox
from bot.services.ports import OutgoingMessage

from .conftest import drained, eventually


def _message(key: str, text: str, **extra: object) -> OutgoingMessage:
    blocks = ({"type": "section", "text": {"type": "mrkdwn", "text": text}},)
    return OutgoingMessage(key=key, channel="#payments-deploys", text=text, blocks=blocks, **extra)  # type: ignore[arg-type]


def _posts(slack: SlackSandbox) -> list[str]:
    return [c.params.get("text", "") for c in slack.calls if c.method == "chat.postMessage"]


async def test_a_keyed_message_is_posted_once_then_updated_in_place(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    assert bot.outbox is not None
    await bot.outbox.send(_message("pipeline:shop/orders:1", "running"))
    await eventually(lambda: slack.messages("payments-deploys"))
    await bot.outbox.send(_message("pipeline:shop/orders:1", "passed"))
    await eventually(lambda: slack.messages("payments-deploys")[0].text == "passed")

    [message] = slack.messages("payments-deploys")
    assert message.edits == 1
    assert message.metadata == {
        "event_type": "pitcrew_message",
        "event_payload": {"key": "pipeline:shop/orders:1"},
    }
    assert len(_posts(slack)) == 1


async def test_updates_waiting_for_one_key_collapse_into_the_newest(
    make_bot, slack: SlackSandbox
) -> None:
    bot = make_bot(outbox_pacing=1.0)
    await bot.start()
    try:
        assert bot.outbox is not None
        await bot.outbox.send(_message("k", "step 0"))
        await eventually(lambda: slack.messages("payments-deploys"))
        for step in range(1, 20):
            await bot.outbox.send(_message("k", f"step {step}"))
        await eventually(lambda: slack.messages("payments-deploys")[0].text == "step 19")
        await eventually(lambda: drained(bot))
    finally:
        await bot.stop()
    writes = [c for c in slack.calls if c.method in ("chat.postMessage", "chat.update")]
    assert len(writes) <= 3  # the post, then at most the in-flight update and the newest


async def test_thread_replies_are_keyed_and_follow_their_parent(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    assert bot.outbox is not None
    await bot.outbox.send(_message("pipeline:1", "failed"))
    await bot.outbox.send(
        _message("pipeline:1:failure", "job test failed", thread_key="pipeline:1")
    )
    await bot.outbox.send(
        _message("pipeline:1:fixed", "fixed", thread_key="pipeline:1", broadcast=True)
    )
    await eventually(lambda: drained(bot))
    await bot.outbox.send(
        _message("pipeline:1:failure", "jobs test, lint failed", thread_key="pipeline:1")
    )
    await eventually(lambda: drained(bot))

    [parent] = slack.messages("payments-deploys")
    assert [r.text for r in parent.replies] == ["jobs test, lint failed", "fixed"]
    assert [r.reply_broadcast for r in parent.replies] == [False, True]
    assert len(_posts(slack)) == 3


async def test_retry_after_is_honoured_and_nothing_is_posted_twice(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    assert bot.outbox is not None
    slack.fail("chat.postMessage", status=429, times=1, retry_after=2)
    await bot.outbox.send(_message("k", "hello"))
    await eventually(lambda: slack.messages("payments-deploys"), within=10)

    attempts = [c for c in slack.calls if c.method == "chat.postMessage"]
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[1].time - attempts[0].time >= 2.0


async def test_throttled_posts_are_posted_once_without_reading_history(make_bot) -> None:
    """A 429 says nothing was posted: the outbox waits and posts again, and has no reason to
    look for the message in the channel's history or thread first."""
    async with SlackSandbox(channels=("payments-deploys",), enforce_pacing=True) as slack:
        bot = make_bot(SLACK_API_URL=slack.api_url, SLACK_BOT_TOKEN=slack.bot_token)
        await bot.start()
        try:
            # Slack throttles for a while, and the outbox writes faster than Slack's pacing.
            slack.fail_for("chat.postMessage", status=429, seconds=3, retry_after=1)
            for i in range(4):
                await bot.outbox.send(_message(f"k{i}", f"message {i}"))
                await bot.outbox.send(_message(f"k{i}:reply", f"reply {i}", thread_key=f"k{i}"))
            await eventually(lambda: drained(bot), within=30)
        finally:
            await bot.stop()
        messages = slack.messages("payments-deploys")
        assert sorted(m.text for m in messages) == [f"message {i}" for i in range(4)]
        assert all([r.text for r in m.replies] == [m.text.replace("message", "reply")]
                   for m in messages)  # fmt: skip
        posts = [c for c in slack.calls if c.method == "chat.postMessage"]
        assert len([c for c in posts if c.ok]) == 8  # each message once
        assert [c for c in posts if c.status == 429]  # throttled meanwhile
        reads = [c.method for c in slack.calls if c.method.startswith("conversations.")]
        assert "conversations.history" not in reads
        assert "conversations.replies" not in reads


async def test_a_refused_post_is_not_looked_up_when_the_key_is_sent_again(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    """An ``ok: false`` answer means nothing was posted: the next delivery just posts."""
    assert bot.outbox is not None
    slack.fail("chat.postMessage", status=200, error="msg_too_long", times=1)
    await bot.outbox.send(_message("k", "too long"))
    await eventually(lambda: drained(bot))
    assert slack.messages("payments-deploys") == []
    await bot.outbox.send(_message("k", "shorter"))
    await eventually(lambda: drained(bot))
    assert [m.text for m in slack.messages("payments-deploys")] == ["shorter"]
    assert "conversations.history" not in [c.method for c in slack.calls]


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retried_until_the_message_is_delivered(
    bot: Pitcrew, slack: SlackSandbox, status: int
) -> None:
    assert bot.outbox is not None
    slack.fail("chat.postMessage", status=status, times=2)
    await bot.outbox.send(_message("k", "v1"))
    await eventually(lambda: slack.messages("payments-deploys"), within=15)
    slack.fail("chat.update", status=status, times=1)
    await bot.outbox.send(_message("k", "v2"))
    await eventually(lambda: slack.messages("payments-deploys")[0].text == "v2", within=15)
    assert len(slack.messages("payments-deploys")) == 1
    # A 5xx leaves the outcome unknown (a gateway may time out after Slack posted): the outbox
    # looked in the channel before posting again.
    assert "conversations.history" in [c.method for c in slack.calls]


async def test_a_post_whose_answer_was_lost_is_found_not_posted_again(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    """Slack posted, then the answer was lost (a 500 after the fact, as after a crash)."""
    assert bot.outbox is not None
    slack.fail("chat.postMessage", status=500, times=1, applied=True)
    await bot.outbox.send(_message("k", "v1"))
    await eventually(lambda: drained(bot), within=15)
    await bot.outbox.send(_message("k", "v2"))
    await eventually(lambda: slack.messages("payments-deploys")[0].text == "v2")

    assert len(slack.messages("payments-deploys")) == 1
    assert "conversations.history" in [c.method for c in slack.calls]


async def test_a_lost_thread_reply_is_found_in_its_thread(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    assert bot.outbox is not None
    await bot.outbox.send(_message("p", "parent"))
    await eventually(lambda: drained(bot))
    slack.fail("chat.postMessage", status=502, times=1, applied=True)
    await bot.outbox.send(_message("p:reply", "reply", thread_key="p"))
    await eventually(lambda: drained(bot), within=15)
    [parent] = slack.messages("payments-deploys")
    assert [r.text for r in parent.replies] == ["reply"]


async def test_an_undeliverable_message_is_dropped_without_blocking_the_channel(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    assert bot.outbox is not None
    await bot.outbox.send(
        OutgoingMessage(key="bad", channel="#no-such-channel", text="lost", blocks=())
    )
    await bot.outbox.send(_message("good", "delivered"))
    await eventually(lambda: slack.messages("payments-deploys"))
    await eventually(lambda: drained(bot))
    assert [m.text for m in slack.messages("payments-deploys")] == ["delivered"]


async def test_writes_to_a_channel_are_paced_so_slack_never_throttles(make_bot) -> None:
    async with SlackSandbox(channels=("payments-deploys",), enforce_pacing=True) as slack:
        env = {
            "SLACK_API_URL": slack.api_url,
            "SLACK_BOT_TOKEN": slack.bot_token,
        }
        bot = make_bot(outbox_pacing=1.0, **env)
        await bot.start()
        try:
            for i in range(6):
                await bot.outbox.send(_message(f"k{i}", f"message {i}"))
            await eventually(lambda: len(slack.messages("payments-deploys")) == 6, within=15)
        finally:
            await bot.stop()
        posts = [c for c in slack.calls if c.method == "chat.postMessage"]
        assert [c.status for c in posts] == [200] * 6
        gaps = [b.time - a.time for a, b in itertools.pairwise(posts)]
        assert min(gaps) >= 0.95


async def test_an_older_version_never_overwrites_a_newer_one(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    """Two replicas race: the one holding the older state sends last."""
    assert bot.outbox is not None
    await bot.outbox.send(_message("k", "v2"), version=2)
    await bot.outbox.send(_message("k", "v1"), version=1)
    await eventually(lambda: drained(bot))
    await bot.outbox.send(_message("k", "v3"), version=3)
    await eventually(lambda: slack.messages("payments-deploys")[0].text == "v3")
    await bot.outbox.send(_message("k", "v2 again"), version=2)
    await eventually(lambda: drained(bot))
    assert [m.text for m in slack.messages("payments-deploys")] == ["v3"]


async def test_recovery_finds_the_post_however_long_the_bot_was_down(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    """The attempt was recorded an hour ago, then the bot died before storing the ts."""
    assert bot.outbox is not None
    assert bot.store is not None
    channel = slack.channel_id("payments-deploys")
    posted_ts = slack.seed_message(
        "payments-deploys",
        text="v1",
        at=time.time() - 3600,
        metadata={"event_type": "pitcrew_message", "event_payload": {"key": "k"}},
    )
    await bot.store.redis.hset(
        "outbox:sent:k",
        mapping={"attempt": "x", "attempt_at": repr(time.time() - 3600), "channel_id": channel},
    )
    await bot.outbox.send(_message("k", "v2"))
    await eventually(lambda: slack.messages("payments-deploys")[0].text == "v2")
    [message] = slack.messages("payments-deploys")
    assert message.ts == posted_ts


async def test_messages_of_an_earlier_version_are_updated_in_place_after_an_upgrade(
    make_bot, slack: SlackSandbox, redis
) -> None:
    """Keys of versions before the channel hash tag (outbox:sent:<key>, outbox:want:<key>,
    outbox:q:<channel>): the message posted then, and its update still waiting, come through."""
    posted_ts = slack.seed_message(
        "payments-deploys",
        text="v1",
        at=time.time() - 600,
        metadata={"event_type": "pitcrew_message", "event_payload": {"key": "k"}},
    )
    channel_id = slack.channel_id("payments-deploys")
    await redis.hset("outbox:sent:k", mapping={"ts": posted_ts, "channel_id": channel_id})
    await redis.hset(
        "outbox:want:k",
        mapping={"channel": "#payments-deploys", "text": "v2", "blocks": "[]", "seq": 7},
    )
    await redis.zadd("outbox:q:#payments-deploys", {"k": 7})
    await redis.sadd("outbox:channels", "#payments-deploys")
    bot = make_bot()
    await bot.start()
    try:
        await eventually(lambda: slack.messages("payments-deploys")[0].text == "v2")
        await eventually(lambda: drained(bot))
        assert bot.outbox is not None
        await bot.outbox.send(_message("k", "v3"))
        await eventually(lambda: slack.messages("payments-deploys")[0].text == "v3")
    finally:
        await bot.stop()
    [message] = slack.messages("payments-deploys")
    assert message.ts == posted_ts
    assert _posts(slack) == []
    assert await redis.exists("outbox:want:k", "outbox:q:#payments-deploys") == 0
