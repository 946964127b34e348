"""``/dora`` answers, and the same answer shared in the channel.

As ``/whatsinprod``: the answer goes to the person who asked, with a "Share in channel" button
whose value is the id of the question, kept server-side for a day; a click asks it again and
the channel gets the figures as they stand at the click, saying who shared them.
"""

from __future__ import annotations

from typing import Final

from bot.adapters.slack.blocks.common import Rendered
from bot.adapters.slack.blocks.dora import DoraBlocks
from bot.domain.dora import DoraQueryError
from bot.services.insights import DoraReports
from bot.services.ports import Shares

SHARE_TTL: Final = 86400.0


class DoraAnswers:
    def __init__(self, *, reports: DoraReports, shares: Shares, views: DoraBlocks) -> None:
        self._reports = reports
        self._shares = shares
        self._views = views

    async def answer(self, text: str) -> Rendered:
        """The private answer to ``/dora <text>``, with its Share button."""
        try:
            query = self._reports.parse(text)
        except DoraQueryError as exc:
            return Rendered(*self._views.error(exc))
        report = await self._reports.report(query)
        share = await self._shares.keep(text, ttl=SHARE_TTL)
        return Rendered(*self._views.report(query, report, share=share))

    async def shared(self, share_id: str, *, by: str) -> Rendered | None:
        """The question behind the button, answered again for the channel; ``None`` when it
        is no longer kept, or no longer makes sense (the catalog changed)."""
        text = await self._shares.find(share_id)
        if text is None:
            return None
        try:
            query = self._reports.parse(text)
        except DoraQueryError:
            return None
        report = await self._reports.report(query)
        return Rendered(*self._views.report(query, report, shared_by=by, asked=text))
