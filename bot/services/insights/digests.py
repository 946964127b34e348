"""The weekly digest: each team's four figures, the week's deployments, and a chart.

Every few seconds (on the replica holding the ``insights`` lease) each team's digest schedule
is asked for its due slot (``due_slot``: the latest, if less than an hour late), and the slot
is claimed with a marker keyed by team and slot (``SET NX``): of every replica and restart, one
posts it. The digest is a keyed message of the outbox (``digest:<team>:<slot>``), so a digest
interrupted and tried again updates, never doubles. The chart is rendered off the event loop,
then uploaded into the digest's thread by Slack's external upload flow, once (its own marker,
given back with the digest's when the work is cut short, so a digest tried again still gets its
chart): if the upload fails, the thread gets the chart's figures as text instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

from bot import logs, metrics
from bot.domain.catalog import Team
from bot.domain.dora import DAY, Day, daily, report
from bot.domain.errors import PitcrewError
from bot.domain.schedules import due_slot
from bot.services.catalog import CatalogHolder
from bot.services.insights.ports import (
    ChartRenderer,
    DeploymentStore,
    DoraViews,
    FileUploads,
    Markers,
)
from bot.services.ports import AuditEntry, AuditLog, Outbox, OutgoingMessage

log = logs.get(__name__)

MARKER_TTL: Final = timedelta(days=8).total_seconds()
WEEK_DAYS: Final = 7
GRACE: Final = timedelta(days=1)
"""A digest due while no replica ran still comes, late, within a day: a late digest harms
nobody (unlike a late promotion, which keeps the schedules' one-hour grace), a skipped one
loses the team its week."""


class Digests:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        store: DeploymentStore,
        markers: Markers,
        outbox: Outbox,
        views: DoraViews,
        charts: ChartRenderer,
        uploads: FileUploads,
        audit: AuditLog,
        clock: Callable[[], datetime],
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._markers = markers
        self._outbox = outbox
        self._views = views
        self._charts = charts
        self._uploads = uploads
        self._audit = audit
        self._clock = clock

    async def tick(self) -> None:
        """Post every digest due now, each once across replicas and restarts."""
        now = self._clock()
        for team in self._catalog.current.teams:
            if team.digest is None:
                continue
            slot = due_slot(team.digest.slots, now, grace=GRACE)
            if slot is None:
                continue
            key = f"dora:digest:{team.name}:{_iso(slot)}"
            if not await self._markers.claim(key, ttl=MARKER_TTL):
                continue
            try:
                await self.post(team, slot)
            except PitcrewError as exc:  # Redis gone: the next look tries again
                await self._markers.unclaim(key)
                log.warning("digest not posted yet", team=team.name, error=str(exc))
            except BaseException:  # cut short (the lease lost, a stop): post it again
                await self._markers.unclaim(key)
                raise

    async def post(self, team: Team, slot: datetime) -> None:
        """The digest of the week before ``slot``, in the team's channel, and its chart."""
        assert team.digest is not None
        catalog = self._catalog.current
        env = catalog.env_names[-1]
        end = slot.timestamp()
        start = end - WEEK_DAYS * DAY
        apps = [app.name for app in catalog.apps_of_team(team.name)]
        histories = await self._store.histories(
            ((app, env) for app in apps), since=start - WEEK_DAYS * DAY, until=end
        )
        figures = report(histories, start=start, end=end, now=end)
        week = sorted(
            (d for history in histories.values() for d in history if start <= d.landed < end),
            key=lambda d: d.landed,
        )
        begins, ends = slot - timedelta(days=WEEK_DAYS), slot
        key = f"digest:{team.name}:{_iso(slot)}"
        text, blocks = self._views.digest(team, figures, env=env, week=week, start=begins, end=ends)
        await self._outbox.send(
            OutgoingMessage(key=key, channel=team.channel, text=text, blocks=blocks)
        )
        await self._audit.record(
            AuditEntry(
                at=self._clock().timestamp(),
                actor="pitcrew",
                action="dora-digest",
                env=env,
                target=f"team {team.name}",
                detail=f"week to {_iso(slot)}: {figures.current.deployments} deployments",
                origin="insights",
            )
        )
        zone = team.digest.slots.zone
        days = daily(histories.values(), start=begins, end=ends, zone=zone)
        chart_marker = f"dora:digest:{team.name}:{_iso(slot)}:chart"
        if not await self._markers.claim(chart_marker, ttl=MARKER_TTL):
            return
        title = self._views.chart_title(team, env=env, start=begins, end=ends)
        try:
            await self._chart(team, thread_key=key, env=env, slot=slot, title=title, days=days)
        except BaseException:
            # Cut short (the lease lost under a busy CPU, a stop) or failed: the chart's marker
            # goes back with the digest's, or the next look would post the digest again
            # without its chart.
            await self._markers.unclaim(chart_marker)
            raise

    async def _chart(
        self,
        team: Team,
        *,
        thread_key: str,
        env: str,
        slot: datetime,
        title: str,
        days: Sequence[Day],
    ) -> None:
        """The chart in the digest's thread, or its figures as text when it cannot go."""
        assert team.digest is not None
        try:
            png = await self._charts.weekly(title=title, days=days, zone=team.digest.slots.zone)
            await self._uploads.upload(
                channel=team.channel,
                thread_key=thread_key,
                filename=f"dora-{team.name}-{slot:%Y-%m-%d}.png",
                title=title,
                alt=f"Deployments per day and median lead time of {team.name} in {env}",
                content=png,
            )
        except PitcrewError as exc:
            log.warning(
                "digest chart not uploaded; its figures go as text", team=team.name, error=str(exc)
            )
            text, blocks = self._views.chart_in_text(days, reason=str(exc))
            await self._outbox.send(
                OutgoingMessage(
                    key=f"{thread_key}:chart",
                    channel=team.channel,
                    text=text,
                    blocks=blocks,
                    thread_key=thread_key,
                )
            )
            metrics.DORA_DIGESTS.labels("text").inc()
            return
        metrics.DORA_DIGESTS.labels("chart").inc()
        log.info("digest posted", team=team.name, slot=_iso(slot), chart_bytes=len(png))


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ")
