"""The durable inbox: de-duplication and append to a stream in one atomic step.

The de-dup mark and the stream entry are written by one Lua script, so there is no moment at
which an event is marked as seen but not stored (which would lose it when the process dies) or
stored without the mark (which would store a retry twice).
"""

from __future__ import annotations

from redis.exceptions import RedisError

from bot.adapters.store.connection import Redis
from bot.errors import StoreUnavailable
from bot.services.ports import InboundEvent

DEDUP_TTL_MS = 7 * 24 * 3600 * 1000  # GitLab retries for far less than a week

_APPEND = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
end
return false
"""


def stream_name(source: str) -> str:
    return f"events:{source}"


class RedisInbox:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._append = redis.register_script(_APPEND)

    async def append(self, event: InboundEvent) -> str | None:
        try:
            entry_id = await self._append(
                keys=[f"dedup:{event.source}:{event.dedup_key}", stream_name(event.source)],
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
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"cannot record the event: {exc}") from exc
        if entry_id is None:
            return None
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
