"""Environment locks in Redis: one record per env, changed only by compare-and-set.

``locks:envs`` lists the environments that ever held a lock (a handful). It is written outside
the record's script (a global index: see ``bot.adapters.redis_keys``), before the lock is put,
and never shrinks: an env whose lock is gone is skipped by readers. Removing it after a delete
could race with a new lock of the same env and hide that lock.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from bot.adapters.redis_keys import script
from bot.adapters.store.connection import Redis
from bot.domain.locks import Lock

_lock = TypeAdapter(Lock)
_INDEX = "locks:envs"

_PUT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', current + 1, 'data', ARGV[2])
return current + 1
"""
_DELETE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', current + 1)
redis.call('HDEL', KEYS[1], 'data')
return current + 1
"""


def _key(env: str) -> str:
    return f"locks:{env}"


class RedisLockStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._put = script(redis, _PUT)
        self._delete = script(redis, _DELETE)

    async def get(self, env: str) -> tuple[Lock | None, int]:
        raw: Any = await self._redis.hgetall(_key(env))
        version = int(raw.get(b"v") or 0)
        data = raw.get(b"data")
        return (_lock.validate_json(data) if data else None), version

    async def put(self, lock: Lock, *, expected: int) -> bool:
        await self._redis.sadd(_INDEX, lock.env)
        done = await self._put(
            keys=[_key(lock.env)], args=[expected, _lock.dump_json(lock).decode()]
        )
        return bool(done)

    async def delete(self, env: str, *, expected: int) -> bool:
        return bool(await self._delete(keys=[_key(env)], args=[expected]))

    async def all(self) -> list[tuple[Lock, int]]:
        found = []
        members: Any = await self._redis.smembers(_INDEX)
        for env in sorted(e.decode() for e in members):
            lock, version = await self.get(env)
            if lock is not None:
                found.append((lock, version))
        return found
