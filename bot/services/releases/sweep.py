"""The sweep: the clock that makes every release end, and the backstop for lost webhooks.

It runs every few seconds on one replica (under a lease), but nothing depends on that: every
move it makes is a ``release_flow`` event committed by compare-and-set, so two sweeps racing on
the same deadline act once, and a restart in the middle changes nothing (the deadlines are
counted from times stored in the release). For each release not yet at an end, it

- repairs what a lost webhook would leave behind: asks GitLab for an ``auto`` MR's pipeline,
  for the pipeline of a merge commit whose hook never came (before concluding there is none),
  and asks again for a merge a crash or an outage interrupted; retries held ``auto`` merges
  (an unlock whose event was lost), and holds a merge its env's new lock must stop;
- supersedes a release that is no longer the latest of its app and env (a crash between a
  rollback's MR and the supersede);
- applies ``Tick``: expiry, no MR pipeline, no deploy pipeline, version never seen running.
"""

from __future__ import annotations

from datetime import timedelta

from bot import logs
from bot.domain.errors import PitcrewError
from bot.domain.release_flow import (
    Deadlines,
    DeployPipeline,
    MrPipeline,
    Superseded,
    Tick,
)
from bot.domain.releases import Release
from bot.services.releases.engine import ReleaseEngine, overridden

log = logs.get(__name__)

MERGE_RETRY_AFTER = timedelta(minutes=1)


class Sweep:
    def __init__(self, engine: ReleaseEngine, *, deadlines: Deadlines) -> None:
        self._engine = engine
        self._deadlines = deadlines

    async def run_once(self) -> None:
        engine = self._engine
        for release_id in await engine.store.open_ids():
            release, _ = await engine.store.load(release_id)
            if release is None:
                continue
            try:
                await self._repair(release)
            except PitcrewError as exc:
                log.warning(
                    "release sweep: GitLab did not answer", release=release_id, error=str(exc)
                )
            if await self._superseded(release):
                continue
            await engine.drive(release_id, Tick(now=engine.clock(), deadlines=self._deadlines))

    async def _repair(self, release: Release) -> None:
        engine = self._engine
        if release.mr_iid is None:
            return
        now = engine.clock()
        if release.state == "waiting_pipeline":
            mr = await engine.repo.merge_request(release.mr_iid)
            if mr.pipeline is not None:
                await engine.drive(release.id, MrPipeline(pipeline=mr.pipeline, sha=mr.head_sha))
        elif release.state == "approved":
            await engine.try_merge(release.id)  # held by a lock that may be gone, or a crash
        elif release.state == "merging" and await self._locked(release):
            await engine.hold_if_locked(release.id)  # a lock whose event was lost
        elif release.state == "merging" and now - release.created_at >= MERGE_RETRY_AFTER:
            mr = await engine.repo.merge_request(release.mr_iid)
            if (
                mr.state == "opened"
                and not mr.auto_merge
                and mr.pipeline_status not in ("failed", "canceled")
            ):
                await engine.ask_merge(release)
        elif (
            release.state == "merged"
            and release.merge_sha is not None
            and release.deploy_pipeline is None
            and now - (release.merged_at or release.created_at) >= self._deadlines.pipeline_wait
        ):
            pipeline = await engine.repo.pipeline_of_commit(release.merge_sha)
            if pipeline is not None:
                await engine.drive(
                    release.id, DeployPipeline(pipeline=pipeline, sha=release.merge_sha)
                )

    async def _locked(self, release: Release) -> bool:
        lock = await self._engine.locks.lock_of(release.env)
        return lock is not None and not overridden(release, lock)

    async def _superseded(self, release: Release) -> bool:
        """A release that is not the latest of its app and env was replaced by the latest."""
        engine = self._engine
        latest_id = await engine.store.latest(release.app, release.env)
        if latest_id is None or latest_id == release.id:
            return False
        latest, _ = await engine.store.load(latest_id)
        if latest is None or latest.state in ("requested", "refused"):
            return False
        await engine.drive(release.id, Superseded(by=latest.ref, at=engine.clock()))
        return True
