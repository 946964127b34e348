"""Scheduled promotions and freeze windows (SPEC 13).

Every few seconds the scheduler asks the domain which slot of each schedule is due
(``due_slot``: the latest, if less than an hour old; for a freeze, the window it falls in) and
claims it with a marker keyed by the slot (``SET NX``): of every replica and every restart that
looks at a slot, exactly one fires it. A slot missed while no replica ran is still due at start
when less than an hour late, and is fired then, once; an older one never is. A firing cut short
(the lease lost mid-slot, a shutdown) gives its marker back, and whoever looks next fires the
slot again: what was opened already is not opened twice (``decide_promotion``).

- A promotion slot opens, for every app whose version in ``from`` is newer than in the env, one
  release as ``/deploy <app> from <from> to <env>`` would, requested by the autopilot: a
  ``manual`` env waits for its approvals as usual.
- A freeze slot locks the env as the autopilot until the window's end, announced like any lock.
  A person's lock in force is left as it is: the slot is not claimed then, so the freeze takes
  over if their lock ends before the window does; that a freeze is waiting is said once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from bot import logs
from bot.domain.autopilot import LeaveLock, OpenRelease, Skip, decide_promotion
from bot.domain.catalog import Environment, Freeze
from bot.domain.errors import PitcrewError
from bot.domain.releases import AUTOPILOT
from bot.domain.schedules import due_slot, window_at
from bot.domain.versions import VersionTag, version_order
from bot.services.autopilot.ports import AppTags, AutopilotReleases, AutopilotStore, Freezer
from bot.services.autopilot.telling import Telling
from bot.services.autopilot.versions import tagged
from bot.services.catalog import CatalogHolder
from bot.services.ports import AuditEntry, AuditLog, Outbox, OutgoingMessage
from bot.services.releases import PendingRequest
from bot.services.releases.opening import new_id

log = logs.get(__name__)

MARKER_TTL: Final = timedelta(days=8).total_seconds()
"""Longer than any slot stays due (an hour) and any freeze window (a week)."""


class Scheduler:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        releases: AutopilotReleases,
        tags: AppTags,
        store: AutopilotStore,
        freezer: Freezer,
        telling: Telling,
        outbox: Outbox,
        audit: AuditLog,
        clock: Callable[[], datetime],
    ) -> None:
        self._catalog = catalog
        self._releases = releases
        self._tags = tags
        self._store = store
        self._freezer = freezer
        self._telling = telling
        self._outbox = outbox
        self._audit = audit
        self._clock = clock

    async def tick(self, now: datetime) -> None:
        """Fire what is due at ``now``: each slot once, across replicas and restarts."""
        for env in self._catalog.current.environments:
            for freeze in env.freeze:
                try:
                    await self._freeze(env, freeze, now)
                except PitcrewError as exc:
                    log.warning("autopilot: freeze not applied yet", env=env.name, error=str(exc))
            if env.promote is not None:
                slot = due_slot(env.promote.slots, now)
                key = f"autopilot:slot:promote:{env.name}:{env.promote.slots.key}:{_iso(slot)}"
                if slot is not None and await self._store.claim(key, ttl=MARKER_TTL):
                    try:
                        await self._promote(env, slot, now)
                    except BaseException:  # cut short (the lease lost, a stop): fire it again
                        await self._store.unclaim(key)
                        raise

    # ------------------------------------------------------------------ promotions

    async def _promote(self, env: Environment, slot: datetime, now: datetime) -> None:
        promote = env.promote
        assert promote is not None
        late = "" if now - slot < timedelta(minutes=1) else f", {_late(now - slot)} late"
        log.info("autopilot: promotion slot", env=env.name, slot=_iso(slot))
        await self._record(
            "promote-slot", env.name, f"from {promote.source}", f"slot {_iso(slot)}{late}"
        )
        for app in self._catalog.current.apps:
            try:
                await self._promote_app(app.name, env, origin=f"autopilot: promotion {_iso(slot)}")
            except PitcrewError as exc:  # one app's trouble must not stop the others
                log.warning("autopilot: promotion failed", app=app.name, error=str(exc))

    async def _promote_app(self, app_name: str, env: Environment, *, origin: str) -> None:
        promote = env.promote
        assert promote is not None
        app = self._catalog.current.app(app_name)
        source = await self._releases.running_version(app.name, promote.source)
        running = await self._releases.running_version(app.name, env.name)
        tags: list[VersionTag] = []
        if source is not None and running is not None and source != running:
            tags = await self._tags_for_dates(app.source, source, running)
        decision = decide_promotion(
            app=app,
            env=env,
            source=tagged(source, tags),
            running=tagged(running, tags),
            latest=await self._releases.latest_release(app.name, env.name),
            given_up=await self._store.given_up(app.name, env.name),
        )
        if isinstance(decision, Skip):
            log.info("autopilot: not promoted", app=app.name, env=env.name, why=decision.reason)
            return
        await self._open_promotion(app.name, env, decision, origin=origin)

    async def _tags_for_dates(self, project: str, *versions: str) -> list[VersionTag]:
        """Tag dates matter only where version order cannot decide: ask GitLab only then."""
        if all(version_order(v) is not None for v in versions):
            return []
        return await self._tags.tags(project)

    async def _open_promotion(
        self, app_name: str, env: Environment, decision: OpenRelease, *, origin: str
    ) -> None:
        promote = env.promote
        assert promote is not None
        request = PendingRequest(
            id=new_id(),
            kind="deploy",
            app=app_name,
            env=env.name,
            version=None,
            source_env=promote.source,
            requester=AUTOPILOT,
            autopilot="promotion",
        )
        outcome = await self._releases.open_for_autopilot(request, origin=origin)
        if outcome.refused is not None:
            await self._telling.refused(
                app=self._catalog.current.app(app_name),
                env=env.name,
                version=decision.version,
                cause="promotion",
                reason=outcome.refused,
            )

    # ------------------------------------------------------------------ freezes

    async def _freeze(self, env: Environment, freeze: Freeze, now: datetime) -> None:
        window = window_at(freeze.slots, now, duration=freeze.duration)
        if window is None:
            return
        start, end = window
        key = f"autopilot:slot:freeze:{env.name}:{freeze.slots.key}:{_iso(start)}"
        if not await self._store.claim(key, ttl=MARKER_TTL):
            return  # fired already: by another replica, before a restart, or a person unlocked
        try:
            decision = await self._freezer.freeze(
                env=env.name,
                reason=freeze.reason,
                end=end,
                origin=f"autopilot: freeze {_iso(start)}",
            )
        except BaseException:
            await self._store.unclaim(key)  # not applied: the next look tries again
            raise
        if isinstance(decision, LeaveLock) and decision.lock.holder != AUTOPILOT:
            await self._store.unclaim(key)  # their lock stands; the freeze waits for its end
            if await self._store.claim(f"{key}:deferred", ttl=MARKER_TTL):
                await self._tell_deferred(env, decision, freeze=freeze, end=end)

    async def _tell_deferred(
        self, env: Environment, decision: LeaveLock, *, freeze: Freeze, end: datetime
    ) -> None:
        lock = decision.lock
        text, blocks = self._telling.views.freeze_deferred(lock, reason=freeze.reason, end=end)
        catalog = self._catalog.current
        channels = (
            [env.channel] if env.channel else sorted({team.channel for team in catalog.teams})
        )
        for channel in channels:
            await self._outbox.send(
                OutgoingMessage(
                    key=f"autopilot:freeze:{env.name}:{_iso(end)}:deferred@{channel}",
                    channel=channel,
                    text=text,
                    blocks=blocks,
                )
            )
        await self._record(
            "freeze-deferred",
            env.name,
            f"lock by {lock.holder}",
            f"{freeze.reason} until {_iso(end)}",
        )

    async def _record(self, action: str, env: str, target: str, detail: str) -> None:
        await self._audit.record(
            AuditEntry(
                at=self._clock().timestamp(),
                actor=AUTOPILOT,
                action=action,
                env=env,
                target=target,
                detail=detail,
                origin="autopilot",
            )
        )


def _iso(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ") if when is not None else ""


def _late(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} min" if minutes else f"{int(delta.total_seconds())} s"
