"""GitLab pipelines as Pitcrew shows them: one message per pipeline that only ever moves forward.

GitLab's webhooks arrive late, twice and out of order: GitLab retries a hook that timed out, its
Sidekiq workers race each other, and our own consumers redeliver after a crash. ``apply`` folds
each observation into a ``Pipeline`` state without ever trusting arrival order. It orders
observations by what GitLab itself says happened, and when:

1. **Clock.** Every observation carries the latest instant its payload mentions (pipeline
   created/finished, each job created/started/finished), truncated to the second. GitLab writes
   pipeline times to the second and job times to the millisecond; without truncation, a job that
   finished in the same second as its pipeline would look newer than the pipeline's result.
2. **Ties.** Within one second, an observation that knows a newer job id wins (a retry creates a
   new job, with a higher id); then the further status wins (created < pending < running <
   blocked < canceling < finished). Equal observations are duplicates and change nothing.
3. **A result is final until a new run.** An older observation never changes the status, so a
   late "running" hook never reopens a finished pipeline. Only evidence of a new run does: a
   pipeline hook whose clock is newer than the result, or a job hook for an active job that is
   newer than the result (a retried job is a new job, created after the pipeline finished).
   The pipeline then shows running again, then its new result; ``run`` counts these runs so that
   the new result is announced again.
4. **Jobs** are kept by id, each at its newest observation (the job's own clock, then status).
   Stages show the latest attempt of each job (the highest id per stage and name), as GitLab does.
5. **Job hooks never set results.** Their ``commit.status`` is read before GitLab recomputes the
   pipeline, so it lags. A job hook only moves a waiting pipeline to running (a job started) or
   reopens a finished one (a retry); results come from pipeline hooks.

Everything here is pure: the service loads the previous state, calls ``apply``, stores the new
state and sends what the ``Transition`` says to announce.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final, Literal, get_args

__all__ = [
    "FINISHED",
    "Fold",
    "Job",
    "JobObserved",
    "MergeRequestRef",
    "Pipeline",
    "PipelineObserved",
    "PipelineStatus",
    "RefHistory",
    "RefKind",
    "RefVerdict",
    "Stage",
    "Transition",
    "apply",
    "fold",
    "judge_ref",
    "latest",
    "ref_scope",
]

PipelineStatus = Literal[
    "created",
    "waiting_for_resource",
    "preparing",
    "pending",
    "running",
    "success",
    "failed",
    "canceled",
    "canceling",
    "skipped",
    "manual",
    "scheduled",
    "waiting_for_callback",
]
"""GitLab's statuses, for pipelines and jobs alike."""

STATUSES: Final[frozenset[str]] = frozenset(get_args(PipelineStatus))
FINISHED: Final[frozenset[PipelineStatus]] = frozenset({"success", "failed", "canceled", "skipped"})

RefKind = Literal["branch", "tag", "merge_request"]

# Within one second, which observation is further along. Pipelines block on manual or delayed
# jobs *after* running; jobs are manual or scheduled *before* they are pending.
_PIPELINE_RANK: Final[Mapping[PipelineStatus, int]] = {
    "created": 0,
    "waiting_for_resource": 1,
    "preparing": 1,
    "pending": 2,
    "running": 3,
    "manual": 4,
    "scheduled": 4,
    "waiting_for_callback": 4,
    "canceling": 5,
    "success": 6,
    "failed": 6,
    "canceled": 6,
    "skipped": 6,
}
_JOB_RANK: Final[Mapping[PipelineStatus, int]] = {
    "created": 0,
    "manual": 1,
    "scheduled": 1,
    "waiting_for_resource": 2,
    "preparing": 2,
    "pending": 3,
    "running": 4,
    "waiting_for_callback": 5,
    "canceling": 6,
    "success": 7,
    "failed": 7,
    "canceled": 7,
    "skipped": 7,
}
_WAITING: Final[frozenset[PipelineStatus]] = frozenset(
    {"created", "waiting_for_resource", "preparing", "pending", "manual", "scheduled"}
)
"""Pipeline statuses that a job starting to run moves to ``running``."""
_REOPENING: Final[frozenset[PipelineStatus]] = frozenset(
    {
        "created",
        "waiting_for_resource",
        "preparing",
        "pending",
        "running",
        "scheduled",
        "waiting_for_callback",
    }
)
"""Job statuses that, seen after a pipeline's result, mean the pipeline runs again. ``manual``
and ``skipped`` are not among them: GitLab settles those while it computes the result."""


