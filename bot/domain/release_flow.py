"""How a release moves: every event it can meet, as one pure function, ``apply``.

A release is driven by many sources that know nothing of each other: clicks, GitLab's webhooks
(late, twice, out of order), the rollout watcher, and the sweep's clock. Each is turned into an
event below, and ``apply(release, event)`` returns a ``Step`` — the next release, what to say in
its thread, and what to do outside (merge, close the MR, write the audit log) — or ``None``
when the event changes nothing (a duplicate, a stale pipeline, a rollout of another version).
The service loads, applies, commits by compare-and-set, then says and does what the step lists;
it decides nothing itself.

States::

    requested ─► awaiting_approval (manual) ──────────────► merging ─► merged ─► deploying
        │    └─► waiting_pipeline (auto) ─► approved ─────────┘          │          │
        └─► refused                         (held by a lock)              ▼          ▼
                                                       rolling_out ◄──────┴──────────┘
                                                            │
                                      healthy ◄─────────────┴────► failed

Every release ends (SPEC 11): ``healthy``, ``deployed`` (merged where the cluster is not
watched), ``failed``, ``not_seen`` (merged, never seen running), ``rejected``, ``expired``,
``refused`` or ``superseded``. The clock (``Tick``) drives the deadlines, so a release ends in
every setup a team may have:

- no GitOps pipeline for the merge commit within ``pipeline_wait`` (a repo whose CI runs on
  merge requests only, or no CI): go on as if the repo had no pipeline — an unwatched env is
  ``deployed``, a watched one waits for its rollout;
- no MR pipeline at all within ``pipeline_wait`` for an ``auto`` release (no CI for merge
  requests): it merges as in a repo without CI; an MR pipeline that never *finishes* expires
  with the release after ``expiry``, like an unapproved one;
- a watched env whose version is not seen rolling out within ``rollout_wait`` of the merge:
  ``not_seen`` (is the GitOps controller syncing?); a rollout seen later still moves it on.

An undeploy (``kind="undeploy"``) is a release whose MR removes the app's manifest of the env:
it always needs an approval (``releases.approval_rule``), follows no rollout, and ends
``removed`` when the watcher sees the workload gone (``WorkloadGone``) — or, where the cluster is
not watched, ``deployed`` as any release there (merged, not verified).

``failed`` and ``not_seen`` are ends a person reads, but the world may still move them: a
rollout that recovers makes a failed release healthy; a late rollout moves a not_seen one on.
The other ends are final. ``superseded`` comes from precedence: a rollback always goes ahead and
supersedes the open release of its app and env; a deploy supersedes one past its merge, and is
blocked by one before it (``precedence``).

A merge whose head is not the reviewed head (the branch moved after approval and GitLab merged
anyway) is never announced as a clean merge: the release fails loudly and the audit log says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Literal

from bot.domain.pipelines import FINISHED
from bot.domain.releases import (
    PipelineLink,
    Release,
    ReleaseKind,
    ReleaseRef,
    ReleaseState,
)
from bot.domain.rollouts import Happening, PodProblem, Progress

__all__ = [
    "BEFORE_MERGE",
    "END_STATES",
    "FINAL_STATES",
    "Approve",
    "Audit",
    "Blocked",
    "CancelMerge",
    "CloseMergeRequest",
    "Closed",
    "Deadlines",
    "DeployPipeline",
    "Effect",
    "Event",
    "Held",
    "Merge",
    "MergeFailed",
    "Merged",
    "MrPipeline",
    "NoteKind",
    "OpenFailed",
    "Opened",
    "Precedence",
    "Proceed",
    "Reject",
    "RolloutSeen",
    "Say",
    "StartMerge",
    "Step",
    "Supersede",
    "Superseded",
    "Tick",
    "TryMerge",
    "WorkloadGone",
    "apply",
    "format_deadline",
    "newer_pipeline",
    "precedence",
    "stamp_end",
]

FINAL_STATES: Final[frozenset[ReleaseState]] = frozenset(
    {"healthy", "deployed", "rejected", "expired", "refused", "superseded", "removed"}
)
"""Nothing moves a release out of these."""
END_STATES: Final[frozenset[ReleaseState]] = FINAL_STATES | {"failed", "not_seen"}
"""Where a release stops for the person reading it (its message shows the end and why)."""
BEFORE_MERGE: Final[frozenset[ReleaseState]] = frozenset(
    {"requested", "awaiting_approval", "waiting_pipeline", "approved", "merging"}
)
_MR_OPEN: Final[frozenset[ReleaseState]] = BEFORE_MERGE - {"requested"}
_PAST_MERGE: Final[frozenset[ReleaseState]] = frozenset(
    {"merged", "deploying", "rolling_out", "not_seen"}
)
_PASSED: Final = frozenset({"success", "skipped"})
"""A skipped pipeline ran no checks, so none failed: it passes, as GitLab lets it merge."""
INTERRUPTED: Final = timedelta(minutes=10)
"""A release still ``requested`` after this was interrupted (opening an MR takes seconds)."""

NoteKind = Literal[
    "override",
    "approved",
    "mr_pipeline",
    "no_mr_pipeline",
    "held",
    "merging",
    "merged",
    "unreviewed_merge",
    "deploy_pipeline",
    "deployed",
    "rollout",
    "healthy",
    "failed",
    "not_seen",
    "rejected",
    "expired",
    "superseded",
    "removed",
]
"""The thread replies of a release, one key each (``release:<id>:<kind>``)."""


# --------------------------------------------------------------------------------------------
# What a step asks for


@dataclass(frozen=True, kw_only=True)
class Say:
    """A reply in the release's thread."""

    kind: NoteKind
    by: str | None = None
    """Who did it: a Slack user id, or a GitLab name for what happened outside Pitcrew."""
    once_per: str | None = None
    """A key suffix, for replies said once per person (each approval)."""
    broadcast: bool = False
    """Also shown in the channel: the ends a person must not miss."""


