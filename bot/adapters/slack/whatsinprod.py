"""``/whatsinprod`` answers, and the same answer shared in the channel.

The answer goes to the person who asked, with a "Share in channel" button: the button carries
the id of the question, kept server-side for a day, and a click asks it again — the channel gets
the answer as it stands at the click, saying who shared it — rather than trusting anything the
button carries.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

from bot.adapters.slack.blocks.common import Rendered, render_command_error
from bot.adapters.slack.blocks.whatsinprod import render_whatsinprod
from bot.domain.inventory import QueryError, parse_whatsinprod
from bot.services.catalog import CatalogHolder
from bot.services.inventory import InventoryService
from bot.services.locks import LockService
from bot.services.ports import Shares

SHARE_TTL: Final = 86400.0
"""Seconds a "Share in channel" button works: an answer is shared while it is read."""


class WhatsInProd:
    def __init__(
        self,
        *,
        inventory: InventoryService,
        catalog: CatalogHolder,
        locks: LockService,
        shares: Shares | None,
        clock: Callable[[], datetime],
    ) -> None:
        self._inventory = inventory
        self._catalog = catalog
        self._locks = locks
        self._shares = shares
        self._clock = clock

    async def answer(self, text: str) -> Rendered:
        """The private answer to ``/whatsinprod <text>``, with its Share button. Answered from
        the inventory cache: never waits on GitLab."""
        catalog = self._catalog.current
        try:
            query = parse_whatsinprod(text, catalog=catalog)
        except QueryError as exc:
            return render_command_error(exc)
        share = await self._shares.keep(text, ttl=SHARE_TTL) if self._shares else None
        return render_whatsinprod(
            query,
            inventory=await self._inventory.current(),
            catalog=catalog,
            locks=await self._locks.locks(),
            now=self._clock(),
            share=share,
        )

    async def shared(self, share_id: str, *, by: str) -> Rendered | None:
        """The same question answered again for the channel; ``None`` when the button's
        question is no longer kept (or never was), or no longer makes sense (the catalog
        changed since)."""
        text = await self._shares.find(share_id) if self._shares else None
        if text is None:
            return None
        catalog = self._catalog.current
        try:
            query = parse_whatsinprod(text, catalog=catalog)
        except QueryError:
            return None
        return render_whatsinprod(
            query,
            inventory=await self._inventory.current(),
            catalog=catalog,
            locks=await self._locks.locks(),
            now=self._clock(),
            shared_by=by,
            asked=text,
        )
