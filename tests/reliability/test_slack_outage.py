"""Slack answers 429 and then 5xx for a whole minute while pipelines keep running: no storm of
retries meanwhile, then the backlog drains at the pace Slack allows, each message once."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp
import pytest

from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox
from tests.integration.conftest import drained, eventually
from tests.integration.test_pipelines import CATALOG, CHANNEL, message_failed

from .conftest import Burst, deliver

OUTAGE = 60.0
"""Seconds: 30 of 429 (Retry-After: 5), then 30 of 503."""


@pytest.mark.timeout(240)
async def test_a_minute_of_slack_outage(make_bot: Callable[..., Pitcrew]) -> None:
    # Slack's own pacing is enforced: a message faster than about one a second per channel
    # would be answered 429 by the sandbox too.
    async with SlackSandbox(channels=("payments-deploys",), enforce_pacing=True) as slack:
        bot = make_bot(
            SLACK_API_URL=slack.api_url,
            SLACK_BOT_TOKEN=slack.bot_token,
            SLACK_SIGNING_SECRET=slack.signing_secret,
            CATALOG_PATH=str(CATALOG),
            outbox_pacing=1.0,  # as in production
        )
        await bot.start()
        try:
            started = time.monotonic()  # the sandbox's clock
            for method in ("chat.postMessage", "chat.update"):
                slack.fail_for(method, status=429, seconds=OUTAGE / 2, retry_after=5)
                slack.fail_for(method, status=503, seconds=OUTAGE)
            burst = Burst.of(6, seed=3, first_id=9000)
            async with aiohttp.ClientSession() as http:
                await deliver(http, [bot.url], burst.deliveries)
            await eventually(
                lambda: time.monotonic() >= started + OUTAGE, within=OUTAGE + 5, interval=1
            )
            during = [
                c for c in slack.calls if c.method.startswith("chat.") and c.time < started + OUTAGE
            ]
            await eventually(lambda: drained(bot), within=120, interval=0.5)
        finally:
            await bot.stop()

    # No storm: 429s were waited out (Retry-After: 5) and 503s backed off.
    assert len(during) <= 40, len(during)
    after = [c for c in slack.calls if c.time >= started + OUTAGE]
    assert [c for c in after if c.status == 429] == []  # the backlog respected Slack's pace
    posts = [c for c in after if c.method == "chat.postMessage" and c.ok]
    assert posts
    assert max(c.time for c in posts) - min(c.time for c in posts) >= 0.9 * (len(posts) - 3)
    messages = slack.messages(CHANNEL)
    keys = [m.metadata["event_payload"]["key"] for m in messages]
    assert len(keys) == len(set(keys)) == len(burst.finals)  # one message per pipeline
    finals = {int(m.metadata["event_payload"]["key"].rsplit(":", 1)[1]): m.text for m in messages}
    for pipeline_id, final in burst.finals.items():
        if final == "failed":
            assert finals[pipeline_id] == message_failed(pipeline_id)
        else:
            assert " passed " in finals[pipeline_id]
    replies = sum(len(m.replies) for m in messages)
    delivered = [c for c in slack.calls if c.method == "chat.postMessage" and c.ok]
    assert len(delivered) == len(burst.finals) + replies  # nothing posted twice
    # History is read only to settle a post whose outcome is unknown (a 503 may come after Slack
    # posted); a 429 says nothing was posted, so the first half of the outage reads none.
    reads = [
        c for c in slack.calls if c.method in ("conversations.history", "conversations.replies")
    ]
    assert [c for c in reads if c.time < started + OUTAGE / 2] == []
    unknown = [c for c in slack.calls if c.method == "chat.postMessage" and c.status >= 500]
    assert len(reads) <= len(unknown)
