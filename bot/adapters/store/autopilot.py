"""The autopilot's state in Redis: markers that fire a slot or write a note once, and the
versions it gave up on.

- ``<key>`` (``autopilot:slot:…``, ``released:…``): a marker set with ``SET NX``, expiring after
  the caller's ``ttl``: of every replica and restart that claims it, one wins.
- ``autopilot:given-up:<app>:<env>``: hash version → why (the end of its release); one key per
  app and env, so it stays in one hash slot on Redis Cluster.
"""

from __future__ import annotations

from typing import Any, Final

from bot.adapters.store.connection import Redis

GIVEN_UP_TTL: Final = 400 * 86400
"""Seconds a given-up version stays remembered after the last one was added."""


def _given_up(app: str, env: str) -> str:
    return f"autopilot:given-up:{app}:{env}"


class RedisAutopilotStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def claim(self, key: str, *, ttl: float) -> bool:
        return bool(await self._redis.set(key, "1", nx=True, px=max(int(ttl * 1000), 1)))

    async def unclaim(self, key: str) -> None:
        await self._redis.delete(key)

    async def give_up(self, *, app: str, env: str, version: str, why: str) -> None:
        key = _given_up(app, env)
        async with self._redis.pipeline(transaction=False) as pipe:  # one key: in order
            pipe.hset(key, version, why)
            pipe.expire(key, GIVEN_UP_TTL)
            await pipe.execute()

    async def given_up(self, app: str, env: str) -> frozenset[str]:
        found: Any = await self._redis.hkeys(_given_up(app, env))
        return frozenset(v.decode() if isinstance(v, bytes) else str(v) for v in found)
