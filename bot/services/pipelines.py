"""Pipeline notifications: one living Slack message per GitLab pipeline, in its team's channel.

Every observation (pipeline or job hook) is folded into the pipeline's state by the pure state
machine (``bot.domain.pipelines``). Exactly-once *visible* behaviour, with several replicas and
at-least-once delivery, rests on three rules:

1. **Commit, then announce.** The new state, and the ref's history when the pipeline finished,
   are committed together with compare-and-set on their versions. A replica that lost a race
   reloads and applies its observation again.
2. **Versioned messages.** Messages go to the outbox with the committed version; the outbox
   ignores a version older than one it already took, so a slow replica never shows an old state.
3. **Due announcements are remembered.** The record says what its version must announce (the
   message, the failure reply, the "fixed" reply) and which version was announced. A crash
   between commit and announce is repaired by the next observation of that pipeline, even a
   duplicate: the stored state is announced first, then the observation is folded in.

Events come by the batch (``observe_many``): a batch's pipelines are loaded, committed and
announced together, one round trip per step; each pipeline's events are folded in the order
they were received (``bot.domain.pipelines.fold``), and a pipeline's second state change of a
batch waits until its first one is committed and announced (``bot.domain.batches.in_waves``).

All messages are keyed (``pipeline:<project>:<id>``, its ``:failure:<run>`` and ``:fixed``
replies), so announcing twice updates in place and never posts twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from bot import logs, metrics
from bot.domain.batches import in_waves, partition
from bot.domain.catalog import NotifyFilter
from bot.domain.home import RecentFailure
from bot.domain.pipelines import (
    Fold,
    JobObserved,
    Pipeline,
    PipelineObserved,
    RefHistory,
    fold,
    judge_ref,
    ref_scope,
)
from bot.services.cancellation import reraise_if_cancelling
from bot.services.catalog import CatalogHolder
from bot.services.ports import (
    FailureLog,
    Outbox,
    OutgoingMessage,
    PeopleDirectory,
    Rendered,
    Throttle,
)

log = logs.get(__name__)

MAX_RACES = 20
UNKNOWN_PROJECT_LOG_EVERY = 3600.0


@dataclass(frozen=True, kw_only=True)
class PipelineRecord:
    state: Pipeline
    version: int
    """Bumped by every commit; messages carry it."""
    announced: int = 0
    """The version whose messages were handed to the outbox."""
    shown: bool = False
    """The team wants this pipeline in its channel (decided once, then it is followed)."""
    failure_due: bool = False
    """The failure reply of ``state.run`` is still to be announced."""
    fixed_due: int = 0
    """When > 0: the "fixed" reply is still to be announced, ending that many failures."""


@dataclass(frozen=True, kw_only=True)
class RefUpdate:
    scope: str
    history: RefHistory
    expected: int


PipelineKey = tuple[str, int]
"""A pipeline: its project (as GitLab spells it) and its id."""


@dataclass(frozen=True, kw_only=True)
class Commit:
    """Store ``record`` (and ``ref``) if nobody committed the pipeline since ``expected``."""

    record: PipelineRecord
    expected: int
    ref: RefUpdate | None = None


class PipelineStore(Protocol):
    """Every method takes many items, to serve a batch of events in one round trip."""

    async def load(self, pipelines: Sequence[PipelineKey]) -> list[PipelineRecord | None]: ...

    async def load_refs(
        self, scopes: Sequence[tuple[str, str]]
    ) -> list[tuple[RefHistory | None, int]]:
        """Each (project, scope)'s history and its version (0: none yet)."""
        ...

    async def commit(self, commits: Sequence[Commit]) -> list[bool]:
        """Each commit in order, atomically on its own (the record and its ref); False where
        somebody committed first (or an earlier commit of the same list failed and this one
        expected it)."""
        ...

    async def mark_announced(self, announced: Sequence[tuple[PipelineKey, int]]) -> None:
        """Each pipeline's version was handed to the outbox (a lower mark never wins)."""
        ...


class PipelineViews(Protocol):
    def pipeline(self, p: Pipeline) -> Rendered: ...

    def failure(self, p: Pipeline, *, slack_user: str | None) -> Rendered: ...

    def fixed(self, p: Pipeline, *, failures: int) -> Rendered: ...


class RaceLost(Exception):
    """Other replicas kept committing first; the observation stays pending and is retried."""


def message_key(p: Pipeline) -> str:
    return f"pipeline:{p.project}:{p.id}"


Observation = PipelineObserved | JobObserved


@dataclass
class _Followed:
    """One pipeline of a batch while it is handled: its events, and its record as committed."""

    key: PipelineKey
    events: list[tuple[int, Observation]]
    """With each event's position in the batch."""
    channel: str
    notify: NotifyFilter
    team: str
    record: PipelineRecord | None = None


@dataclass(frozen=True)
class _Unit:
    """One state change to store and announce: a fold, or (without one) the announcement of a
    state already stored that a crash left unannounced."""

    pipeline: _Followed
    fold: Fold | None
    at: int
    """Position in the batch of its last event: units are stored in that order."""


