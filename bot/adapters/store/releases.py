"""Releases in Redis: one record per release, changed only by compare-and-set, and its indexes.

- ``release:<id>``: hash {v, data}; ``data`` is the ``Release`` as JSON.
- ``release:latest:<app>:<env>``: the newest release of that app and env. A new release takes
  this pointer by compare-and-set, only if it still names the release precedence was judged
  against: two ``/deploy`` racing on any replicas cannot both open a merge request, and a
  rollback supersedes exactly the release it saw. A release that never opened (refused) gives
  the pointer back to the one it would have replaced. The record and the pointer live in
  different Redis Cluster slots (a record is found by its id alone), so they are written by two
  scripts: the record first, which nothing can reach until the pointer names it, then the
  pointer; a record whose claim fails is deleted, and one left by a crash in between expires.
- ``release:mr:<iid>``, ``release:branch:<name>``, ``release:sha:<merge sha>``: which release a
  webhook is about; ``release:rollout:<rollout id>``: which release tells a rollout's story.
- ``releases:by:<user>``: the latest releases a person asked for (their App Home).
- ``rollback-offer:<id>``: what a Roll back button on a rollout's failure rolls back, for a
  month; ``rollback-offer:key:<key>`` keeps one id per failure.
- ``releases:open``: ids not yet at an end, for the sweep.
- ``releases:ended``: ids at an end, scored by when they got there, the last week's: what the
  deployment records' reconcile looks through (a sorted set, trimmed at each end).
- ``release-request:<id>``: a release waiting for "Deploy anyway", for a few minutes.

Indexes are written after the record, idempotently, at every save: a crash between the two is
repaired by the next save of the same release.

Upgrading from the claims of earlier versions (``release:active:…`` for a release in flight,
``release:follow:…`` for the last merged one): while no ``release:latest:…`` exists for an app
and env, those are read in its place, so a release in flight during an upgrade is still seen.
Nothing writes them any more, so they are read before the claim and handed to its script.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from bot.adapters.redis_keys import script
from bot.adapters.store.connection import Redis
from bot.domain.release_flow import END_STATES
from bot.domain.releases import Release, RollbackOffer
from bot.services.releases import PendingRequest

_release = TypeAdapter(Release)
_request = TypeAdapter(PendingRequest)
_offer = TypeAdapter(RollbackOffer)
REQUESTER_KEEPS = 50
"""Releases kept per requester for their App Home: the open ones are among the latest."""
_OPEN = "releases:open"
_ENDED = "releases:ended"
ENDED_KEEP = 7 * 86400
"""Seconds a release stays in ``releases:ended``: a week, more than any reconcile looks back."""
INDEX_TTL = 60 * 86400
"""Seconds a webhook can still find its release: two months."""

_SAVE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', current + 1, 'data', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return current + 1
"""
SAVE_IF_VERSION = _SAVE
"""Compare-and-set of a ``{v, data}`` hash: the releases' and the grants' records alike."""
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'v', 1, 'data', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
_CLAIM = """
local latest = redis.call('GET', KEYS[1]) or ARGV[4]
if latest ~= ARGV[2] then
  return {0, latest}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return {1, ARGV[1]}
"""
_RESTORE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '' then
    return redis.call('DEL', KEYS[1])
  end
  return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return 0
