"""Opening the store: the configured ``REDIS_URL``, or the embedded server in ``STATE_DIR``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from bot.adapters.store.embedded import EmbeddedRedis
from bot.errors import PitcrewError, StoreUnavailable
from bot.redis_url import RedisLocation, parse_redis_url

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


class StoreUnsupported(PitcrewError):
    """``REDIS_URL`` is well formed but names a topology this version cannot use yet."""


_NOT_YET = {
    "sentinel": "Redis Sentinel (redis+sentinel://)",
    "cluster": "Redis Cluster (redis+cluster://)",
}


def check_redis_url(redis_url: str) -> RedisLocation:
    """Raise ``StoreUnsupported`` (one line) unless the store can connect to ``redis_url``."""
    try:
        location = parse_redis_url(redis_url)
    except ValueError as exc:  # settings check it first; a direct caller gets the same line
        raise StoreUnsupported(f"setting REDIS_URL is invalid: {exc}") from None
    if location.topology in _NOT_YET:
        raise StoreUnsupported(
            f"setting REDIS_URL: {_NOT_YET[location.topology]} is not supported yet by this"
            " version of Pitcrew; use a redis://, rediss:// or unix:// URL (a proxy or service"
            " that follows failovers, for instance)"
        )
    return location


def open_store(*, redis_url: str | None, state_dir: Path) -> Store:
    if redis_url:
        location = check_redis_url(redis_url)
        return Store(redis=client_for(redis_url), url_for_display=location.display)
    embedded = EmbeddedRedis(state_dir)
    try:
        url = embedded.start()
    except StoreUnavailable:
        raise
    return Store(
        redis=client_for(url), url_for_display=f"embedded ({state_dir})", embedded=embedded
    )
