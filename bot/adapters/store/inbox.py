"""The durable inbox: de-duplication and append to a stream in one atomic step.

The de-dup mark and the stream entry are written by one Lua script, so there is no moment at
which an event is marked as seen but not stored (which would lose it when the process dies) or
stored without the mark (which would store a retry twice). The marks hash with the stream
(``dedup:{events:gitlab}:<id>``), so the script keeps to one Redis Cluster slot.

With ``REDIS_MIN_REPLICAS``, the event counts as stored (a 200) only once that many replicas
have it: the script and a ``WAIT`` go out on one connection (``Replication.run``). A retry of an
event stored but not confirmed refreshes its mark, so that its "duplicate" is confirmed too, on
the primary that has it (after a failover, the new primary may not: then it is stored again).
"""

from __future__ import annotations

from bot.adapters.redis_keys import beside, script
from bot.adapters.store.connection import Redis
from bot.adapters.store.replication import Replication
from bot.services.ports import InboundEvent

DEDUP_TTL_MS = 7 * 24 * 3600 * 1000  # GitLab retries for far less than a week

_APPEND = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return false
"""


def stream_name(source: str) -> str:
    return f"events:{source}"


def dedup_key(source: str, key: str) -> str:
    return beside(stream_name(source), "dedup", key)


class RedisInbox:
    def __init__(self, redis: Redis, *, replication: Replication | None = None) -> None:
        self._redis = redis
        self._append = script(redis, _APPEND)
        self._replication = replication or Replication(redis, replicas=0)

    async def append(self, event: InboundEvent) -> str | None:
        stream = stream_name(event.source)
        entry_id = await self._replication.run(
            self._append,
            keys=[dedup_key(event.source, event.dedup_key), stream],
            args=[
                DEDUP_TTL_MS,
                "kind",
                event.kind,
                "dedup_key",
                event.dedup_key,
                "request_id",
                event.request_id,
                "received_at",
                repr(event.received_at),
                "body",
                event.body,
            ],
        )
        if entry_id is None:
            return None
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
