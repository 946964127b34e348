"""Releases: ``/deploy``, promotions, ``/rollback`` and ``/undeploy`` as merge requests on the
GitOps repo.

A release is one record in the store, replaced by compare-and-set, and one Slack message (in the
team's channel, mirrored in the env's) rendered from it, with a thread that tells its story. How
it moves is pure domain (``bot.domain.release_flow``); this package feeds it events and carries
out what it decides, one module per job around one shared engine:

- ``opening``: the commands (``/deploy``, ``/rollback``, ``/undeploy``), their checks,
  precedence, and the MR;
- ``approvals``: Approve and Reject, judged at each click;
- ``progress``: GitLab's webhooks, the rollout watcher and unlocks;
- ``sweep``: the deadlines that make every release end, and the backstop for lost webhooks;
- ``engine``: apply, commit, then say and do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from bot.domain.manifests import ManifestError, read_version
from bot.domain.release_flow import END_STATES, Deadlines, NoteKind
from bot.domain.releases import Release, ReleaseKind, RollbackOffer
from bot.domain.rollouts import Happening, Rollout
from bot.services.catalog import CatalogHolder
from bot.services.periodic import every
from bot.services.ports import AuditLog, FailureLog, Outbox
from bot.services.releases.approvals import Approvals
from bot.services.releases.engine import ReleaseEngine
from bot.services.releases.opening import Opening, Outcome
from bot.services.releases.ports import (
    FileEdit,
    LockReader,
    ManifestFile,
    ManifestValidator,
    MergeRequestState,
    PendingRequest,
    Refusal,
    ReleasePeople,
    ReleaseRepository,
    ReleaseStore,
    ReleaseViews,
    Reply,
)
from bot.services.releases.progress import Progress
from bot.services.releases.sweep import Sweep

__all__ = [
    "DEFAULT_DEADLINES",
    "FileEdit",
    "LockReader",
    "ManifestFile",
    "ManifestValidator",
    "MergeRequestState",
    "NoteKind",
    "Outcome",
    "PendingRequest",
    "Refusal",
    "ReleasePeople",
    "ReleaseRepository",
    "ReleaseService",
    "ReleaseStore",
    "ReleaseViews",
]

SWEEP_EVERY = 15.0
DEFAULT_DEADLINES = Deadlines(
    expiry=timedelta(hours=24),
    pipeline_wait=timedelta(seconds=600),
    rollout_wait=timedelta(seconds=1800),
)


class ReleaseService:
    """What the rest of Pitcrew calls: commands, clicks, GitLab events, rollouts, the sweep."""

    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        store: ReleaseStore,
        repo: ReleaseRepository,
        validator: ManifestValidator,
        outbox: Outbox,
        people: ReleasePeople,
        locks: LockReader,
        audit: AuditLog,
        views: ReleaseViews,
        watched_envs: frozenset[str] = frozenset(),
        deadlines: Deadlines = DEFAULT_DEADLINES,
        sweep_every: float = SWEEP_EVERY,
        failures: FailureLog | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        engine = ReleaseEngine(
            catalog=catalog,
            store=store,
            repo=repo,
            outbox=outbox,
            people=people,
            locks=locks,
            audit=audit,
            views=views,
            clock=clock,
            failures=failures,
        )
        self._store = store
        self._engine = engine
        self._opening = Opening(engine, validator=validator, watched_envs=watched_envs)
        self._approvals = Approvals(engine)
        self._progress = Progress(engine)
        self._sweep = Sweep(engine, deadlines=deadlines)
        self._sweep_every = sweep_every

    # ------------------------------------------------------------------ people

    async def command(
        self, *, kind: ReleaseKind, user: str, text: str, reply: Reply, origin: str
    ) -> None:
        await self._opening.command(kind=kind, user=user, text=text, reply=reply, origin=origin)

    async def deploy_anyway(self, *, request_id: str, user: str, reply: Reply, origin: str) -> None:
        await self._opening.deploy_anyway(
            request_id=request_id, user=user, reply=reply, origin=origin
        )

    async def approve(self, *, release_id: str, user: str, answer: Reply, origin: str) -> None:
        await self._approvals.approve(
            release_id=release_id, user=user, answer=answer, origin=origin
        )

    async def reject(self, *, release_id: str, user: str, answer: Reply, origin: str) -> None:
        await self._approvals.reject(release_id=release_id, user=user, answer=answer, origin=origin)

    async def roll_back_release(
        self, *, release_id: str, user: str, reply: Reply, origin: str
    ) -> None:
        """The Roll back button of a failed release, clicked by ``user``."""
        await self._opening.roll_back_release(
            release_id=release_id, user=user, reply=reply, origin=origin
        )

    async def roll_back_offer(self, *, offer_id: str, user: str, reply: Reply, origin: str) -> None:
        """The Roll back button of a failed rollout no release explains, clicked by ``user``."""
        await self._opening.roll_back_offer(
            offer_id=offer_id, user=user, reply=reply, origin=origin
        )

    async def offer_rollback(self, *, key: str, app: str, env: str, version: str) -> RollbackOffer:
        """A Roll back button for a rollout's failure reply (the ``RollbackOffers`` port)."""
        return await self._opening.offer(key=key, app=app, env=env, version=version)

    # ------------------------------------------------------------------ the App Home

    async def open_releases(self) -> list[Release]:
        """Releases not yet at an end (approvals are awaited among them)."""
        return await self._load(await self._store.open_ids())

    async def release(self, release_id: str) -> Release | None:
        """One release by id (the ``ReleaseLookup`` port of the deployment records)."""
        return (await self._store.load(release_id))[0]

    async def ended_since(self, since: datetime) -> list[Release]:
        """Releases that reached an end since ``since`` (the ``ReleaseLookup`` port of the
        deployment records' reconcile), and any the open index still lists at an end (a crash
        between a release's end and its indexes). Only those whose end carries its time: the
        ends stored before it did were recorded by then, or are past repair."""
        store = self._store
        ended = await store.ended_ids(since=since.timestamp())
        found = await self._load(list(dict.fromkeys([*ended, *await store.open_ids()])))
        return [
            r
            for r in found
            if r.state in END_STATES and r.finished_at is not None and r.finished_at >= since
        ]

    async def requested_by(self, user: str) -> list[Release]:
        """The latest releases ``user`` asked for, newest first."""
        return await self._load(await self._store.of_requester(user))

    async def _load(self, ids: list[str]) -> list[Release]:
        found = []
        for release_id in ids:
            release, _ = await self._store.load(release_id)
            if release is not None:
                found.append(release)
        return found

    # ------------------------------------------------------------------ the autopilot

    async def open_for_autopilot(self, request: PendingRequest, *, origin: str) -> Outcome:
        """A release the autopilot asks for: the checks, MR and thread of a person's."""

        async def nobody(_: object) -> None:
            return None  # the autopilot reads the outcome; the release speaks in its channel

        return await self._opening.request(request, reply=nobody, origin=origin)

    async def latest_release(self, app: str, env: str) -> Release | None:
        store = self._engine.store
        latest = await store.latest(app, env)
        return (await store.load(latest))[0] if latest else None

    async def running_version(self, app: str, env: str) -> str | None:
        """What git says ``app`` runs in ``env`` (``None``: no manifest, or none readable)."""
        catalog = self._engine.catalog.current
        path = catalog.manifest_path(app, env)
        manifest = await self._engine.repo.manifest(path)
        if manifest is None:
            return None
        try:
            return read_version(manifest.text, app=catalog.app(app)).version
        except ManifestError:
            return None

    def when_ended(self, listener: Callable[[Release], Awaitable[None]]) -> None:
        self._engine.when_ended(listener)

    # ------------------------------------------------------------------ the world

    async def on_merge_request(
        self,
        *,
        iid: int,
        action: str,
        merge_sha: str | None,
        by: str | None,
        head_sha: str | None = None,
    ) -> None:
        await self._progress.on_merge_request(
            iid=iid, action=action, merge_sha=merge_sha, by=by, head_sha=head_sha
        )

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
        await self._progress.on_pipeline(
            pipeline_id=pipeline_id,
            status=status,
            ref=ref,
            sha=sha,
            url=url,
            merge_request_iid=merge_request_iid,
        )

    async def on_rollout(self, *, app: str, env: str, rollout: Rollout, what: Happening) -> bool:
        return await self._progress.on_rollout(app=app, env=env, rollout=rollout, what=what)

    async def on_removed(self, *, app: str, env: str) -> bool:
        return await self._progress.on_removed(app=app, env=env)

    async def on_unlocked(self, env: str) -> None:
        await self._progress.on_unlocked(env)

    async def on_locked(self, env: str) -> None:
        await self._progress.on_locked(env)

    # ------------------------------------------------------------------ the clock

    async def sweep(self) -> None:
        await self._sweep.run_once()

    async def run_sweeper(self) -> None:
        await every(self._sweep_every, self.sweep, what="release sweep")
