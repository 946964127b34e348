"""``kill -9`` in the middle of a webhook burst: one replica alone (then restarted), and one of
two replicas (the other takes over). Nothing accepted is lost, nothing is posted twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from bot.sandbox.slack import SlackSandbox
from tests.integration.conftest import bot_environment, eventually
from tests.integration.test_pipelines import CATALOG, CHANNEL, message_failed

from .conftest import BotProcess, Burst, deliver, free_port


def shown(slack: SlackSandbox) -> dict[int, str]:
    """Pipeline id → what its message says now; fails on a second message for one pipeline."""
    found: dict[int, str] = {}
    for message in slack.messages(CHANNEL):
        key = message.metadata["event_payload"]["key"]
        pipeline_id = int(key.rsplit(":", 1)[1])
        assert pipeline_id not in found, f"two messages for pipeline {pipeline_id}"
        found[pipeline_id] = "success" if " passed " in message.text else message.text
    return found


def expected(burst: Burst) -> dict[int, str]:
    return {p: "success" if f == "success" else message_failed(p) for p, f in burst.finals.items()}


def environment(slack: SlackSandbox, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var"),
        "CATALOG_PATH": str(CATALOG),
        "PITCREW_TEST_PACING": "0.01",
        "PITCREW_TEST_CLAIM_IDLE": "2",
        "LOG_LEVEL": "warning",
    }


async def test_kill_9_during_a_webhook_burst_then_restart(redis_url: str, tmp_path: Path) -> None:
    burst = Burst.of(60, seed=1)
    first, second = burst.chunks(2)
    async with SlackSandbox(channels=("payments-deploys",), enforce_pacing=False) as slack:
        bot = BotProcess(
            environment(slack, redis_url, tmp_path), port=free_port(), log=tmp_path / "bot.log"
        )
        bot.start()
        try:
            async with aiohttp.ClientSession() as http:
                await bot.ready(http)
                await deliver(http, [bot.url], first)
                # the second half takes a few seconds to send; die early in it
                sending = asyncio.create_task(
                    deliver(http, [bot.url], second, clients=5, pace=0.03)
                )
                await asyncio.sleep(0.3)
                bot.kill()
                await asyncio.sleep(0.5)  # GitLab keeps retrying against a dead bot
                bot.start()
                retries = await sending
                await eventually(lambda: shown(slack) == expected(burst), within=60, interval=0.2)
        finally:
            bot.stop()
    assert retries > 0  # some deliveries really hit the dead bot
    posts = [c for c in slack.calls if c.method == "chat.postMessage" and c.ok]
    replies = sum(len(m.replies) for m in slack.messages(CHANNEL))
    assert len(posts) == len(burst.finals) + replies  # nothing posted twice


async def test_one_of_two_replicas_killed_the_other_takes_over(
    redis_url: str, tmp_path: Path
) -> None:
    burst = Burst.of(60, seed=2, first_id=7000)
    async with SlackSandbox(channels=("payments-deploys",), enforce_pacing=False) as slack:
        env = {**environment(slack, redis_url, tmp_path), "LOG_LEVEL": "info"}
        a = BotProcess(env, port=free_port(), log=tmp_path / "a.log")
        b = BotProcess(env, port=free_port(), log=tmp_path / "b.log")
        a.start()
        try:
            async with aiohttp.ClientSession() as http:
                await a.ready(http)  # a leads: outbox, sweeps
                b.start()
                await b.ready(http)
                first, second = burst.chunks(2)
                await deliver(http, [a.url, b.url], first)
                sending = asyncio.create_task(
                    deliver(http, [a.url, b.url], second, clients=5, pace=0.03)
                )
                await asyncio.sleep(0.3)
                a.kill()  # the leader dies with events in flight and entries unacknowledged
                await sending
                await eventually(lambda: shown(slack) == expected(burst), within=60, interval=0.2)
                async with http.get(f"{b.url}/readyz") as response:
                    assert response.status == 200
        finally:
            a.stop()
            b.stop()
    log = (tmp_path / "b.log").read_text()
    assert '"lease": "outbox"' in log  # b took over delivering to Slack
    posts = [c for c in slack.calls if c.method == "chat.postMessage" and c.ok]
    replies = sum(len(m.replies) for m in slack.messages(CHANNEL))
    assert len(posts) == len(burst.finals) + replies
