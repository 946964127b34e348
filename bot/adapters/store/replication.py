"""``REDIS_MIN_REPLICAS``: an acknowledgement waits until the write reached that many replicas.

Redis replicates asynchronously: a primary that dies right after a write may take the write with
it, and the replica the sentinels promote never saw it. ``WAIT n timeout`` blocks until ``n``
replicas have acknowledged every write the *same connection* made before it, on *that* server.
Two ways to use it:

- ``run(script, …)``: the script and a ``WAIT`` go out together on one connection, so the wait
  is about that very write, on the server that took it. The webhook intake and the outbox's
  record of a post about to be made use it. The script must write every time (a duplicate
  refreshes its mark), so that the ``WAIT`` has something to wait for.
- ``confirm()``: a mark is written and waited for on one connection: replication is in order,
  so once the replicas have the mark they have everything the process wrote to that primary
  before it. When the primary changed in the meantime (a failover), earlier writes may have gone
  to the old one: ``confirm(since=mark())`` then refuses, as it cannot vouch for them.

``WAIT n`` alone is not enough with Sentinel: it picks the replica to promote by the replication
offsets it last read from the replicas (``INFO``, refreshed every few seconds), so with two
replicas and ``n = 1`` it may promote the one that did not get the last writes. So both wait for
*every* replica that is online and keeping up (``INFO replication``: state ``online``, lag at
most a second; read at most once a second), and never for fewer than ``n``; at the timeout,
``n`` is enough. A replica that stalls stops being waited for within a couple of seconds.

On a cluster each primary replicates its own slots: ``confirm(near=key)`` waits on the primary
of ``key``'s slot; ``confirm()`` on every primary.

What a person or GitLab is told is done (a 200, a reply) comes after one of these; when the
replicas do not confirm in time they raise ``StoreUnavailable``, and the caller says "try again"
(a 503 for a webhook) instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from bot import logs, metrics
from bot.adapters.redis_keys import (
    Script,
    ScriptCall,
    beside,
    is_missing_script,
    same_hash,
    slot,
)
from bot.errors import StoreUnavailable

log = logs.get(__name__)

CONFIRM_TIMEOUT = 1.0
"""Seconds to wait for the replicas: short enough that Slack's 3 s for an answer still holds."""
MARK_TTL_MS = 60_000
REPLICAS_REFRESH = 1.0
"""Seconds between two readings of which replicas are online (per primary)."""
MAX_LAG = 1
"""Seconds since its last acknowledgement after which a replica is not waited for."""


