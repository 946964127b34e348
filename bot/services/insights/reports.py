"""``/dora`` answers: the records of the apps asked about, read at once, and the pure report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.domain.dora import DoraQuery, Report, parse_dora, report
from bot.services.catalog import CatalogHolder
from bot.services.insights.ports import DeploymentStore


class DoraReports:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        store: DeploymentStore,
        clock: Callable[[], datetime],
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._clock = clock

    def parse(self, text: str) -> DoraQuery:
        """``DoraQueryError`` when typed wrong."""
        return parse_dora(text, catalog=self._catalog.current)

    async def report(self, query: DoraQuery) -> Report:
        """The period up to now, and the one before it to compare with."""
        now = self._clock()
        start, end = query.window(now)
        since = start - (end - start)
        histories = await self._store.histories(
            ((app, query.env) for app in query.apps), since=since, until=end
        )
        return report(histories, start=start, end=end, now=end)
