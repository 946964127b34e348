"""What a "Share in channel" button shares, kept server-side for a day: ``share:<id>`` holds
the ``/whatsinprod`` text that was asked (``share:dora:<id>`` a ``/dora`` one: each command
its own namespace, so one's button never asks the other), and a click answers the same question
again, fresh, in the channel. The id is random: nothing in a button's value is trusted."""

from __future__ import annotations

import secrets
from typing import Any

from bot.adapters.store.connection import Redis


class RedisShares:
    def __init__(self, redis: Redis, *, namespace: str = "") -> None:
        self._redis = redis
        self._prefix = f"share:{namespace}:" if namespace else "share:"

    async def keep(self, text: str, *, ttl: float) -> str:
        share_id = secrets.token_hex(6)
        await self._redis.set(f"{self._prefix}{share_id}", text.encode(), ex=max(int(ttl), 1))
        return share_id

    async def find(self, share_id: str) -> str | None:
        raw: Any = await self._redis.get(f"{self._prefix}{share_id}")
        return raw.decode() if raw is not None else None
