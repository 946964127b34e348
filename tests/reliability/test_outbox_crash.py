"""A bot killed with ``kill -9`` in the middle of a burst, then restarted: no message is posted
twice and no pending update is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bot.adapters.slack.outbox import SlackOutbox
from bot.adapters.store.connection import client_for
from bot.sandbox.slack import SlackSandbox
from bot.services.ports import OutgoingMessage

from .conftest import bot_environment, eventually

ROOT = Path(__file__).parents[2]
CHANNELS = ("payments-deploys", "search-deploys", "releases")


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.bot_process"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_kill_9_mid_burst_then_restart(redis_url: str, tmp_path: Path) -> None:
    async with SlackSandbox(channels=CHANNELS, enforce_pacing=False) as slack:
        env = {
            **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var"),
            "PORT": "0",
            "PITCREW_TEST_PACING": "0.05",
        }
        # The test enqueues like a service would; the bot process delivers.
        redis = client_for(redis_url)
        producer = SlackOutbox(redis, client=None)  # type: ignore[arg-type]
        keys = [f"pipeline:{i}" for i in range(45)]

        async def send_all(version: int) -> None:
            for i, key in enumerate(keys):
                channel = f"#{CHANNELS[i % len(CHANNELS)]}"
                text = f"{key} v{version}"
                await producer.send(OutgoingMessage(key=key, channel=channel, text=text))

        # Some posts go through at Slack while their answer is lost: the worst moment to die.
        slack.fail("chat.postMessage", status=500, times=3, applied=True)
        await send_all(1)
        bot = _start(env, tmp_path / "bot.log")
        try:
            await eventually(lambda: len(slack.all_messages()) >= 12, within=20)
            os.kill(bot.pid, signal.SIGKILL)
            bot.wait()
            delivered_before_kill = len(slack.all_messages())
            await send_all(2)  # updates queued while no bot is running

            bot = _start(env, tmp_path / "bot.log")

            def final_state() -> bool:
                texts = sorted(m.text for m in slack.all_messages())
                return texts == sorted(f"{key} v2" for key in keys)

            await eventually(final_state, within=40, interval=0.1)
        finally:
            bot.terminate()
            bot.wait(timeout=10)
            await redis.aclose()

        assert 12 <= delivered_before_kill < len(keys)
        posted_keys = [
            m.metadata["event_payload"]["key"] for m in slack.all_messages() if m.metadata
        ]
        assert sorted(posted_keys) == sorted(keys)  # one message per key, none twice
        assert bot.returncode == 0  # SIGTERM: a clean stop
