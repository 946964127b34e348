"""Following a release after its MR is open: GitLab's webhooks, the rollout watcher, unlocks.

Each source is translated into a ``release_flow`` event and driven through the engine; the
domain decides. Webhooks come late, twice and out of order, and a branch has two pipelines
(push and merge request): the domain keeps the newest pipeline and never shows a finished one
running again. A GitOps pipeline can be reported before the MR's merge webhook: then GitLab is
asked which MR the commit came with, only while some release is open (people's own pushes to
the GitOps repo must not cost a GitLab call per pipeline event).
"""

from __future__ import annotations

from bot import logs
from bot.domain.errors import PitcrewError
from bot.domain.release_flow import (
    Closed,
    DeployPipeline,
    Merged,
    MrPipeline,
    RolloutSeen,
    WorkloadGone,
)
from bot.domain.releases import PipelineLink
from bot.domain.rollouts import Happening, Rollout
from bot.services.releases.engine import ReleaseEngine

log = logs.get(__name__)


class Progress:
    def __init__(self, engine: ReleaseEngine) -> None:
        self._engine = engine

    async def on_merge_request(
        self,
        *,
        iid: int,
        action: str,
        merge_sha: str | None,
        by: str | None,
        head_sha: str | None = None,
    ) -> None:
        engine = self._engine
        release_id = await engine.store.by_mr(iid)
        if release_id is None:
            return
        if action == "merge":
            if head_sha is None:
                head_sha = await self._head_of(iid)
            await engine.drive(
                release_id,
                Merged(merge_sha=merge_sha, head_sha=head_sha, by=by, at=engine.clock()),
            )
        elif action == "close":
            await engine.drive(release_id, Closed(by=by))

    async def _head_of(self, iid: int) -> str | None:
        """The merged MR's head, when the hook did not name it."""
        try:
            return (await self._engine.repo.merge_request(iid)).head_sha
        except PitcrewError as exc:
            log.warning("could not read a merged MR's head", iid=iid, error=str(exc))
            return None

    async def on_pipeline(
        self,
        *,
        pipeline_id: int,
        status: str,
        ref: str,
        sha: str,
        url: str | None,
        merge_request_iid: int | None,
    ) -> None:
        """A pipeline of the GitOps repo: a release's MR pipeline, or the deploy of its merge."""
        store = self._engine.store
        pipeline = PipelineLink(id=pipeline_id, status=status, url=url)
        release_id = None
        if merge_request_iid is not None:
            release_id = await store.by_mr(merge_request_iid)
        if release_id is None:
            release_id = await store.by_branch(ref)
        if release_id is not None:
            await self._engine.drive(release_id, MrPipeline(pipeline=pipeline, sha=sha))
            return
        release_id = await store.by_merge_sha(sha)
        if release_id is None and await store.open_ids():
            release_id = await self._release_of_commit(sha)
        if release_id is not None:
            await self._engine.drive(release_id, DeployPipeline(pipeline=pipeline, sha=sha))

    async def _release_of_commit(self, sha: str) -> str | None:
        """A deploy pipeline can be reported before the MR's merge: ask GitLab which MR the
        commit came with."""
        engine = self._engine
        try:
            iids = await engine.repo.merge_requests_of_commit(sha)
        except PitcrewError as exc:
            log.warning(
                "could not find the merge request of a GitOps commit", sha=sha, error=str(exc)
            )
            return None
        for iid in iids:
            release_id = await engine.store.by_mr(iid)
            if release_id is not None:
                release, _ = await engine.store.load(release_id)
                if release is not None and release.head_sha != sha:
                    return release_id
        return None

    async def on_rollout(self, *, app: str, env: str, rollout: Rollout, what: Happening) -> bool:
        """The watcher saw ``app`` roll out in ``env``: the release it belongs to follows it if
        the rollout is of its version. ``True`` when a release tells this rollout's story: the
        one already following it (whatever its state now), else the latest of the app and env
        once it takes the rollout on."""
        engine = self._engine
        release_id = await engine.store.by_rollout(rollout.id) or await engine.store.latest(
            app, env
        )
        if release_id is None:
            return False
        await engine.drive(
            release_id,
            RolloutSeen(
                what=what,
                versions=tuple(c.new_version for c in rollout.changes if c.new_version),
                started_at=rollout.started_at,
                finished_at=rollout.finished_at,
                reason=rollout.reason or rollout.message,
                at=engine.clock(),
                rollout_id=rollout.id,
                progress=rollout.progress,
                problems=rollout.problems,
            ),
        )
        release, _ = await engine.store.load(release_id)
        return release is not None and release.rollout_id == rollout.id

    async def on_locked(self, env: str) -> None:
        """A lock (a freeze) came between an approval and the merge: hold what is merging."""
        engine = self._engine
        for release_id in await engine.store.open_ids():
            release, _ = await engine.store.load(release_id)
            if release is not None and release.env == env and release.state == "merging":
                await engine.hold_if_locked(release_id)

    async def on_removed(self, *, app: str, env: str) -> bool:
        """The watcher saw ``app``'s workload deleted from ``env``: the end of an undeploy past
        its merge. ``True`` when that undeploy tells it."""
        engine = self._engine
        release_id = await engine.store.latest(app, env)
        if release_id is None:
            return False
        await engine.drive(release_id, WorkloadGone(at=engine.clock()))
        release, _ = await engine.store.load(release_id)
        return release is not None and release.kind == "undeploy" and release.state == "removed"

    async def on_unlocked(self, env: str) -> None:
        """Held ``auto`` releases of ``env`` go on as soon as it is unlocked."""
        engine = self._engine
        for release_id in await engine.store.open_ids():
            release, _ = await engine.store.load(release_id)
            if release is not None and release.env == env and release.held_by is not None:
                await engine.try_merge(release_id)
