"""Recording deployments as releases end and rollouts no release explains finish.

Called on the replica that committed a release's end (``ReleaseEngine.when_ended``) and on the
rollout watcher's leader. The store writes each event of a record once (``SET NX`` semantics in
one script), so a second call — a replayed end, two replicas — changes nothing, and the
Prometheus counters move only for the caller that wrote it. A record that cannot be written is
logged: it never holds a release or a notification up.

What the end listener missed — the process stopped between a release's end and its record,
Redis did not answer — the reconcile writes: at start and every few minutes, on the insights
lease's holder, the releases that ended in the last two days are worked out again and the
events the store lacks are recorded (``unrecorded``). Every end carries its time
(``stamp_end``), so the record worked out again is the one the listener would have written,
and the store's once-only write holds against a listener finishing late, a second replica,
a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from bot import logs, metrics
from bot.domain.dora import (
    Deployment,
    from_release,
    from_rollout,
    restores_by,
    undone_by,
    unrecorded,
)
from bot.domain.errors import PitcrewError
from bot.domain.releases import Release
from bot.services.cancellation import reraise_if_cancelling
from bot.services.insights.ports import DeploymentStore, ReleaseLookup

log = logs.get(__name__)

CONTEXT = timedelta(days=92)
"""How far back a new record looks for the failures it restores and the change it undoes."""
RECONCILE_WINDOW = timedelta(days=2)
"""How far back the reconcile looks for ended releases the end listener did not record: a
crash, an outage of a weekend."""


class DeploymentRecorder:
    def __init__(
        self,
        *,
        store: DeploymentStore,
        releases: ReleaseLookup | None,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._releases = releases
        self._clock = clock

    async def on_release_ended(self, release: Release) -> None:
        """A release reached an end: what it changed in its env, if anything, is recorded."""
        try:
            by_rollback = await self._superseded_by_rollback(release)
            deployment = from_release(release, at=self._clock(), superseded_by_rollback=by_rollback)
            if deployment is not None:
                await self.record(deployment)
        except Exception:
            reraise_if_cancelling()
            log.exception("a deployment was not recorded", release=release.id)

    async def reconcile(self) -> int:
        """Record what the end listener missed among the releases that ended in the last
        ``RECONCILE_WINDOW``; how many events this call wrote (and counted)."""
        if self._releases is None:
            return 0
        now = self._clock()
        wanted: list[Deployment] = []
        for release in await self._releases.ended_since(now - RECONCILE_WINDOW):
            by_rollback = await self._superseded_by_rollback(release)
            deployment = from_release(release, at=now, superseded_by_rollback=by_rollback)
            if deployment is not None:
                wanted.append(deployment)
        if not wanted:
            return 0
        landed = [d.landed for d in wanted]
        histories = await self._store.histories(
            {(d.app, d.env) for d in wanted},
            since=min(landed),
            until=max(now.timestamp(), *landed),
        )
        recorded = {d.id: d for found in histories.values() for d in found}
        written = 0
        for deployment in unrecorded(wanted, recorded):
            if await self.record(deployment):
                written += 1
                log.warning(
                    "a deployment missed at its release's end was recorded late",
                    release=deployment.id,
                )
        return written

    async def on_outside_rollout(
        self,
        *,
        rollout_id: str,
        app: str,
        env: str,
        version: str,
        previous: str | None,
        started: datetime | None,
        ended: datetime,
        succeeded: bool,
    ) -> None:
        """A rollout of a new version no release explains ended (the ``OutsideRollouts``
        port of the rollout notifier)."""
        try:
            await self.record(
                from_rollout(
                    rollout_id=rollout_id,
                    app=app,
                    env=env,
                    version=version,
                    previous=previous,
                    started=started,
                    ended=ended,
                    succeeded=succeeded,
                )
            )
        except Exception:
            reraise_if_cancelling()
            log.exception("an outside rollout was not recorded", rollout=rollout_id)

    async def record(self, deployment: Deployment, *, counted: bool = True) -> bool:
        """Write it once; the first writer counts it in the metrics (``counted``: not for
        history written afterwards, which is no news)."""
        if not await self._store.record(deployment):
            return False
        log.info(
            "deployment recorded",
            app=deployment.app,
            env=deployment.env,
            kind=deployment.kind,
            version=deployment.version,
            outcome="deployed" if deployment.deployed is not None else "failed",
        )
        if counted:
            await self._count(deployment)
        return True

    async def _count(self, d: Deployment) -> None:
        if d.failed is not None and d.deployed is None and d.change:
            metrics.DORA_FAILED_CHANGES.labels(d.app, d.env).inc()
            return
        if d.deployed is None:
            return
        metrics.DORA_DEPLOYMENTS.labels(d.app, d.env, d.kind).inc()
        if d.change:
            for commit in d.commits:
                metrics.DORA_LEAD_TIME.labels(d.env).observe(max(d.deployed - commit, 0.0))
        try:
            now = self._clock().timestamp()
            history = await self._store.history(
                d.app, d.env, since=now - CONTEXT.total_seconds(), until=now
            )
        except PitcrewError as exc:
            log.warning("restores not measured", app=d.app, env=d.env, error=str(exc))
            return
        by_id = {h.id: h for h in history}
        stored = by_id.get(d.id, d)  # as the store keeps it: whole seconds
        if d.kind == "rollback":
            for undone, at in undone_by(history).items():
                change = by_id.get(undone)
                if at == stored.requested and change is not None and change.failed is None:
                    metrics.DORA_FAILED_CHANGES.labels(d.app, d.env).inc()
        for seconds in restores_by(history, stored):
            metrics.DORA_RESTORE.labels(d.env).observe(seconds)

    async def _superseded_by_rollback(self, release: Release) -> bool:
        if release.state != "superseded" or release.superseded_by is None:
            return False
        if self._releases is None:
            return False
        other = await self._releases.release(release.superseded_by.id)
        return other is not None and other.kind == "rollback"
