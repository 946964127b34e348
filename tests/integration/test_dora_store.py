"""Deployment records in a real Redis: written once whatever the callers, read back across
months, kept 400 days, and a changed month read again while the unchanged ones are not."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import redis.asyncio as aioredis

from bot.adapters.store.dora import RedisDeploymentStore, month_key
from bot.domain.dora import DAY, Deployment

END = datetime(2026, 3, 26, 10, 0, tzinfo=UTC).timestamp()


def record(ident: str, *, deployed: float | None, failed: float | None = None) -> Deployment:
    return Deployment(
        ident,
        "orders",
        "production",
        "deploy",
        "2",
        "1",
        END - 40 * DAY,
        deployed,
        failed,
        (END - 41 * DAY,),
    )


async def test_a_record_is_written_once_by_many_callers_at_once(redis: aioredis.Redis) -> None:
    stores = [RedisDeploymentStore(redis) for _ in range(5)]
    d = record("r1", deployed=END - DAY)
    written = await asyncio.gather(*(s.record(d) for s in stores for _ in range(4)))
    assert sum(written) == 1
    assert await stores[0].history("orders", "production", since=END - 7 * DAY, until=END) == [
        d._replace(requested=round(d.requested), deployed=round(END - DAY))
    ]


async def test_a_failure_and_its_recovery_months_apart_read_as_one_record(
    redis: aioredis.Redis,
) -> None:
    store = RedisDeploymentStore(redis)
    assert await store.record(record("r2", deployed=None, failed=END - 40 * DAY))
    assert await store.record(record("r2", deployed=END - 2 * DAY))
    [found] = await store.history("orders", "production", since=END - 90 * DAY, until=END)
    assert (found.failed, found.deployed) == (END - 40 * DAY, END - 2 * DAY)
    key = month_key("orders", "production", "202603")
    kept_until = datetime(2026, 4, 1, tzinfo=UTC).timestamp() + 400 * DAY  # the month's end
    assert await redis.expiretime(key) == kept_until
    assert await redis.expiretime(f"{key}:seen") == kept_until


async def test_a_month_written_after_it_was_read_is_read_again(redis: aioredis.Redis) -> None:
    reader, writer = RedisDeploymentStore(redis), RedisDeploymentStore(redis)
    await writer.record(record("a", deployed=END - 35 * DAY))
    first = await reader.histories(
        [("orders", "production"), ("invoices", "production")], since=END - 60 * DAY, until=END
    )
    assert [d.id for d in first[("orders", "production")]] == ["a"]
    assert ("invoices", "production") not in first
    await writer.record(record("b", deployed=END - DAY))
    again = await reader.history("orders", "production", since=END - 60 * DAY, until=END)
    assert [d.id for d in again] == ["a", "b"]
