"""Fault tests: the real bot (often in its own process, to be killed) under failures of what it
depends on. The integration fixtures (real Redis, the Slack sandbox) are shared."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.integration.conftest import *  # noqa: F403
from tests.integration.conftest import WEBHOOK_SECRET
from tests.integration.test_pipelines import _run

ROOT = Path(__file__).parents[2]


class BotProcess:
    """``pitcrew serve`` in its own process, as in production, that a test may ``kill -9``."""

    def __init__(self, env: dict[str, str], *, port: int, log: Path) -> None:
        self.env = {**os.environ, **env, "PORT": str(port)}
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.bot_process"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, http: aiohttp.ClientSession, *, within: float = 20) -> None:
        for _ in range(int(within / 0.05)):
            try:
                async with http.get(f"{self.url}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"the bot on port {self.port} did not get ready; see {self.log}")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.terminate()
        return self.process.wait(timeout=15)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Burst:
    """Webhook deliveries for many pipelines: shuffled, with GitLab's retries (same UUID)."""

    finals: dict[int, str]
    deliveries: list[tuple[str, bytes, str]] = field(default_factory=list)

    @classmethod
    def of(cls, pipelines: int, *, seed: int, first_id: int = 5000) -> Burst:
        rng = random.Random(seed)
        finals = {first_id + i: rng.choice(("success", "failed")) for i in range(pipelines)}
        burst = cls(finals=finals)
        for pipeline_id, final in finals.items():
            hooks = _run(pipeline_id, final)
            hooks += [hooks[rng.randrange(len(hooks))] for _ in range(2)]
            order = [(k, json.dumps(b).encode(), str(uuid.uuid4())) for k, b in hooks]
            rng.shuffle(order)
            burst.deliveries += order
        return burst

    def chunks(self, n: int) -> Iterator[list[tuple[str, bytes, str]]]:
        size = -(-len(self.deliveries) // n)
        for i in range(0, len(self.deliveries), size):
            yield self.deliveries[i : i + size]


async def deliver(
    http: aiohttp.ClientSession,
    urls: list[str],
    deliveries: list[tuple[str, bytes, str]],
    *,
    clients: int = 20,
    pace: float = 0.0,
    acks: list[tuple[float, str]] | None = None,
) -> int:
    """Send like GitLab: a delivery that gets no 2xx (refused, 5xx, connection error) is tried
    again, on the next URL (another replica behind the Service). Returns how many retries.
    ``pace``: seconds each client waits between deliveries (a burst that lasts a while).
    ``acks``: gets (``time.monotonic()``, event id) of every delivery answered 200."""
    queue: asyncio.Queue[tuple[str, bytes, str]] = asyncio.Queue()
    for item in deliveries:
        queue.put_nowait(item)
    retries = 0

    async def client(index: int) -> None:
        nonlocal retries
        turn = index
        while not queue.empty():
            kind, body, event_id = queue.get_nowait()
            for _ in range(400):
                url = urls[turn % len(urls)]
                headers = {
                    "X-Gitlab-Event": kind,
                    "X-Gitlab-Token": WEBHOOK_SECRET,
                    "X-Gitlab-Event-UUID": event_id,
                    "Content-Type": "application/json",
                }
                try:
                    async with http.post(
                        f"{url}/webhooks/gitlab", data=body, headers=headers
                    ) as response:
                        if response.status == 200:
                            if acks is not None:
                                acks.append((time.monotonic(), event_id))
                            break
                except (aiohttp.ClientError, OSError):
                    pass
                retries += 1
                turn += 1
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"event {event_id} was never accepted")
            if pace:
                await asyncio.sleep(pace)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return retries
