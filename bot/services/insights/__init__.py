"""Delivery insights (the four DORA metrics) from what Pitcrew sees.

What is measured is pure domain (``bot.domain.dora``); this package gathers and keeps the facts
and tells the figures:

- ``recorder``: a deployment record per app and env as releases end and as rollouts no release
  explains finish, written once, counted in Prometheus; and the reconcile that records what a
  crash or an outage kept the end listener from writing;
- ``reports``: ``/dora`` — the records read at once, the report worked out;
- ``digests``: each team's weekly digest, once per slot, with its chart in the thread;
- ``backfill``: ``pitcrew dora backfill``, deployments from before Pitcrew out of the GitOps
  repo's history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from bot import logs
from bot.domain.errors import PitcrewError
from bot.services.cancellation import reraise_if_cancelling
from bot.services.catalog import CatalogHolder
from bot.services.insights.digests import Digests
from bot.services.insights.ports import (
    ChartRenderer,
    DeploymentStore,
    DoraViews,
    FileUploads,
    GitOpsHistory,
    ManifestCommit,
    Markers,
    MergedRequest,
    ReleaseLookup,
)
from bot.services.insights.recorder import DeploymentRecorder
from bot.services.insights.reports import DoraReports
from bot.services.periodic import every
from bot.services.ports import AuditLog, Outbox

__all__ = [
    "RECONCILE_EVERY",
    "TICK_EVERY",
    "ChartRenderer",
    "DeploymentRecorder",
    "DeploymentStore",
    "DoraReports",
    "DoraViews",
    "FileUploads",
    "GitOpsHistory",
    "Insights",
    "ManifestCommit",
    "Markers",
    "MergedRequest",
    "ReleaseLookup",
]

log = logs.get(__name__)

TICK_EVERY = 15.0
"""Seconds between two looks at the digest schedules: a digest is posted within this of its
slot."""
RECONCILE_EVERY = 300.0
"""Seconds between two reconciles of the deployment records (and one at start)."""


class Insights:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        store: DeploymentStore,
        releases: ReleaseLookup,
        markers: Markers,
        outbox: Outbox,
        views: DoraViews,
        charts: ChartRenderer,
        uploads: FileUploads,
        audit: AuditLog,
        tick_every: float = TICK_EVERY,
        reconcile_every: float = RECONCILE_EVERY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.recorder = DeploymentRecorder(store=store, releases=releases, clock=clock)
        self.reports = DoraReports(catalog=catalog, store=store, clock=clock)
        self.digests = Digests(
            catalog=catalog,
            store=store,
            markers=markers,
            outbox=outbox,
            views=views,
            charts=charts,
            uploads=uploads,
            audit=audit,
            clock=clock,
        )
        self._tick_every = tick_every
        self._reconcile_every = reconcile_every
        self._reconciled: float | None = None
        """When the last reconcile began (``time.monotonic``); ``None``: not yet."""

    async def run(self) -> None:
        """Under a lease: the digests' schedules, looked at every few seconds; the deployment
        records' reconcile, at the first look and every few minutes.

        One loop, not two gathered: cut short (the lease lost, a stop), ``run`` ends only when
        what it was doing has (a digest cut short gives its slot back, a Redis call, before the
        store closes); ``gather`` ends at the first loop cancelled and leaves the other running
        on a store being closed."""
        await every(self._tick_every, self._turn, what="weekly digests")

    async def _turn(self) -> None:
        now = time.monotonic()
        if self._reconciled is None or now - self._reconciled >= self._reconcile_every:
            self._reconciled = now
            try:
                await self.recorder.reconcile()
            except Exception as exc:  # the digests go on; the next reconcile tries again
                reraise_if_cancelling()
                if not isinstance(exc, PitcrewError):
                    log.exception("deployment records reconcile failed; trying again later")
                else:
                    log.warning(
                        "deployment records reconcile failed; trying again later", error=str(exc)
                    )
        await self.digests.tick()
