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
   duplicate, and replies due are carried over until announced.

All messages are keyed (``pipeline:<project>:<id>``, its ``:failure:<run>`` and ``:fixed``
replies), so announcing twice updates in place and never posts twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot import logs, metrics
from bot.domain.home import RecentFailure
from bot.domain.pipelines import (
    JobObserved,
    Pipeline,
    PipelineObserved,
    RefHistory,
    apply,
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


class PipelineStore(Protocol):
    async def load(self, *, project: str, pipeline_id: int) -> PipelineRecord | None: ...

    async def load_ref(self, *, project: str, scope: str) -> tuple[RefHistory | None, int]: ...

    async def commit(self, record: PipelineRecord, *, expected: int, ref: RefUpdate | None) -> bool:
        """Store ``record`` (and ``ref``) if nobody committed since ``expected``; else False."""
        ...

    async def mark_announced(self, *, project: str, pipeline_id: int, version: int) -> None: ...


class PipelineViews(Protocol):
    def pipeline(self, p: Pipeline) -> Rendered: ...

    def failure(self, p: Pipeline, *, slack_user: str | None) -> Rendered: ...

    def fixed(self, p: Pipeline, *, failures: int) -> Rendered: ...


class RaceLost(Exception):
    """Other replicas kept committing first; the observation stays pending and is retried."""


def message_key(p: Pipeline) -> str:
    return f"pipeline:{p.project}:{p.id}"


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

    async def observe(self, event: PipelineObserved | JobObserved) -> None:
        catalog = self._catalog.current
        app = catalog.app_for_source(event.project)
        if app is None:
            await self._unknown(event.project)
            return
        team = catalog.team(app.team)
        channel = catalog.channel_for_app(app)
        for _ in range(MAX_RACES):
            record = await self._store.load(project=event.project, pipeline_id=event.pipeline_id)
            transition = apply(record.state if record else None, event)
            if not transition.advanced:
                metrics.PIPELINE_OBSERVATIONS.labels("unchanged").inc()
                if record is not None and record.announced < record.version:
                    await self._announce(record, channel=channel)
                return
            p = transition.state
            ref: RefUpdate | None = None
            fixed = 0
            if transition.finished_now:
                scope = ref_scope(p)
                history, expected = await self._store.load_ref(project=p.project, scope=scope)
                verdict = judge_ref(history, p)
                if verdict.changed and verdict.history is not None:
                    ref = RefUpdate(scope=scope, history=verdict.history, expected=expected)
                if verdict.fixed:
                    fixed = max(verdict.failures, 1)
            unannounced = record is not None and record.announced < record.version
            wanted = team.notify.wants(
                ref=p.ref,
                tag=p.tag,
                default_branch=p.default_branch,
                status=p.status,
                source=p.source or "push",
            )
            new = PipelineRecord(
                state=p,
                version=(record.version if record else 0) + 1,
                announced=record.announced if record else 0,
                shown=(record is not None and record.shown) or wanted or fixed > 0,
                failure_due=transition.failed_now
                or (unannounced and record is not None and record.failure_due),
                fixed_due=fixed or (record.fixed_due if unannounced and record else 0),
            )
            if await self._store.commit(new, expected=record.version if record else 0, ref=ref):
                metrics.PIPELINE_OBSERVATIONS.labels("advanced").inc()
                await self._announce(new, channel=channel)
                if transition.failed_now and new.shown:
                    await self._record_failure(p, team=app.team)
                return
            metrics.PIPELINE_OBSERVATIONS.labels("race").inc()
        raise RaceLost(f"{event.project} #{event.pipeline_id}: {MAX_RACES} commits lost in a row")

    async def _announce(self, record: PipelineRecord, *, channel: str) -> None:
        p = record.state
        if record.shown:
            key = message_key(p)
            text, blocks = self._views.pipeline(p)
            message = OutgoingMessage(key=key, channel=channel, text=text, blocks=blocks)
            await self._outbox.send(message, version=record.version)
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
                await self._outbox.send(reply, version=record.version)
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
                await self._outbox.send(reply, version=record.version)
        await self._store.mark_announced(
            project=p.project, pipeline_id=p.id, version=record.version
        )

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

    async def _unknown(self, project: str) -> None:
        if project.lower() == self._gitops_project:
            return  # the GitOps repo's pipelines belong to the releases they deploy
        metrics.EVENTS_UNROUTED.labels("gitlab").inc()
        if await self._throttle.first_in(
            f"unknown-project:{project.lower()}", seconds=UNKNOWN_PROJECT_LOG_EVERY
        ):
            log.info(
                "pipeline of a project no app claims; ignored (logged once an hour)",
                project=project,
            )
