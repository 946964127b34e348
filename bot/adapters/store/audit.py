"""The audit log: a Redis stream, trimmed to 90 days, read back by ``pitcrew audit``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bot.adapters.store.connection import Redis
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
        await self._redis.xadd(
            STREAM,
            fields,
            minid=f"{oldest_ms}-0",
            approximate=True,
        )

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
