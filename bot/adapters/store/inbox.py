"""The durable inbox: de-duplication and append to a stream in one atomic step.

The de-dup mark and the stream entry are written by one Lua script, so there is no moment at
which an event is marked as seen but not stored (which would lose it when the process dies) or
stored without the mark (which would store a retry twice). The marks hash with the stream
(``dedup:{events:gitlab}:<id>``), so the script keeps to one Redis Cluster slot.

With ``REDIS_MIN_REPLICAS``, the event counts as stored (a 200) only once that many replicas
have it: the script and a ``WAIT`` go out on one connection (``Replication.run_many``). A retry
of an event stored but not confirmed refreshes its mark, so that its "duplicate" is confirmed
too, on the primary that has it (after a failover, the new primary may not: then it is stored
again).

**Group commit.** Webhooks arrive by the dozen at once (GitLab delivers concurrently). The
appends that requests make while a batch is on its way to Redis wait for the next one, which
takes them all in one round trip (one pipeline of scripts, in arrival order, and one ``WAIT``):
the Redis client's cost per command and the system calls are paid once per batch, and a burst
costs less CPU per event. A request alone goes out at once. Every request still gets its own
answer, and only after Redis (and the replicas) have its event.
"""

from __future__ import annotations

import asyncio
import contextvars

from bot.adapters.redis_keys import ScriptCall, beside, script
from bot.adapters.store.connection import Redis
from bot.adapters.store.replication import Replication
from bot.errors import StoreUnavailable
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


MAX_BATCH = 256
"""Appends in one round trip at most."""


class RedisInbox:
    def __init__(self, redis: Redis, *, replication: Replication | None = None) -> None:
        self._redis = redis
        self._append = script(redis, _APPEND)
        self._replication = replication or Replication(redis, replicas=0)
        self._waiting: dict[str, list[tuple[InboundEvent, asyncio.Future[str | None]]]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}

    async def append(self, event: InboundEvent) -> str | None:
        """Store the event unless its dedup key was seen; its entry id, or None (a duplicate).
        ``StoreUnavailable`` when the store failed or could not confirm the write."""
        stream = stream_name(event.source)
        done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(stream, []).append((event, done))
        if stream not in self._senders:
            # its own context: its log lines carry no request's id
            sender = asyncio.create_task(self._send(stream), context=contextvars.Context())
            self._senders[stream] = sender
        return await done

    async def _send(self, stream: str) -> None:
        """Send the waiting appends of ``stream``, batch after batch, until none are left."""
        batch: list[tuple[InboundEvent, asyncio.Future[str | None]]] = []
        try:
            while waiting := self._waiting.pop(stream, None):
                batch, rest = waiting[:MAX_BATCH], waiting[MAX_BATCH:]
                if rest:
                    self._waiting[stream] = rest
                await self._send_batch(batch)
        finally:
            # No await from the last look at the queue to here: an append made meanwhile
            # would have found this sender still listed and waited for it.
            del self._senders[stream]
            left = batch + self._waiting.pop(stream, [])
            for _, done in left:  # only when cancelled (the bot stops): nothing was confirmed
                if not done.done():
                    done.set_exception(StoreUnavailable("the bot is stopping"))

    async def _send_batch(
        self, batch: list[tuple[InboundEvent, asyncio.Future[str | None]]]
    ) -> None:
        calls: list[ScriptCall] = [
            (
                self._append,
                [dedup_key(event.source, event.dedup_key), stream_name(event.source)],
                [
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
            for event, _ in batch
        ]
        try:
            results = await self._replication.run_many(calls)
        except Exception as exc:  # StoreUnavailable, or a bug: every waiter hears of it
            failure = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(repr(exc))
            for _, done in batch:
                if not done.done():
                    done.set_exception(failure)
            return
        for (_, done), result in zip(batch, results, strict=True):
            if done.done():  # the request went away meanwhile
                continue
            if isinstance(result, Exception):
                done.set_exception(StoreUnavailable(f"the store failed: {result}"))
            elif result is None:
                done.set_result(None)
            else:
                done.set_result(result.decode() if isinstance(result, bytes) else str(result))
