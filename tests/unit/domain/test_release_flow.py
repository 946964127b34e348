"""How a release moves (SPEC 5 and 11), one event at a time: tables of (release, event) → the
next state, what the thread says and what is done outside, with duplicates, late and
out-of-order deliveries among the rows, and the deadlines that make every release end."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any, get_args

import pytest

from bot.domain.release_flow import (
    BEFORE_MERGE,
    END_STATES,
    FINAL_STATES,
    Approve,
    Audit,
    Blocked,
    Closed,
    CloseMergeRequest,
    Deadlines,
    DeployPipeline,
    Event,
    Held,
    Merged,
    MergeFailed,
    MrPipeline,
    Opened,
    OpenFailed,
    Proceed,
    Reject,
    RolloutSeen,
    StartMerge,
    Step,
    Supersede,
    Superseded,
    Tick,
    WorkloadGone,
    apply,
    precedence,
    stamp_end,
)
from bot.domain.releases import PipelineLink, Release, ReleaseRef, ReleaseState
from bot.domain.rollouts import PodProblem, Progress
from tests.release_records import T0, sample_release

HEAD = "a1" * 20
OTHER_HEAD = "b2" * 20
MERGE = "c3" * 20
MERGED_AT = T0 + timedelta(hours=1)
WAIT = Deadlines(
    expiry=timedelta(hours=24),
    pipeline_wait=timedelta(minutes=10),
    rollout_wait=timedelta(minutes=30),
)
ROLLBACK = ReleaseRef(
    id="r-2",
    title="Roll back orders to 1.4.1 in production",
    requester="UCAROL",
    mr_iid=8,
    mr_url="https://gitlab.example.com/platform/deployments/-/merge_requests/8",
)


def release(state: ReleaseState = "awaiting_approval", **changes: Any) -> Release:
    """orders 1.4.1 → 1.4.2 in production (manual, one approval), its MR !7 open."""
    opened = {
        "mr_iid": 7,
        "mr_url": "https://gitlab.example.com/platform/deployments/-/merge_requests/7",
        "branch": "pitcrew/orders-production-r-1",
        "head_sha": HEAD,
    }
    if state not in ("requested", "refused"):
        changes = {**opened, **changes}
    past_merge = state in ("merged", "deploying", "rolling_out", "healthy", "not_seen")
    if past_merge and "merged_at" not in changes:
        changes = {"merged_at": MERGED_AT, "merge_sha": MERGE, **changes}
    return sample_release(state=state, **changes)


def auto(state: ReleaseState = "waiting_pipeline", **changes: Any) -> Release:
    return release(state, policy="auto", approvals_needed=0, env="staging", **changes)


def pipeline(pid: int, status: str) -> PipelineLink:
    return PipelineLink(id=pid, status=status, url=f"https://gitlab.example.com/p/{pid}")


def tick(after: timedelta, *, since: Any = T0) -> Tick:
    return Tick(now=since + after, deadlines=WAIT)


ROLLOUT_ID = "prod/Deployment/orders/orders/3"
CRASH = PodProblem(
    pod="orders-5c9-x", container="orders", reason="CrashLoopBackOff", message="panic: no KEY"
)


def rollout(
    what: str,
    version: str = "1.4.2",
    reason: str | None = None,
    *,
    progress: Progress | None = None,
    problems: tuple[PodProblem, ...] = (),
) -> RolloutSeen:
    return RolloutSeen(
        what=what,  # type: ignore[arg-type]
        versions=(version, "v1.30.1"),  # and its sidecar's
        started_at=MERGED_AT + timedelta(minutes=1),
        finished_at=MERGED_AT + timedelta(minutes=2) if what != "started" else None,
        reason=reason,
        at=MERGED_AT + timedelta(minutes=2),
        progress=progress,
        problems=problems,
    )


GONE = WorkloadGone(at=MERGED_AT + timedelta(minutes=2))


def undeploy(state: ReleaseState = "awaiting_approval", **changes: Any) -> Release:
    """orders out of production: an MR deleting its manifest, one approval (always)."""
    return release(state, kind="undeploy", to_version="", **changes)


HALFWAY = Progress(replicas=3, updated=2, ready=3, available=3, total=4)


def merged(head: str | None = HEAD, by: str | None = None) -> Merged:
    return Merged(merge_sha=MERGE, head_sha=head, by=by, at=MERGED_AT)


def summary(step: Step | None) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
    if step is None:
        return None
    return (
        step.release.state,
        tuple(s.kind for s in step.says),
        tuple(type(e).__name__ for e in step.effects),
    )


# --------------------------------------------------------------------------------------------
# One event at a time

CASES: list[tuple[str, Release, Event, tuple[str, tuple[str, ...], tuple[str, ...]] | None]] = [
    # opening
    (
        "manual MR opened",
        release("requested"),
        Opened(mr_iid=7, mr_url="u", branch="b", head_sha=HEAD),
        ("awaiting_approval", (), ()),
    ),
    (
        "auto MR opened",
        auto("requested"),
        Opened(mr_iid=7, mr_url="u", branch="b", head_sha=HEAD),
        ("waiting_pipeline", (), ()),
    ),
    (
        "opened twice",
        release("awaiting_approval"),
        Opened(mr_iid=7, mr_url="u", branch="b", head_sha=HEAD),
        None,
    ),
    ("MR could not open", release("requested"), OpenFailed(reason="500"), ("refused", (), ())),
    # approvals
    (
        "one of two approvals",
        release(approvals_needed=2),
        Approve(by="UCAROL", approvals=("UCAROL",), complete=False),
        ("awaiting_approval", ("approved",), ()),
    ),
    (
        "the last approval merges",
        release(),
        Approve(by="UCAROL", approvals=("UCAROL",), complete=True),
        ("merging", ("approved", "merging"), ("Merge",)),
    ),
    (
        "an approval already counted",
        release(approvals=("UCAROL",), approvals_needed=2),
        Approve(by="UCAROL", approvals=("UCAROL",), complete=False),
        None,
    ),
    (
        "approve after a reject",
        release("rejected"),
        Approve(by="UCAROL", approvals=("UCAROL",), complete=True),
        None,
    ),
    (
        "reject",
        release(),
        Reject(by="UDAVE"),
        ("rejected", ("rejected",), ("CloseMergeRequest",)),
    ),
    ("reject after the merge", release("merged"), Reject(by="UDAVE"), None),
    (
        "reject a held auto release",
        auto("approved", held_by="UDAVE"),
        Reject(by="UDAVE"),
        ("rejected", ("rejected",), ("CloseMergeRequest",)),
    ),
    # the MR pipeline
    (
        "MR pipeline running",
        auto(),
        MrPipeline(pipeline=pipeline(5, "running"), sha=HEAD),
        ("waiting_pipeline", (), ()),
    ),
    (
        "auto: MR pipeline passed",
        auto(mr_pipeline=pipeline(5, "running")),
        MrPipeline(pipeline=pipeline(5, "success"), sha=HEAD),
        ("approved", ("mr_pipeline",), ("TryMerge",)),
    ),
    (
        "auto: MR pipeline skipped (no job ran) passes too",
        auto(),
        MrPipeline(pipeline=pipeline(5, "skipped"), sha=HEAD),
        ("approved", ("mr_pipeline",), ("TryMerge",)),
    ),
    (
        "manual: MR pipeline passed while waiting for approval",
        release(),
        MrPipeline(pipeline=pipeline(5, "success"), sha=HEAD),
        ("awaiting_approval", ("mr_pipeline",), ()),
    ),
    (
        "MR pipeline failed",
        release(),
        MrPipeline(pipeline=pipeline(5, "failed"), sha=HEAD),
        ("failed", ("mr_pipeline", "failed"), ("CloseMergeRequest",)),
    ),
    (
        "a late 'running' of a finished pipeline",
        auto("approved", mr_pipeline=pipeline(5, "success")),
        MrPipeline(pipeline=pipeline(5, "running"), sha=HEAD),
        None,
    ),
    (
        "the same result twice",
        auto("approved", mr_pipeline=pipeline(5, "success")),
        MrPipeline(pipeline=pipeline(5, "success"), sha=HEAD),
        None,
    ),
    (
        "an older pipeline (the branch's, before the MR's)",
        auto(mr_pipeline=pipeline(6, "running")),
        MrPipeline(pipeline=pipeline(5, "failed"), sha=HEAD),
        None,
    ),
    (
        "a pipeline of another head",
        auto(),
        MrPipeline(pipeline=pipeline(5, "success"), sha=OTHER_HEAD),
        None,
    ),
    (
        "MR pipeline after the merge",
        release("merged"),
        MrPipeline(pipeline=pipeline(9, "failed"), sha=HEAD),
        None,
    ),
    # merging
    (
        "auto: start the merge",
        auto("approved"),
        StartMerge(),
        ("merging", ("merging",), ("Merge",)),
    ),
    ("auto: start the merge twice", auto("merging"), StartMerge(), None),
    ("auto: held by a lock", auto("approved"), Held(holder="UDAVE"), ("approved", ("held",), ())),
    (
        "auto: held again by the same lock",
        auto("approved", held_by="UDAVE"),
        Held(holder="UDAVE"),
        None,
    ),
    (
        "GitLab refused the merge",
        release("merging"),
        MergeFailed(reason="GitLab refused the merge: conflict"),
        ("failed", ("failed",), ("Audit",)),
    ),
    ("merged", release("merging"), merged(), ("merged", ("merged",), ())),
    ("merged twice", release("merged"), merged(), None),
    (
        "merged in GitLab by a person before any approval",
        release(),
        merged(by="Alice"),
        ("merged", ("merged",), ()),
    ),
    (
        "merged at another head than the reviewed one",
        release("merging"),
        merged(head=OTHER_HEAD),
        ("failed", ("unreviewed_merge",), ("Audit",)),
    ),
    (
        "merged by hand after GitLab refused Pitcrew's merge",
        release("failed", failed_step="merge", failure="refused"),
        merged(by="Alice"),
        ("merged", ("merged",), ()),
    ),
    (
        "merge hook of an MR whose pipeline failed (closed)",
        release("failed", failed_step="mr_pipeline"),
        merged(),
        None,
    ),
    ("MR closed in GitLab", release(), Closed(by="Alice"), ("rejected", ("rejected",), ())),
    ("MR closed after Reject", release("rejected"), Closed(by="Alice"), None),
    (
        "MR closed after its pipeline failed",
        release("failed", failed_step="mr_pipeline"),
        Closed(by="pitcrew"),
        None,
    ),
    # the GitOps pipeline of the merge commit
    (
        "GitOps pipeline starts",
        release("merged"),
        DeployPipeline(pipeline=pipeline(9, "running"), sha=MERGE),
        ("deploying", ("deploy_pipeline",), ()),
    ),
    (
        "unwatched: GitOps pipeline passed",
        release("deploying", deploy_pipeline=pipeline(9, "running")),
        DeployPipeline(pipeline=pipeline(9, "success"), sha=MERGE),
        ("deployed", ("deploy_pipeline",), ()),
    ),
    (
        "watched: GitOps pipeline passed, the rollout tells the rest",
        release("deploying", watched=True, deploy_pipeline=pipeline(9, "running")),
        DeployPipeline(pipeline=pipeline(9, "success"), sha=MERGE),
        ("deploying", ("deploy_pipeline",), ()),
    ),
    (
        "GitOps pipeline failed",
        release("deploying", deploy_pipeline=pipeline(9, "running")),
        DeployPipeline(pipeline=pipeline(9, "failed"), sha=MERGE),
        ("failed", ("deploy_pipeline", "failed"), ()),
    ),
    (
        "GitOps pipeline retried after its failure",
        release(
            "failed",
            merged_at=MERGED_AT,
            merge_sha=MERGE,
            failed_step="deploy_pipeline",
            deploy_pipeline=pipeline(9, "failed"),
        ),
        DeployPipeline(pipeline=pipeline(10, "success"), sha=MERGE),
        ("deployed", ("deploy_pipeline",), ()),
    ),
    (
        "a pipeline of another commit",
        release("merged"),
        DeployPipeline(pipeline=pipeline(9, "running"), sha=OTHER_HEAD),
        None,
    ),
    (
        "a late 'running' after the rollout started",
        release("rolling_out", watched=True, deploy_pipeline=pipeline(9, "success")),
        DeployPipeline(pipeline=pipeline(9, "running"), sha=MERGE),
        None,
    ),
    (
        "unwatched, never seen: the pipeline comes late",
        release("not_seen", deploy_pipeline=pipeline(9, "running")),
        DeployPipeline(pipeline=pipeline(9, "success"), sha=MERGE),
        ("deployed", ("deploy_pipeline",), ()),
    ),
    (
        "a deploy pipeline before the merge hook",
        release("merging"),
        DeployPipeline(pipeline=pipeline(9, "running"), sha=MERGE),
        None,
    ),
    # rollouts
    (
        "rollout starts",
        release("deploying", watched=True),
        rollout("started"),
        ("rolling_out", ("rollout",), ()),
    ),
    (
        "rollout seen before the merge hook",
        release("merging", watched=True),
        rollout("started"),
        ("rolling_out", ("rollout",), ()),
    ),
    ("rollout progresses", release("rolling_out", watched=True), rollout("progressed"), None),
    (
        "rollout progresses: the message shows its pods",
        release("rolling_out", watched=True),
        rollout("progressed", progress=HALFWAY),
        ("rolling_out", (), ()),
    ),
    (
        "new problems of its failed rollout: the failure reply is updated",
        release("failed", watched=True, merged_at=MERGED_AT, failed_step="rollout"),
        rollout("problems", problems=(CRASH,)),
        ("failed", ("failed",), ()),
    ),
    (
        "the same problems again",
        release(
            "failed", watched=True, merged_at=MERGED_AT, failed_step="rollout", problems=(CRASH,)
        ),
        rollout("problems", problems=(CRASH,)),
        None,
    ),
    (
        "a failed rollout first seen by its problems (its failure was missed)",
        release("deploying", watched=True),
        rollout("problems", reason="ProgressDeadlineExceeded", problems=(CRASH,)),
        ("failed", ("failed",), ()),
    ),
    (
        "problems of a rollout after its GitOps pipeline failed change nothing",
        release("failed", watched=True, merged_at=MERGED_AT, failed_step="deploy_pipeline"),
        rollout("problems", problems=(CRASH,)),
        None,
    ),
    (
        "rollout succeeds",
        release("rolling_out", watched=True),
        rollout("succeeded"),
        ("healthy", ("healthy",), ()),
    ),
    (
        "rollout succeeds, its start never seen (no GitOps pipeline either)",
        release("merged", watched=True),
        rollout("succeeded"),
        ("healthy", ("healthy",), ()),
    ),
    (
        "rollout fails",
        release("rolling_out", watched=True),
        rollout("failed", reason="ProgressDeadlineExceeded"),
        ("failed", ("failed",), ()),
    ),
    (
        "a failed rollout recovers",
        release("failed", watched=True, merged_at=MERGED_AT, failed_step="rollout"),
        rollout("recovered"),
        ("healthy", ("healthy",), ()),
    ),
    (
        "a failed rollout fails again",
        release("failed", watched=True, merged_at=MERGED_AT, failed_step="rollout"),
        rollout("failed"),
        None,
    ),
    (
        "a late rollout after not_seen",
        release("not_seen", watched=True),
        rollout("started"),
        ("rolling_out", ("rollout",), ()),
    ),
    (
        "a late healthy rollout after not_seen",
        release("not_seen", watched=True),
        rollout("succeeded"),
        ("healthy", ("healthy",), ()),
    ),
    (
        "a rollout of another version",
        release("deploying", watched=True),
        rollout("started", version="1.4.1"),
        None,
    ),
    ("rollout after healthy", release("healthy", watched=True), rollout("failed"), None),
    (
        "an unreviewed merge never turns healthy",
        release("failed", watched=True, merged_at=MERGED_AT, failed_step="unreviewed_merge"),
        rollout("succeeded"),
        None,
    ),
    ("a rollout before anything merged", release(watched=True), rollout("started"), None),
    # the clock
    ("requested, a moment ago", release("requested"), tick(timedelta(minutes=1)), None),
    (
        "requested, interrupted",
        release("requested"),
        tick(timedelta(minutes=11)),
        ("refused", (), ()),
    ),
    (
        "awaiting approval for a day",
        release(),
        tick(timedelta(hours=24)),
        ("expired", ("expired",), ("CloseMergeRequest", "Audit")),
    ),
    ("awaiting approval for an hour", release(), tick(timedelta(hours=1)), None),
    (
        "auto: its MR pipeline hangs for a day",
        auto(mr_pipeline=pipeline(5, "running")),
        tick(timedelta(hours=24)),
        ("expired", ("expired",), ("CloseMergeRequest", "Audit")),
    ),
    (
        "auto: no MR pipeline at all (no CI for merge requests)",
        auto(),
        tick(timedelta(minutes=10)),
        ("approved", ("no_mr_pipeline",), ("TryMerge",)),
    ),
    (
        "auto: its MR pipeline is running, no deadline yet",
        auto(mr_pipeline=pipeline(5, "running")),
        tick(timedelta(minutes=10)),
        None,
    ),
    (
        "auto: held by a lock for days",
        auto("approved", held_by="UDAVE"),
        tick(timedelta(days=3)),
        None,
    ),
    (
        "unwatched: no GitOps pipeline after the merge (MR-only CI)",
        release("merged"),
        tick(timedelta(minutes=10), since=MERGED_AT),
        ("deployed", ("deployed",), ()),
    ),
    (
        "unwatched: merged a moment ago",
        release("merged"),
        tick(timedelta(minutes=5), since=MERGED_AT),
        None,
    ),
    (
        "watched: no GitOps pipeline, waiting for the rollout",
        release("merged", watched=True),
        tick(timedelta(minutes=10), since=MERGED_AT),
        None,
    ),
    (
        "watched: never seen running (the controller is not syncing)",
        release("merged", watched=True),
        tick(timedelta(minutes=30), since=MERGED_AT),
        ("not_seen", ("not_seen",), ()),
    ),
    (
        "watched: the GitOps pipeline passed, never seen running",
        release("deploying", watched=True, deploy_pipeline=pipeline(9, "success")),
        tick(timedelta(minutes=30), since=MERGED_AT),
        ("not_seen", ("not_seen",), ()),
    ),
    (
        "unwatched: the GitOps pipeline hangs",
        release("deploying", deploy_pipeline=pipeline(9, "running")),
        tick(timedelta(minutes=30), since=MERGED_AT),
        ("not_seen", ("not_seen",), ()),
    ),
    (
        "rolling out: the rollout's own deadline decides",
        release("rolling_out", watched=True),
        tick(timedelta(hours=5), since=MERGED_AT),
        None,
    ),
    ("not_seen stays", release("not_seen", watched=True), tick(timedelta(days=2)), None),
    ("failed stays", release("failed"), tick(timedelta(days=2)), None),
    # superseded
    (
        "a rollback supersedes a release waiting for approval",
        release(),
        Superseded(by=ROLLBACK, at=MERGED_AT),
        ("superseded", ("superseded",), ("CloseMergeRequest",)),
    ),
    (
        "a rollback supersedes a merged release",
        release("merged"),
        Superseded(by=ROLLBACK, at=MERGED_AT),
        ("superseded", ("superseded",), ()),
    ),
    (
        "a rollback supersedes a failed rollout",
        release("failed", merged_at=MERGED_AT, failed_step="rollout"),
        Superseded(by=ROLLBACK, at=MERGED_AT),
        ("superseded", ("superseded",), ()),
    ),
    (
        "superseded twice",
        release("superseded", superseded_by=ROLLBACK),
        Superseded(by=ROLLBACK, at=MERGED_AT),
        None,
    ),
    (
        "a healthy release is not superseded",
        release("healthy"),
        Superseded(by=ROLLBACK, at=MERGED_AT),
        None,
    ),
    # ---- an undeploy: no rollout to follow, the workload gone is its end
    (
        "an undeploy merged in a watched env waits for the workload to go",
        undeploy("merged", watched=True),
        GONE,
        ("removed", ("removed",), ()),
    ),
    (
        "an undeploy whose pipeline passed is removed when the workload goes",
        undeploy("deploying", watched=True, deploy_pipeline=pipeline(5, "success")),
        GONE,
        ("removed", ("removed",), ()),
    ),
    (
        "the controller prunes before the merge's webhook comes",
        undeploy("merging", watched=True),
        GONE,
        ("removed", ("removed",), ()),
    ),
    (
        "a workload deleted before the undeploy is approved is not its doing",
        undeploy(),
        GONE,
        None,
    ),
    (
        "a removed undeploy is removed once",
        undeploy("removed"),
        GONE,
        None,
    ),
    (
        "a deploy ignores a workload gone",
        release("merged", watched=True),
        GONE,
        None,
    ),
    (
        "an undeploy follows no rollout",
        undeploy("merged", watched=True),
        rollout("succeeded", ""),
        None,
    ),
    (
        "an undeploy never seen leaving ends not_seen, asking about pruning",
        undeploy("merged", watched=True),
        tick(timedelta(minutes=30), since=MERGED_AT),
        ("not_seen", ("not_seen",), ()),
    ),
    (
        "an undeploy in an unwatched env ends deployed: out of git, not verified",
        undeploy("merged", watched=False),
        tick(timedelta(minutes=10), since=MERGED_AT),
        ("deployed", ("deployed",), ()),
    ),
    (
        "an undeploy needs its approval whatever the env: opened, it waits for it",
        undeploy("requested", env="staging"),
        Opened(mr_iid=7, mr_url="u", branch="b", head_sha=HEAD),
        ("awaiting_approval", (), ()),
    ),
]


@pytest.mark.parametrize(
    ("before", "event", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_event(
    before: Release,
    event: Event,
    expected: tuple[str, tuple[str, ...], tuple[str, ...]] | None,
) -> None:
    assert summary(apply(before, event)) == expected


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
def test_nothing_moves_a_final_release(state: ReleaseState) -> None:
    final = release(state)
    events: list[Event] = [
        Approve(by="U", approvals=("U",), complete=True),
        Reject(by="U"),
        MrPipeline(pipeline=pipeline(99, "failed"), sha=HEAD),
        merged(),
        Closed(by="x"),
        DeployPipeline(pipeline=pipeline(99, "failed"), sha=MERGE),
        rollout("failed"),
        tick(timedelta(days=30)),
        Superseded(by=ROLLBACK, at=MERGED_AT),
        GONE,
    ]
    assert [apply(final, event) for event in events] == [None] * len(events)
    assert [apply(replace(final, kind="undeploy"), event) for event in events] == [None] * len(
        events
    )


def test_the_state_sets_cover_every_state() -> None:
    states = set(get_args(ReleaseState))
    assert FINAL_STATES < END_STATES < states
    assert {"failed", "not_seen"} == END_STATES - FINAL_STATES
    assert "removed" in FINAL_STATES
    assert BEFORE_MERGE.isdisjoint(END_STATES)


# --------------------------------------------------------------------------------------------
# What the steps carry


def test_an_unreviewed_merge_is_failed_and_audited_with_both_heads() -> None:
    step = apply(release("merging"), merged(head=OTHER_HEAD))
    assert step is not None
    r = step.release
    assert (r.state, r.failed_step, r.merge_sha, r.merged_at) == (
        "failed",
        "unreviewed_merge",
        MERGE,
        MERGED_AT,
    )
    assert r.failure == (
        f"!7 was merged at `{OTHER_HEAD[:8]}`, not at the reviewed `{HEAD[:8]}`:"
        " what was merged is not what was approved"
    )
    assert step.says[0].broadcast
    assert step.effects == (Audit(action="merge-unreviewed", detail=r.failure),)


def test_a_merge_in_gitlab_is_followed_and_its_author_named() -> None:
    step = apply(release(), merged(by="Alice Martin"))
    assert step is not None
    assert (step.release.ended_by, step.says[0].by) == ("Alice Martin", "Alice Martin")
    ours = apply(release("merging"), merged(by="Pitcrew Bot"))
    assert ours is not None
    assert ours.release.ended_by is None


def test_superseding_closes_an_unmerged_mr_with_a_note_linking_the_newer_release() -> None:
    step = apply(release(), Superseded(by=ROLLBACK, at=MERGED_AT))
    assert step is not None
    assert step.release.superseded_by == ROLLBACK
    assert step.effects == (
        CloseMergeRequest(
            note=f"Superseded by [!8]({ROLLBACK.mr_url}) (Roll back orders to 1.4.1 in"
            " production): Pitcrew closed this one."
        ),
    )


def test_each_end_says_why() -> None:
    expired = apply(release(), tick(timedelta(hours=24)))
    hanging = apply(auto(mr_pipeline=pipeline(5, "running")), tick(timedelta(hours=24)))
    unseen = apply(release("merged", watched=True), tick(timedelta(minutes=30), since=MERGED_AT))
    slow = apply(
        release("deploying", deploy_pipeline=pipeline(9, "running")),
        tick(timedelta(minutes=30), since=MERGED_AT),
    )
    failed = apply(release(), MrPipeline(pipeline=pipeline(5, "canceled"), sha=HEAD))
    assert [s.release.failure if s else None for s in (expired, hanging, unseen, slow, failed)] == [
        "not approved within 24 h",
        "its merge request's pipeline did not finish within 24 h",
        "merged, but production never ran 1.4.2 within 30 min of the merge — is the GitOps"
        " controller syncing?",
        "the GitOps pipeline #9 had not finished 30 min after the merge",
        "the merge request's pipeline #5 canceled",
    ]
    assert expired is not None
    assert expired.effects[0] == CloseMergeRequest(
        note="Pitcrew closed this merge request: not approved within 24 h."
    )


def test_a_failed_rollout_is_told_with_its_pods_problems_and_which_rollout_it_was() -> None:
    stuck = Progress(replicas=3, updated=1, ready=3, available=3, total=4)
    seen = replace(
        rollout("failed", reason="ProgressDeadlineExceeded", progress=stuck, problems=(CRASH,)),
        rollout_id=ROLLOUT_ID,
    )
    step = apply(release("rolling_out", watched=True), seen)
    assert step is not None
    failed = step.release
    assert (failed.rollout_id, failed.rollout_progress, failed.problems) == (
        ROLLOUT_ID,
        stuck,
        (CRASH,),
    )
    assert failed.failure == "the rollout failed: ProgressDeadlineExceeded"


@pytest.mark.parametrize(
    ("failed", "version"),
    [
        pytest.param(
            release("failed", merged_at=MERGED_AT, failed_step="rollout"), "1.4.1", id="rollout"
        ),
        pytest.param(release("not_seen"), "1.4.1", id="not-seen"),
        pytest.param(
            release("failed", merged_at=MERGED_AT, merge_sha=MERGE, failed_step="unreviewed_merge"),
            "1.4.1",
            id="unreviewed-merge",
        ),
        pytest.param(release("failed", failed_step="mr_pipeline"), None, id="never-merged"),
        pytest.param(release("healthy"), None, id="healthy"),
        pytest.param(release("not_seen", from_version=None), None, id="first-deploy"),
        pytest.param(release("not_seen", kind="rollback"), None, id="a-failed-rollback"),
    ],
)
def test_a_roll_back_button_is_offered_for_merged_failures_with_a_previous_version(
    failed: Release, version: str | None
) -> None:
    assert failed.rollback_to == version


def test_a_healthy_rollout_keeps_when_it_started() -> None:
    step = apply(
        release("rolling_out", watched=True, rollout_started_at=MERGED_AT), rollout("succeeded")
    )
    assert step is not None
    assert step.release.rollout_started_at == MERGED_AT
    assert step.release.finished_at == MERGED_AT + timedelta(minutes=2)


# --------------------------------------------------------------------------------------------
# Whole stories, every webhook delivered twice


def _play(start: Release, events: list[Event]) -> tuple[Release, list[str]]:
    current, said = start, []
    for event in events:
        for _ in range(2):  # every delivery comes twice
            step = apply(current, event)
            if step is not None:
                current = step.release
                said += [s.kind for s in step.says]
    return current, said


def test_mr_only_ci_unwatched_env_ends_deployed() -> None:
    end, said = _play(
        release("requested", policy="auto", approvals_needed=0),
        [
            Opened(mr_iid=7, mr_url="u", branch="b", head_sha=HEAD),
            MrPipeline(pipeline=pipeline(5, "success"), sha=HEAD),
            StartMerge(),
            merged(),
            tick(timedelta(minutes=10), since=MERGED_AT),  # no pipeline for the merge commit
        ],
    )
    assert end.state == "deployed"
    assert said == ["mr_pipeline", "merging", "merged", "deployed"]


def test_no_ci_at_all_auto_env_merges_and_ends_deployed() -> None:
    end, said = _play(
        release("requested", policy="auto", approvals_needed=0),
        [
            Opened(mr_iid=7, mr_url="u", branch="b", head_sha=HEAD),
            tick(timedelta(minutes=10)),
            StartMerge(),
            Merged(merge_sha=MERGE, head_sha=HEAD, by=None, at=T0 + timedelta(minutes=11)),
            tick(timedelta(minutes=21)),
        ],
    )
    assert end.state == "deployed"
    assert said == ["no_mr_pipeline", "merging", "merged", "deployed"]


def test_a_controller_that_never_syncs_then_does() -> None:
    end, said = _play(
        release("merging", watched=True),
        [
            merged(),
            DeployPipeline(pipeline=pipeline(9, "success"), sha=MERGE),
            tick(timedelta(minutes=30), since=MERGED_AT),
            rollout("started"),
            rollout("succeeded"),
        ],
    )
    assert end.state == "healthy"
    assert said == ["merged", "deploy_pipeline", "not_seen", "rollout", "healthy"]


def test_out_of_order_the_rollout_before_the_merge_and_pipeline_hooks() -> None:
    end, said = _play(
        release("merging", watched=True),
        [
            rollout("started"),
            rollout("succeeded"),
            merged(),  # late
            DeployPipeline(pipeline=pipeline(9, "success"), sha=MERGE),  # late
        ],
    )
    assert end.state == "healthy"
    assert said == ["rollout", "healthy"]


# --------------------------------------------------------------------------------------------
# Precedence


@pytest.mark.parametrize(
    ("current", "kind", "expected"),
    [
        (None, "deploy", Proceed),
        (None, "rollback", Proceed),
        (release("healthy"), "deploy", Proceed),
        (release("rejected"), "rollback", Proceed),
        (release("superseded"), "deploy", Proceed),
        (release("requested"), "rollback", Blocked),  # being opened this second
        (release(), "deploy", Blocked),
        (auto("waiting_pipeline"), "deploy", Blocked),
        (auto("approved", held_by="UDAVE"), "deploy", Blocked),
        (release("merging"), "deploy", Blocked),
        (release(), "rollback", Supersede),
        (release("merging"), "rollback", Supersede),
        (release("merged"), "deploy", Supersede),
        (release("deploying"), "deploy", Supersede),
        (release("rolling_out"), "rollback", Supersede),
        (release("failed", failed_step="rollout", merged_at=MERGED_AT), "deploy", Supersede),
        (release("failed", failed_step="mr_pipeline"), "deploy", Supersede),
        (release("not_seen"), "deploy", Supersede),
        (release("not_seen"), "rollback", Supersede),
    ],
)
def test_precedence(current: Release | None, kind: str, expected: type) -> None:
    decision = precedence(current, kind=kind)  # type: ignore[arg-type]
    assert type(decision) is expected
    if current is not None and expected is not Proceed:
        assert decision.current == current  # type: ignore[union-attr]


def test_every_open_state_has_a_precedence_and_an_end() -> None:
    """No state a release can be left in blocks a rollback for good."""
    for state in get_args(ReleaseState):
        decision = precedence(release(state), kind="rollback")
        assert isinstance(decision, Proceed | Supersede) or state == "requested"
    stuck = release("requested")
    step = apply(stuck, tick(timedelta(minutes=11)))
    assert step is not None
    assert step.release.state == "refused"


# --------------------------------------------------------------------------------------------
# Every end carries its time


NOW = T0 + timedelta(hours=3)
ROLLED = T0 + timedelta(hours=2)


@pytest.mark.parametrize(
    ("before", "after", "finished_at"),
    [
        # ends whose step says no time: stamped now
        ({"state": "deploying"}, {"state": "deployed"}, NOW),
        ({"state": "deploying"}, {"state": "not_seen"}, NOW),
        ({"state": "deploying"}, {"state": "failed"}, NOW),
        ({"state": "awaiting_approval"}, {"state": "expired"}, NOW),
        ({"state": "requested"}, {"state": "refused"}, NOW),
        # ends whose step says when: kept
        ({"state": "rolling_out"}, {"state": "healthy", "finished_at": ROLLED}, ROLLED),
        ({"state": "merged"}, {"state": "superseded", "finished_at": ROLLED}, ROLLED),
        # a second end (not seen, then deployed by a late pipeline): its own time, not the first
        ({"state": "deploying", "finished_at": T0}, {"state": "deployed", "finished_at": T0}, NOW),
        # a failure that recovers: the recovery's own time
        (
            {"state": "failed", "finished_at": T0},
            {"state": "healthy", "finished_at": ROLLED},
            ROLLED,
        ),
        # no end, or no new end: untouched
        ({"state": "merged"}, {"state": "deploying"}, None),
        ({"state": "failed", "finished_at": T0}, {"state": "failed", "finished_at": T0}, T0),
    ],
)
def test_an_end_is_stamped_with_its_time_when_its_step_did_not_say(
    before: dict[str, Any], after: dict[str, Any], finished_at: Any
) -> None:
    previous = sample_release(**before)
    stamped = stamp_end(previous, replace(previous, **after), now=NOW)
    assert stamped.finished_at == finished_at
    assert stamped.state == after["state"]


def test_every_end_a_tick_brings_carries_its_time_once_stamped() -> None:
    """What the engine commits: apply, then stamp (the deadline's ``not_seen`` says no time)."""
    merged = sample_release(state="deploying", merged_at=MERGED_AT, watched=True)
    late = MERGED_AT + WAIT.rollout_wait
    step = apply(merged, Tick(now=late, deadlines=WAIT))
    assert step is not None
    assert step.release.state == "not_seen"
    assert stamp_end(merged, step.release, now=late).finished_at == late
