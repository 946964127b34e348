"""Opening the store: the configured ``REDIS_URL``, or the embedded server in ``STATE_DIR``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from bot.adapters.store.embedded import EmbeddedRedis
from bot.errors import StoreUnavailable

Redis = aioredis.Redis


@dataclass
class Store:
    redis: Redis
    url_for_display: str
    embedded: EmbeddedRedis | None = None

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.redis.aclose()
        if self.embedded is not None:
            self.embedded.stop()


def client_for(url: str) -> Redis:
    # Short timeouts and few retries: a webhook must get its 503 quickly when Redis is down,
    # so that GitLab retries later, instead of hanging.
    return aioredis.from_url(
        url,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=2),
        health_check_interval=15,
    )


def open_store(*, redis_url: str | None, state_dir: Path) -> Store:
    if redis_url:
        host = redis_url.split("@")[-1]
        return Store(redis=client_for(redis_url), url_for_display=host)
    embedded = EmbeddedRedis(state_dir)
    try:
        url = embedded.start()
    except StoreUnavailable:
        raise
    return Store(
        redis=client_for(url), url_for_display=f"embedded ({state_dir})", embedded=embedded
    )
