"""Break-glass grants in Redis: one record per grant, changed only by compare-and-set.

- ``access:<id>``: hash {v, data}; ``data`` is the ``Grant`` as JSON (the releases' CAS script).
- ``access:current:<app>:<env>:<requester>``: the requester's grant of that app and env while
  its file is (or may be) in git. Taken (``SET NX``) right after the new record is written, only
  if no grant holds the place, so two ``/access`` racing on any replicas open one merge request;
  let go when the grant is revoked or ends unmerged.
- ``access:mr:<iid>`` (the grant MR and the revoke MR), ``access:branch:<name>``: which grant a
  webhook is about.
- ``access:open``: grants the sweep still has work on.

Indexes are written after the record, idempotently, at every save: a crash between the two is
repaired by the next save of the same grant.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from bot.adapters.redis_keys import script
from bot.adapters.store.connection import Redis
from bot.adapters.store.releases import INDEX_TTL, SAVE_IF_VERSION
from bot.domain.access import Grant

_grant = TypeAdapter(Grant)
_OPEN = "access:open"
_ENDED = frozenset({"revoked", "rejected", "expired", "failed", "refused"})

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'v', 1, 'data', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
_LET_GO = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _key(grant_id: str) -> str:
    return f"access:{grant_id}"


def _place(app: str, env: str, requester: str) -> str:
    return f"access:current:{app}:{env}:{requester}"


class RedisGrantStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._save = script(redis, SAVE_IF_VERSION)
        self._create = script(redis, _CREATE)
        self._let_go = script(redis, _LET_GO)

    async def create(self, grant: Grant) -> str | None:
        """Store a new grant unless another holds its place: that one's id, else None.

        The record is written first and the place taken after (two commands, since the two
        keys live in different hash slots): a crash in between leaves a record nothing points
        to, which expires; losing the race for the place deletes the record just written.
        """
        created = await self._create(
            keys=[_key(grant.id)], args=[_grant.dump_json(grant).decode(), INDEX_TTL]
        )
        if not created:
            raise RuntimeError(f"grant {grant.id} exists already")
        place = _place(grant.app, grant.env, grant.requester)
        while not await self._redis.set(place, grant.id, nx=True, ex=INDEX_TTL):
            holder = await self._get(place)
            if holder is not None:
                await self._redis.delete(_key(grant.id))
                return holder
        await self._index(grant)
        return None

    async def current(self, *, app: str, env: str, requester: str) -> str | None:
        return await self._get(_place(app, env, requester))

    async def let_go(self, *, app: str, env: str, requester: str, grant_id: str) -> None:
        await self._let_go(keys=[_place(app, env, requester)], args=[grant_id])

    async def load(self, grant_id: str) -> tuple[Grant | None, int]:
        raw: Any = await self._redis.hgetall(_key(grant_id))
        data = raw.get(b"data")
        return (_grant.validate_json(data) if data else None), int(raw.get(b"v") or 0)

    async def save(self, grant: Grant, *, expected: int) -> bool:
        done = await self._save(
            keys=[_key(grant.id)],
            args=[expected, _grant.dump_json(grant).decode(), INDEX_TTL],
        )
        if not done:
            return False
        await self._index(grant)
        return True

    async def _index(self, grant: Grant) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for iid in (grant.mr_iid, grant.revoke_iid):
            if iid is not None:
                pipe.set(f"access:mr:{iid}", grant.id, ex=INDEX_TTL)
        for branch in (grant.branch, grant.revoke_branch):
            if branch is not None:
                pipe.set(f"access:branch:{branch}", grant.id, ex=INDEX_TTL)
        if grant.settled:
            pipe.srem(_OPEN, grant.id)
        else:
            pipe.sadd(_OPEN, grant.id)
        await pipe.execute()
        if grant.state in _ENDED:
            await self.let_go(
                app=grant.app, env=grant.env, requester=grant.requester, grant_id=grant.id
            )

    async def _get(self, key: str) -> str | None:
        value: Any = await self._redis.get(key)
        return value.decode() if value is not None else None

    async def by_mr(self, iid: int) -> str | None:
        return await self._get(f"access:mr:{iid}")

    async def by_branch(self, branch: str) -> str | None:
        return await self._get(f"access:branch:{branch}")

    async def open_ids(self) -> list[str]:
        members: Any = await self._redis.smembers(_OPEN)
        return sorted(m.decode() for m in members)
