"""Rollout state per workload in Redis, changed by compare-and-set, so that a restart replays
nothing already reported and two leaders for a moment never announce twice.

``rollouts:active`` (rollouts in progress or failed, which the ticker reads) is a global index,
so it is written outside the record's script (``bot.adapters.redis_keys``): a workload is added
before a save that makes it active and removed after one that ends its rollout. A crash in
between leaves at worst a finished workload in the set; the ticker skips it.

``rollouts:known:<kind>:<context>`` indexes the workloads with a stored state, per kind and
context: what a complete list of that kind is compared with, to find the workloads deleted
while nobody watched (``bot.domain.relisting``). It is a global index too (rule 3): a workload
is added before its state is saved and removed after its state is forgotten; an entry whose
state is gone (expired) is skipped by the reader and dropped.

``rollouts:own:<rollout id>`` marks a rollout that was given a message of its own (no release
explained it when it was first told): it keeps that message to its end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from bot.adapters.redis_keys import is_missing_script, script
from bot.adapters.store.connection import Redis
from bot.domain.rollouts import Workload
from bot.services.rollouts import Save

TTL_MS = 90 * 24 * 3600 * 1000
_ACTIVE = "rollouts:active"
_workload = TypeAdapter(Workload)

_SAVE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', current + 1, 'data', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


def _key(workload_key: str) -> str:
    return f"rollouts:{workload_key}"


def _known(*, context: str, kind: str) -> str:
    return f"rollouts:known:{kind}:{context}"


class RedisRolloutStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._save = script(redis, _SAVE)

    async def load(self, key: str) -> tuple[Workload | None, int]:
        raw: Any = await self._redis.hgetall(_key(key))
        data = raw.get(b"data")
        return (_workload.validate_json(data) if data else None), int(raw.get(b"v") or 0)

    async def save(self, workload: Workload, *, expected: int, active: bool) -> bool:
        await self._redis.sadd(_known(context=workload.context, kind=workload.kind), workload.key)
        if active:
            await self._redis.sadd(_ACTIVE, workload.key)
        done = await self._save(
            keys=[_key(workload.key)],
            args=[expected, _workload.dump_json(workload).decode(), TTL_MS],
        )
        if done and not active:
            await self._redis.srem(_ACTIVE, workload.key)
        return bool(done)

    async def load_many(self, keys: Sequence[str]) -> list[tuple[Workload | None, int]]:
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(_key(key))
            found: list[Any] = await pipe.execute()
        return [
            (
                (_workload.validate_json(raw[b"data"]) if raw.get(b"data") else None),
                int(raw.get(b"v") or 0),
            )
            for raw in found
        ]

    async def save_many(self, saves: Sequence[Save]) -> list[bool]:
        """Each its own compare-and-set (one script per record, so one slot each), sent in one
        batch; the index is kept in the same order as ``save`` keeps it."""
        if not saves:
            return []
        indexes: dict[str, list[str]] = {}
        for s in saves:
            indexes.setdefault(_known(context=s.workload.context, kind=s.workload.kind), []).append(
                s.workload.key
            )
        active = [s.workload.key for s in saves if s.active]
        async with self._redis.pipeline(transaction=False) as pipe:
            for index, members in indexes.items():
                pipe.sadd(index, *members)
            if active:
                pipe.sadd(_ACTIVE, *active)
            await pipe.execute()
        done: list[bool | None] = [None] * len(saves)
        for attempt in range(2):
            todo = [i for i, d in enumerate(done) if d is None]
            async with self._redis.pipeline(transaction=False) as pipe:
                for i in todo:
                    save = saves[i]
                    self._save.queue(
                        pipe,
                        keys=[_key(save.workload.key)],
                        args=[save.expected, _workload.dump_json(save.workload).decode(), TTL_MS],
                    )
                results: list[Any] = await pipe.execute(raise_on_error=False)
            missing = False
            for i, result in zip(todo, results, strict=True):
                if isinstance(result, Exception):
                    if attempt == 0 and is_missing_script(result):
                        missing = True
                        continue
                    raise result
                done[i] = bool(result)
            if not missing:
                break
            await self._save.load(self._redis)  # after a restart or failover: once, then again
        ended = [s.workload.key for s, d in zip(saves, done, strict=True) if d and not s.active]
        if ended:
            await self._redis.srem(_ACTIVE, *ended)
        return [bool(d) for d in done]

    async def forget(self, key: str, *, context: str, kind: str) -> None:
        await self._redis.delete(_key(key))
        await self._redis.srem(_ACTIVE, key)
        await self._redis.srem(_known(context=context, kind=kind), key)

    async def known(self, *, context: str, kind: str) -> list[str]:
        members: Any = await self._redis.smembers(_known(context=context, kind=kind))
        return sorted(m.decode() for m in members)

    async def unindex(self, keys: Sequence[str], *, context: str, kind: str) -> None:
        if keys:
            await self._redis.srem(_known(context=context, kind=kind), *keys)

    async def active(self) -> list[str]:
        members: Any = await self._redis.smembers(_ACTIVE)
        return sorted(m.decode() for m in members)

    async def keep_own_message(self, rollout_id: str) -> None:
        await self._redis.set(f"rollouts:own:{rollout_id}", b"1", px=TTL_MS)

    async def has_own_message(self, rollout_id: str) -> bool:
        return bool(await self._redis.exists(f"rollouts:own:{rollout_id}"))