def latest(*instants: datetime | None) -> datetime | None:
    """The latest of the instants given: an observation's clock (see the module docstring)."""
    known = [_utc(i) for i in instants if i is not None]
    return max(known) if known else None


def _utc(instant: datetime) -> datetime:
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def _second(instant: datetime) -> datetime:
    return _utc(instant).replace(microsecond=0)


# --------------------------------------------------------------------------------------------
# Observations: what the GitLab adapter translates webhooks into


@dataclass(frozen=True, kw_only=True)
class Job:
    id: int
    name: str
    stage: str
    status: PipelineStatus
    allow_failure: bool = False
    manual: bool = False
    """``when: manual``; a manual job that may fail does not hold its stage up."""
    failure_reason: str | None = None
    url: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    observed_at: datetime = field(compare=False)
    """The job's own clock: the latest of its created, started and finished instants."""

    @property
    def blocking_failure(self) -> bool:
        return self.status == "failed" and not self.allow_failure


@dataclass(frozen=True, kw_only=True)
class MergeRequestRef:
    iid: int
    title: str | None = None
    url: str | None = None
    source_branch: str | None = None
    target_branch: str | None = None


@dataclass(frozen=True, kw_only=True)
class PipelineObserved:
    """A Pipeline Hook, as far as Pitcrew cares."""

    project: str
    """Path with namespace, as GitLab spells it (``shop/orders``)."""
    project_url: str | None = None
    default_branch: str | None = None
    pipeline_id: int
    iid: int | None = None
    name: str | None = None
    """``workflow: name``, when the project sets one."""
    status: PipelineStatus
    ref: str
    tag: bool = False
    sha: str
    commit_title: str | None = None
    commit_url: str | None = None
    author_name: str | None = None
    """The commit's author (the person to tell), else the user who ran the pipeline."""
    author_email: str | None = None
    user_name: str | None = None
    """Who ran the pipeline; their email is a second chance to find them in Slack."""
    user_email: str | None = None
    source: str | None = None
    url: str | None = None
    merge_request: MergeRequestRef | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    duration: float | None = None
    """Seconds, as GitLab counts them (running time, queueing excluded)."""
    stages: tuple[str, ...] = ()
    """Stage names in order."""
    timestamp: datetime
    """This observation's clock: the latest instant the payload mentions (see ``latest``)."""
    jobs: tuple[Job, ...] | None = None
    """The payload's ``builds`` (latest attempts only); ``None`` when it had none."""


@dataclass(frozen=True, kw_only=True)
class JobObserved:
    """A Job Hook: one job changed, with a little of its pipeline."""

    project: str
    project_url: str | None = None
    default_branch: str | None = None
    pipeline_id: int
    pipeline_status: PipelineStatus | None = None
    """GitLab's ``commit.status``. It lags, so it only serves a pipeline first seen by a job."""
    pipeline_url: str | None = None
    job_id: int
    name: str
    stage: str
    status: PipelineStatus
    allow_failure: bool = False
    failure_reason: str | None = None
    url: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    timestamp: datetime
    """The job's clock: the latest of its created, started and finished instants."""
    ref: str
    tag: bool = False
    sha: str
    commit_title: str | None = None
    author_name: str | None = None
    author_email: str | None = None
    user_name: str | None = None
    user_email: str | None = None

    @property
    def job(self) -> Job:
        return Job(
            id=self.job_id,
            name=self.name,
            stage=self.stage,
            status=self.status,
            allow_failure=self.allow_failure,
            failure_reason=self.failure_reason,
            url=self.url,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            observed_at=self.timestamp,
        )


# --------------------------------------------------------------------------------------------
# State