@dataclass(frozen=True)
class Merge:
    """Ask GitLab to merge the MR at its reviewed head, when its pipeline passes."""


@dataclass(frozen=True)
class CancelMerge:
    """Ask GitLab not to merge when the pipeline passes: a lock came between the approval and
    the merge. The release is held, and asks again once the env is unlocked."""


@dataclass(frozen=True)
class TryMerge:
    """An ``auto`` release may merge now: the service checks the env's lock, then applies
    ``StartMerge`` or ``Held``."""


@dataclass(frozen=True, kw_only=True)
class CloseMergeRequest:
    """Close the MR (if GitLab still has it open), leaving ``note`` on it."""

    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class Audit:
    action: str
    detail: str


Effect = Merge | TryMerge | CancelMerge | CloseMergeRequest | Audit


@dataclass(frozen=True, kw_only=True)
class Step:
    release: Release
    says: tuple[Say, ...] = ()
    effects: tuple[Effect, ...] = ()


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, kw_only=True)
class Opened:
    """The MR was opened."""

    mr_iid: int
    mr_url: str
    branch: str
    head_sha: str


@dataclass(frozen=True, kw_only=True)
class OpenFailed:
    """GitLab would not open the MR; nothing was left behind."""

    reason: str


@dataclass(frozen=True, kw_only=True)
class Approve:
    """An approval that ``decide_approval`` accepted at click time."""

    by: str
    approvals: tuple[str, ...]
    complete: bool


@dataclass(frozen=True, kw_only=True)
class Reject:
    by: str


@dataclass(frozen=True, kw_only=True)
class MrPipeline:
    """A pipeline of the MR's branch (a merge request pipeline or a branch pipeline)."""

    pipeline: PipelineLink
    sha: str


@dataclass(frozen=True, kw_only=True)
class StartMerge:
    """An ``auto`` release whose checks passed and whose env is not locked, or a held release
    whose env was unlocked."""

    at: datetime | None = None
    """When: a release held by a lock counts its expiry again from here."""


@dataclass(frozen=True, kw_only=True)
class Held:
    """An ``auto`` release ready to merge, held by the lock of ``holder``."""

    holder: str


