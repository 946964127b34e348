"""Pipeline records and ref histories in Redis, committed together with compare-and-set.

The stream worker handles events by the batch: every method here takes many pipelines and makes
one round trip for them all.

A pipeline record and its ref's history share a hash tag (the project), so the commit script
touches one Redis Cluster slot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from bot.adapters.redis_keys import ScriptCall, run_scripts, script
from bot.adapters.store.connection import Redis
from bot.domain.pipelines import Pipeline, RefHistory
from bot.services.pipelines import Commit, PipelineKey, PipelineRecord

PIPELINE_TTL_MS = 30 * 24 * 3600 * 1000
REF_TTL_MS = 90 * 24 * 3600 * 1000

_pipeline = TypeAdapter(Pipeline)
_history = TypeAdapter(RefHistory)

_COMMIT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return 0
end
if ARGV[4] ~= '' then
  local ref_version = tonumber(redis.call('HGET', KEYS[2], 'v') or '0')
  if ref_version ~= tonumber(ARGV[3]) then
    return 0
  end
  redis.call('HSET', KEYS[2], 'v', ref_version + 1, 'data', ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'data', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 1
"""
_ANNOUNCED = """
if tonumber(redis.call('HGET', KEYS[1], 'announced') or '0') < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'announced', ARGV[1])
end
return 1
"""


def _pipeline_key(project: str, pipeline_id: int) -> str:
    return f"pipelines:{{{project.lower()}}}:{pipeline_id}"


def _ref_key(project: str, scope: str) -> str:
    return f"pipelines:{{{project.lower()}}}:ref:{scope.lower()}"


def _text(raw: dict[bytes, bytes], name: str) -> str:
    return raw.get(name.encode(), b"").decode()


def _record(raw: dict[bytes, bytes]) -> PipelineRecord | None:
    if not raw or not raw.get(b"data"):
        return None
    data: dict[str, Any] = json.loads(raw[b"data"])
    return PipelineRecord(
        state=_pipeline.validate_python(data["state"]),
        version=int(_text(raw, "v")),
        announced=int(_text(raw, "announced") or 0),
        shown=bool(data["shown"]),
        failure_due=bool(data["failure_due"]),
        fixed_due=int(data["fixed_due"]),
    )


class RedisPipelineStore:
    """Every method takes many items and makes one round trip (a pipeline, not a transaction:
    each item's keys stay on their one anchor, the project)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._commit = script(redis, _COMMIT)
        self._announced = script(redis, _ANNOUNCED)

    async def _hgetall(self, keys: Sequence[str]) -> list[dict[bytes, bytes]]:
        if not keys:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            found: list[dict[bytes, bytes]] = await pipe.execute()
        return found

    async def load(self, pipelines: Sequence[PipelineKey]) -> list[PipelineRecord | None]:
        raws = await self._hgetall([_pipeline_key(project, i) for project, i in pipelines])
        return [_record(raw) for raw in raws]

    async def load_refs(
        self, scopes: Sequence[tuple[str, str]]
    ) -> list[tuple[RefHistory | None, int]]:
        raws = await self._hgetall([_ref_key(project, scope) for project, scope in scopes])
        return [
            (_history.validate_json(raw[b"data"]), int(_text(raw, "v")))
            if raw.get(b"data")
            else (None, 0)
            for raw in raws
        ]

    async def commit(self, commits: Sequence[Commit]) -> list[bool]:
        calls: list[ScriptCall] = []
        for c in commits:
            p, ref = c.record.state, c.ref
            data = {
                "state": _pipeline.dump_python(p, mode="json"),
                "shown": c.record.shown,
                "failure_due": c.record.failure_due,
                "fixed_due": c.record.fixed_due,
            }
            keys = [
                _pipeline_key(p.project, p.id),
                _ref_key(p.project, ref.scope) if ref else _ref_key(p.project, "-"),
            ]
            args = [
                c.expected,
                c.record.version,
                ref.expected if ref else 0,
                _history.dump_json(ref.history).decode() if ref else "",
                json.dumps(data, separators=(",", ":")),
                REF_TTL_MS,
                PIPELINE_TTL_MS,
            ]
            calls.append((self._commit, keys, args))
        return [bool(done) for done in await run_scripts(self._redis, calls)]

    async def mark_announced(self, announced: Sequence[tuple[PipelineKey, int]]) -> None:
        await run_scripts(
            self._redis,
            [
                (self._announced, [_pipeline_key(project, i)], [version])
                for (project, i), version in announced
            ],
        )