@dataclass(frozen=True, kw_only=True)
class Stage:
    name: str
    status: PipelineStatus
    warnings: bool = False
    """Some job failed but was allowed to."""
    jobs: tuple[Job, ...] = ()
    """Latest attempts, oldest first."""


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    """What Pitcrew knows of one pipeline. Equality is visible equality: the bookkeeping fields
    that order observations do not take part in it, so ``==`` answers "would Slack change?"."""

    project: str
    project_url: str | None = None
    default_branch: str | None = None
    id: int
    iid: int | None = None
    name: str | None = None
    status: PipelineStatus
    ref: str
    tag: bool = False
    sha: str
    commit_title: str | None = None
    commit_url: str | None = None
    author_name: str | None = None
    author_email: str | None = None
    user_name: str | None = None
    user_email: str | None = None
    source: str | None = None
    url: str | None = None
    merge_request: MergeRequestRef | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    duration: float | None = None
    stage_names: tuple[str, ...] = ()
    """Stages in GitLab's order, as the pipeline hook lists them."""
    jobs: tuple[Job, ...] = ()
    """Every job seen, by id (retried attempts included)."""
    status_at: datetime = field(compare=False)
    """Clock of the observation that set ``status`` (to the second)."""
    status_job: int = field(default=0, compare=False)
    """Highest job id that observation knew (0: it knew none); breaks ties within a second."""
    run: int = field(default=1, compare=False)
    """Counts runs: a finished pipeline that runs again (a retry) starts run 2."""
    updated_at: datetime = field(compare=False)
    """Clock of the newest observation folded in, whatever it changed."""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def short_sha(self) -> str:
        return self.sha[:8]

    @property
    def ref_kind(self) -> RefKind:
        if self.merge_request is not None:
            return "merge_request"
        return "tag" if self.tag else "branch"

    @property
    def elapsed(self) -> float | None:
        """How long the finished pipeline ran, in seconds; ``None`` while it runs."""
        if not self.finished:
            return None
        if self.duration is not None:
            return self.duration
        if self.created_at is not None and self.finished_at is not None:
            return max(0.0, (_utc(self.finished_at) - _utc(self.created_at)).total_seconds())
        return None

    @property
    def latest_jobs(self) -> tuple[Job, ...]:
        """The newest attempt of each job: a retried job's earlier failures no longer count."""
        newest: dict[tuple[str, str], Job] = {}
        for job in self.jobs:
            key = (job.stage, job.name)
            if key not in newest or job.id > newest[key].id:
                newest[key] = job
        return tuple(sorted(newest.values(), key=lambda j: j.id))

    @property
    def stages(self) -> tuple[Stage, ...]:
        by_stage: dict[str, list[Job]] = {}
        for job in self.latest_jobs:
            by_stage.setdefault(job.stage, []).append(job)
        # Job hooks do not say the stage order; jobs are created stage by stage, so the
        # lowest job id of an undeclared stage tells where it goes.
        extra = sorted(
            (s for s in by_stage if s not in self.stage_names),
            key=lambda s: min(j.id for j in by_stage[s]),
        )
        stages = []
        for name in (*self.stage_names, *extra):
            jobs = tuple(by_stage.get(name, ()))
            status, warnings = _stage_status(jobs)
            stages.append(Stage(name=name, status=status, warnings=warnings, jobs=jobs))
        return tuple(stages)

    @property
    def failed_jobs(self) -> tuple[Job, ...]:
        """Jobs whose failure failed the pipeline, in stage order."""
        return tuple(j for s in self.stages for j in s.jobs if j.blocking_failure)


def _stage_status(jobs: tuple[Job, ...]) -> tuple[PipelineStatus, bool]:
    """A stage's status from its jobs, close to GitLab's composite status.

    Failures are shown as soon as they happen (a failed stage while siblings still run says
    more than "running"); allowed failures and optional manual jobs never hold a stage up.
    """
    if not jobs:
        return "created", False
    warnings = any(j.status == "failed" and j.allow_failure for j in jobs)
    relevant = {
        j.status
        for j in jobs
        if not (j.allow_failure and (j.status == "failed" or (j.manual and j.status == "manual")))
    }
    if not relevant:
        return ("manual" if all(j.status == "manual" for j in jobs) else "success"), warnings
    for status in ("failed", "canceling", "running"):
        if status in relevant:
            return status, warnings
    if relevant & {"pending", "preparing", "waiting_for_resource", "waiting_for_callback"}:
        return "pending", warnings
    for status in ("canceled", "scheduled", "manual"):
        if status in relevant:
            return status, warnings
    if "created" in relevant:
        return ("pending" if "success" in relevant else "created"), warnings
    if relevant == {"skipped"}:
        return "skipped", warnings
    return "success", warnings


# --------------------------------------------------------------------------------------------
# The state machine


