"""Control and bidi characters in a commit title and a ``/lock`` reason, through the running bot:
the channel messages people read carry none of them, nor a mention or a link made of them."""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Pitcrew
from bot.sandbox.slack import Message, SlackSandbox

from .conftest import WEBHOOK_SECRET, drained, eventually
from .gitlab_payloads import pipeline_hook

CATALOG = Path(__file__).parents[1] / "fixtures" / "catalog.yaml"
TITLE = "Fix\x00 checkout\x1b[2J rounding \u202egnidnuor <!channel>"
REASON = "black\x00 friday\x1b[5m \u202eezeerf <!here>"


@pytest.fixture
async def bot(make_bot: Callable[..., Pitcrew]) -> AsyncIterator[Pitcrew]:
    pitcrew = make_bot(CATALOG_PATH=str(CATALOG))
    await pitcrew.start()
    yield pitcrew
    await pitcrew.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def webhook(http: aiohttp.ClientSession, bot: Pitcrew, payload: dict[str, Any]) -> int:
    headers = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": "Pipeline Hook",
        "X-Gitlab-Token": WEBHOOK_SECRET,
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
    }
    body = json.dumps(payload).encode()
    async with http.post(f"{bot.url}/webhooks/gitlab", data=body, headers=headers) as response:
        return response.status


def hidden(message: Message) -> list[str]:
    """The control and format characters anywhere in a message, text and blocks."""
    everything = message.text + json.dumps(message.blocks, ensure_ascii=False)
    return [
        f"U+{ord(char):04X}"
        for char in everything
        if char != "\n" and unicodedata.category(char) in ("Cc", "Cf")
    ]


OWN_DATES = re.compile(r"<!date\^\d+\^\{date_short_pretty\} \{time\}\|[0-9: -]+ UTC>")


async def test_a_commit_title_and_a_lock_reason_reach_the_channels_clean(
    bot: Pitcrew, slack: SlackSandbox, http: aiohttp.ClientSession
) -> None:
    payload = pipeline_hook(pipeline_id=701, status="failed", title=TITLE)
    assert await webhook(http, bot, payload) == 200
    body, headers = slack.slash_command(
        command="/lock",
        text=f"production for 2h {REASON}",
        user="alice",
        channel="payments-deploys",
    )
    async with http.post(f"{bot.url}/slack/events", data=body, headers=headers) as response:
        assert response.status == 200

    await eventually(lambda: slack.messages("payments-deploys") and slack.messages("releases"))
    await eventually(lambda: slack.messages("payments-deploys")[0].replies)
    await eventually(lambda: drained(bot))

    [pipeline] = slack.messages("payments-deploys")
    [announcement] = slack.messages("releases")
    for message in (pipeline, *pipeline.replies, announcement):
        assert hidden(message) == []
        # nothing from outside became a mention; the renderer's own times are date tokens
        assert "<!" not in OWN_DATES.sub("", message.text + json.dumps(message.blocks))

    assert pipeline.text == (
        "shop/orders pipeline #701 failed on main:"
        " Fix checkout[2J rounding gnidnuor &lt;!channel&gt;"
    )
    assert "Commit: a1b2c3d4 Fix checkout[2J rounding gnidnuor <!channel>" in slack.read(pipeline)
    # /lock reads NUL and ESC as spaces (its words are split on them); the renderer removes
    # the bidi override.
    assert slack.read(announcement).startswith(
        ":lock: *production* locked by @alice — black friday [5m ezeerf <!here> · until "
    )
