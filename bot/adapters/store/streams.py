"""Consuming a Redis stream with a consumer group: at-least-once, shared by replicas.

Each replica reads new entries under its own consumer name. An entry is acknowledged only after
its handler returned, so an entry whose consumer died stays pending and is claimed by a live
consumer once it has been idle for ``claim_idle``. A handler that keeps failing on one entry
(a poison message) gets ``max_deliveries`` tries; then the entry moves to a dead-letter stream,
is logged, and stops blocking the others. Handlers must therefore be idempotent.

With a ``batch_handler``, the entries of one read (up to ``batch``) are handed over together
and acknowledged together, in one call, once it returned: a crash in the middle leaves them all
pending, to be handled again (idempotently) by whoever claims them. When the batch handler
fails otherwise than for want of the store, the entries are handled again one at a time by
``handler``, so that a poison entry is found, retried and set aside on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError, ResponseError

from bot import logs, metrics
from bot.adapters.redis_keys import beside, script
from bot.adapters.store.connection import Redis
from bot.errors import StoreUnavailable
from bot.services.cancellation import reraise_if_cancelling

log = logs.get(__name__)


@dataclass(frozen=True)
class Entry:
    stream: str
    id: str
    fields: dict[str, bytes]

    def text(self, name: str, default: str = "") -> str:
        value = self.fields.get(name)
        return value.decode("utf-8", "replace") if value is not None else default


Handler = Callable[[Entry], Awaitable[None]]
BatchHandler = Callable[[list[Entry]], Awaitable[None]]

_ACK = """
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('HDEL', KEYS[2], unpack(ARGV, 2))
return 1
"""


def _decode(raw: dict[bytes, bytes]) -> dict[str, bytes]:
    return {k.decode(): v for k, v in raw.items()}


class StreamConsumer:
    def __init__(
        self,
        redis: Redis,
        *,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler,
        batch_handler: BatchHandler | None = None,
        batch: int = 100,
        block: float = 1.0,
        claim_idle: float = 30.0,
        max_deliveries: int = 5,
    ) -> None:
        self._redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._handler = handler
        self._batch_handler = batch_handler
        self._batch = batch
        self._block_ms = int(block * 1000)
        self._claim_idle_ms = int(claim_idle * 1000)
        self._max_deliveries = max_deliveries
        self._attempts_key = beside(stream, "attempts", group)
        self._ack_script = script(redis, _ACK)
        self.dead_letter = f"{stream}:dead"
        self.running = False

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        """Consume until cancelled; survive Redis outages by waiting and trying again."""
        backoff = 0.5
        last_claim = last_stats = 0.0
        self.running = True
        try:
            while True:
                reraise_if_cancelling()
                try:
                    await self.ensure_group()
                    now = time.monotonic()
                    if now - last_claim > self._claim_idle_ms / 2000:
                        await self.claim_stale()
                        last_claim = now
                    if now - last_stats > 5:
                        await self.update_stats()
                        last_stats = now
                    await self.read_new()
                    backoff = 0.5
                except (RedisError, OSError, StoreUnavailable) as exc:
                    reraise_if_cancelling()
                    log.warning("stream read failed; retrying", stream=self.stream, error=str(exc))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                except Exception:
                    # redis-py's cluster client can raise others while it re-maps slots (a
                    # connection closed under a command): the worker must outlive them.
                    reraise_if_cancelling()
                    log.exception("stream worker error; retrying", stream=self.stream)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
        finally:
            self.running = False

    async def read_new(self) -> int:
        reply: Any = await self._redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=self._batch, block=self._block_ms
        )
        entries = [
            Entry(self.stream, raw_id.decode(), _decode(raw))
            for _stream, found in reply or []
            for raw_id, raw in found
        ]
        await self._handle_all(entries)
        return len(entries)

    async def claim_stale(self) -> int:
        """Take over entries a dead (or stuck) consumer left pending."""
        claimed = 0
        cursor = "0-0"
        while True:
            reply: Any = await self._redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                self._claim_idle_ms,
                start_id=cursor,
                count=self._batch,
            )
            cursor_raw, found = reply[0], reply[1]
            entries = [
                Entry(self.stream, raw_id.decode(), _decode(raw))
                for raw_id, raw in found
                if raw is not None  # None: trimmed meanwhile
            ]
            await self._handle_all(entries)
            claimed += len(entries)
            cursor = cursor_raw.decode() if isinstance(cursor_raw, bytes) else str(cursor_raw)
            if cursor == "0-0":
                if claimed:
                    log.info("took over entries another consumer left", stream=self.stream,
                             entries=claimed)  # fmt: skip
                return claimed

    async def _handle_all(self, entries: list[Entry]) -> None:
        if not entries:
            return
        if self._batch_handler is not None and len(entries) > 1:
            try:
                await self._batch_handler(entries)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, StoreUnavailable):
                raise  # the store is down: leave the entries pending, the loop waits and retries
            except Exception as exc:
                log.warning(
                    "batch handler failed; handling its entries one at a time",
                    stream=self.stream,
                    entries=len(entries),
                    error=repr(exc),
                )
            else:
                await self._ack(*(entry.id for entry in entries))
                return
        for entry in entries:
            await self._handle(entry)

    async def _handle(self, entry: Entry) -> None:
        try:
            await self._handler(entry)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError, StoreUnavailable):
            raise  # the store is down: leave the entry pending, the loop waits and retries
        except Exception as exc:
            attempts = int(await self._redis.hincrby(self._attempts_key, entry.id, 1))
            if attempts < self._max_deliveries:
                log.warning(
                    "handler failed; the entry will be retried",
                    stream=self.stream,
                    entry_id=entry.id,
                    attempt=attempts,
                    error=repr(exc),
                )
                return
            log.error(
                "handler keeps failing; entry moved to the dead-letter stream",
                stream=self.stream,
                entry_id=entry.id,
                attempts=attempts,
                exc_info=exc,
            )
            dead: dict[Any, Any] = {**entry.fields, "error": repr(exc)[:500]}
            await self._redis.xadd(self.dead_letter, dead)
            metrics.STREAM_DEAD_LETTERS.labels(self.stream).inc()
        await self._ack(entry.id)

    async def _ack(self, *entry_ids: str) -> None:
        await self._ack_script(
            keys=[self.stream, self._attempts_key], args=[self.group, *entry_ids]
        )

    async def update_stats(self) -> None:
        with contextlib.suppress(ResponseError):
            for group in await self._redis.xinfo_groups(self.stream):
                if group["name"].decode() != self.group:
                    continue
                metrics.STREAM_PENDING.labels(self.stream).set(group.get("pending") or 0)
                metrics.STREAM_LAG.labels(self.stream).set(group.get("lag") or 0)
            await self.trim()

    async def trim(self) -> None:
        """Drop entries every group has acknowledged, so the stream does not grow forever."""
        floor: str | None = None
        for group in await self._redis.xinfo_groups(self.stream):
            if group.get("pending"):
                summary = await self._redis.xpending(self.stream, group["name"])
                candidate = summary["min"]
            else:
                candidate = group["last-delivered-id"]
            candidate = candidate.decode() if isinstance(candidate, bytes) else str(candidate)
            if floor is None or _id_key(candidate) < _id_key(floor):
                floor = candidate
        if floor and floor != "0-0":
            await self._redis.xtrim(self.stream, minid=floor, approximate=True)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