@dataclass(frozen=True, kw_only=True)
class Transition:
    state: Pipeline
    previous: Pipeline | None
    changed: bool
    """Something a person would see changed: re-render the message."""
    advanced: bool
    """The state changed at all, bookkeeping included: store it."""
    failed_now: bool
    """The pipeline (or its new run) just failed: post the failure reply."""
    finished_now: bool
    """The pipeline (or its new run) just reached a result."""
    reopened: bool
    """A finished pipeline runs again (a retry)."""

    @property
    def created(self) -> bool:
        return self.previous is None


def apply(state: Pipeline | None, event: PipelineObserved | JobObserved) -> Transition:
    """Fold one observation into the pipeline's state (``None``: never seen before)."""
    if state is not None:
        pipeline_id = event.pipeline_id
        if state.id != pipeline_id or state.project.lower() != event.project.lower():
            raise ValueError(
                f"observation of {event.project} #{pipeline_id} "
                f"applied to {state.project} #{state.id}"
            )
    if isinstance(event, PipelineObserved):
        new = _from_pipeline(event) if state is None else _apply_pipeline(state, event)
    else:
        new = _from_job(event) if state is None else _apply_job(state, event)
    return _transition(state, new)


@dataclass(frozen=True, kw_only=True)
class Fold:
    """Consecutive observations of one pipeline folded into one state change to store.

    The stream worker handles a batch of webhooks at once: storing each observation's state
    one after the other would cost a commit and an outbox write per observation, of which a
    person only ever sees the newest (the outbox keeps the newest state of a message). A fold
    stops right after an observation that finished or failed the pipeline (or its new run):
    what that step announces (the failure reply, the ref's verdict) is about that very state,
    exactly as when observations are applied one at a time.
    """

    transition: Transition
    """From the state before the fold's first observation to the state after its last; it
    ``changed`` and ``reopened`` if any step did; ``failed_now`` and ``finished_now`` are
    those of the last step (no other step of a fold has them)."""
    seen: tuple[Pipeline, ...]
    """Every state the pipeline went through, one per observation that advanced it: whether a
    team wants to see a pipeline depends on its status at each step."""
    last: int
    """Index of the fold's last observation in the sequence given to ``fold``."""


def fold(
    state: Pipeline | None, events: Iterable[PipelineObserved | JobObserved]
) -> tuple[Fold, ...]:
    """Fold a pipeline's observations, in the order they were received, into the state changes
    to store one after the other (none when nothing advanced: duplicates, stale hooks).

    Applying each fold's ``transition.state`` in turn gives the same states, replies and verdicts
    as applying every observation alone, skipping only intermediate states nobody would see.
    Folding again observations already folded changes nothing (``apply`` is idempotent), so a
    batch replayed after a crash stores nothing twice.
    """
    folds: list[Fold] = []
    start = current = state
    seen: list[Pipeline] = []
    changed = reopened = False
    last = -1
    for index, event in enumerate(events):
        step = apply(current, event)
        if not step.advanced:
            continue
        current = step.state
        seen.append(current)
        changed = changed or step.changed
        reopened = reopened or step.reopened
        if step.finished_now or step.failed_now:
            folds.append(
                Fold(
                    transition=replace(
                        step, previous=start, changed=changed, reopened=reopened, advanced=True
                    ),
                    seen=tuple(seen),
                    last=index,
                )
            )
            start, seen, changed, reopened = current, [], False, False
        last = index
    if seen and current is not None:
        folds.append(
            Fold(
                transition=Transition(
                    state=current,
                    previous=start,
                    changed=changed,
                    advanced=True,
                    failed_now=False,
                    finished_now=False,
                    reopened=reopened,
                ),
                seen=tuple(seen),
                last=last,
            )
        )
    return tuple(folds)


def _transition(old: Pipeline | None, new: Pipeline) -> Transition:
    new_run = old is not None and new.run != old.run
    finished_now = new.finished and (old is None or not old.finished or new_run)
    failed_now = new.status == "failed" and (old is None or old.status != "failed" or new_run)
    return Transition(
        state=new,
        previous=old,
        changed=old is None or new != old,
        advanced=old is None or _bookkeeping(new) != _bookkeeping(old) or new != old,
        failed_now=failed_now,
        finished_now=finished_now,
        reopened=old is not None and old.finished and not new.finished,
    )


