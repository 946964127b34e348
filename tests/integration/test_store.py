"""The store against a real server: embedded start/restart, inbox, streams, leases."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.adapters.store.connection import client_for, open_store
from bot.adapters.store.embedded import EmbeddedRedis
from bot.adapters.store.inbox import RedisInbox, stream_name
from bot.adapters.store.leases import Lease, lead
from bot.adapters.store.streams import Entry, StreamConsumer
from bot.errors import StoreUnavailable
from bot.services.ports import InboundEvent
from tests.integration.conftest import eventually


def _event(dedup: str, body: bytes = b"{}") -> InboundEvent:
    return InboundEvent(
        source="gitlab",
        kind="Pipeline Hook",
        dedup_key=dedup,
        body=body,
        received_at=time.time(),
        request_id="r1",
    )


async def test_embedded_server_keeps_state_across_restarts(tmp_path: Path) -> None:
    store = open_store(redis_url=None, state_dir=tmp_path / "var")
    await store.redis.set("survives", "yes")
    await store.close()  # stops the embedded server (SIGTERM flushes the append-only file)

    store = open_store(redis_url=None, state_dir=tmp_path / "var")
    assert await store.redis.get("survives") == b"yes"
    await store.close()


async def test_a_second_process_on_the_same_state_dir_shares_the_server(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path)
    url = first.start()
    second = EmbeddedRedis(tmp_path)
    assert second.start() == url
    assert not second.owned
    first.stop()


def test_embedded_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """``kill -9`` of the bot must not leave an orphan server holding the state files."""
    code = (
        "import sys, time; from pathlib import Path;"
        "from bot.adapters.store.embedded import EmbeddedRedis;"
        f"EmbeddedRedis(Path({str(tmp_path)!r})).start(); print('up', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == b"up"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    deadline = time.monotonic() + 5
    from bot.adapters.store.embedded import _ping_unix

    while _ping_unix(tmp_path / "redis.sock") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _ping_unix(tmp_path / "redis.sock")


async def test_inbox_stores_once_per_dedup_key(redis: aioredis.Redis) -> None:
    inbox = RedisInbox(redis)
    first = await inbox.append(_event("uuid-1", b'{"a":1}'))
    again = await inbox.append(_event("uuid-1", b'{"a":1}'))
    other = await inbox.append(_event("uuid-2"))
    assert first is not None
    assert other is not None
    assert again is None
    entries = await redis.xrange(stream_name("gitlab"))
    assert [e[1][b"dedup_key"] for e in entries] == [b"uuid-1", b"uuid-2"]
    assert entries[0][1][b"body"] == b'{"a":1}'


async def test_inbox_reports_an_unreachable_store(tmp_path: Path) -> None:
    dead = client_for("redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable):
        await RedisInbox(dead).append(_event("x"))
    await dead.aclose()


async def _fill(redis: aioredis.Redis, n: int) -> None:
    for i in range(n):
        await redis.xadd("events:test", {"n": str(i)})


async def test_consumer_group_delivers_each_entry_once_across_consumers(
    redis: aioredis.Redis,
) -> None:
    await _fill(redis, 50)
    seen: list[tuple[str, str]] = []

    def make(name: str) -> StreamConsumer:
        async def handle(entry: Entry) -> None:
            seen.append((name, entry.text("n")))

        return StreamConsumer(
            redis,
            stream="events:test",
            group="g",
            consumer=name,
            handler=handle,
            batch=7,
            block=0.05,
        )

    a, b = make("a"), make("b")
    await a.ensure_group()
    while await a.read_new() + await b.read_new():
        pass
    assert sorted(int(n) for _, n in seen) == list(range(50))
    assert {name for name, _ in seen} == {"a", "b"}
    assert (await redis.xpending("events:test", "g"))["pending"] == 0


async def test_entries_of_a_dead_consumer_are_claimed(redis: aioredis.Redis) -> None:
    await _fill(redis, 3)
    handled: list[str] = []

    async def crash(entry: Entry) -> None:
        raise asyncio.CancelledError  # the process dies mid-handler: no ack

    async def handle(entry: Entry) -> None:
        handled.append(entry.text("n"))

    dead = StreamConsumer(
        redis, stream="events:test", group="g", consumer="dead", handler=crash, block=0.05
    )
    await dead.ensure_group()
    with pytest.raises(asyncio.CancelledError):
        await dead.read_new()
    live = StreamConsumer(
        redis,
        stream="events:test",
        group="g",
        consumer="live",
        handler=handle,
        block=0.05,
        claim_idle=0.2,
    )
    assert await live.read_new() == 0  # nothing new: they are pending on the dead consumer
    await asyncio.sleep(0.3)
    assert await live.claim_stale() == 3
    assert sorted(handled) == ["0", "1", "2"]


async def test_a_poison_entry_goes_to_the_dead_letter_stream(redis: aioredis.Redis) -> None:
    await _fill(redis, 2)
    good: list[str] = []

    async def handle(entry: Entry) -> None:
        if entry.text("n") == "0":
            raise ValueError("cannot parse")
        good.append(entry.text("n"))

    consumer = StreamConsumer(
        redis,
        stream="events:test",
        group="g",
        consumer="c",
        handler=handle,
        block=0.05,
        claim_idle=0.01,
        max_deliveries=3,
    )
    from bot import metrics

    counted = metrics.STREAM_DEAD_LETTERS.labels("events:test")
    before = counted._value.get()
    await consumer.ensure_group()
    await consumer.read_new()
    for _ in range(3):
        await asyncio.sleep(0.02)
        await consumer.claim_stale()
    assert good == ["1"]
    assert counted._value.get() == before + 1  # the "dead letters" alert sees it
    dead = await redis.xrange(consumer.dead_letter)
    assert len(dead) == 1
    assert dead[0][1][b"n"] == b"0"
    assert b"cannot parse" in dead[0][1][b"error"]
    assert (await redis.xpending("events:test", "g"))["pending"] == 0


async def test_trim_keeps_unacknowledged_entries(redis: aioredis.Redis) -> None:
    await _fill(redis, 10)
    seen: list[str] = []

    async def handle(entry: Entry) -> None:
        seen.append(entry.id)

    consumer = StreamConsumer(
        redis, stream="events:test", group="g", consumer="c", handler=handle, batch=4, block=0.05
    )
    await consumer.ensure_group()
    await consumer.read_new()
    await consumer.trim()
    remaining = [e[0].decode() for e in await redis.xrange("events:test")]
    assert len(seen) == 4
    assert set(remaining) >= {e[0].decode() for e in (await redis.xrange("events:test"))[-6:]}
    assert len(remaining) >= 6


async def test_only_one_leader_and_a_takeover_when_it_dies(redis: aioredis.Redis) -> None:
    running: list[str] = []

    def work(name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            running.append(name)
            await asyncio.Event().wait()

        return run

    # TTLs of seconds: a loaded CI machine must not make "a" miss its own renewals.
    a = asyncio.create_task(lead(Lease(redis, name="job", owner="a", ttl=2.0), work("a")))
    await eventually(lambda: running == ["a"])
    b = asyncio.create_task(lead(Lease(redis, name="job", owner="b", ttl=2.0), work("b")))
    await asyncio.sleep(1.0)
    assert running == ["a"]
    # "a" dies without releasing (a crash): its lease runs out and "b" takes over.
    a.cancel()
    await asyncio.gather(a, return_exceptions=True)
    await redis.set("lease:job", "a", px=2000)
    await asyncio.sleep(1.0)
    assert running == ["a"]  # not before the dead leader's lease has run out
    await eventually(lambda: running == ["a", "b"], within=10)
    b.cancel()
    await asyncio.gather(b, return_exceptions=True)


async def test_a_leader_stops_its_work_when_the_lease_is_taken(redis: aioredis.Redis) -> None:
    stopped = asyncio.Event()

    async def run() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    task = asyncio.create_task(lead(Lease(redis, name="job", owner="a", ttl=0.3), run))
    await asyncio.sleep(0.05)
    await redis.set("lease:job", "intruder")
    await asyncio.wait_for(stopped.wait(), timeout=2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
