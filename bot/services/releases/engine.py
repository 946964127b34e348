"""The one place a release changes: apply an event, commit it, then say and do what it says.

``drive`` is load → ``apply`` (pure, ``bot.domain.release_flow``) → compare-and-set → thread
replies and the message → effects. Because the commit comes first, of two replicas racing on the
same click, webhook or deadline exactly one goes on: a merge is asked for once, a reply posted
once. Messages are keyed (``release:<id>``, ``release:<id>:<kind>``) and versioned by the
record's version, so a replay updates, never duplicates, and an older state never overwrites a
newer one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from bot import logs, metrics
from bot.domain.catalog import Catalog
from bot.domain.errors import PitcrewError, Unavailable
from bot.domain.home import RecentFailure
from bot.domain.locks import Lock
from bot.domain.release_flow import (
    END_STATES,
    Audit,
    CancelMerge,
    CloseMergeRequest,
    Event,
    Held,
    Merge,
    MergeFailed,
    Say,
    StartMerge,
    Step,
    TryMerge,
    apply,
    stamp_end,
)
from bot.domain.releases import Release, approvers_label
from bot.services.cancellation import reraise_if_cancelling
from bot.services.catalog import CatalogHolder
from bot.services.ports import AuditEntry, AuditLog, FailureLog, Outbox, OutgoingMessage
from bot.services.releases.ports import (
    LockReader,
    ReleasePeople,
    ReleaseRepository,
    ReleaseStore,
    ReleaseViews,
)

log = logs.get(__name__)

MAX_RACES = 20
_FAILURES = frozenset({"failed", "not_seen", "unreviewed_merge"})
"""Replies that tell a failure: the release joins its team's recent failures."""


@dataclass(frozen=True, kw_only=True)
class Committed:
    step: Step
    version: int
    ended: bool = False
    """This step brought the release to an end (``END_STATES``): the end listeners hear it."""

    @property
    def release(self) -> Release:
        return self.step.release


