"""Folding a batch of one pipeline's observations: the same states, replies and verdicts as one
observation at a time, in fewer commits; folding them again changes nothing."""

from __future__ import annotations

import random

import pytest

from bot.domain.pipelines import Fold, Pipeline, apply, fold

from .test_pipelines import (
    CREATED,
    FAILED,
    PASSED,
    PENDING,
    RETRY_PASSED,
    RETRY_RUNNING,
    RUNNING,
    Event,
    je,
)


def one_at_a_time(state: Pipeline | None, events: list[Event]) -> list[tuple[str, bool, bool]]:
    """(status, failed_now, finished_now) of every observation that advanced the state."""
    out = []
    for event in events:
        t = apply(state, event)
        if t.advanced:
            out.append((t.state.status, t.failed_now, t.finished_now))
            state = t.state
    return out


def shape(folds: tuple[Fold, ...]) -> list[tuple[str, bool, bool, int]]:
    return [
        (f.transition.state.status, f.transition.failed_now, f.transition.finished_now, f.last)
        for f in folds
    ]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([], [], id="nothing"),
        pytest.param(
            [CREATED, PENDING, RUNNING], [("running", False, False, 2)], id="no result: one fold"
        ),
        pytest.param(
            [CREATED, PENDING, RUNNING, PASSED],
            [("success", False, True, 3)],
            id="a result ends the fold",
        ),
        pytest.param(
            [CREATED, FAILED, RETRY_RUNNING, RETRY_PASSED],
            [("failed", True, True, 1), ("success", False, True, 3)],
            id="failed, retried, passed: the failure keeps its own fold",
        ),
        pytest.param(
            [RUNNING, FAILED, RETRY_RUNNING],
            [("failed", True, True, 1), ("running", False, False, 2)],
            id="a retry after the failure starts a new fold",
        ),
        pytest.param(
            [PASSED, RUNNING, je(2, "running", 10)],
            [("success", False, True, 0)],
            id="late hooks after the result change nothing",
        ),
        pytest.param(
            [RUNNING, RUNNING, PENDING, RUNNING],
            [("running", False, False, 0)],
            id="duplicates and stale hooks fold into the first",
        ),
    ],
)
def test_folds_end_where_something_is_announced(
    events: list[Event], expected: list[tuple[str, bool, bool, int]]
) -> None:
    assert shape(fold(None, events)) == expected


EVENTS: list[Event] = [
    CREATED,
    PENDING,
    je(1, "running", 5, stage="build"),
    RUNNING,
    FAILED,
    RETRY_RUNNING,
    je(3, "success", 150, name="job2"),
    RETRY_PASSED,
]


@pytest.mark.parametrize("seed", range(40))
def test_a_fold_ends_in_the_state_and_announces_what_one_at_a_time_would(seed: int) -> None:
    rng = random.Random(seed)
    events = rng.sample(EVENTS, k=rng.randint(1, len(EVENTS)))
    events += rng.sample(events, k=rng.randint(0, min(2, len(events))))  # GitLab's retries
    state = None
    for event in events:
        state = apply(state, event).state
    folds = fold(None, events)
    steps = one_at_a_time(None, events)
    # the same final state
    assert folds[-1].transition.state == state
    assert folds[-1].transition.state.run == state.run
    # every step that announced something (a result, a failure) ends a fold, in the same order
    announcing = [(s, f, n) for s, f, n in steps if f or n]
    assert [(*x[:3],) for x in shape(folds) if x[1] or x[2]] == announcing
    # every state the pipeline went through is seen once, across the folds
    assert sum(len(f.seen) for f in folds) == len(steps)
    # each fold starts where the previous one ended
    previous = None
    for f in folds:
        assert f.transition.previous == previous
        previous = f.transition.state
    # and folding the same events again (a batch replayed after a crash) changes nothing
    assert fold(state, events) == ()


def test_what_a_team_wants_to_see_is_judged_on_every_state_of_a_fold() -> None:
    [only] = fold(None, [CREATED, RUNNING, PASSED])
    assert [s.status for s in only.seen] == ["created", "running", "success"]
