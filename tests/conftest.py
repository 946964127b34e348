"""Shared fixtures: a real Redis-protocol server (the embedded Valkey Pitcrew itself uses)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.adapters.store.connection import client_for
from bot.adapters.store.embedded import EmbeddedRedis

STUCK_AFTER = 100.0
"""Seconds after which a test still running prints what every asyncio task awaits: just
before pytest-timeout's 120 s stops it with the main thread's stack only, which for a test
stuck in an event loop says nothing more than ``select()``."""


def _print_tasks(name: str) -> None:
    print(
        f"\n--- {name} still running after {STUCK_AFTER:.0f} s; its asyncio tasks:", file=sys.stderr
    )
    for _ in range(3):  # the set may change under us: this thread does not own the loop
        try:
            tasks = list(asyncio.tasks._all_tasks)  # every loop's
            break
        except RuntimeError:
            continue
    else:
        return
    for task in tasks:
        if not task.done():
            print(f"* {task.get_name()}", file=sys.stderr)
            task.print_stack(limit=6, file=sys.stderr)


@pytest.fixture(autouse=True)
def _stuck_tasks_printed(request: pytest.FixtureRequest) -> Iterator[None]:
    timer = threading.Timer(STUCK_AFTER, _print_tasks, args=(request.node.nodeid,))
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_url(redis_server: EmbeddedRedis) -> AsyncIterator[str]:
    """A clean database for each test."""
    client = client_for(redis_server.url)
    await client.flushall()
    await client.aclose()
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = client_for(redis_url)
    yield client
    await client.aclose()