class ReleaseEngine:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        store: ReleaseStore,
        repo: ReleaseRepository,
        outbox: Outbox,
        people: ReleasePeople,
        locks: LockReader,
        audit: AuditLog,
        views: ReleaseViews,
        clock: Callable[[], datetime],
        failures: FailureLog | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.repo = repo
        self.outbox = outbox
        self.people = people
        self.locks = locks
        self.audit = audit
        self.views = views
        self.clock = clock
        self.failures = failures
        self._ended: list[Callable[[Release], Awaitable[None]]] = []

    def when_ended(self, listener: Callable[[Release], Awaitable[None]]) -> None:
        """Call ``listener(release)`` each time a release reaches an end (once per end, on
        the replica that committed it): the autopilot's memory, the released notes."""
        self._ended.append(listener)

    # ------------------------------------------------------------------ committing

    async def drive(self, release_id: str, event: Event) -> Release | None:
        """Apply ``event`` to the stored release, then tell and carry out what it asks for.
        ``None`` when it changed nothing (a duplicate, a stale or foreign event)."""
        for _ in range(MAX_RACES):
            release, version = await self.store.load(release_id)
            if release is None:
                return None
            step = apply(release, event)
            if step is None:
                return None
            committed = await self.save(step, previous=release, expected=version)
            if committed is not None:
                await self.follow_through(committed)
                return committed.release
        log.warning(
            "release kept changing; event dropped", release=release_id, what=type(event).__name__
        )
        return None

    async def save(self, step: Step, *, previous: Release, expected: int) -> Committed | None:
        """Compare-and-set of a step worked out from ``previous``, stored as ``expected``. A
        step that brings the release to an end is stamped with when, if it did not say."""
        stamped = stamp_end(previous, step.release, now=self.clock())
        if stamped is not step.release:
            step = replace(step, release=stamped)
        if not await self.store.save(step.release, expected=expected):
            return None
        changed = previous.state != step.release.state
        if changed:
            metrics.RELEASES.labels(step.release.kind, step.release.state).inc()
        ended = changed and step.release.state in END_STATES
        return Committed(step=step, version=expected + 1, ended=ended)

    async def follow_through(self, committed: Committed) -> None:
        """What a committed step says and does: its replies, the message, then its effects."""
        release, version = committed.release, committed.version
        if release.state == "refused":
            await self.store.restore_latest(release)  # it never opened: the previous one stands
        for said in committed.step.says:
            await self.say(release, version, said)
        if release.mr_iid is not None:  # a release is shown from its MR on, never before
            await self.show(release, version)
        if any(said.kind in _FAILURES for said in committed.step.says):
            await self._record_failure(release)
        for effect in committed.step.effects:
            if isinstance(effect, Merge):
                await self.ask_merge(release)
            elif isinstance(effect, TryMerge):
                await self.try_merge(release.id)
            elif isinstance(effect, CancelMerge):
                await self.quietly(self.repo.cancel_merge(release.mr_iid or 0))
            elif isinstance(effect, CloseMergeRequest):
                await self._close(release, note=effect.note)
            elif isinstance(effect, Audit):
                await self.record(
                    "pitcrew", effect.action, release.env, release.title, effect.detail
                )
        if committed.ended:
            for listener in self._ended:
                try:
                    await listener(release)
                except Exception:  # the release has ended whatever a listener makes of it
                    reraise_if_cancelling()
                    log.exception("a release end listener failed", release=release.id)

    async def _record_failure(self, release: Release) -> None:
        """For the App Home of the team's people; never holds the release up."""
        if self.failures is None:
            return
        try:
            await self.failures.record(
                RecentFailure(
                    key=f"release:{release.id}",
                    team=release.team,
                    kind="release",
                    title=release.title,
                    reason=release.failure or release.state.replace("_", " "),
                    url=release.mr_url,
                    at=self.clock(),
                )
            )
        except Exception:
            reraise_if_cancelling()
            log.exception("a release failure was not recorded for the App Home", release=release.id)

    # ------------------------------------------------------------------ merging

    async def hold_if_locked(self, release_id: str) -> None:
        """A release merging (approved, or its pipeline passed) while its env became locked:
        it is held before GitLab merges it, and goes on when the lock ends."""
        release, _ = await self.store.load(release_id)
        if release is None or release.state != "merging" or release.merged_at is not None:
            return
        lock = await self.locks.lock_of(release.env)
        if lock is not None and not overridden(release, lock):
            await self.drive(release_id, Held(holder=lock.holder))

    async def try_merge(self, release_id: str) -> None:
        """An ``auto`` release may merge: now, unless its env is locked (then it is held, and
        goes on when the lock ends)."""
        release, _ = await self.store.load(release_id)
        if release is None or release.state != "approved":
            return
        lock = await self.locks.lock_of(release.env)
        if lock is not None and not overridden(release, lock):
            await self.drive(release_id, Held(holder=lock.holder))
            return
        await self.drive(release_id, StartMerge(at=self.clock()))

    async def ask_merge(self, release: Release) -> None:
        """Ask GitLab to merge at the reviewed head when the pipeline passes. A refusal fails
        the release; GitLab not answering leaves it merging, and the sweep asks again."""
        try:
            await self.repo.merge(release.mr_iid or 0, sha=release.head_sha or "")
        except Unavailable as exc:
            log.warning(
                "merge not asked: GitLab did not answer", release=release.id, error=str(exc)
            )
        except PitcrewError as exc:
            await self.drive(release.id, MergeFailed(reason=f"GitLab refused the merge: {exc}"))

    async def _close(self, release: Release, *, note: str | None) -> None:
        if release.mr_iid is None:
            return
        await self.quietly(self.repo.close(release.mr_iid))
        if note:
            await self.quietly(self.repo.note(release.mr_iid, note))

    # ------------------------------------------------------------------ telling

    async def show(self, release: Release, version: int) -> None:
        catalog = self.catalog.current
        text, blocks = self.views.message(release, approvers=self.approvers(catalog, release))
        for index, channel in enumerate(self.channels(catalog, release)):
            key = f"release:{release.id}" if index == 0 else f"release:{release.id}@{channel}"
            await self.outbox.send(
                OutgoingMessage(key=key, channel=channel, text=text, blocks=blocks),
                version=version,
            )

    async def say(self, release: Release, version: int, said: Say) -> None:
        catalog = self.catalog.current
        text, blocks = self.views.note(release, said.kind, by=said.by)
        key = f"release:{release.id}:{said.kind}" + (f":{said.once_per}" if said.once_per else "")
        await self.outbox.send(
            OutgoingMessage(
                key=key,
                channel=self.channels(catalog, release)[0],
                text=text,
                blocks=blocks,
                thread_key=f"release:{release.id}",
                broadcast=said.broadcast,
            ),
            version=version,
        )

    @staticmethod
    def approvers(catalog: Catalog, release: Release) -> str:
        """Who may approve, as Slack shows them."""
        if release.app not in catalog.app_names or release.env not in catalog.env_names:
            return "nobody"
        return approvers_label(catalog.approvers_for(release.app, release.env))

    @staticmethod
    def channels(catalog: Catalog, release: Release) -> tuple[str, ...]:
        if release.app in catalog.app_names and release.env in catalog.env_names:
            return catalog.release_channels(release.app, release.env)
        if release.team in catalog.team_names:
            return (catalog.team(release.team).channel,)
        return ("#general",)

    async def may_reject(self, release: Release, user: str) -> bool:
        """The requester, or an approver of its env (groups resolved now)."""
        if user == release.requester:
            return True
        named = approvers_named(self.catalog.current, release)
        return user in await self.people.members(named)

    # ------------------------------------------------------------------ bookkeeping

    async def record(
        self,
        actor: str,
        action: str,
        env: str,
        target: str,
        detail: str = "",
        *,
        origin: str = "",
    ) -> None:
        await self.audit.record(
            AuditEntry(
                at=self.clock().timestamp(),
                actor=actor,
                action=action,
                env=env,
                target=target,
                detail=detail[:300],
                origin=origin,
            )
        )

    async def quietly(self, call: Awaitable[None]) -> None:
        """GitLab bookkeeping (a note, closing an MR) that must not undo what was decided."""
        try:
            await call
        except PitcrewError as exc:
            log.warning("GitLab bookkeeping failed", error=str(exc))


def approvers_named(catalog: Catalog, release: Release) -> Sequence[str]:
    if release.app not in catalog.app_names or release.env not in catalog.env_names:
        return ()
    return catalog.approvers_for(release.app, release.env)


def overridden(release: Release, lock: Lock) -> bool:
    """The requester chose "Deploy anyway" through this very lock."""
    override = release.override
    return override is not None and override.holder == lock.holder and override.since == lock.since
