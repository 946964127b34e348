"""The autopilot (SPEC 13): new versions deploy themselves, promotions and freezes run on a
schedule, issues hear when they ship.

Everything it does goes through what people use: its releases are opened by the release service
as a ``/deploy`` would be (same checks, MR, changelog, thread, approvals), requested by
``AUTOPILOT`` and shown as the autopilot's; its freezes are locks, announced like any lock and
ended by ``/unlock`` like any lock. What it decides is in ``bot.domain.autopilot`` and
``bot.domain.schedules``; this package gathers the facts and carries the decisions out:

- ``versions``: tag pushes and the reconcile (at start and every ``AUTOPILOT_INTERVAL``);
- ``schedules``: promotion and freeze slots, each fired once across replicas and restarts;
- ``notes``: the released notes on issues and merge requests;
- the memory of versions given up (``gives_up``), so a failed version is not retried.

One replica runs the loops (under a lease); every slot and note is also guarded by a marker, so
a lease changing hands mid-slot fires nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from bot import logs
from bot.domain.autopilot import gives_up
from bot.domain.releases import Release
from bot.services.autopilot.notes import ReleasedNotes
from bot.services.autopilot.ports import (
    AppTags,
    AutopilotReleases,
    AutopilotStore,
    AutopilotViews,
    Freezer,
    IssueTracker,
)
from bot.services.autopilot.schedules import Scheduler
from bot.services.autopilot.telling import Telling
from bot.services.autopilot.versions import NewVersions
from bot.services.catalog import CatalogHolder
from bot.services.periodic import every
from bot.services.ports import AuditEntry, AuditLog, Outbox

__all__ = [
    "AppTags",
    "Autopilot",
    "AutopilotReleases",
    "AutopilotStore",
    "AutopilotViews",
    "Freezer",
    "IssueTracker",
]

log = logs.get(__name__)

TICK_EVERY = 15.0
"""Seconds between two looks at the schedules: a slot fires within this of its time."""
RECONCILE_EVERY = 3600.0


class Autopilot:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        releases: AutopilotReleases,
        tags: AppTags,
        issues: IssueTracker,
        store: AutopilotStore,
        freezer: Freezer,
        outbox: Outbox,
        audit: AuditLog,
        views: AutopilotViews,
        reconcile_every: float = RECONCILE_EVERY,
        tick_every: float = TICK_EVERY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        telling = Telling(catalog=catalog, outbox=outbox, views=views)
        self._store = store
        self._audit = audit
        self._clock = clock
        self._reconcile_every = reconcile_every
        self._tick_every = tick_every
        self.new_versions = NewVersions(
            catalog=catalog, releases=releases, tags=tags, store=store, telling=telling
        )
        self.scheduler = Scheduler(
            catalog=catalog,
            releases=releases,
            tags=tags,
            store=store,
            freezer=freezer,
            telling=telling,
            outbox=outbox,
            audit=audit,
            clock=clock,
        )
        self.notes = ReleasedNotes(catalog=catalog, issues=issues, store=store)

    # ------------------------------------------------------------------ what happens

    async def on_tag(self, *, project: str, tag: str) -> None:
        await self.new_versions.on_tag(project=project, tag=tag)

    async def on_release_ended(self, release: Release) -> None:
        """Remember a version given up (not retried), and tell the issues of a shipped one."""
        if gives_up(release):
            await self._store.give_up(
                app=release.app, env=release.env, version=release.to_version, why=release.state
            )
        if gives_up(release) and release.autopilot is not None:  # a person's own end is theirs
            await self._audit.record(
                AuditEntry(
                    at=self._clock().timestamp(),
                    actor="pitcrew",
                    action="autopilot-give-up",
                    env=release.env,
                    target=f"{release.app} {release.to_version}",
                    detail=f"release {release.id} ended {release.state}: not retried",
                    origin="autopilot",
                )
            )
        await self.notes.on_release_ended(release)

    # ------------------------------------------------------------------ the clock

    async def reconcile(self) -> None:
        await self.new_versions.reconcile()

    async def tick(self) -> None:
        await self.scheduler.tick(self._clock())

    async def run(self) -> None:
        """Reconcile at start and every interval; look at the schedules every few seconds."""
        await asyncio.gather(
            every(self._tick_every, self.tick, what="autopilot schedules"),
            every(self._reconcile_every, self.reconcile, what="autopilot reconcile"),
        )