def _bookkeeping(p: Pipeline) -> tuple[object, ...]:
    return (p.status_at, p.status_job, p.run, p.updated_at, tuple(j.observed_at for j in p.jobs))


def _order(state: Pipeline, *, clock: datetime, job_id: int, rank: int) -> int:
    """Is an observation newer (1), older (-1) or as new (0) as what set the state's status?"""
    clock = _second(clock)
    if clock != state.status_at:
        return 1 if clock > state.status_at else -1
    if job_id and state.status_job and job_id != state.status_job:
        return 1 if job_id > state.status_job else -1
    current = _PIPELINE_RANK[state.status]
    return (rank > current) - (rank < current)


def _job_key(job: Job) -> tuple[datetime, int]:
    return _second(job.observed_at), _JOB_RANK[job.status]


def _merge_jobs(known: Iterable[Job], incoming: Iterable[Job]) -> tuple[Job, ...]:
    jobs = {j.id: j for j in known}
    for job in incoming:
        old = jobs.get(job.id)
        if old is None or _job_key(job) > _job_key(old):
            jobs[job.id] = job
    return tuple(sorted(jobs.values(), key=lambda j: j.id))


def _from_pipeline(e: PipelineObserved) -> Pipeline:
    jobs = _merge_jobs((), e.jobs or ())
    return Pipeline(
        project=e.project,
        project_url=e.project_url,
        default_branch=e.default_branch,
        id=e.pipeline_id,
        iid=e.iid,
        name=e.name,
        status=e.status,
        ref=e.ref,
        tag=e.tag,
        sha=e.sha,
        commit_title=e.commit_title,
        commit_url=e.commit_url,
        author_name=e.author_name,
        author_email=e.author_email,
        user_name=e.user_name,
        user_email=e.user_email,
        source=e.source,
        url=e.url,
        merge_request=e.merge_request,
        created_at=e.created_at,
        finished_at=e.finished_at,
        duration=e.duration,
        stage_names=_stage_names(e),
        jobs=jobs,
        status_at=_second(e.timestamp),
        status_job=max((j.id for j in e.jobs or ()), default=0),
        updated_at=_second(e.timestamp),
    )


def _stage_names(e: PipelineObserved) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s for s in e.stages if s))


def _apply_pipeline(state: Pipeline, e: PipelineObserved) -> Pipeline:
    incoming = e.jobs or ()
    order = _order(
        state,
        clock=e.timestamp,
        job_id=max((j.id for j in incoming), default=0),
        rank=_PIPELINE_RANK[e.status],
    )
    merged = replace(
        state,
        jobs=_merge_jobs(state.jobs, incoming),
        updated_at=max(state.updated_at, _second(e.timestamp)),
    )
    fresh = _from_pipeline(e)
    if order <= 0:
        # Older or as new: the status stands; only fill in what the state never knew.
        return _fill(merged, fresh)
    return replace(
        _fill(fresh, merged),
        jobs=merged.jobs,
        stage_names=fresh.stage_names or state.stage_names,
        run=state.run + 1 if state.finished else state.run,
        updated_at=merged.updated_at,
    )


_FILLABLE: Final = (
    "project_url",
    "default_branch",
    "iid",
    "name",
    "commit_title",
    "commit_url",
    "author_name",
    "author_email",
    "user_name",
    "user_email",
    "source",
    "url",
    "merge_request",
    "created_at",
)


def _fill(primary: Pipeline, secondary: Pipeline) -> Pipeline:
    """``primary`` with its unknown descriptive fields taken from ``secondary``."""
    missing = {
        name: getattr(secondary, name)
        for name in _FILLABLE
        if getattr(primary, name) is None and getattr(secondary, name) is not None
    }
    if not primary.stage_names and secondary.stage_names:
        missing["stage_names"] = secondary.stage_names
    return replace(primary, **missing) if missing else primary


def _from_job(e: JobObserved) -> Pipeline:
    job = e.job
    status: PipelineStatus
    if e.pipeline_status is not None:
        status = e.pipeline_status
    else:
        status = "running" if job.status in FINISHED or job.status == "running" else "pending"
    return Pipeline(
        project=e.project,
        project_url=e.project_url,
        default_branch=e.default_branch,
        id=e.pipeline_id,
        status=status,
        ref=e.ref,
        tag=e.tag,
        sha=e.sha,
        commit_title=e.commit_title,
        author_name=e.author_name,
        author_email=e.author_email,
        user_name=e.user_name,
        user_email=e.user_email,
        url=e.pipeline_url,
        jobs=(job,),
        status_at=_second(e.timestamp),
        status_job=job.id,
        updated_at=_second(e.timestamp),
    )


