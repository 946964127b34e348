"""What a "Share in channel" button shares, kept server-side for a day: ``share:<id>`` holds
the ``/whatsinprod`` text that was asked, so a click answers the same question again, fresh,
in the channel. The id is random: nothing in a button's value is trusted."""

from __future__ import annotations

import secrets
from typing import Any

from bot.adapters.store.connection import Redis


class RedisShares:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def keep(self, text: str, *, ttl: float) -> str:
        share_id = secrets.token_hex(6)
        await self._redis.set(f"share:{share_id}", text.encode(), ex=max(int(ttl), 1))
        return share_id

    async def find(self, share_id: str) -> str | None:
        raw: Any = await self._redis.get(f"share:{share_id}")
        return raw.decode() if raw is not None else None
