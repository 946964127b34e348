"""The inventory cache: one JSON entry per (app, env), and when it was last refreshed.

Its keys share the hash tag ``{inventory}`` (one Redis Cluster slot: it is small, and a write
bumps the version right behind the data). Earlier versions named them ``inventory:entries`` and
so on; the cache is rebuilt at start (GitLab) and as workloads are watched, so nothing is carried
over.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from bot.adapters.store.connection import Redis
from bot.domain.inventory import Deployed, Inventory, Live

_ENTRIES = "{inventory}:entries"
_LIVE = "{inventory}:live"
_VERSION = "{inventory}:version"
_live = TypeAdapter(Live)
_REFRESHED = "{inventory}:refreshed_at"
_deployed = TypeAdapter(Deployed)


class RedisInventoryCache:
    """Every write bumps ``inventory:version``; a replica keeps the parsed inventory until the
    version moves, so a ``/whatsinprod`` costs one GET instead of parsing thousands of entries."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._parsed: tuple[bytes | None, Inventory] | None = None

    async def load(self) -> Inventory:
        version: Any = await self._redis.get(_VERSION)
        if self._parsed is not None and self._parsed[0] == version:
            return self._parsed[1]
        inventory = await self._read()
        self._parsed = (version, inventory)
        return inventory

    async def _read(self) -> Inventory:
        # Read the version first (above), then the data: a write in between only makes the
        # next load read again.
        raw: Any = await self._redis.hgetall(_ENTRIES)
        running: Any = await self._redis.hgetall(_LIVE)
        refreshed: Any = await self._redis.get(_REFRESHED)
        entries = {}
        for value in raw.values():
            entry = _deployed.validate_json(value)
            entries[(entry.app, entry.env)] = entry
        live = {}
        for value in running.values():
            state = _live.validate_json(value)
            live[(state.app, state.env)] = state
        return Inventory(
            entries=entries,
            live=live,
            refreshed_at=datetime.fromisoformat(refreshed.decode()) if refreshed else None,
        )

    async def put_live(self, live: Live) -> None:
        """What the cluster runs, written by the rollout watcher as it sees workloads."""
        # In order on one connection (one slot): the version moves after the data.
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(_LIVE, f"{live.app}\0{live.env}", _live.dump_json(live))
            pipe.incr(_VERSION)
            await pipe.execute()

    async def put_live_many(self, lives: Sequence[Live]) -> None:
        """``put_live`` of a page of listed workloads: one write, one version bump."""
        if not lives:
            return
        mapping = {f"{live.app}\0{live.env}": _live.dump_json(live) for live in lives}
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(_LIVE, mapping=mapping)  # type: ignore[arg-type]
            pipe.incr(_VERSION)
            await pipe.execute()

    async def drop_live(self, app: str, env: str) -> None:
        """The app's workload was deleted from ``env``: no live state to show any more."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hdel(_LIVE, f"{app}\0{env}")
            pipe.incr(_VERSION)
            await pipe.execute()

    async def save(self, entries: Iterable[Deployed], *, refreshed_at: datetime) -> None:
        mapping = {f"{e.app}\0{e.env}": _deployed.dump_json(e) for e in entries}
        async with self._redis.pipeline(transaction=False) as pipe:
            if mapping:
                pipe.hset(_ENTRIES, mapping=mapping)  # type: ignore[arg-type]
            pipe.set(_REFRESHED, refreshed_at.isoformat())
            pipe.incr(_VERSION)
            await pipe.execute()