@dataclass(frozen=True, kw_only=True)
class MergeFailed:
    reason: str


@dataclass(frozen=True, kw_only=True)
class Merged:
    """GitLab merged the MR (Pitcrew's merge, or someone's in GitLab)."""

    merge_sha: str | None
    head_sha: str | None
    """The MR's head when it merged (``last_commit`` of the hook); ``None`` when unknown."""
    by: str | None
    """Who merged it in GitLab (a name), when not Pitcrew."""
    at: datetime


@dataclass(frozen=True, kw_only=True)
class Closed:
    """The MR was closed in GitLab."""

    by: str | None


@dataclass(frozen=True, kw_only=True)
class DeployPipeline:
    """A pipeline of the GitOps repo for the merge commit."""

    pipeline: PipelineLink
    sha: str


@dataclass(frozen=True, kw_only=True)
class RolloutSeen:
    """The watcher saw the app roll out in the env."""

    what: Happening
    versions: tuple[str, ...]
    """The new versions of the rollout's containers: a release follows the one with its own."""
    started_at: datetime | None
    finished_at: datetime | None
    reason: str | None
    at: datetime
    rollout_id: str = ""
    """Which rollout: the one a release follows is told in the release's thread only."""
    progress: Progress | None = None
    problems: tuple[PodProblem, ...] = ()


@dataclass(frozen=True, kw_only=True)
class WorkloadGone:
    """The watcher saw the app's workload deleted from the env (an undeploy's end)."""

    at: datetime


@dataclass(frozen=True, kw_only=True)
class Deadlines:
    expiry: timedelta
    """``RELEASE_EXPIRY_HOURS``: approval, or an ``auto`` MR's pipeline, by then."""
    pipeline_wait: timedelta
    """``RELEASE_PIPELINE_WAIT``: a pipeline GitLab has not started by then will not be."""
    rollout_wait: timedelta
    """``RELEASE_ROLLOUT_WAIT``: after the merge, the version must be seen running by then."""


@dataclass(frozen=True, kw_only=True)
class Tick:
    """The sweep's clock."""

    now: datetime
    deadlines: Deadlines


@dataclass(frozen=True, kw_only=True)
class Superseded:
    """A newer release of the same app and env went ahead (``precedence``)."""

    by: ReleaseRef
    at: datetime


Event = (
    Opened
    | OpenFailed
    | Approve
    | Reject
    | MrPipeline
    | StartMerge
    | Held
    | MergeFailed
    | Merged
    | Closed
    | DeployPipeline
    | RolloutSeen
    | Tick
    | Superseded
    | WorkloadGone
)


# --------------------------------------------------------------------------------------------
# apply


def apply(release: Release, event: Event) -> Step | None:
    """The step ``event`` makes ``release`` take; ``None`` when it changes nothing."""
    if release.state in FINAL_STATES:
        return None
    step = _step(release, event)
    if step is None or step.release == release:
        return None
    return step


def stamp_end(previous: Release, after: Release, *, now: datetime) -> Release:
    """``after``, with the time it reached its end when the step that brought it there did not
    say (a pipeline's ``deployed``, a deadline's ``not_seen``, a refusal, an expiry): ``now``.

    Every end thus carries its own time, stored with it: what is worked out from the ended
    release later (its deployment record, written again by a reconcile after a crash) is
    the same as what was worked out at the end, to the second."""
    if after.state not in END_STATES or after.state == previous.state:
        return after
    if after.finished_at is not None and after.finished_at != previous.finished_at:
        return after  # the step said when (a rollout's end, a supersede)
    return replace(after, finished_at=now)


def _step(r: Release, e: Event) -> Step | None:
    match e:
        case Opened():
            return _opened(r, e)
        case OpenFailed():
            return _open_failed(r, e)
        case Approve():
            return _approve(r, e)
        case Reject():
            return _reject(r, e)
        case MrPipeline():
            return _mr_pipeline(r, e)
        case StartMerge():
            return _start_merge(r, e)
        case Held():
            return _held(r, e)
        case MergeFailed():
            return _merge_failed(r, e)
        case Merged():
            return _merged(r, e)
        case Closed():
            return _closed(r, e)
        case DeployPipeline():
            return _deploy_pipeline(r, e)
        case RolloutSeen():
            return _rollout(r, e)
        case Tick():
            return _tick(r, e)
        case Superseded():
            return _superseded(r, e)
        case WorkloadGone():
            return _gone(r, e)