"""


def _key(release_id: str) -> str:
    return f"release:{release_id}"


def _latest(app: str, env: str) -> str:
    return f"release:latest:{app}:{env}"


def _legacy(app: str, env: str) -> list[str]:
    return [f"release:active:{app}:{env}", f"release:follow:{app}:{env}"]


class RedisReleaseStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._save = script(redis, _SAVE)
        self._create = script(redis, _CREATE)
        self._claim = script(redis, _CLAIM)
        self._restore = script(redis, _RESTORE)

    async def create(self, release: Release, *, replacing: str | None) -> str | None:
        record = _key(release.id)
        data = _release.dump_json(release).decode()
        if not await self._create(keys=[record], args=[data, INDEX_TTL]):
            raise RuntimeError(f"release {release.id} exists already")
        legacy = await self._legacy_latest(release.app, release.env)
        done, latest = await self._claim(
            keys=[_latest(release.app, release.env)],
            args=[release.id, replacing or "", INDEX_TTL, legacy or ""],
        )
        if not int(done):
            await self._redis.delete(record)  # nothing named it: it never was
            return latest.decode() if isinstance(latest, bytes) else str(latest)
        await self._index(release)
        return None

    async def latest(self, app: str, env: str) -> str | None:
        return await self._get(_latest(app, env)) or await self._legacy_latest(app, env)

    async def _legacy_latest(self, app: str, env: str) -> str | None:
        for key in _legacy(app, env):
            found = await self._get(key)
            if found is not None:
                return found
        return None

    async def restore_latest(self, release: Release) -> None:
        previous = release.supersedes.id if release.supersedes is not None else ""
        await self._restore(
            keys=[_latest(release.app, release.env)], args=[release.id, previous, INDEX_TTL]
        )

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
        if release.rollout_id is not None:
            pipe.set(f"release:rollout:{release.rollout_id}", release.id, ex=INDEX_TTL)
        mine = f"releases:by:{release.requester}"
        pipe.zadd(mine, {release.id: release.created_at.timestamp()})
        pipe.zremrangebyrank(mine, 0, -REQUESTER_KEEPS - 1)
        pipe.expire(mine, INDEX_TTL)
        if release.state in END_STATES:
            pipe.srem(_OPEN, release.id)
            ended = (release.finished_at or release.created_at).timestamp()
            pipe.zadd(_ENDED, {release.id: ended})
            pipe.zremrangebyscore(_ENDED, "-inf", ended - ENDED_KEEP)
        else:
            pipe.sadd(_OPEN, release.id)
        await pipe.execute()

    async def _get(self, key: str) -> str | None:
        value: Any = await self._redis.get(key)
        return value.decode() if value is not None else None

    async def by_mr(self, iid: int) -> str | None:
        return await self._get(f"release:mr:{iid}")

    async def by_branch(self, branch: str) -> str | None:
        return await self._get(f"release:branch:{branch}")

    async def by_merge_sha(self, sha: str) -> str | None:
        return await self._get(f"release:sha:{sha}")

    async def by_rollout(self, rollout_id: str) -> str | None:
        return await self._get(f"release:rollout:{rollout_id}")

    async def of_requester(self, user: str) -> list[str]:
        members: Any = await self._redis.zrevrange(f"releases:by:{user}", 0, REQUESTER_KEEPS - 1)
        return [m.decode() for m in members]

    async def open_ids(self) -> list[str]:
        members: Any = await self._redis.smembers(_OPEN)
        return sorted(m.decode() for m in members)

    async def ended_ids(self, *, since: float) -> list[str]:
        members: Any = await self._redis.zrangebyscore(_ENDED, since, "+inf")
        return [m.decode() for m in members]

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

    async def offer(self, offer: RollbackOffer, *, key: str, ttl: float) -> RollbackOffer:
        seconds = max(int(ttl), 1)
        named = f"rollback-offer:key:{key}"
        if not await self._redis.set(named, offer.id, nx=True, ex=seconds):
            kept = await self._get(named)
            existing = await self.get_offer(kept) if kept is not None else None
            if existing is not None:
                return existing
            await self._redis.set(named, offer.id, ex=seconds)
        await self._redis.set(f"rollback-offer:{offer.id}", _offer.dump_json(offer), ex=seconds)
        return offer

    async def get_offer(self, offer_id: str) -> RollbackOffer | None:
        raw: Any = await self._redis.get(f"rollback-offer:{offer_id}")
        return _offer.validate_json(raw) if raw else None
