"""The pipeline state machine: out of order, twice, retried — the message only moves forward."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter

from bot.domain.pipelines import (
    FINISHED,
    Job,
    JobObserved,
    MergeRequestRef,
    Pipeline,
    PipelineObserved,
    PipelineStatus,
    RefHistory,
    Transition,
    apply,
    judge_ref,
    latest,
    ref_scope,
)

BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def job(
    job_id: int,
    status: PipelineStatus,
    t: float,
    *,
    stage: str = "test",
    name: str | None = None,
    allow_failure: bool = False,
    manual: bool = False,
    reason: str | None = None,
) -> Job:
    return Job(
        id=job_id,
        name=name or f"job{job_id}",
        stage=stage,
        status=status,
        allow_failure=allow_failure,
        manual=manual,
        failure_reason=reason,
        created_at=at(0),
        observed_at=at(t),
    )


def pe(
    status: PipelineStatus,
    t: float,
    *,
    jobs: list[Job] | None = None,
    pipeline_id: int = 7,
    ref: str = "main",
) -> PipelineObserved:
    return PipelineObserved(
        project="shop/orders",
        project_url="https://gitlab.example.com/shop/orders",
        pipeline_id=pipeline_id,
        status=status,
        ref=ref,
        sha="0123456789abcdef" * 2 + "01234567",
        commit_title="Fix the thing",
        author_name="Alice",
        created_at=at(0),
        finished_at=at(t) if status in FINISHED else None,
        stages=("build", "test"),
        timestamp=at(t),
        jobs=None if jobs is None else tuple(jobs),
    )


def je(
    job_id: int,
    status: PipelineStatus,
    t: float,
    *,
    stage: str = "test",
    name: str | None = None,
    pipeline_status: PipelineStatus | None = None,
) -> JobObserved:
    return JobObserved(
        project="shop/orders",
        pipeline_id=7,
        pipeline_status=pipeline_status,
        job_id=job_id,
        name=name or f"job{job_id}",
        stage=stage,
        status=status,
        created_at=at(0),
        timestamp=at(t),
        ref="main",
        sha="0123456789abcdef" * 2 + "01234567",
    )


Event = PipelineObserved | JobObserved


def run(events: list[Event], state: Pipeline | None = None) -> list[Transition]:
    transitions = []
    for event in events:
        transition = apply(state, event)
        transitions.append(transition)
        state = transition.state
    return transitions


def final(events: list[Event]) -> Pipeline:
    return run(events)[-1].state


# A plain pipeline's life, as GitLab reports it.
CREATED = pe("created", 0, jobs=[job(1, "created", 0, stage="build"), job(2, "created", 0)])
PENDING = pe("pending", 1, jobs=[job(1, "pending", 0, stage="build"), job(2, "created", 0)])
RUNNING = pe("running", 5, jobs=[job(1, "running", 5, stage="build"), job(2, "created", 0)])
PASSED = pe("success", 60, jobs=[job(1, "success", 30, stage="build"), job(2, "success", 60)])
FAILED = pe(
    "failed",
    60,
    jobs=[job(1, "success", 30, stage="build"), job(2, "failed", 60, reason="script_failure")],
)
# A retry of job 2 after the failure: GitLab creates job 3 in its place.
RETRY_RUNNING = pe(
    "running",
    125,
    jobs=[job(1, "success", 30, stage="build"), job(3, "running", 125, name="job2")],
)
RETRY_PASSED = pe(
    "success",
    150,
    jobs=[job(1, "success", 30, stage="build"), job(3, "success", 150, name="job2")],
)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([CREATED, PENDING, RUNNING, PASSED], "success", id="in order"),
        pytest.param([CREATED, PENDING, RUNNING, FAILED], "failed", id="in order, failing"),
        pytest.param([CREATED, CREATED, RUNNING, RUNNING, FAILED], "failed", id="duplicates"),
        pytest.param([PASSED, RUNNING, PENDING, CREATED], "success", id="reversed"),
        pytest.param([RUNNING, PASSED, RUNNING], "success", id="stale running after success"),
        pytest.param([CREATED, FAILED, PENDING], "failed", id="stale pending after failure"),
        pytest.param([pe("success", 60), pe("running", 60)], "success", id="same second"),
        pytest.param([pe("running", 60), pe("success", 60)], "success", id="same second, in order"),
        pytest.param(
            [RUNNING, pe("canceling", 30), pe("canceled", 31), RUNNING],
            "canceled",
            id="canceled stays canceled",
        ),
        pytest.param([RUNNING, pe("manual", 30)], "manual", id="blocked on a manual job"),
        pytest.param(
            [RUNNING, pe("manual", 30), je(5, "running", 40)],
            "running",
            id="manual job played",
        ),
        pytest.param([FAILED, RETRY_RUNNING], "running", id="retry shows running again"),
        pytest.param(
            [RUNNING, FAILED, RETRY_RUNNING, RETRY_PASSED], "success", id="retry then new result"
        ),
        pytest.param(
            [RETRY_PASSED, FAILED, RUNNING, RETRY_RUNNING], "success", id="retry, reversed"
        ),
        pytest.param([FAILED, je(3, "pending", 100, name="job2")], "running", id="retry by job"),
        pytest.param([FAILED, je(2, "running", 20)], "failed", id="stale job running"),
        pytest.param([FAILED, je(2, "running", 60.9)], "failed", id="job within the same second"),
        pytest.param([FAILED, je(3, "pending", 60.2)], "running", id="new job, same second"),
        pytest.param([PASSED, je(9, "manual", 80)], "success", id="manual job settles"),
        pytest.param([PENDING, je(1, "running", 3)], "running", id="a job starts"),
        pytest.param([RUNNING, je(2, "failed", 40)], "running", id="a job result is not ours"),
        pytest.param([pe("canceling", 30), je(2, "running", 35)], "canceling", id="canceling"),
    ],
)
def test_final_status(events: list[Event], expected: PipelineStatus) -> None:
    assert final(events).status == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([CREATED, PENDING, RUNNING, PASSED, RUNNING], "success", id="success"),
        pytest.param([CREATED, RUNNING, FAILED, FAILED], "failed", id="failure"),
        pytest.param([RUNNING, FAILED, RETRY_RUNNING, RETRY_PASSED], "success", id="retry"),
        pytest.param([RUNNING, pe("canceling", 30), pe("canceled", 31)], "canceled", id="cancel"),
    ],
)
def test_arrival_order_does_not_matter(events: list[Event], expected: PipelineStatus) -> None:
    finals = {final(list(order)) for order in itertools.permutations(events)}
    assert {p.status for p in finals} == {expected}
    assert len({(p.status, p.jobs) for p in finals}) == 1


def test_a_duplicate_changes_nothing() -> None:
    first, second = run([RUNNING, RUNNING])
    assert first.changed
    assert not second.changed
    assert not second.advanced
    assert second.state == first.state


def test_a_stale_event_moves_nothing_back() -> None:
    done, stale = run([PASSED, RUNNING])
    assert not stale.changed
    assert stale.state.status == "success"
    assert stale.state.jobs == done.state.jobs
    assert not stale.failed_now
    assert not stale.finished_now


def test_announcements_follow_runs() -> None:
    ts = run([CREATED, RUNNING, FAILED, FAILED, RUNNING, RETRY_RUNNING, RETRY_PASSED])
    assert [t.failed_now for t in ts] == [False, False, True, False, False, False, False]
    assert [t.finished_now for t in ts] == [False, False, True, False, False, False, True]
    assert [t.reopened for t in ts] == [False, False, False, False, False, True, False]
    assert [t.state.run for t in ts] == [1, 1, 1, 1, 1, 2, 2]
    assert ts[0].created
    assert not ts[1].created


def test_a_rerun_that_fails_again_is_announced_again() -> None:
    refailed = pe(
        "failed",
        150,
        jobs=[job(1, "success", 30, stage="build"), job(3, "failed", 150, name="job2")],
    )
    ts = run([FAILED, RETRY_RUNNING, refailed])
    assert [t.failed_now for t in ts] == [True, False, True]
    # Even when the running phase of the rerun was never seen.
    ts = run([FAILED, refailed])
    assert [t.failed_now for t in ts] == [True, True]
    assert ts[-1].state.failed_jobs[0].id == 3


def test_a_reopened_pipeline_shows_no_stale_duration() -> None:
    state = final([FAILED, je(3, "pending", 100, name="job2")])
    assert state.status == "running"
    assert state.elapsed is None


def test_first_seen_through_a_job() -> None:
    first = apply(None, je(2, "running", 10, pipeline_status="running"))
    assert first.created
    assert first.state.status == "running"
    assert [j.id for j in first.state.jobs] == [2]
    later = run([PENDING, FAILED], first.state)
    assert [t.state.status for t in later] == ["running", "failed"]
    assert later[-1].failed_now


def test_jobs_keep_their_newest_observation() -> None:
    state = final([je(2, "running", 10), je(2, "pending", 5), je(2, "success", 20)])
    assert [(j.id, j.status) for j in state.jobs] == [(2, "success")]
    state = final([je(2, "success", 20), je(2, "running", 10)])
    assert [(j.id, j.status) for j in state.jobs] == [(2, "success")]


def test_a_played_manual_job_is_pending_although_its_clock_did_not_move() -> None:
    state = final([je(2, "manual", 10), je(2, "pending", 10)])
    assert state.jobs[0].status == "pending"


def test_failed_jobs_are_the_latest_blocking_failures_in_stage_order() -> None:
    state = final(
        [
            pe(
                "failed",
                60,
                jobs=[
                    job(1, "failed", 10, stage="build", name="compile"),
                    job(4, "success", 20, stage="build", name="compile"),  # retried, passed
                    job(2, "failed", 30, stage="test", name="lint", allow_failure=True),
                    job(3, "failed", 40, stage="test", name="unit"),
                    job(5, "failed", 50, stage="build", name="docs"),
                ],
            )
        ]
    )
    assert [j.name for j in state.failed_jobs] == ["docs", "unit"]


def _stage(*jobs: Job) -> tuple[PipelineStatus, bool]:
    state = final([pe("running", 100, jobs=list(jobs))])
    (stage,) = (s for s in state.stages if s.name == "test")
    return stage.status, stage.warnings


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        pytest.param([], ("created", False), id="declared, no jobs yet"),
        pytest.param([job(1, "success", 1), job(2, "success", 1)], ("success", False), id="ok"),
        pytest.param([job(1, "success", 1), job(2, "failed", 1)], ("failed", False), id="failed"),
        pytest.param(
            [job(1, "success", 1), job(2, "failed", 1, allow_failure=True)],
            ("success", True),
            id="allowed failure",
        ),
        pytest.param([job(1, "running", 1), job(2, "failed", 1)], ("failed", False), id="fast"),
        pytest.param([job(1, "running", 1), job(2, "success", 1)], ("running", False), id="run"),
        pytest.param([job(1, "pending", 1), job(2, "success", 1)], ("pending", False), id="wait"),
        pytest.param([job(1, "created", 1), job(2, "created", 1)], ("created", False), id="new"),
        pytest.param([job(1, "created", 1), job(2, "success", 1)], ("pending", False), id="next"),
        pytest.param([job(1, "skipped", 1), job(2, "skipped", 1)], ("skipped", False), id="skip"),
        pytest.param([job(1, "success", 1), job(2, "skipped", 1)], ("success", False), id="some"),
        pytest.param([job(1, "canceled", 1), job(2, "success", 1)], ("canceled", False), id="c"),
        pytest.param(
            [job(1, "manual", 1, manual=True, allow_failure=True), job(2, "success", 1)],
            ("success", False),
            id="optional manual job",
        ),
        pytest.param(
            [job(1, "manual", 1, manual=True), job(2, "success", 1)],
            ("manual", False),
            id="blocking manual job",
        ),
        pytest.param(
            [job(1, "manual", 1, manual=True, allow_failure=True)],
            ("manual", False),
            id="only a manual job",
        ),
        pytest.param(
            [job(1, "failed", 1, name="unit"), job(2, "success", 2, name="unit")],
            ("success", False),
            id="retried job passed",
        ),
        pytest.param(
            [job(1, "success", 1, name="unit"), job(2, "failed", 2, name="unit")],
            ("failed", False),
            id="retried job failed",
        ),
    ],
)
def test_stage_status(jobs: list[Job], expected: tuple[PipelineStatus, bool]) -> None:
    assert _stage(*jobs) == expected


def test_stage_order_is_gitlabs_then_first_job() -> None:
    state = final(
        [
            je(30, "created", 1, stage="deploy"),
            je(20, "running", 1, stage="test"),
            je(10, "success", 1, stage="build"),
        ]
    )
    assert [s.name for s in state.stages] == ["build", "test", "deploy"]
    state = final([pe("running", 1, jobs=[job(9, "running", 1, stage=".pre")])])
    assert [s.name for s in state.stages] == ["build", "test", ".pre"]


def test_descriptive_fields_are_filled_in_from_any_event() -> None:
    bare = replace(pe("running", 5), commit_title=None, author_name=None, project_url=None)
    state = final([bare, replace(pe("pending", 1), iid=42)])
    assert state.status == "running"
    assert state.commit_title == "Fix the thing"
    assert state.author_name == "Alice"
    assert state.iid == 42


def test_elapsed_prefers_gitlabs_duration() -> None:
    assert final([pe("success", 185)]).elapsed == 185.0
    assert final([replace(pe("success", 185), duration=63.0)]).elapsed == 63.0
    assert final([pe("running", 185)]).elapsed is None


def test_the_state_survives_storage() -> None:
    adapter = TypeAdapter(Pipeline)
    state = final([RUNNING, FAILED, je(3, "pending", 100.5, name="job2")])
    restored = adapter.validate_json(adapter.dump_json(state))
    assert restored == state
    assert (restored.status_at, restored.status_job, restored.run, restored.updated_at) == (
        state.status_at,
        state.status_job,
        state.run,
        state.updated_at,
    )
    assert apply(restored, RETRY_PASSED).state == apply(state, RETRY_PASSED).state


def test_an_event_for_another_pipeline_is_refused() -> None:
    state = final([RUNNING])
    with pytest.raises(ValueError, match="#8"):
        apply(state, pe("success", 60, pipeline_id=8))


def test_latest_ignores_unknowns_and_reads_naive_as_utc() -> None:
    assert latest(None, None) is None
    naive = datetime(2024, 5, 1, 12, 0, 5)
    assert latest(at(1), None, naive) == at(5)


# --------------------------------------------------------------------------------------------
# "Fixed"


def finished(
    pipeline_id: int, status: PipelineStatus, t: float = 60, *, ref: str = "main"
) -> Pipeline:
    return final([pe(status, t, pipeline_id=pipeline_id, ref=ref)])


FAILING_10 = RefHistory(pipeline_id=10, status="failed", finished_at=at(60), failures=1)
FAILING_11 = RefHistory(pipeline_id=11, status="failed", finished_at=at(60), failures=2)
PASSING_11 = RefHistory(pipeline_id=11, status="success", finished_at=at(60))


@pytest.mark.parametrize(
    ("history", "pipeline", "fixed", "failures", "after"),
    [
        pytest.param(None, finished(10, "success"), False, 0, PASSING_11, id="first, passing"),
        pytest.param(None, finished(10, "failed"), False, 0, FAILING_10, id="first, failing"),
        pytest.param(FAILING_10, finished(11, "success"), True, 1, PASSING_11, id="fixed"),
        pytest.param(FAILING_11, finished(12, "success"), True, 2, PASSING_11, id="fixed after 2"),
        pytest.param(FAILING_10, finished(11, "failed"), False, 0, FAILING_11, id="still failing"),
        pytest.param(PASSING_11, finished(12, "success"), False, 0, PASSING_11, id="still ok"),
        pytest.param(PASSING_11, finished(12, "failed"), False, 0, FAILING_10, id="broken"),
        pytest.param(FAILING_10, finished(10, "success", 90), True, 1, PASSING_11, id="retried"),
        pytest.param(
            FAILING_10, finished(10, "failed", 90), False, 0, FAILING_10, id="retried, failed again"
        ),
    ],
)
def test_judge_ref(
    history: RefHistory | None,
    pipeline: Pipeline,
    fixed: bool,
    failures: int,
    after: RefHistory,
) -> None:
    verdict = judge_ref(history, pipeline)
    assert verdict.changed
    assert verdict.fixed == fixed
    assert verdict.failures == failures
    assert verdict.history is not None
    assert verdict.history.pipeline_id == pipeline.id
    assert (verdict.history.status, verdict.history.failures) == (after.status, after.failures)


@pytest.mark.parametrize(
    ("history", "pipeline"),
    [
        pytest.param(PASSING_11, finished(10, "failed"), id="older pipeline, late"),
        pytest.param(FAILING_10, finished(10, "failed"), id="duplicate"),
        pytest.param(FAILING_10, finished(10, "canceled", 90), id="canceled says nothing"),
        pytest.param(FAILING_10, finished(10, "skipped", 90), id="skipped says nothing"),
        pytest.param(FAILING_10, final([pe("running", 90, pipeline_id=12)]), id="not finished"),
        pytest.param(
            replace(FAILING_10, finished_at=at(90)), finished(10, "success", 60), id="stale result"
        ),
    ],
)
def test_judge_ref_ignores(history: RefHistory, pipeline: Pipeline) -> None:
    verdict = judge_ref(history, pipeline)
    assert not verdict.changed
    assert not verdict.fixed
    assert verdict.history == history


def test_ref_scopes_keep_branches_tags_and_merge_requests_apart() -> None:
    branch = finished(10, "failed", ref="v1")
    tag = replace(branch, tag=True)
    mr = replace(branch, merge_request=MergeRequestRef(iid=3))
    assert ref_scope(branch) == "shop/orders:refs/heads/v1"
    assert ref_scope(tag) == "shop/orders:refs/tags/v1"
    assert ref_scope(mr) == "shop/orders!3"