def _opened(r: Release, e: Opened) -> Step | None:
    if r.state != "requested":
        return None
    state: ReleaseState = "awaiting_approval" if r.policy == "manual" else "waiting_pipeline"
    return Step(
        release=replace(
            r, state=state, mr_iid=e.mr_iid, mr_url=e.mr_url, branch=e.branch, head_sha=e.head_sha
        )
    )


def _open_failed(r: Release, e: OpenFailed) -> Step | None:
    if r.state != "requested":
        return None
    return Step(release=replace(r, state="refused", failure=e.reason))


def _approve(r: Release, e: Approve) -> Step | None:
    if r.state != "awaiting_approval" or e.approvals == r.approvals:
        return None
    said = Say(kind="approved", by=e.by, once_per=e.by)
    if not e.complete:
        return Step(release=replace(r, approvals=e.approvals), says=(said,))
    merging = replace(r, approvals=e.approvals, state="merging")
    return Step(release=merging, says=(said, Say(kind="merging")), effects=(Merge(),))


def _reject(r: Release, e: Reject) -> Step | None:
    if r.state not in _MR_OPEN:
        return None
    return Step(
        release=replace(r, state="rejected", ended_by=e.by),
        says=(Say(kind="rejected", by=e.by),),
        effects=(CloseMergeRequest(),),
    )


def _mr_pipeline(r: Release, e: MrPipeline) -> Step | None:
    if r.state not in _MR_OPEN or e.sha != r.head_sha or not _newer(r.mr_pipeline, e.pipeline):
        return None
    seen = replace(r, mr_pipeline=e.pipeline)
    status = e.pipeline.status
    if status not in FINISHED:
        return Step(release=seen)  # the message shows it running
    said = Say(kind="mr_pipeline")
    if status in _PASSED:
        if r.state == "waiting_pipeline":
            return Step(
                release=replace(seen, state="approved"), says=(said,), effects=(TryMerge(),)
            )
        return Step(release=seen, says=(said,))  # GitLab merges by itself once approved
    failed = replace(
        seen,
        state="failed",
        failed_step="mr_pipeline",
        failure=f"the merge request's pipeline #{e.pipeline.id} {status}",
    )
    return Step(
        release=failed,
        says=(said, Say(kind="failed", broadcast=True)),
        effects=(
            CloseMergeRequest(note=f"Pitcrew closed this merge request: its pipeline {status}."),
        ),
    )


def _start_merge(r: Release, e: StartMerge) -> Step | None:
    if r.state != "approved":
        return None
    resumed_at = e.at if r.held_by is not None and e.at is not None else r.resumed_at
    # after a hold, a new reply (the thread may say "merging" already, from before the lock)
    again = resumed_at.isoformat() if resumed_at is not None and r.held_by else None
    return Step(
        release=replace(r, state="merging", held_by=None, resumed_at=resumed_at),
        says=(Say(kind="merging", once_per=again),),
        effects=(Merge(),),
    )


def _held(r: Release, e: Held) -> Step | None:
    if r.state == "merging" and r.merged_at is None:
        # a lock that came after the approval (or the passed pipeline), before GitLab merged
        return Step(
            release=replace(r, state="approved", held_by=e.holder),
            says=(Say(kind="held", by=e.holder),),
            effects=(CancelMerge(),),
        )
    if r.state != "approved" or r.held_by == e.holder:
        return None
    return Step(release=replace(r, held_by=e.holder), says=(Say(kind="held", by=e.holder),))


def _merge_failed(r: Release, e: MergeFailed) -> Step | None:
    if r.state != "merging":
        return None
    failed = replace(r, state="failed", failed_step="merge", failure=e.reason)
    return Step(
        release=failed,
        says=(Say(kind="failed", broadcast=True),),
        effects=(Audit(action="merge-failed", detail=e.reason),),
    )