class PipelineNotifier:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        store: PipelineStore,
        outbox: Outbox,
        people: PeopleDirectory,
        throttle: Throttle,
        views: PipelineViews,
        gitops_project: str,
        failures: FailureLog | None = None,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._outbox = outbox
        self._people = people
        self._throttle = throttle
        self._views = views
        self._gitops_project = gitops_project.lower()
        self._failures = failures

    async def observe(self, event: Observation) -> None:
        await self.observe_many([event])

    async def observe_many(self, events: Sequence[Observation]) -> None:
        """Fold a batch of observations, received in this order, into their pipelines' states.

        Pipelines are handled together: one round trip loads them all, one commits them all,
        one queues their messages. A pipeline's own observations are folded in their order into
        as few commits as keep every announcement (see ``fold``). A pipeline whose commit lost a
        race with another replica is loaded and folded again; its observations already stored
        fold into nothing.
        """
        catalog = self._catalog.current
        followed: dict[PipelineKey, _Followed] = {}
        unknown: list[str] = []
        for part in partition(events, lambda e: (e.project.lower(), e.pipeline_id)).values():
            first = part[0][1]
            app = catalog.app_for_source(first.project)
            if app is None:
                unknown += [first.project] * len(part)
                continue
            team = catalog.team(app.team)
            key = (first.project, first.pipeline_id)
            followed[key] = _Followed(
                key=key,
                events=part,
                channel=catalog.channel_for_app(app),
                notify=team.notify,
                team=app.team,
            )
        for project, count in Counter(unknown).items():
            await self._unknown(project, count=count)
        todo = list(followed.values())
        for _ in range(MAX_RACES):
            if not todo:
                return
            todo = await self._handle(todo)
        project, pipeline_id = todo[0].key
        raise RaceLost(f"{project} #{pipeline_id}: {MAX_RACES} commits lost in a row")

    async def _handle(self, pipelines: list[_Followed]) -> list[_Followed]:
        """Load, fold, commit and announce; the pipelines that lost a race (to do again)."""
        records = await self._store.load([p.key for p in pipelines])
        units: list[_Unit] = []
        for pipeline, record in zip(pipelines, records, strict=True):
            pipeline.record = record
            folds = fold(record.state if record else None, (e for _, e in pipeline.events))
            advanced = sum(len(f.seen) for f in folds)
            if len(pipeline.events) > advanced:
                metrics.PIPELINE_OBSERVATIONS.labels("unchanged").inc(
                    len(pipeline.events) - advanced
                )
            if record is not None and record.announced < record.version:
                # A crash came between a commit and its announcement: announce that state first,
                # its replies rendered from the state they are about (a failed run's failure
                # reply, not the next run's), then go on.
                units.append(_Unit(pipeline, None, pipeline.events[0][0]))
            for f in folds:
                units.append(_Unit(pipeline, f, pipeline.events[f.last][0]))
        units.sort(key=lambda u: (u.at, u.fold is not None))
        refs: dict[tuple[str, str], tuple[RefHistory | None, int]] = {}
        lost: dict[PipelineKey, _Followed] = {}
        for wave in in_waves([u.pipeline.key for u in units]):
            todo = [units[i] for i in wave if units[i].pipeline.key not in lost]
            await self._wave(todo, refs=refs, lost=lost)
        return list(lost.values())

    async def _wave(
        self,
        units: list[_Unit],
        *,
        refs: dict[tuple[str, str], tuple[RefHistory | None, int]],
        lost: dict[PipelineKey, _Followed],
    ) -> None:
        """Commit units of different pipelines together, then announce the committed ones."""
        wanted_refs = [
            (u.fold.transition.state.project, ref_scope(u.fold.transition.state))
            for u in units
            if u.fold is not None and u.fold.transition.finished_now
        ]
        missing = list(dict.fromkeys(r for r in wanted_refs if r not in refs))
        if missing:
            refs.update(zip(missing, await self._store.load_refs(missing), strict=True))
        commits: list[tuple[_Unit, Commit]] = []
        announce: list[tuple[_Unit, PipelineRecord]] = []
        for unit in units:
            record = unit.pipeline.record
            if unit.fold is None:
                assert record is not None
                announce.append((unit, record))
                continue
            commits.append((unit, self._commit_for(unit.fold, record, unit.pipeline, refs)))
        done = await self._store.commit([c for _, c in commits])
        for (unit, commit), ok in zip(commits, done, strict=True):
            if ok:
                metrics.PIPELINE_OBSERVATIONS.labels("advanced").inc(
                    len(unit.fold.seen) if unit.fold else 0
                )
                if commit.ref is not None:
                    ref = commit.ref
                    refs[(commit.record.state.project, ref.scope)] = (
                        ref.history,
                        ref.expected + 1,
                    )
                announce.append((unit, commit.record))
            else:
                metrics.PIPELINE_OBSERVATIONS.labels("race").inc()
                lost[unit.pipeline.key] = unit.pipeline
                if commit.ref is not None:  # somebody else moved it: read it again
                    refs.pop((commit.record.state.project, commit.ref.scope), None)
        await self._announce(announce)

    @staticmethod
    def _commit_for(
        f: Fold,
        record: PipelineRecord | None,
        pipeline: _Followed,
        refs: dict[tuple[str, str], tuple[RefHistory | None, int]],
    ) -> Commit:
        t = f.transition
        p = t.state
        ref: RefUpdate | None = None
        fixed = 0
        if t.finished_now:
            scope = ref_scope(p)
            history, expected = refs[(p.project, scope)]
            verdict = judge_ref(history, p)
            if verdict.changed and verdict.history is not None:
                ref = RefUpdate(scope=scope, history=verdict.history, expected=expected)
                # the next fold of this scope in the wave expects this one's version
                refs[(p.project, scope)] = (verdict.history, expected + 1)
            if verdict.fixed:
                fixed = max(verdict.failures, 1)
        unannounced = record is not None and record.announced < record.version
        wanted = any(
            pipeline.notify.wants(
                ref=s.ref,
                tag=s.tag,
                default_branch=s.default_branch,
                status=s.status,
                source=s.source or "push",
            )
            for s in f.seen
        )
        new = PipelineRecord(
            state=p,
            version=(record.version if record else 0) + 1,
            announced=record.announced if record else 0,
            shown=(record is not None and record.shown) or wanted or fixed > 0,
            failure_due=t.failed_now or (unannounced and record is not None and record.failure_due),
            fixed_due=fixed or (record.fixed_due if unannounced and record else 0),
        )
        pipeline.record = new
        return Commit(record=new, expected=record.version if record else 0, ref=ref)

    async def _announce(self, announce: list[tuple[_Unit, PipelineRecord]]) -> None:
        """Hand the committed states' messages to the outbox, then note them announced."""
        messages: list[tuple[OutgoingMessage, int | None]] = []
        for unit, record in announce:
            messages += await self._messages(record, channel=unit.pipeline.channel)
        await self._outbox.send_many(messages)
        await self._store.mark_announced([(u.pipeline.key, r.version) for u, r in announce])
        for unit, record in announce:
            if record.announced < record.version:
                unit.pipeline.record = replace(record, announced=record.version)
            f = unit.fold
            if f is not None and f.transition.failed_now and record.shown:
                await self._record_failure(f.transition.state, team=unit.pipeline.team)

    async def _messages(
        self, record: PipelineRecord, *, channel: str
    ) -> list[tuple[OutgoingMessage, int | None]]:
        if not record.shown:
            return []
        p = record.state
        key = message_key(p)
        text, blocks = self._views.pipeline(p)
        out: list[tuple[OutgoingMessage, int | None]] = [
            (OutgoingMessage(key=key, channel=channel, text=text, blocks=blocks), record.version)
        ]
        if record.failure_due:
            user = await self._slack_user(p)
            text, blocks = self._views.failure(p, slack_user=user)
            reply = OutgoingMessage(
                key=f"{key}:failure:{p.run}",
                channel=channel,
                text=text,
                blocks=blocks,
                thread_key=key,
            )
            out.append((reply, record.version))
        if record.fixed_due:
            text, blocks = self._views.fixed(p, failures=record.fixed_due)
            reply = OutgoingMessage(
                key=f"{key}:fixed",
                channel=channel,
                text=text,
                blocks=blocks,
                thread_key=key,
                broadcast=True,
            )
            out.append((reply, record.version))
        return out

    async def _record_failure(self, p: Pipeline, *, team: str) -> None:
        """For the App Home of the team's people; never holds the notification up."""
        if self._failures is None:
            return
        jobs = ", ".join(dict.fromkeys(j.name for j in p.failed_jobs))
        ref = f"tag {p.ref}" if p.tag else p.ref
        try:
            await self._failures.record(
                RecentFailure(
                    key=message_key(p),
                    team=team,
                    kind="pipeline",
                    title=f"{p.project} pipeline #{p.id} on {ref}",
                    reason=f"{jobs} failed" if jobs else p.status,
                    url=p.url,
                    at=p.finished_at or p.updated_at,
                )
            )
        except Exception:
            reraise_if_cancelling()
            log.exception("a pipeline failure was not recorded for the App Home", pipeline=p.id)

    async def _slack_user(self, p: Pipeline) -> str | None:
        for email in (p.author_email, p.user_email):
            if email:
                user = await self._people.slack_user_for_email(email)
                if user:
                    return user
        return None

    async def _unknown(self, project: str, *, count: int = 1) -> None:
        if project.lower() == self._gitops_project:
            return  # the GitOps repo's pipelines belong to the releases they deploy
        metrics.EVENTS_UNROUTED.labels("gitlab").inc(count)
        if await self._throttle.first_in(
            f"unknown-project:{project.lower()}", seconds=UNKNOWN_PROJECT_LOG_EVERY
        ):
            log.info(
                "pipeline of a project no app claims; ignored (logged once an hour)",
                project=project,
            )