class Replication:
    def __init__(self, redis: Any, *, replicas: int, timeout: float = CONFIRM_TIMEOUT) -> None:
        self._redis = redis
        self.replicas = replicas
        self._timeout_ms = int(timeout * 1000)
        self._anchors: dict[str, str] = {}
        self._online: dict[str, tuple[float, int]] = {}
        self._generation = 0
        self._switching = False

    @property
    def required(self) -> bool:
        return self.replicas > 0

    # ------------------------------------------------------------------ primary switches

    def mark(self) -> int:
        """A token for "the primary now": ``confirm(since=token)`` fails if it changed since."""
        return self._generation

    def switching(self) -> None:
        """The primary is changing (``Store.follow``): nothing can be confirmed until
        ``switched``, and nothing written before it."""
        self._switching = True

    def switched(self) -> None:
        self._generation += 1
        self._switching = False
        self._online.clear()

    # ------------------------------------------------------------------ confirming

    async def run(self, script: Script, *, keys: Sequence[str], args: Iterable[Any] = ()) -> Any:
        """Run ``script`` (which must write every time) and, with ``REDIS_MIN_REPLICAS``, wait
        on the same connection until the replicas have its write. Returns the script's result;
        ``StoreUnavailable`` when the store fails or the replicas do not confirm in time."""
        args = list(args)
        try:
            if not self.replicas:
                return await script(keys=keys, args=args)
            since = self.mark()
            if isinstance(self._redis, RedisCluster):
                result, acked = await self._run_on_cluster(script, keys=keys, args=args)
            else:
                result, acked = await self._run_on_one_primary(script, keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"the store failed: {exc}") from exc
        self._check(acked, since=since)
        return result

    async def run_many(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """``run`` for many script calls whose keys all hash on one anchor: one round trip, and
        one ``WAIT`` after them all. Each call's result in order, or the error that call met
        (a ``RedisError`` of its own); ``StoreUnavailable`` for the whole when the store fails
        or the replicas do not confirm in time."""
        if not calls:
            return []
        same_hash([key for _, keys, _ in calls for key in keys])
        # Without a client of its own (a store made without REDIS_MIN_REPLICAS), the scripts'.
        redis = self._redis if self._redis is not None else calls[0][0].client
        try:
            since = self.mark()
            if isinstance(redis, RedisCluster):
                results, acked = await self._run_many_on_cluster(redis, calls)
            else:
                results, acked = await self._run_many_on_one_primary(redis, calls)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"the store failed: {exc}") from exc
        if self.replicas:
            self._check(acked, since=since)
        return results

    async def confirm(self, near: str | None = None, *, since: int | None = None) -> None:
        """Return once the replicas have every write made so far (on a cluster: of the primary
        holding ``near``, or of every primary), and, with ``since``, the primary did not change
        since ``mark()`` gave it; ``StoreUnavailable`` otherwise. Free without
        ``REDIS_MIN_REPLICAS``."""
        if not self.replicas:
            return
        since = self.mark() if since is None else since
        try:
            if isinstance(self._redis, RedisCluster):
                await self._redis.initialize()
                anchors = [near] if near is not None else self._anchor_per_primary()
                acked = min(await asyncio.gather(*(self._on_cluster(a) for a in anchors)))
            else:
                acked = await self._on_one_primary(near or "pitcrew")
        except (RedisError, OSError) as exc:
            metrics.STORE_UNCONFIRMED.inc()
            raise StoreUnavailable(f"cannot confirm the write: {exc}") from exc
        self._check(acked, since=since)

    def _check(self, acked: int, *, since: int) -> None:
        if self._switching or self._generation != since:
            metrics.STORE_UNCONFIRMED.inc()
            raise StoreUnavailable("the Redis primary changed meanwhile; the write may be lost")
        if acked < self.replicas:
            metrics.STORE_UNCONFIRMED.inc()
            log.warning(
                "write not confirmed by enough replicas",
                confirmed=acked,
                required=self.replicas,
                timeout_ms=self._timeout_ms,
            )
            raise StoreUnavailable(
                f"only {acked} of {self.replicas} replicas confirmed the write in time"
            )

    async def _to_wait_for(self, node: Any = None) -> int:
        """Every replica of the primary (``node`` on a cluster) that is online and keeping up,
        and never fewer than ``REDIS_MIN_REPLICAS``."""
        name = node.name if node is not None else ""
        now = time.monotonic()
        seen = self._online.get(name)
        if seen is None or now - seen[0] > REPLICAS_REFRESH:
            self._online[name] = (now, seen[1] if seen else 0)  # one reading at a time
            options = {"target_nodes": node} if node is not None else {}
            info: Any = await self._redis.info("replication", **options)
            online = sum(
                1
                for field, value in info.items()
                if field.startswith("slave")
                and isinstance(value, dict)
                and value.get("state") == "online"
                and int(value.get("lag") or 0) <= MAX_LAG
            )
            self._online[name] = (now, online)
        return max(self.replicas, self._online[name][1])

    # ------------------------------------------------------------------ one server, Sentinel

    async def _run_on_one_primary(
        self, script: Script, *, keys: Sequence[str], args: list[Any]
    ) -> tuple[Any, int]:
        wanted = await self._to_wait_for()
        for attempt in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                script.queue(pipe, keys=keys, args=args)
                pipe.wait(wanted, self._timeout_ms)
                result, acked = await pipe.execute(raise_on_error=False)
            if isinstance(result, Exception):
                if attempt == 0 and is_missing_script(result):
                    await script.load(self._redis)
                    continue
                raise result
            return result, int(acked)
        raise AssertionError("unreachable")

    async def _run_many_on_one_primary(
        self, redis: Any, calls: Sequence[ScriptCall]
    ) -> tuple[list[Any], int]:
        wanted = await self._to_wait_for() if self.replicas else None
        return await self._batch(redis, calls, wanted, {})

    async def _batch(
        self,
        redis: Any,
        calls: Sequence[ScriptCall],
        wanted: int | None,
        options: dict[str, Any],
        *,
        cluster: bool = False,
    ) -> tuple[list[Any], int]:
        """The calls and a ``WAIT`` (when ``wanted`` is not None) on one connection; the calls a
        server refused for want of their script run again once it is loaded (with a ``WAIT``
        again: for them)."""
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        acked = 0
        for attempt in range(2):
            pipe = redis.pipeline() if cluster else redis.pipeline(transaction=False)
            for index in todo:
                source, keys, args = calls[index]
                source.queue(pipe, keys=keys, args=args, **options)
            if wanted is not None:
                pipe.wait(wanted, self._timeout_ms, **options)
            if cluster:
                answers = await pipe.execute(raise_on_error=False, allow_redirections=False)
            else:
                async with pipe:
                    answers = await pipe.execute(raise_on_error=False)
            if wanted is not None:
                *answers, waited = answers
                if isinstance(waited, Exception):
                    raise waited
                acked = int(waited)
            missing: dict[int, Script] = {}
            for index, answer in zip(todo, answers, strict=True):
                results[index] = answer
                if isinstance(answer, Exception) and attempt == 0 and is_missing_script(answer):
                    missing[index] = calls[index][0]
            if not missing:
                break
            for source in {id(s): s for s in missing.values()}.values():
                await source.load(redis)
            todo = list(missing)
        return results, acked

    async def _on_one_primary(self, near: str) -> int:
        wanted = await self._to_wait_for()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(beside(near, "durable"), "1", px=MARK_TTL_MS)
            pipe.wait(wanted, self._timeout_ms)
            _, acked = await pipe.execute()
        return int(acked)

    # ------------------------------------------------------------------ cluster

    async def _run_on_cluster(
        self, script: Script, *, keys: Sequence[str], args: list[Any]
    ) -> tuple[Any, int]:
        redis: RedisCluster = self._redis
        await redis.initialize()
        for attempt in range(2):
            node = redis.get_node_from_key(keys[0])
            wanted = await self._to_wait_for(node)
            pipe: Any = redis.pipeline()
            script.queue(pipe, keys=keys, args=args, target_nodes=node)
            pipe.wait(wanted, self._timeout_ms, target_nodes=node)
            result, acked = await pipe.execute(raise_on_error=False, allow_redirections=False)
            if isinstance(result, Exception) and attempt == 0 and is_missing_script(result):
                await script.load(redis)
                continue
            if isinstance(result, Exception) or isinstance(acked, Exception):
                # The slot moved (MOVED, ASK, TRYAGAIN) or the node failed: the client's own
                # call follows the cluster, then the wait goes to whichever primary took it.
                result = await script(keys=keys, args=args)
                return result, await self._on_cluster(keys[0])
            return result, int(acked)
        raise AssertionError("unreachable")

    async def _run_many_on_cluster(
        self, redis: RedisCluster, calls: Sequence[ScriptCall]
    ) -> tuple[list[Any], int]:
        await redis.initialize()
        anchor = calls[0][1][0]
        node = redis.get_node_from_key(anchor)
        wanted = await self._to_wait_for(node) if self.replicas else None
        results, acked = await self._batch(
            redis, calls, wanted, {"target_nodes": node}, cluster=True
        )
        if not any(isinstance(r, Exception) and not is_missing_script(r) for r in results):
            return results, acked
        # The slot moved (MOVED, ASK, TRYAGAIN) or the node failed: the client's own calls
        # follow the cluster, then the wait goes to whichever primary took them.
        for index, (source, keys, args) in enumerate(calls):
            if isinstance(results[index], Exception):
                try:
                    results[index] = await source(keys=keys, args=args)
                except RedisError as exc:
                    results[index] = exc
        return results, (await self._on_cluster(anchor) if self.replicas else 0)

    async def _on_cluster(self, near: str) -> int:
        redis: RedisCluster = self._redis
        key = beside(near, "durable")
        for _ in range(3):
            node = redis.get_node_from_key(key)
            wanted = await self._to_wait_for(node)
            pipe: Any = redis.pipeline()
            pipe.execute_command("SET", key, "1", "PX", MARK_TTL_MS, target_nodes=node)
            pipe.wait(wanted, self._timeout_ms, target_nodes=node)
            written, acked = await pipe.execute(raise_on_error=False, allow_redirections=False)
            if not isinstance(written, Exception) and not isinstance(acked, Exception):
                return int(acked)
            # The slot moved (MOVED, ASK) or the node failed over: an ordinary command learns
            # the new owner; then wait on that one. (A WAIT behind a redirected write would
            # measure nothing.)
            await redis.set(key, "1", px=MARK_TTL_MS)
        return 0

    def _anchor_per_primary(self) -> list[str]:
        """A key in a slot of each primary, to wait on every one of them."""
        redis: RedisCluster = self._redis
        anchors = []
        for node in redis.get_primaries():
            anchor = self._anchors.get(node.name)
            if anchor is None or redis.get_node_from_key(anchor) != node:
                anchor = next(
                    f"{{{i}}}"
                    for i in range(1_000_000)
                    if redis.nodes_manager.slots_cache.get(slot(f"{{{i}}}"), [None])[0] == node
                )
                self._anchors[node.name] = anchor
            anchors.append(anchor)
        return anchors