def _merged(r: Release, e: Merged) -> Step | None:
    never_merged = r.merged_at is None and r.failed_step in (None, "merge")
    if not (r.state in _MR_OPEN or (r.state == "failed" and never_merged)):
        return None
    outside = None if r.state == "merging" else e.by
    merged = replace(
        r,
        state="merged",
        merge_sha=e.merge_sha or r.merge_sha,
        merged_at=e.at,
        ended_by=outside,
        held_by=None,
        failure=None,
        failed_step=None,
    )
    if e.head_sha and r.head_sha and e.head_sha != r.head_sha:
        reason = (
            f"!{r.mr_iid} was merged at `{e.head_sha[:8]}`, not at the reviewed"
            f" `{r.head_sha[:8]}`: what was merged is not what was approved"
        )
        unreviewed = replace(
            merged, state="failed", failed_step="unreviewed_merge", failure=reason, ended_by=e.by
        )
        return Step(
            # GitLab drops an automatic merge when the branch moves: someone merged by hand
            release=unreviewed,
            says=(Say(kind="unreviewed_merge", by=e.by, broadcast=True),),
            effects=(Audit(action="merge-unreviewed", detail=reason),),
        )
    return Step(release=merged, says=(Say(kind="merged", by=outside),))


def _closed(r: Release, e: Closed) -> Step | None:
    if r.state not in _MR_OPEN:
        return None
    return Step(
        release=replace(r, state="rejected", ended_by=e.by),
        says=(Say(kind="rejected", by=e.by),),
    )


def _deploy_pipeline(r: Release, e: DeployPipeline) -> Step | None:
    merged = r.merged_at is not None or r.state in ("merged", "deploying", "rolling_out")
    if (
        r.state not in (*_PAST_MERGE, "failed")
        or not merged
        or r.failed_step == "unreviewed_merge"
        or r.merge_sha not in (None, e.sha)
        or not _newer(r.deploy_pipeline, e.pipeline)
    ):
        return None
    seen = replace(r, deploy_pipeline=e.pipeline, merge_sha=e.sha)
    said = Say(kind="deploy_pipeline")
    status = e.pipeline.status
    if (
        r.state == "merged"
        or (r.state == "not_seen" and not r.watched)  # a late pipeline
        or (r.state == "failed" and r.failed_step == "deploy_pipeline")  # a newer run
    ):
        seen = replace(seen, state="deploying", failure=None, failed_step=None)
    if seen.state != "deploying":
        return Step(release=seen, says=(said,))  # the rollout tells the rest
    if status in ("failed", "canceled"):
        failed = replace(
            seen,
            state="failed",
            failed_step="deploy_pipeline",
            failure=f"the GitOps pipeline #{e.pipeline.id} {status}",
        )
        return Step(release=failed, says=(said, Say(kind="failed", broadcast=True)))
    if status in _PASSED and not r.watched:
        return Step(release=replace(seen, state="deployed"), says=(said,))
    return Step(release=seen, says=(said,))


