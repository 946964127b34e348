"""Releases in Redis: one record per release, changed only by compare-and-set, and its indexes.

- ``release:<id>``: hash {v, data}; ``data`` is the ``Release`` as JSON.
- ``release:active:<app>:<env>``: the release in flight there; claimed with SET NX so two
  ``/deploy`` of the same app and env, on any replicas, cannot both open a merge request. It is
  freed when the release ends (healthy, failed, rejected, expired, refused) and has a TTL in
  case a crash leaves it behind.
- ``release:mr:<iid>``, ``release:branch:<name>``, ``release:sha:<merge sha>``: which release a
  webhook is about. ``release:follow:<app>:<env>``: the last merged release there, which the
  rollout of its version belongs to.
- ``releases:open``: ids not yet ended, for the sweep.
- ``release-request:<id>``: a release waiting for "Deploy anyway", for a few minutes.

Indexes are written after the record, idempotently, at every save: a crash between the two is
repaired by the next save of the same release.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from bot.adapters.store.connection import Redis
from bot.domain.releases import TERMINAL_STATES, Release
from bot.services.releases import PendingRequest

_release = TypeAdapter(Release)
_request = TypeAdapter(PendingRequest)
_OPEN = "releases:open"
INDEX_TTL = 60 * 86400
"""Seconds a webhook can still find its release: two months."""
CLAIM_TTL = 7 * 86400
"""Seconds an app and env stay claimed by a release that stopped moving (a crash mid-way)."""

_SAVE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', current + 1, 'data', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return current + 1
"""
_CREATE = """
local holder = redis.call('GET', KEYS[1])
if holder then
  return holder
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return ARGV[1]
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('HSET', KEYS[2], 'v', 1, 'data', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return false
"""
_KEEP_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _key(release_id: str) -> str:
    return f"release:{release_id}"


def _active(app: str, env: str) -> str:
    return f"release:active:{app}:{env}"


class RedisReleaseStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._save = redis.register_script(_SAVE)
        self._release_claim = redis.register_script(_RELEASE_CLAIM)
        self._create = redis.register_script(_CREATE)
        self._keep_claim = redis.register_script(_KEEP_CLAIM)

    async def create(self, release: Release, *, claim_ttl: float) -> str | None:
        claim = _active(release.app, release.env)
        for _ in range(3):
            # The claim and the record are written together: a claim without its record can
            # then only be a leftover (its release expired from the store), never a create
            # half-way through on another replica.
            holder: Any = await self._create(
                keys=[claim, _key(release.id)],
                args=[release.id, _release.dump_json(release).decode(), max(int(claim_ttl), 1),
                      INDEX_TTL],
            )  # fmt: skip
            if holder is None:
                await self._index(release)
                return None
            other_id = holder.decode()
            if other_id == release.id:
                raise RuntimeError(f"release {release.id} exists already")
            other, _ = await self.load(other_id)
            if other is not None and other.state not in TERMINAL_STATES:
                return other.id
            # a claim left behind by a release that ended: take it over
            await self._release_claim(keys=[claim], args=[other_id])
        raise RuntimeError(f"could not claim {claim}")

    async def load(self, release_id: str) -> tuple[Release | None, int]:
        raw: Any = await self._redis.hgetall(_key(release_id))
        data = raw.get(b"data")
        return (_release.validate_json(data) if data else None), int(raw.get(b"v") or 0)

    async def save(self, release: Release, *, expected: int) -> bool:
        done = await self._save(
            keys=[_key(release.id)],
            args=[expected, _release.dump_json(release).decode(), INDEX_TTL],
        )
        if not done:
            return False
        await self._index(release)
        return True

    async def _index(self, release: Release) -> None:
        pipe = self._redis.pipeline(transaction=False)
        if release.mr_iid is not None:
            pipe.set(f"release:mr:{release.mr_iid}", release.id, ex=INDEX_TTL)
        if release.branch is not None:
            pipe.set(f"release:branch:{release.branch}", release.id, ex=INDEX_TTL)
        if release.merge_sha is not None:
            pipe.set(f"release:sha:{release.merge_sha}", release.id, ex=INDEX_TTL)
        if release.state in ("merged", "deploying", "rolling_out"):
            pipe.set(f"release:follow:{release.app}:{release.env}", release.id, ex=INDEX_TTL)
        if release.state in TERMINAL_STATES:
            pipe.srem(_OPEN, release.id)
        else:
            pipe.sadd(_OPEN, release.id)
        await pipe.execute()
        claim = _active(release.app, release.env)
        if release.state in TERMINAL_STATES:
            await self._release_claim(keys=[claim], args=[release.id])
        else:  # a release held by a lock for days keeps its claim
            await self._keep_claim(keys=[claim], args=[release.id, CLAIM_TTL])

    async def _get(self, key: str) -> str | None:
        value: Any = await self._redis.get(key)
        return value.decode() if value is not None else None

    async def by_mr(self, iid: int) -> str | None:
        return await self._get(f"release:mr:{iid}")

    async def by_branch(self, branch: str) -> str | None:
        return await self._get(f"release:branch:{branch}")

    async def by_merge_sha(self, sha: str) -> str | None:
        return await self._get(f"release:sha:{sha}")

    async def following(self, app: str, env: str) -> str | None:
        return await self._get(f"release:follow:{app}:{env}")

    async def open_ids(self) -> list[str]:
        members: Any = await self._redis.smembers(_OPEN)
        return sorted(m.decode() for m in members)

    async def put_request(self, request: PendingRequest, *, ttl: float) -> None:
        await self._redis.set(
            f"release-request:{request.id}",
            _request.dump_json(request),
            ex=max(int(ttl), 1),
        )

    async def get_request(self, request_id: str) -> PendingRequest | None:
        raw: Any = await self._redis.get(f"release-request:{request_id}")
        return _request.validate_json(raw) if raw else None

    async def take_request(self, request_id: str) -> PendingRequest | None:
        raw: Any = await self._redis.getdel(f"release-request:{request_id}")
        return _request.validate_json(raw) if raw else None
