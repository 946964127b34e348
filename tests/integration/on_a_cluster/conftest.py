"""The store's tests again, on a real Redis Cluster of three primaries started on loopback
(tests/redis_topologies.py): every script and multi-key command of the store, the outbox, the
releases, locks, rollouts and the inventory must keep to one hash slot (``CROSSSLOT``
otherwise), and the bot must work over ``redis+cluster://`` as it does over one server.

Each module here collects the tests of one module of tests/integration a second time, with
``redis_url`` (and so ``redis``, ``bot_env``, every bot) pointing at the cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.adapters.store.connection import client_for
from tests.redis_topologies import ClusterSetup, start_cluster


@pytest.fixture(scope="package")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    setup = start_cluster(Path(tmp_path_factory.mktemp("cluster")), primaries=3)
    yield setup
    setup.stop()


@pytest.fixture
async def redis_url(redis_cluster: ClusterSetup) -> str:
    """The cluster, emptied for each test."""
    client = client_for(redis_cluster.url)
    await client.flushall()
    await client.aclose()
    return redis_cluster.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client: aioredis.Redis = client_for(redis_url)
    await client.initialize()  # type: ignore[attr-defined]  # as the bot does (Store.ping)
    yield client
    await client.aclose()