def _rollout(r: Release, e: RolloutSeen) -> Step | None:
    """The release follows the rollout of its version once merged (or merging): its message
    shows the pods as they go, its thread the start and the end, and the failure reply the new
    pods' problems (``rollout_id`` says which rollout is this release's story). An undeploy
    follows no rollout: its end is the workload gone."""
    if r.kind == "undeploy" or r.to_version not in e.versions:
        return None
    merged = r.merged_at is not None or r.state == "merging"
    following = r.state in (*_PAST_MERGE, "merging")
    recovering = r.state == "failed" and merged and r.failed_step != "unreviewed_merge"
    if not (following or recovering):
        return None
    started_at = r.rollout_started_at or e.started_at or e.at
    seen = replace(
        r,
        rollout_id=e.rollout_id or r.rollout_id,
        rollout_progress=e.progress or r.rollout_progress,
        problems=e.problems,
    )
    failed_rollout = r.state == "failed" and r.failed_step == "rollout"
    if e.what in ("started", "progressed"):
        if r.state == "failed":
            return None  # only its end moves a failed release
        if r.state == "rolling_out":
            return Step(release=seen)  # the message shows the pods
        return Step(
            release=replace(seen, state="rolling_out", rollout_started_at=started_at, failure=None),
            says=(Say(kind="rollout"),),
        )
    if e.what in ("succeeded", "recovered"):
        healthy = replace(
            seen,
            state="healthy",
            rollout_started_at=started_at,
            finished_at=e.finished_at or e.at,
            failure=None,
            failed_step=None,
        )
        return Step(release=healthy, says=(Say(kind="healthy", broadcast=True),))
    if e.what in ("failed", "problems") and r.state != "failed":
        # "problems" is only told of a rollout that failed: one first seen failing
        failed = replace(
            seen,
            state="failed",
            failed_step="rollout",
            rollout_started_at=started_at,
            finished_at=e.finished_at or e.at,
            failure=f"the rollout failed: {e.reason or 'no reason given'}",
        )
        return Step(release=failed, says=(Say(kind="failed", broadcast=True),))
    if e.what in ("failed", "problems") and failed_rollout and seen.problems != r.problems:
        # new problems of its failed rollout: the failure reply is updated in place
        return Step(release=seen, says=(Say(kind="failed", broadcast=True),))
    return None


def _gone(r: Release, e: WorkloadGone) -> Step | None:
    """The workload left the env: an undeploy past its merge (or merging: the controller may
    prune before the merge's webhook comes) has done what it was for."""
    if r.kind != "undeploy":
        return None
    merged = r.merged_at is not None or r.state == "merging"
    following = r.state in (*_PAST_MERGE, "merging")
    recovering = r.state == "failed" and merged and r.failed_step != "unreviewed_merge"
    if not (following or recovering):
        return None
    removed = replace(r, state="removed", finished_at=e.at, failure=None, failed_step=None)
    return Step(release=removed, says=(Say(kind="removed", broadcast=True),))


def _tick(r: Release, e: Tick) -> Step | None:
    now, wait = e.now, e.deadlines
    age = now - r.created_at
    waiting = now - (r.resumed_at or r.created_at)  # a lock's hold does not count
    if r.state == "requested":
        if age < INTERRUPTED:
            return None
        failure = "interrupted before its merge request was opened; run the command again"
        return Step(release=replace(r, state="refused", failure=failure))
    if r.state in _MR_OPEN and not r.held_by:
        if waiting >= wait.expiry:
            return _expire(r, wait.expiry)
        if r.state == "waiting_pipeline" and r.mr_pipeline is None and age >= wait.pipeline_wait:
            return Step(
                release=replace(r, state="approved"),
                says=(Say(kind="no_mr_pipeline"),),
                effects=(TryMerge(),),
            )
        return None
    if r.state not in ("merged", "deploying"):
        return None
    since_merge = now - (r.merged_at or r.created_at)
    if (
        r.state == "merged"
        and not r.watched
        and r.deploy_pipeline is None
        and since_merge >= wait.pipeline_wait
    ):
        return Step(release=replace(r, state="deployed"), says=(Say(kind="deployed"),))
    if since_merge < wait.rollout_wait:
        return None
    within = _duration(wait.rollout_wait)
    if r.watched and r.kind == "undeploy":
        failure = (
            f"merged, but {r.app} was not seen leaving {r.env} within {within} of the merge —"
            " is the GitOps controller pruning?"
        )
    elif r.watched:
        failure = (
            f"merged, but {r.env} never ran {r.to_version} within {within} of the merge —"
            " is the GitOps controller syncing?"
        )
    elif r.deploy_pipeline is not None:
        failure = (
            f"the GitOps pipeline #{r.deploy_pipeline.id} had not finished {within} after the merge"
        )
    else:  # unwatched and merged, with a pipeline_wait longer than the rollout_wait
        return None
    return Step(
        release=replace(r, state="not_seen", failure=failure),
        says=(Say(kind="not_seen", broadcast=True),),
    )


