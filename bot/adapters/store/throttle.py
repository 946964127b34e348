"""A cross-replica "first in this window" check, for log lines that must not flood."""

from __future__ import annotations

from redis.exceptions import RedisError

from bot.adapters.store.connection import Redis
from bot.errors import StoreUnavailable


class RedisThrottle:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def first_in(self, key: str, *, seconds: float) -> bool:
        try:
            first = await self._redis.set(f"throttle:{key}", "1", nx=True, px=int(seconds * 1000))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"cannot reach the store: {exc}") from exc
        return bool(first)
