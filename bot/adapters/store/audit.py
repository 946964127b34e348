"""The audit log: a Redis stream, trimmed to 90 days, read back by ``pitcrew audit``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from bot.adapters.store.connection import Redis, open_store
from bot.errors import StoreUnavailable
from bot.services.ports import AuditEntry

STREAM = "audit"
RETENTION = 90 * 24 * 3600
_FIELDS = ("actor", "action", "env", "target", "detail", "origin")


class RedisAuditLog:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def record(self, entry: AuditEntry) -> None:
        fields: dict[Any, Any] = {
            "at": repr(entry.at),
            **{f: getattr(entry, f) or "" for f in _FIELDS},
        }
        oldest_ms = int((time.time() - RETENTION) * 1000)
        try:
            await self._redis.xadd(STREAM, fields, minid=f"{oldest_ms}-0", approximate=True)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"cannot write the audit log: {exc}") from exc

    async def query(
        self,
        *,
        env: str | None = None,
        actor: str | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> Sequence[AuditEntry]:
        """Entries oldest first, filtered; ``actor`` matches a user id exactly."""
        start = f"{int(since * 1000)}-0" if since else "-"
        raw: Any = await self._redis.xrange(STREAM, min=start, max="+")
        entries = []
        for _id, values in raw:
            fields = {k.decode(): v.decode() for k, v in values.items()}
            entry = AuditEntry(
                at=float(fields.get("at") or 0),
                actor=fields.get("actor", ""),
                action=fields.get("action", ""),
                env=fields.get("env") or None,
                target=fields.get("target") or None,
                detail=fields.get("detail", ""),
                origin=fields.get("origin", ""),
            )
            if since and entry.at < since:
                continue
            if env and entry.env != env:
                continue
            if actor and entry.actor != actor:
                continue
            entries.append(entry)
        return entries[-limit:]


async def read_audit(
    *,
    redis_url: str | None,
    state_dir: Path,
    env: str | None,
    actor: str | None,
    since: float | None,
) -> Sequence[AuditEntry]:
    """What ``pitcrew audit`` prints: opens the store, reads, closes; a store that does not
    answer is one ``StoreUnavailable`` line, not a traceback."""
    store = await asyncio.to_thread(open_store, redis_url=redis_url, state_dir=state_dir)
    try:
        if not await store.ping():
            raise StoreUnavailable(f"Redis at {store.url_for_display} is not reachable")
        try:
            return await RedisAuditLog(store.redis).query(env=env, actor=actor, since=since)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(
                f"Redis at {store.url_for_display} failed while reading the audit log: {exc}"
            ) from exc
    finally:
        await store.close()