def _expire(r: Release, expiry: timedelta) -> Step:
    if r.state == "awaiting_approval":
        failure = f"not approved within {_duration(expiry)}"
    elif r.state == "waiting_pipeline":
        failure = f"its merge request's pipeline did not finish within {_duration(expiry)}"
    else:
        failure = f"not merged within {_duration(expiry)}"
    return Step(
        release=replace(r, state="expired", failure=failure, held_by=None),
        says=(Say(kind="expired"),),
        effects=(
            CloseMergeRequest(note=f"Pitcrew closed this merge request: {failure}."),
            Audit(action="expire", detail=failure),
        ),
    )


def _superseded(r: Release, e: Superseded) -> Step | None:
    if e.by.id == r.id:
        return None
    ended = replace(r, state="superseded", superseded_by=e.by, held_by=None, finished_at=e.at)
    effects: tuple[Effect, ...] = ()
    if r.mr_iid is not None and r.merged_at is None and r.state != "requested":
        link = f"[!{e.by.mr_iid}]({e.by.mr_url})" if e.by.mr_iid and e.by.mr_url else "a newer"
        effects = (
            CloseMergeRequest(
                note=f"Superseded by {link} ({_md_title(e.by.title)}): Pitcrew closed this one."
            ),
        )
    return Step(release=ended, says=(Say(kind="superseded"),), effects=effects)


def _newer(known: PipelineLink | None, seen: PipelineLink) -> bool:
    """Newest pipeline wins, and a finished one is never shown running again: a branch has
    several pipelines (push and merge request), and their hooks come late and twice."""
    if known is None:
        return True
    if seen.id != known.id:
        return seen.id > known.id
    return known.status not in FINISHED and seen != known


def _duration(delta: timedelta) -> str:
    """``24 h``, ``30 min``, ``45 s``: a deadline as settings give it."""
    seconds = round(delta.total_seconds())
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds >= 120:
        return f"{round(seconds / 60)} min"
    return f"{max(seconds, 1)} s"


newer_pipeline = _newer
format_deadline = _duration


def _md_title(title: str) -> str:
    return title.replace("[", "(").replace("]", ")")


# --------------------------------------------------------------------------------------------
# Precedence


@dataclass(frozen=True)
class Proceed:
    """Nothing open stands in the way."""


@dataclass(frozen=True, kw_only=True)
class Supersede:
    """Go ahead; ``current`` becomes ``superseded`` once the new MR is open."""

    current: Release


@dataclass(frozen=True, kw_only=True)
class Blocked:
    """A release of the same app and env still before its merge: finish or reject it first."""

    current: Release


Precedence = Proceed | Supersede | Blocked


def precedence(
    current: Release | None,
    *,
    kind: ReleaseKind,
    autopilot: bool = False,
    version: str | None = None,
) -> Precedence:
    """May a new ``kind`` release (of ``version``, asked for by the autopilot or not) of an app
    and env go ahead while ``current`` (the latest release there) stands where it does?

    A rollback always goes ahead: during an incident nothing may block the one command that
    matters. Only a release being opened this very second (``requested``) makes it wait a
    moment. A deploy supersedes what is past its merge (or failed), and waits for what is not.
    The autopilot keeps one open release per app and env: its newer version supersedes its own
    older one still before the merge, but it never supersedes a person's release before the
    merge, and a second release of the same version waits::

        current                          rollback   deploy     autopilot
        none, or at a final end          proceed    proceed    proceed
        requested (opening right now)    blocked    blocked    blocked
        a person's, before its merge     supersede  blocked    blocked
        the autopilot's, before merge    supersede  blocked    supersede (blocked: same version)
        past its merge, or failed        supersede  supersede  supersede
    """
    if current is None or current.state in FINAL_STATES:
        return Proceed()
    if current.state == "requested":
        return Blocked(current=current)
    if kind == "rollback" or current.state in (*_PAST_MERGE, "failed"):
        return Supersede(current=current)
    if autopilot and current.autopilot is not None and current.to_version != version:
        return Supersede(current=current)
    return Blocked(current=current)
