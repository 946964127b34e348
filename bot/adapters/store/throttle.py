"""A cross-replica "first in this window" check, for log lines that must not flood."""

from __future__ import annotations

from bot.adapters.store.connection import Redis


class RedisThrottle:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def first_in(self, key: str, *, seconds: float) -> bool:
        return bool(await self._redis.set(f"throttle:{key}", "1", nx=True, px=int(seconds * 1000)))
