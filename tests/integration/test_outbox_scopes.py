"""Least privilege: a Slack app installed without ``channels:history``/``groups:history`` (and
``channels:join``) works, and pays for it only when a post's outcome is unknown: that message is
posted again and may show twice (docs/security.md)."""

from __future__ import annotations

from pathlib import Path

from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox
from bot.services.ports import OutgoingMessage

from .conftest import bot_environment, drained, eventually
from .test_cli import _pitcrew

LEAST = (
    "commands",
    "chat:write",
    "chat:write.public",
    "channels:read",
    "groups:read",
    "im:write",
    "users:read",
    "users:read.email",
    "usergroups:read",
)


def _message(key: str, text: str, channel: str = "#payments-deploys") -> OutgoingMessage:
    return OutgoingMessage(key=key, channel=channel, text=text)


def _methods(slack: SlackSandbox) -> list[str]:
    return [c.method for c in slack.calls]


async def test_without_history_scopes_messages_flow_and_no_channel_is_joined_or_read(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    slack.scopes = LEAST
    slack.add_channel("ops", member=False)  # a public channel the bot was never invited to
    assert bot.outbox is not None
    await bot.outbox.send(_message("k", "v1", "#ops"))
    await eventually(lambda: slack.messages("ops"))
    await bot.outbox.send(_message("k", "v2", "#ops"))
    await eventually(lambda: slack.messages("ops")[0].text == "v2")

    assert len(slack.messages("ops")) == 1  # posted once (chat:write.public), updated in place
    assert not bot.outbox.reads_history
    assert "conversations.join" not in _methods(slack)
    assert not {"conversations.history", "conversations.replies"} & set(_methods(slack))


async def test_without_history_scopes_a_post_whose_answer_was_lost_is_posted_again(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    """The trade-off, as a user sees it: Slack posted, the answer was lost, and with no way to
    look in the channel the message shows twice. Updates then go to the second one only."""
    slack.scopes = LEAST
    assert bot.outbox is not None
    await bot.outbox.send(_message("warm-up", "hello"))  # Slack's answers tell the scopes
    await eventually(lambda: drained(bot))
    slack.fail("chat.postMessage", status=500, times=1, applied=True)
    await bot.outbox.send(_message("k", "v1"))
    await eventually(lambda: drained(bot), within=15)
    await bot.outbox.send(_message("k", "v2"))
    await eventually(lambda: slack.messages("payments-deploys")[-1].text == "v2")

    texts = [m.text for m in slack.messages("payments-deploys")]
    assert texts == ["hello", "v1", "v2"]
    assert not {"conversations.history", "conversations.replies"} & set(_methods(slack))


async def test_a_history_lookup_refused_for_a_missing_scope_is_not_asked_again(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    """Scopes taken away after start (the app reinstalled with fewer): the first lookup is
    refused with ``missing_scope``, and the outbox stops asking."""
    assert bot.outbox is not None
    await bot.outbox.send(_message("warm-up", "hello"))
    await eventually(lambda: drained(bot))
    slack.scopes = LEAST
    for key in ("a", "b"):
        slack.fail("chat.postMessage", status=500, times=1, applied=True)
        await bot.outbox.send(_message(key, key))
        await eventually(lambda: drained(bot), within=15)
    refused = [c for c in slack.calls if c.method == "conversations.history"]
    assert [c.error for c in refused] == ["missing_scope"]
    assert not bot.outbox.reads_history


async def test_with_history_scopes_the_lost_post_is_found_and_shown_once(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    assert bot.outbox is not None
    slack.add_channel("ops", member=False)
    slack.fail("chat.postMessage", status=500, times=1, applied=True)
    await bot.outbox.send(_message("k", "v1", "#ops"))
    await eventually(lambda: drained(bot), within=15)
    assert [m.text for m in slack.messages("ops")] == ["v1"]
    assert bot.outbox.reads_history
    assert "conversations.join" in _methods(slack)  # history is read by members only


async def test_check_says_what_the_scopes_mean_for_lost_posts(
    slack: SlackSandbox, redis_url: str, tmp_path: Path
) -> None:
    env = bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var")
    _, out, _ = await _pitcrew("check", env=env, cwd=tmp_path)
    assert "history scopes: a post whose answer is lost is found again" in out
    slack.scopes = LEAST
    _, out, _ = await _pitcrew("check", env=env, cwd=tmp_path)
    (row,) = [line for line in out.splitlines() if line.startswith("ok    slack")]
    assert row.endswith("no history scopes: a post whose answer is lost may show twice")
