"""Redis failures under a burst of webhooks, on real topologies started on loopback
(``tests/redis_topologies.py``): Sentinel with a primary, two replicas and three sentinels, and a
Redis Cluster of three primaries with a replica each. The bot runs in its own process with
``REDIS_MIN_REPLICAS=1``, and GitLab's part is played by clients that retry every delivery not
answered 200, as GitLab does.

What a user would notice, checked after each fault: every pipeline's message shows its final
state (every event handled), one message per pipeline (nothing posted twice), every delivery
answered 200 is still in the store after the fault (its de-duplication mark, written with the
stream entry by one script, is there), and the bot is ready again.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis as syncredis

from bot.adapters.store.inbox import dedup_key
from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox
from tests.integration.conftest import WEBHOOK_SECRET, eventually
from tests.integration.gitlab_payloads import pipeline_hook
from tests.integration.test_pipelines import CATALOG, CHANNEL
from tests.redis_topologies import (
    PASSWORD,
    ClusterSetup,
    SentinelSetup,
    start_cluster,
    start_sentinel_setup,
)

from .conftest import BotProcess, Burst, deliver, free_port
from .test_kills import environment, expected, shown

BURST_PIPELINES = 222
"""Times 9 deliveries (7 hooks, 2 GitLab retries): a burst of 1,998 webhooks."""


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSetup]:
    setup = start_sentinel_setup(tmp_path / "redis")
    yield setup
    setup.stop()


@pytest.fixture
def partitionable(tmp_path: Path) -> Iterator[SentinelSetup]:
    setup = start_sentinel_setup(tmp_path / "redis", behind_proxy=True)
    yield setup
    setup.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterSetup]:
    setup = start_cluster(tmp_path / "redis", primaries=3, replicas=1)
    yield setup
    setup.stop()


def missing_acknowledged(client: syncredis.Redis, acks: list[tuple[float, str]]) -> list[str]:
    """Deliveries answered 200 whose event the store does not have."""
    ids = sorted({event_id for _, event_id in acks})
    found = []
    for i in range(0, len(ids), 200):
        batch = ids[i : i + 200]
        if isinstance(client, syncredis.RedisCluster):
            found += [bool(client.exists(dedup_key("gitlab", e))) for e in batch]
        else:
            with client.pipeline(transaction=False) as pipe:
                for event_id in batch:
                    pipe.exists(dedup_key("gitlab", event_id))
                found += [bool(n) for n in pipe.execute()]
    return [event_id for event_id, there in zip(ids, found, strict=True) if not there]


def posts_once(slack: SlackSandbox, burst: Burst) -> bool:
    posts = [c for c in slack.calls if c.method == "chat.postMessage" and c.ok]
    replies = sum(len(m.replies) for m in slack.messages(CHANNEL))
    return len(posts) == len(burst.finals) + replies


async def all_final(slack: SlackSandbox, burst: Burst, *, within: float = 90) -> None:
    """Until every pipeline's message shows its final state; else fail naming a few that
    do not."""
    want = expected(burst)
    deadline = time.monotonic() + within
    while (now := shown(slack)) != want:
        if time.monotonic() > deadline:
            wrong = {p: now.get(p) for p in want if now.get(p) != want[p]}
            sample = dict(list(wrong.items())[:5])
            raise AssertionError(f"{len(wrong)} pipelines not final in Slack, e.g. {sample}")
        await asyncio.sleep(0.2)


async def run_burst_with_fault(
    tmp_path: Path,
    *,
    redis_url: str,
    burst: Burst,
    fault: object,
    after_burst: object = None,
) -> tuple[list[tuple[float, str]], float, SlackSandbox]:
    """Start the bot, send ``burst`` from 20 GitLab clients, call ``fault()`` a third of the
    way in (in a thread: it may block), wait until every pipeline reads final in Slack. Returns
    the acknowledgements, when the fault happened, and the Slack sandbox."""
    async with SlackSandbox(channels=(CHANNEL,), enforce_pacing=False) as slack:
        env = {**environment(slack, redis_url, tmp_path), "REDIS_MIN_REPLICAS": "1"}
        bot = BotProcess(env, port=free_port(), log=tmp_path / "bot.log")
        bot.start()
        try:
            async with aiohttp.ClientSession() as http:
                await bot.ready(http, within=30)
                acks: list[tuple[float, str]] = []
                sending = asyncio.create_task(
                    deliver(http, [bot.url], burst.deliveries, clients=20, acks=acks)
                )
                await eventually(lambda: len(acks) >= len(burst.deliveries) // 3, within=60)
                fault_at = time.monotonic()
                await asyncio.to_thread(fault)  # type: ignore[arg-type]
                await sending
                if after_burst is not None:
                    await asyncio.to_thread(after_burst)  # type: ignore[arg-type]
                await all_final(slack, burst)
                async with http.get(f"{bot.url}/readyz") as response:
                    assert response.status == 200, await response.text()
        finally:
            bot.stop()
    return acks, fault_at, slack


async def test_primary_killed_mid_burst_loses_nothing_acknowledged(
    sentinels: SentinelSetup, tmp_path: Path
) -> None:
    burst = Burst.of(BURST_PIPELINES, seed=16, first_id=16_000)
    acks, killed_at, slack = await run_burst_with_fault(
        tmp_path, redis_url=sentinels.url, burst=burst, fault=sentinels.primary.kill
    )
    assert sentinels.current_primary() != (sentinels.primary.host, sentinels.primary.port)
    with sentinels.client_of_primary() as client:
        assert missing_acknowledged(client, acks) == []
    assert posts_once(slack, burst)
    first_after = min(at for at, _ in acks if at > killed_at)
    assert first_after - killed_at <= 10.0, "webhooks answered 200 again within 10 s of the kill"
    assert len({event_id for _, event_id in acks}) == len(burst.deliveries)


async def test_primary_cut_off_from_its_sentinels_and_replicas_loses_nothing_acknowledged(
    partitionable: SentinelSetup, tmp_path: Path
) -> None:
    """A partition: the sentinels and replicas lose the primary, the bot does not. The sentinels
    promote a replica while the old primary still takes the bot's writes; none of those can be
    confirmed (its replicas are gone), so none is acknowledged, and the bot moves to the new
    primary as soon as the sentinels name it. When the partition heals, the old primary becomes
    a replica and drops what it took meanwhile: nothing that anyone was told is lost."""
    setup = partitionable
    proxy = setup.proxy
    assert proxy is not None
    burst = Burst.of(BURST_PIPELINES, seed=17, first_id=17_000)

    def partition() -> None:
        proxy.cut({"127.0.0.2", "127.0.0.3"})

    def heal() -> None:
        proxy.heal()
        setup.wait_replicated(replicas=2, within=30)  # the old primary is a replica again

    acks, _, slack = await run_burst_with_fault(
        tmp_path, redis_url=setup.url, burst=burst, fault=partition, after_burst=heal
    )
    new_primary = setup.current_primary()
    assert new_primary != ("127.0.0.1", proxy.port)
    with setup.client_of_primary() as client:
        assert missing_acknowledged(client, acks) == []
    assert posts_once(slack, burst)
    log = (tmp_path / "bot.log").read_text()
    assert "Redis primary changed; reconnecting" in log


async def test_slots_move_between_cluster_primaries_during_a_burst(
    cluster: ClusterSetup, tmp_path: Path
) -> None:
    """A live reshard, as ``valkey-cli --cluster reshard`` does it: the slots of the webhook
    stream, of the pipelines' records and of the channel's outbox move to other primaries,
    key by key, while webhooks arrive and the bot works."""
    from bot.adapters.redis_keys import slot

    burst = Burst.of(BURST_PIPELINES, seed=18, first_id=18_000)
    moving = [slot("events:gitlab"), slot("pipelines:{shop/orders}:1"), slot("{#payments-deploys}")]
    moved: list[int] = []

    def reshard() -> None:
        for s in moving:
            owner = cluster.owner_of(s)
            target = next(p for p in cluster.primaries if p.port != owner.port)
            moved.append(cluster.migrate_slot(s, target, pace=0.01))
            assert cluster.owner_of(s).port == target.port

    acks, _, slack = await run_burst_with_fault(
        tmp_path, redis_url=cluster.url, burst=burst, fault=reshard
    )
    assert all(n > 0 for n in moved), moved  # each slot had keys to carry
    client = syncredis.RedisCluster(
        host=cluster.primaries[0].host, port=cluster.primaries[0].port, password=PASSWORD
    )
    try:
        assert missing_acknowledged(client, acks) == []
    finally:
        client.close()
    assert posts_once(slack, burst)


async def test_without_its_replicas_nothing_is_acknowledged_and_people_hear_try_again(
    sentinels: SentinelSetup, make_bot: Callable[..., Pitcrew], slack: SlackSandbox
) -> None:
    """The replicas are gone (the primary is fine, so nothing fails over): a webhook gets a
    503, which GitLab retries, and a slash command a "try again" instead of running. Once a
    replica is back, both go through."""
    bot = make_bot(REDIS_URL=sentinels.url, REDIS_MIN_REPLICAS="1", CATALOG_PATH=str(CATALOG))
    await bot.start()
    try:
        async with aiohttp.ClientSession() as http:

            async def webhook() -> int:
                headers = {
                    "X-Gitlab-Event": "Pipeline Hook",
                    "X-Gitlab-Token": WEBHOOK_SECRET,
                    "X-Gitlab-Event-UUID": str(uuid.uuid4()),
                }
                body = json.dumps(pipeline_hook(pipeline_id=4242, status="running")).encode()
                async with http.post(f"{bot.url}/webhooks/gitlab", data=body, headers=headers) as r:
                    return r.status

            async def lock() -> str:
                body, headers = slack.slash_command(
                    command="/lock", text="production 1h", user="alice", channel="payments-deploys"
                )
                async with http.post(f"{bot.url}/slack/events", data=body, headers=headers) as r:
                    assert r.status == 200
                    return await r.text()

            assert await webhook() == 200
            for replica in sentinels.replicas:
                replica.kill()
            await eventually(lambda: no_replicas(sentinels))
            assert await webhook() == 503
            answer = await lock()
            assert "Try again in a few seconds" in answer
            assert "nothing was done" in answer
            assert bot.locks is not None
            assert await bot.locks.locks() == {}

            sentinels.replicas[0].start()
            await eventually(lambda: webhook(), within=20, interval=0.3)  # 200 is truthy
            assert await lock() == ""  # acknowledged as usual, answered privately
            await eventually(lambda: any("locked" in slack.read(m) for m in slack.ephemerals()))
            assert "production" in await bot.locks.locks()
    finally:
        await bot.stop()


async def no_replicas(setup: SentinelSetup) -> bool:
    def count() -> int:
        with setup.client_of_primary() as client:
            return int(client.info("replication")["connected_slaves"])

    return await asyncio.to_thread(count) == 0