def _apply_job(state: Pipeline, e: JobObserved) -> Pipeline:
    job = e.job
    known_max = max((j.id for j in state.jobs), default=0)
    merged = replace(
        state,
        jobs=_merge_jobs(state.jobs, (job,)),
        updated_at=max(state.updated_at, _second(e.timestamp)),
    )
    reopen = state.finished and job.status in _REOPENING
    start = job.status == "running" and state.status in _WAITING
    if not (reopen or start):
        return merged
    clock = _second(e.timestamp)
    if reopen and clock == state.status_at and not (known_max and job.id > known_max):
        return merged  # same second as the result, and not a new job: no evidence of a rerun
    if _order(state, clock=clock, job_id=job.id, rank=_PIPELINE_RANK["running"]) <= 0:
        return merged
    return replace(
        merged,
        status="running",
        status_at=clock,
        status_job=job.id,
        run=state.run + 1 if reopen else state.run,
        finished_at=None if reopen else state.finished_at,
        duration=None if reopen else state.duration,
    )


# --------------------------------------------------------------------------------------------
# "Fixed": a ref that was failing passes again


def ref_scope(pipeline: Pipeline) -> str:
    """Which pipelines take turns at being a ref's latest result.

    A merge request's pipelines are judged together, apart from the branch's own pipelines,
    so that a branch pipeline passing does not "fix" a merge request that still fails.
    """
    if pipeline.merge_request is not None:
        return f"{pipeline.project}!{pipeline.merge_request.iid}"
    kind = "tags" if pipeline.tag else "heads"
    return f"{pipeline.project}:refs/{kind}/{pipeline.ref}"


@dataclass(frozen=True, kw_only=True)
class RefHistory:
    """The latest result of one ref scope (see ``ref_scope``): enough to say "fixed"."""

    pipeline_id: int
    status: Literal["success", "failed"]
    finished_at: datetime | None = None
    failures: int = 0
    """Failed pipelines in a row, ending with this one; 0 when it passed."""


@dataclass(frozen=True, kw_only=True)
class RefVerdict:
    history: RefHistory | None
    changed: bool
    fixed: bool
    """This pipeline passed where the previous one had failed: say so in the channel."""
    failures: int = 0
    """When fixed: how many failed pipelines in a row the fix ends."""


def judge_ref(history: RefHistory | None, pipeline: Pipeline) -> RefVerdict:
    """Record a finished pipeline's result for its ref, and say whether it fixed the ref.

    Pipelines of a ref are ordered by id (a newer commit gets a newer pipeline): the result of
    an older pipeline arriving late says nothing about the ref now. A retried pipeline keeps its
    id, so its new result counts. Canceled and skipped pipelines say nothing either way.
    """
    status = pipeline.status
    if status not in ("success", "failed"):
        return RefVerdict(history=history, changed=False, fixed=False)
    finished_at = pipeline.finished_at and _second(pipeline.finished_at)
    if history is not None:
        if pipeline.id < history.pipeline_id:
            return RefVerdict(history=history, changed=False, fixed=False)
        if pipeline.id == history.pipeline_id:
            stale = (
                history.finished_at is not None
                and finished_at is not None
                and finished_at < history.finished_at
            )
            if stale or (status == history.status and finished_at == history.finished_at):
                return RefVerdict(history=history, changed=False, fixed=False)
    was_failing = history is not None and history.status == "failed"
    if status == "success":
        new = RefHistory(pipeline_id=pipeline.id, status="success", finished_at=finished_at)
        failures = history.failures if history is not None and was_failing else 0
        return RefVerdict(history=new, changed=True, fixed=was_failing, failures=failures)
    failures = 1
    if history is not None and was_failing:
        same = history.pipeline_id == pipeline.id
        failures = history.failures if same else history.failures + 1
    new = RefHistory(
        pipeline_id=pipeline.id, status="failed", finished_at=finished_at, failures=failures
    )
    return RefVerdict(history=new, changed=True, fixed=False)
