"""Pipeline records and ref histories in Redis, committed together with compare-and-set.

A pipeline record and its ref's history share a hash tag (the project), so the commit script
touches one Redis Cluster slot.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from bot.adapters.redis_keys import script
from bot.adapters.store.connection import Redis
from bot.domain.pipelines import Pipeline, RefHistory
from bot.services.pipelines import PipelineRecord, RefUpdate

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


class RedisPipelineStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._commit = script(redis, _COMMIT)
        self._announced = script(redis, _ANNOUNCED)

    async def load(self, *, project: str, pipeline_id: int) -> PipelineRecord | None:
        raw: Any = await self._redis.hgetall(_pipeline_key(project, pipeline_id))
        if not raw.get(b"data"):
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

    async def load_ref(self, *, project: str, scope: str) -> tuple[RefHistory | None, int]:
        raw: Any = await self._redis.hgetall(_ref_key(project, scope))
        if not raw.get(b"data"):
            return None, 0
        return _history.validate_json(raw[b"data"]), int(_text(raw, "v"))

    async def commit(self, record: PipelineRecord, *, expected: int, ref: RefUpdate | None) -> bool:
        p = record.state
        data = {
            "state": _pipeline.dump_python(p, mode="json"),
            "shown": record.shown,
            "failure_due": record.failure_due,
            "fixed_due": record.fixed_due,
        }
        done = await self._commit(
            keys=[
                _pipeline_key(p.project, p.id),
                _ref_key(p.project, ref.scope) if ref else _ref_key(p.project, "-"),
            ],
            args=[
                expected,
                record.version,
                ref.expected if ref else 0,
                _history.dump_json(ref.history).decode() if ref else "",
                json.dumps(data, separators=(",", ":")),
                REF_TTL_MS,
                PIPELINE_TTL_MS,
            ],
        )
        return bool(done)

    async def mark_announced(self, *, project: str, pipeline_id: int, version: int) -> None:
        await self._announced(keys=[_pipeline_key(project, pipeline_id)], args=[version])
