"""Leases: one holder at a time across replicas, for work that must run exactly once.

A lease is a Redis key holding its owner's id with a time to live. The holder renews it every
third of its life; a replica that dies stops renewing and another takes over within one lease
period. When renewal fails (lost to another owner, or Redis unreachable for longer than the
lease), the holder cancels its work at once, so two holders never work at the same time for
longer than the renewal gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from redis.exceptions import RedisError

from bot import logs, metrics
from bot.adapters.redis_keys import script
from bot.adapters.store.connection import Redis
from bot.services.cancellation import reraise_if_cancelling

log = logs.get(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(self, redis: Redis, *, name: str, owner: str, ttl: float = 10.0) -> None:
        self._redis = redis
        self.name = name
        self.key = f"lease:{name}"
        self.owner = owner
        self.ttl = ttl
        self._renew = script(redis, _RENEW)
        self._release = script(redis, _RELEASE)

    async def acquire(self) -> bool:
        ttl_ms = int(self.ttl * 1000)
        if await self._redis.set(self.key, self.owner, nx=True, px=ttl_ms):
            return True
        return await self.renew()

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self.key], args=[self.owner, int(self.ttl * 1000)]))

    async def release(self) -> None:
        await self._release(keys=[self.key], args=[self.owner])

    async def holder(self) -> str | None:
        value: Any = await self._redis.get(self.key)
        return value.decode() if value is not None else None


async def lead(lease: Lease, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` whenever this replica holds ``lease``; stop it as soon as it is lost.

    Runs until cancelled. ``work`` should run until cancelled too; if it returns, it is started
    again while the lease is held.
    """
    gauge = metrics.LEADER.labels(lease.name)
    interval = lease.ttl / 3
    while True:
        reraise_if_cancelling()
        try:
            acquired = await lease.acquire()
        except Exception as exc:  # RedisError, OSError, or worse from redis-py (streams.py)
            reraise_if_cancelling()
            log.warning("lease unreachable", lease=lease.name, error=repr(exc))
            acquired = False
        if not acquired:
            await asyncio.sleep(interval)
            continue
        log.info("lease acquired", lease=lease.name, owner=lease.owner)
        gauge.set(1)
        task = asyncio.create_task(work(), name=f"lease:{lease.name}")
        try:
            while not task.done():
                reraise_if_cancelling()
                done, _ = await asyncio.wait({task}, timeout=interval)
                if done:
                    break
                try:
                    still_ours = await lease.renew()
                except Exception:  # as above
                    reraise_if_cancelling()
                    still_ours = False
                if not still_ours:
                    log.warning("lease lost; stopping its work", lease=lease.name)
                    break
        finally:
            gauge.set(0)
            task.cancel()
            # asyncio.wait, not ``await task``: a cancellation of ``lead`` itself must propagate.
            await asyncio.wait({task})
            with contextlib.suppress(RedisError, OSError):
                await lease.release()
            reraise_if_cancelling()
        if not task.cancelled() and task.exception() is not None:
            log.error("leased work failed", lease=lease.name, exc_info=task.exception())
            await asyncio.sleep(1)
