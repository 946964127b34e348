"""The rollout state machine: kubectl's verdicts, told once, never replayed, never flapping."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from bot.domain.catalog import App, Catalog, Environment, Team
from bot.domain.rollouts import (
    DEADLINE_EXCEEDED,
    Condition,
    Container,
    Happening,
    ImageChange,
    PodCounts,
    PodProblem,
    PodsObserved,
    Progress,
    Rollout,
    StatusPhase,
    Transition,
    Workload,
    WorkloadSnapshot,
    needs_pods,
    observe,
    observe_pods,
    owner,
    rollback_version,
    rollout_status,
    summarize_problems,
    version_of,
    with_problems,
)

T0 = datetime(2025, 1, 15, 9, 0, tzinfo=UTC)
REGISTRY = "registry.example.com/shop/orders"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def progressing(reason: str, seconds: float = 0, status: str = "True") -> Condition:
    return Condition(type="Progressing", status=status, reason=reason, last_update=at(seconds))


def snap(rv: int | str, t: float, **changes: Any) -> WorkloadSnapshot:
    """A Deployment ``orders`` with 4 replicas, complete at generation 1 on 1.4.1, unless told.

    ``version`` sets the api container's tag; the template hash follows the containers.
    """
    version = changes.pop("version", "1.4.1")
    containers = changes.pop("containers", (Container(name="api", image=f"{REGISTRY}:{version}"),))
    fields: dict[str, Any] = {
        "kind": "Deployment",
        "context": "prod",
        "namespace": "orders",
        "name": "orders",
        "uid": "uid-1",
        "labels": {"appId": "orders"},
        "generation": 1,
        "observed_generation": 1,
        "resource_version": str(rv),
        "template_hash": "|".join(f"{c.name}={c.image}" for c in containers),
        "containers": containers,
        "replicas": 4,
        "status_replicas": 4,
        "updated": 4,
        "ready": 4,
        "available": 4,
        "observed_at": at(t),
    }
    fields.update(changes)
    return WorkloadSnapshot(**fields)


def counts(updated: int, ready: int, available: int, total: int = 4) -> dict[str, Any]:
    return {"updated": updated, "ready": ready, "available": available, "status_replicas": total}


# One rollout of orders 1.4.1 → 1.4.2, as the watcher sees it.
STABLE = snap(100, 0)
SPEC_CHANGED = snap(101, 1, generation=2, version="1.4.2")  # status still from generation 1
FIRST_NEW = snap(102, 2, generation=2, observed_generation=2, version="1.4.2", **counts(1, 4, 4, 5))
HALFWAY = snap(103, 20, generation=2, observed_generation=2, version="1.4.2", **counts(2, 3, 3, 5))
DONE = snap(
    104,
    49,
    generation=2,
    observed_generation=2,
    version="1.4.2",
    conditions=(progressing("NewReplicaSetAvailable", 49),),
)
ROLLOUT = (STABLE, SPEC_CHANGED, FIRST_NEW, HALFWAY, DONE)
ROLLOUT_ID = "prod/Deployment/orders/orders/2"


def run(
    events: Iterable[WorkloadSnapshot | PodsObserved], state: Workload | None = None
) -> tuple[Workload | None, list[Transition]]:
    transitions = []
    for event in events:
        if isinstance(event, PodsObserved):
            assert state is not None
            transition = observe_pods(state, event)
        else:
            transition = observe(state, event)
        transitions.append(transition)
        state = transition.state
    return state, transitions


def said(transitions: Sequence[Transition]) -> list[tuple[Happening, str]]:
    return [(a.what, a.rollout.id) for t in transitions for a in t.announcements]


def final(events: Iterable[WorkloadSnapshot | PodsObserved]) -> Workload:
    state, _ = run(events)
    assert state is not None
    return state


# --------------------------------------------------------------------------------------------
# kubectl rollout status, check for check

DEPLOYMENT_CASES = [
    pytest.param(
        {"generation": 3, "observed_generation": 2},
        "progressing",
        "Waiting for deployment spec update to be observed...",
        id="spec-not-observed",
    ),
    pytest.param(
        {
            "generation": 3,
            "observed_generation": 2,
            "conditions": (progressing(DEADLINE_EXCEEDED, status="False"),),
        },
        "progressing",
        "Waiting for deployment spec update to be observed...",
        id="deadline-only-read-once-observed",
    ),
    pytest.param(
        {"conditions": (progressing(DEADLINE_EXCEEDED, status="False"),), **counts(2, 2, 2)},
        "failed",
        'deployment "orders" exceeded its progress deadline',
        id="deadline-exceeded",
    ),
    pytest.param(
        {"conditions": (progressing(DEADLINE_EXCEEDED, status="False"),)},
        "failed",
        'deployment "orders" exceeded its progress deadline',
        id="deadline-read-before-counts",
    ),
    pytest.param(
        counts(2, 4, 4, 6),
        "progressing",
        'Waiting for deployment "orders" rollout to finish: '
        "2 out of 4 new replicas have been updated...",
        id="updating",
    ),
    pytest.param(
        counts(4, 4, 4, 5),
        "progressing",
        'Waiting for deployment "orders" rollout to finish: '
        "1 old replicas are pending termination...",
        id="old-terminating",
    ),
    pytest.param(
        counts(4, 3, 3),
        "progressing",
        'Waiting for deployment "orders" rollout to finish: '
        "3 of 4 updated replicas are available...",
        id="not-available",
    ),
    pytest.param({}, "complete", 'deployment "orders" successfully rolled out', id="complete"),
    pytest.param(
        {"replicas": 0, **counts(0, 0, 0, 0)},
        "complete",
        'deployment "orders" successfully rolled out',
        id="scaled-to-zero",
    ),
    pytest.param(
        {"update_strategy": "Recreate"},
        "complete",
        'deployment "orders" successfully rolled out',
        id="recreate-strategy",
    ),
]

DAEMON_SET_CASES = [
    pytest.param(
        {"update_strategy": "OnDelete", **counts(0, 0, 0)},
        "unsupported",
        "rollout status is only available for RollingUpdate strategy type",
        id="on-delete",
    ),
    pytest.param(
        {"generation": 2},
        "progressing",
        "Waiting for daemon set spec update to be observed...",
        id="spec-not-observed",
    ),
    pytest.param(
        counts(1, 3, 3),
        "progressing",
        'Waiting for daemon set "node-agent" rollout to finish: '
        "1 out of 3 new pods have been updated...",
        id="updating",
    ),
    pytest.param(
        counts(3, 2, 2),
        "progressing",
        'Waiting for daemon set "node-agent" rollout to finish: '
        "2 of 3 updated pods are available...",
        id="not-available",
    ),
    pytest.param(
        {"conditions": (progressing(DEADLINE_EXCEEDED, status="False"),)},
        "complete",
        'daemon set "node-agent" successfully rolled out',
        id="no-deadline-condition-for-daemon-sets",
    ),
]

STATEFUL_SET_CASES = [
    pytest.param(
        {"update_strategy": "OnDelete"},
        "unsupported",
        "rollout status is only available for RollingUpdate strategy type",
        id="on-delete",
    ),
    pytest.param(
        {"observed_generation": 0},
        "progressing",
        "Waiting for statefulset spec update to be observed...",
        id="never-observed",
    ),
    pytest.param(
        {"generation": 2},
        "progressing",
        "Waiting for statefulset spec update to be observed...",
        id="spec-not-observed",
    ),
    pytest.param(
        {"ready": 1},
        "progressing",
        "Waiting for 2 pods to be ready...",
        id="not-ready",
    ),
    pytest.param(
        {"partition": 1, "updated": 1},
        "progressing",
        "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...",
        id="partition-waiting",
    ),
    pytest.param(
        {"partition": 1, "updated": 2},
        "complete",
        "partitioned roll out complete: 2 new pods have been updated...",
        id="partition-complete",
    ),
    pytest.param(
        {"partition": 0, "update_revision": "db-8d4f"},
        "complete",
        "partitioned roll out complete: 3 new pods have been updated...",
        id="partition-branch-ignores-revisions",
    ),
    pytest.param(
        {"partition": None, "update_revision": "db-8d4f", "updated": 2},
        "progressing",
        "waiting for statefulset rolling update to complete 2 pods at revision db-8d4f...",
        id="revision-waiting",
    ),
    pytest.param(
        {"partition": None},
        "complete",
        "statefulset rolling update complete 3 pods at revision db-7c9b...",
        id="revision-complete",
    ),
]


def daemon_set(**changes: Any) -> WorkloadSnapshot:
    fields: dict[str, Any] = {
        "kind": "DaemonSet",
        "name": "node-agent",
        "replicas": 3,
        **counts(3, 3, 3, 3),
    }
    return snap(1, 0, **(fields | changes))


def stateful_set(rv: int = 1, t: float = 0, **changes: Any) -> WorkloadSnapshot:
    fields: dict[str, Any] = {
        "kind": "StatefulSet",
        "name": "db",
        "replicas": 3,
        "current_replicas": 3,
        "current_revision": "db-7c9b",
        "update_revision": "db-7c9b",
        "partition": 0,
        **counts(3, 3, 3, 3),
    }
    return snap(rv, t, **(fields | changes))


@pytest.mark.parametrize(("changes", "phase", "message"), DEPLOYMENT_CASES)
def test_deployment_status_is_kubectls(
    changes: dict[str, Any], phase: StatusPhase, message: str
) -> None:
    status = rollout_status(snap(1, 0, **changes))
    assert (status.phase, status.message) == (phase, message)
    assert status.reason == (DEADLINE_EXCEEDED if phase == "failed" else None)
    assert status.done == (phase == "complete")


@pytest.mark.parametrize(("changes", "phase", "message"), DAEMON_SET_CASES)
def test_daemon_set_status_is_kubectls(
    changes: dict[str, Any], phase: StatusPhase, message: str
) -> None:
    status = rollout_status(daemon_set(**changes))
    assert (status.phase, status.message) == (phase, message)


@pytest.mark.parametrize(("changes", "phase", "message"), STATEFUL_SET_CASES)
def test_stateful_set_status_is_kubectls(
    changes: dict[str, Any], phase: StatusPhase, message: str
) -> None:
    status = rollout_status(stateful_set(**changes))
    assert (status.phase, status.message) == (phase, message)


# --------------------------------------------------------------------------------------------
# One rollout, start to finish


def test_a_rollout_is_told_from_start_to_success() -> None:
    state, transitions = run(ROLLOUT)

    assert said(transitions) == [
        ("started", ROLLOUT_ID),
        ("progressed", ROLLOUT_ID),
        ("progressed", ROLLOUT_ID),
        ("succeeded", ROLLOUT_ID),
    ]
    started = transitions[1].announcements[0].rollout
    assert [(c.container, c.old_version, c.new_version) for c in started.changes] == [
        ("api", "1.4.1", "1.4.2")
    ]
    assert started.message == "Waiting for deployment spec update to be observed..."
    done = transitions[-1].announcements[0].rollout
    assert done.phase == "succeeded"
    assert done.duration == 48.0
    assert state is not None
    assert state.current is None
    assert state.last == done
    assert all(t.advanced for t in transitions)


def test_progress_reports_each_change_of_the_counts() -> None:
    _, transitions = run(ROLLOUT[:4])
    progressed = [a.rollout.progress for t in transitions for a in t.announcements][1:]
    assert [(p.updated, p.ready, p.available) for p in progressed] == [(1, 4, 4), (2, 3, 3)]


def test_a_status_write_that_moves_no_count_is_not_progress() -> None:
    state = final(ROLLOUT[:4])
    again = replace(HALFWAY, resource_version="200", observed_at=at(25))
    transition = observe(state, again)
    assert transition.advanced
    assert transition.announcements == ()


# --------------------------------------------------------------------------------------------
# Order: duplicates, replays, restarts


def test_duplicates_and_older_snapshots_change_nothing() -> None:
    state, _ = run(ROLLOUT)
    assert state is not None
    for old in ROLLOUT:
        transition = observe(state, old)
        assert not transition.advanced
        assert transition.announcements == ()
        assert transition.state is state


def test_each_snapshot_delivered_twice_is_told_once() -> None:
    _, transitions = run(e for s in ROLLOUT for e in (s, s))
    assert said(transitions) == said(run(ROLLOUT)[1])


def test_resource_versions_compare_as_numbers() -> None:
    state = final([snap(999, 0)])
    assert observe(state, snap(1000, 1, replicas=5)).advanced
    assert not observe(state, snap(998, 1, replicas=5)).advanced


def test_opaque_resource_versions_that_differ_are_newer() -> None:
    state = final([snap("abc", 0)])
    assert observe(state, snap("abd", 1)).advanced
    assert not observe(state, snap("abc", 1)).advanced


def test_a_restart_mid_rollout_then_completion_succeeds_once() -> None:
    adapter = TypeAdapter(Workload)
    before_restart = final(ROLLOUT[:3])
    restored = adapter.validate_json(adapter.dump_json(before_restart))

    # The re-list after the restart shows the rollout done; then the watch replays.
    listed = replace(DONE, observed_at=at(600))
    _, transitions = run([listed, HALFWAY, listed, DONE], restored)

    assert said(transitions) == [("succeeded", ROLLOUT_ID)]
    done = transitions[0].announcements[0].rollout
    # The Deployment controller wrote down when it completed: the downtime is not counted.
    assert done.duration == 48.0


def test_completion_time_falls_back_to_observation_when_the_cluster_clock_disagrees() -> None:
    state = final(ROLLOUT[:3])
    skewed = replace(DONE, conditions=(progressing("NewReplicaSetAvailable", -30),))
    done = observe(state, skewed).announced("succeeded")[0]
    assert done.duration == 48.0  # observed at 49, started at 1
    future = replace(DONE, conditions=(progressing("NewReplicaSetAvailable", 900),))
    assert observe(state, future).announced("succeeded")[0].duration == 48.0


def test_a_rollout_that_ran_while_the_bot_was_away_is_started_and_ended_at_once() -> None:
    state = final([STABLE])
    transition = observe(state, replace(DONE, observed_at=at(3600)))

    assert said([transition]) == [("started", ROLLOUT_ID), ("succeeded", ROLLOUT_ID)]
    (rollout,) = transition.rollouts
    assert rollout.phase == "succeeded"
    assert rollout.started_at is None
    assert rollout.duration is None
    assert [(c.old_version, c.new_version) for c in rollout.changes] == [("1.4.1", "1.4.2")]


# --------------------------------------------------------------------------------------------
# First sight


def test_the_first_snapshot_of_a_settled_workload_is_quiet() -> None:
    transition = observe(None, STABLE)
    assert transition.advanced
    assert transition.announcements == ()
    assert transition.state.current is None
    assert transition.state.template_hash == STABLE.template_hash


def test_of_thousands_of_workloads_listed_only_the_one_rolling_out_is_told() -> None:
    def listed(i: int) -> WorkloadSnapshot:
        generation = i % 7 + 1
        if i == 4242:
            return snap(i, 0, name=f"svc-{i}", generation=generation + 1, version="2.0.0")
        degraded = counts(4, 2, 2) if i % 1000 == 0 else {}
        return snap(
            i, 0, name=f"svc-{i}", generation=generation, observed_generation=generation, **degraded
        )

    transitions = [observe(None, listed(i)) for i in range(1, 5001)]
    assert all(t.advanced for t in transitions)
    assert said(transitions) == [("started", "prod/Deployment/orders/svc-4242/2")]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(counts(4, 2, 2), id="degraded"),
        pytest.param(
            {"conditions": (progressing(DEADLINE_EXCEEDED, status="False"),), **counts(1, 3, 3, 5)},
            id="failed-before-we-looked",
        ),
        pytest.param({"kind": "StatefulSet", "update_strategy": "OnDelete"}, id="on-delete"),
    ],
)
def test_first_sight_of_a_workload_not_rolling_out_is_quiet(changes: dict[str, Any]) -> None:
    first = snap(1, 0, **changes)
    state, transitions = run([first, replace(first, resource_version="2", observed_at=at(30))])
    assert said(transitions) == []
    assert state is not None
    assert state.current is None


def test_first_sight_mid_rollout_starts_tracking_it() -> None:
    _, transitions = run([HALFWAY, DONE])

    assert said(transitions) == [("started", ROLLOUT_ID), ("succeeded", ROLLOUT_ID)]
    started = transitions[0].announcements[0].rollout
    assert started.started_at is None  # it began before we looked
    assert [(c.old_version, c.new_version) for c in started.changes] == [(None, "1.4.2")]
    assert transitions[1].announcements[0].rollout.duration is None


def test_first_sight_of_an_unobserved_spec_knows_when_it_started() -> None:
    _, transitions = run([SPEC_CHANGED, FIRST_NEW, DONE])
    assert said(transitions)[0] == ("started", ROLLOUT_ID)
    assert transitions[-1].announcements[0].rollout.duration == 48.0


def test_a_recreated_workload_starts_afresh() -> None:
    state = final(ROLLOUT[:3])
    recreated = snap(
        500, 100, uid="uid-2", version="2.0.0", observed_generation=0, **counts(0, 0, 0, 0)
    )
    transition = observe(state, recreated)
    assert said([transition]) == [("started", "prod/Deployment/orders/orders/1")]
    assert transition.state.uid == "uid-2"
    assert transition.state.last is None


def test_an_observation_of_another_workload_is_refused() -> None:
    state = final([STABLE])
    with pytest.raises(ValueError, match="prod/Deployment/orders/payments"):
        observe(state, snap(101, 1, name="payments"))


# --------------------------------------------------------------------------------------------
# What is not a rollout


def test_scaling_is_not_a_rollout() -> None:
    scaled = snap(101, 1, generation=2, replicas=6)
    catching_up = snap(
        102, 2, generation=2, observed_generation=2, replicas=6, **counts(5, 4, 4, 5)
    )
    settled = snap(103, 30, generation=2, observed_generation=2, replicas=6, **counts(6, 6, 6, 6))
    state, transitions = run([STABLE, scaled, catching_up, settled])
    assert said(transitions) == []
    assert state is not None
    assert state.generation == 2


def test_health_flapping_after_success_is_not_announced_again() -> None:
    state = final(ROLLOUT)
    dip = snap(200, 300, generation=2, observed_generation=2, version="1.4.2", **counts(4, 2, 2))
    back = snap(201, 330, generation=2, observed_generation=2, version="1.4.2")
    _, transitions = run([dip, back, replace(dip, resource_version="202")], state)
    assert said(transitions) == []


def test_a_new_template_hash_without_a_new_generation_is_adopted_silently() -> None:
    state = final([STABLE])
    rehashed = replace(snap(101, 1), template_hash="sha256-of-the-same-template")
    transition = observe(state, rehashed)
    assert transition.announcements == ()
    assert transition.state.template_hash == "sha256-of-the-same-template"
    # The next real change is still a rollout.
    assert said([observe(transition.state, replace(SPEC_CHANGED, resource_version="102"))]) == [
        ("started", ROLLOUT_ID)
    ]


def test_a_template_change_of_an_on_delete_workload_is_not_a_rollout() -> None:
    on_delete = {"update_strategy": "OnDelete", "partition": None}
    before = stateful_set(1, 0, **on_delete)
    after = stateful_set(
        2, 1, generation=2, version="1.4.2", update_revision="db-8d4f", **on_delete
    )
    state, transitions = run([before, after])
    assert said(transitions) == []
    assert state is not None
    assert state.template_hash == after.template_hash


def test_a_restart_of_the_pods_is_a_rollout_without_a_version_change() -> None:
    restarted = replace(
        STABLE,
        resource_version="101",
        generation=2,
        template_hash=STABLE.template_hash + "|restartedAt=2025-01-15T09:00:00Z",
    )
    _, transitions = run([STABLE, restarted])
    (rollout,) = transitions[1].rollouts
    assert rollout.changes == ()
    assert [i.new_version for i in rollout.images] == ["1.4.1"]


# --------------------------------------------------------------------------------------------
# Failure, recovery, supersession

DEADLINE = progressing(DEADLINE_EXCEEDED, 620, status="False")
STUCK = snap(
    105,
    621,
    generation=2,
    observed_generation=2,
    version="1.4.2",
    conditions=(DEADLINE,),
    **counts(2, 3, 3, 5),
)


def test_a_deployment_fails_on_its_progress_deadline_once() -> None:
    state, transitions = run([*ROLLOUT[:4], STUCK, replace(STUCK, resource_version="106")])
    assert said(transitions)[-1:] == [("failed", ROLLOUT_ID)]
    failed = transitions[4].announcements[0].rollout
    assert (failed.phase, failed.reason) == ("failed", DEADLINE_EXCEEDED)
    assert failed.message == 'deployment "orders" exceeded its progress deadline'
    assert failed.finished_at == at(621)
    assert state is not None
    assert state.current == failed


def test_a_failed_deployment_that_progresses_again_stays_failed_until_it_completes() -> None:
    moving = replace(
        STUCK,
        resource_version="106",
        observed_at=at(700),
        conditions=(progressing("ReplicaSetUpdated", 700),),
        **counts(3, 3, 3, 5),
    )
    complete = replace(
        DONE,
        resource_version="107",
        observed_at=at(760),
        conditions=(progressing("NewReplicaSetAvailable", 759),),
    )
    state, transitions = run([*ROLLOUT[:4], STUCK, moving, complete])

    assert said(transitions)[3:] == [("failed", ROLLOUT_ID), ("recovered", ROLLOUT_ID)]
    recovered = transitions[-1].announcements[0].rollout
    assert recovered.phase == "succeeded"
    assert recovered.recovered
    assert recovered.reason == DEADLINE_EXCEEDED
    assert recovered.duration == 758.0
    assert state is not None
    assert state.current is None
    assert state.last == recovered
    # Recovered once: the same completion again, or later health, says nothing.
    again = replace(complete, resource_version="108")
    assert observe(state, again).announcements == ()


def test_a_new_template_supersedes_a_rollout_in_progress() -> None:
    newer = snap(
        104, 30, generation=3, observed_generation=2, version="1.4.3", **counts(2, 3, 3, 5)
    )
    state, transitions = run([*ROLLOUT[:4], newer])

    new_id = "prod/Deployment/orders/orders/3"
    assert said([transitions[-1]]) == [("superseded", ROLLOUT_ID), ("started", new_id)]
    old, new = transitions[-1].rollouts
    assert (old.phase, old.superseded_by, old.finished_at) == ("superseded", new_id, at(30))
    assert [(c.old_version, c.new_version) for c in new.changes] == [("1.4.2", "1.4.3")]
    assert state is not None
    assert state.current == new
    assert state.last == old


def test_a_new_rollout_after_a_failure_leaves_the_failed_message_alone() -> None:
    rollback = snap(
        200,
        900,
        generation=3,
        observed_generation=2,
        version="1.4.1",
        conditions=(DEADLINE,),
        **counts(2, 3, 3, 5),
    )
    state, transitions = run([*ROLLOUT[:4], STUCK, rollback])

    assert said([transitions[-1]]) == [("started", "prod/Deployment/orders/orders/3")]
    (rollout,) = transitions[-1].rollouts
    assert [(c.old_version, c.new_version) for c in rollout.changes] == [("1.4.2", "1.4.1")]
    assert state is not None
    assert state.last is not None
    assert (state.last.id, state.last.phase) == (ROLLOUT_ID, "failed")


# A rollback to the ReplicaSet that ran before a failed rollout: the deployment controller keeps
# the failed rollout's ProgressDeadlineExceeded (written at 620) until the rollback progresses.
ROLLBACK_SEEN = snap(200, 900, generation=3, observed_generation=2, version="1.4.1",
                     conditions=(DEADLINE,), **counts(2, 3, 3, 5))  # fmt: skip
ROLLBACK_OBSERVED = replace(
    ROLLBACK_SEEN, resource_version="201", observed_at=at(901), observed_generation=3,
    **counts(0, 3, 3, 5),
)  # fmt: skip


def test_a_rollback_is_not_failed_by_the_deadline_of_the_rollout_it_undoes() -> None:
    moving = replace(
        ROLLBACK_OBSERVED,
        resource_version="202",
        observed_at=at(905),
        conditions=(progressing("ReplicaSetUpdated", 905),),
        **counts(2, 4, 4, 5),
    )
    complete = replace(
        moving,
        resource_version="203",
        observed_at=at(930),
        conditions=(progressing("NewReplicaSetAvailable", 930),),
        **counts(4, 4, 4, 4),
    )
    _, transitions = run([*ROLLOUT[:4], STUCK, ROLLBACK_SEEN, ROLLBACK_OBSERVED, moving, complete])
    rollback_id = "prod/Deployment/orders/orders/3"
    assert said(transitions[5:]) == [
        ("started", rollback_id),
        ("progressed", rollback_id),  # observed: "0 out of 4 new replicas", not failed
        ("progressed", rollback_id),
        ("succeeded", rollback_id),
    ]
    stale = transitions[6].rollouts[0]
    assert stale.phase == "progressing"
    assert stale.message == (
        'Waiting for deployment "orders" rollout to finish: 0 out of 4 new replicas have been'
        " updated..."
    )


def test_a_rollback_that_never_progresses_fails_on_its_own_deadline() -> None:
    """The stale condition never changes if the rollback makes no progress at all: Pitcrew
    keeps the deadline itself, from the rollback's start (900 + 600 s)."""
    still = replace(ROLLBACK_OBSERVED, resource_version="202", observed_at=at(1400))
    late = replace(ROLLBACK_OBSERVED, resource_version="203", observed_at=at(1502))
    _, transitions = run([*ROLLOUT[:4], STUCK, ROLLBACK_SEEN, ROLLBACK_OBSERVED, still, late])
    rollback_id = "prod/Deployment/orders/orders/3"
    assert said(transitions[5:]) == [
        ("started", rollback_id),
        ("progressed", rollback_id),
        ("failed", rollback_id),
    ]
    failed = transitions[-1].announcements[0].rollout
    assert (failed.reason, failed.finished_at) == (DEADLINE_EXCEEDED, at(1502))
    assert failed.message == 'deployment "orders" exceeded its progress deadline'


def test_a_deadline_written_during_the_rollout_fails_it() -> None:
    """The same condition written after the rollback began is its own failure."""
    own = replace(
        ROLLBACK_OBSERVED,
        resource_version="202",
        observed_at=at(1600),
        conditions=(progressing(DEADLINE_EXCEEDED, 1599, status="False"),),
    )
    _, transitions = run([*ROLLOUT[:4], STUCK, ROLLBACK_SEEN, ROLLBACK_OBSERVED, own])
    assert said(transitions[-1:]) == [("failed", "prod/Deployment/orders/orders/3")]


def test_an_unseen_start_cannot_tell_a_stale_deadline() -> None:
    """Started while Pitcrew was not looking (first seen already observed): the condition's
    age proves nothing, and it is read as kubectl reads it."""
    _, transitions = run([*ROLLOUT[:4], STUCK, ROLLBACK_OBSERVED])
    assert said(transitions[-1:]) == [
        ("started", "prod/Deployment/orders/orders/3"),
        ("failed", "prod/Deployment/orders/orders/3"),
    ]


def test_a_scale_during_a_rollout_keeps_the_rollout() -> None:
    scaled = snap(
        104,
        25,
        generation=3,
        observed_generation=2,
        version="1.4.2",
        replicas=6,
        **counts(2, 3, 3, 5),
    )
    _, transitions = run([*ROLLOUT[:4], scaled])
    assert said([transitions[-1]]) == [("progressed", ROLLOUT_ID)]
    assert transitions[-1].rollouts[0].progress.replicas == 6


# --------------------------------------------------------------------------------------------
# StatefulSets and DaemonSets: Pitcrew keeps the deadline their controllers do not


def db(rv: int, t: float, **changes: Any) -> WorkloadSnapshot:
    """StatefulSet db rolling to 1.4.2 (generation 2, revision db-8d4f)."""
    fields: dict[str, Any] = {
        "generation": 2,
        "observed_generation": 2,
        "version": "1.4.2",
        "update_revision": "db-8d4f",
        "progress_deadline_seconds": 600,
    }
    return stateful_set(rv, t, **(fields | changes))


DB_ID = "prod/StatefulSet/orders/db/2"


def test_a_stateful_set_rolls_out_and_completes() -> None:
    _, transitions = run(
        [
            stateful_set(1, 0),
            db(2, 1, observed_generation=1),
            db(3, 10, **counts(1, 2, 2, 3)),
            db(4, 40, current_revision="db-8d4f", **counts(3, 3, 3, 3)),
        ]
    )
    assert said(transitions) == [("started", DB_ID), ("progressed", DB_ID), ("succeeded", DB_ID)]
    assert transitions[-1].announcements[0].rollout.duration == 39.0


def test_a_stuck_stateful_set_fails_when_its_pods_are_read_after_the_deadline() -> None:
    crash = PodProblem(pod="db-2", container="api", reason="CrashLoopBackOff", restarts=4)
    stuck = db(3, 10, **counts(1, 2, 2, 3))
    events: list[WorkloadSnapshot | PodsObserved] = [
        stateful_set(1, 0),
        db(2, 1, observed_generation=1),
        stuck,
        PodsObserved(rollout_id=DB_ID, problems=(crash,), observed_at=at(300)),
        PodsObserved(rollout_id=DB_ID, problems=(crash,), observed_at=at(611)),
    ]
    _, transitions = run(events)

    assert said(transitions)[-1:] == [("failed", DB_ID)]
    failed = transitions[-1].announcements[0].rollout
    assert (failed.reason, failed.message) == (
        DEADLINE_EXCEEDED,
        'statefulset "db" exceeded its progress deadline',
    )
    assert failed.problems == (crash,)
    assert failed.finished_at == at(611)
    assert [t.announcements for t in transitions[3:4]] == [()]


def test_progress_restarts_pitcrews_deadline() -> None:
    _, transitions = run(
        [
            stateful_set(1, 0),
            db(2, 1, observed_generation=1),
            db(3, 10, **counts(0, 2, 2, 3)),
            db(4, 500, **counts(1, 2, 2, 3)),
            PodsObserved(rollout_id=DB_ID, observed_at=at(1000)),
            PodsObserved(rollout_id=DB_ID, observed_at=at(1101)),
        ]
    )
    assert said(transitions)[-2:] == [("progressed", DB_ID), ("failed", DB_ID)]


def test_a_daemon_set_fails_on_a_snapshot_past_its_deadline_and_then_recovers() -> None:
    ds_id = "prod/DaemonSet/orders/node-agent/2"
    rolling = {"generation": 2, "observed_generation": 2, "version": "1.4.2"}
    _, transitions = run(
        [
            daemon_set(),
            daemon_set(resource_version="2", generation=2, version="1.4.2", observed_at=at(1)),
            daemon_set(resource_version="3", observed_at=at(5), **rolling, **counts(1, 2, 2)),
            daemon_set(resource_version="4", observed_at=at(700), **rolling, **counts(1, 2, 2)),
            daemon_set(resource_version="5", observed_at=at(760), **rolling),
        ]
    )
    assert said(transitions) == [
        ("started", ds_id),
        ("progressed", ds_id),
        ("failed", ds_id),
        ("recovered", ds_id),
    ]


def test_no_deadline_means_never_failing() -> None:
    _, transitions = run(
        [
            stateful_set(1, 0),
            db(2, 1, observed_generation=1, progress_deadline_seconds=None),
            db(3, 10, progress_deadline_seconds=None, **counts(1, 2, 2, 3)),
            PodsObserved(rollout_id=DB_ID, observed_at=at(86400)),
        ]
    )
    assert "failed" not in [what for what, _ in said(transitions)]


# --------------------------------------------------------------------------------------------
# Pods


CRASH = PodProblem(
    pod="orders-7d9f8-x2x",
    container="api",
    reason="CrashLoopBackOff",
    message="panic: no DATABASE_URL",
    restarts=5,
)
PULL = PodProblem(pod="orders-7d9f8-k1p", container="api", reason="ImagePullBackOff")


def test_new_problems_of_a_failed_rollout_are_announced_once() -> None:
    state = final([*ROLLOUT[:4], STUCK])
    events = [
        PodsObserved(rollout_id=ROLLOUT_ID, problems=(CRASH,), observed_at=at(630)),
        PodsObserved(
            rollout_id=ROLLOUT_ID, problems=(replace(CRASH, restarts=6),), observed_at=at(640)
        ),
        PodsObserved(rollout_id=ROLLOUT_ID, problems=(CRASH, PULL), observed_at=at(650)),
    ]
    _, transitions = run(events, state)
    assert [[a.what for a in t.announcements] for t in transitions] == [
        ["problems"],
        [],
        ["problems"],
    ]
    assert transitions[-1].rollouts[0].problems == (PULL, CRASH)


def test_problems_of_a_rollout_in_progress_wait_for_its_failure() -> None:
    state = final(ROLLOUT[:4])
    reading = PodsObserved(rollout_id=ROLLOUT_ID, problems=(CRASH,), observed_at=at(30))
    transition = observe_pods(state, reading)
    assert transition.advanced
    assert transition.announcements == ()
    failed = observe(transition.state, STUCK).announced("failed")[0]
    assert failed.problems == (CRASH,)


@pytest.mark.parametrize(
    "reading",
    [
        pytest.param(
            PodsObserved(rollout_id="prod/Deployment/orders/orders/1", observed_at=at(30)),
            id="another-rollout",
        ),
        pytest.param(PodsObserved(rollout_id=ROLLOUT_ID, observed_at=at(5)), id="older-reading"),
    ],
)
def test_pod_readings_of_other_rollouts_or_older_ones_are_ignored(reading: PodsObserved) -> None:
    state = final(
        [*ROLLOUT[:4], PodsObserved(rollout_id=ROLLOUT_ID, problems=(CRASH,), observed_at=at(20))]
    )
    transition = observe_pods(state, reading)
    assert not transition.advanced
    assert transition.state is state


def test_pod_readings_without_a_rollout_are_ignored() -> None:
    state = final(ROLLOUT)
    transition = observe_pods(state, PodsObserved(rollout_id=ROLLOUT_ID, observed_at=at(60)))
    assert not transition.advanced


def test_problems_are_summarized_by_reason_and_container_most_severe_first() -> None:
    problems = [
        PodProblem(pod="orders-a", reason="Unschedulable", message="0/3 nodes are available"),
        PodProblem(pod="orders-b", container="api", reason="CrashLoopBackOff", restarts=2),
        PodProblem(
            pod="orders-c", container="api", reason="CrashLoopBackOff", restarts=7, message="exit 1"
        ),
        PodProblem(pod="orders-d", container="api", reason="OOMKilled", restarts=1),
        PodProblem(pod="orders-e", container="proxy", reason="CrashLoopBackOff", restarts=1),
        PodProblem(pod="orders-f", container="api", reason="ErrImagePull"),
        PodProblem(pod="orders-g", container="api", reason="SomethingNew"),
        PodProblem(
            pod="orders-h",
            container="api",
            reason="CreateContainerConfigError",
            message='secret "db" not found',
        ),
    ]
    summary = summarize_problems(problems)
    assert [(p.reason, p.container, p.pod, p.pods) for p in summary] == [
        ("ErrImagePull", "api", "orders-f", 1),
        ("CreateContainerConfigError", "api", "orders-h", 1),
        ("OOMKilled", "api", "orders-d", 1),
        ("CrashLoopBackOff", "api", "orders-c", 2),
        ("CrashLoopBackOff", "proxy", "orders-e", 1),
        ("Unschedulable", None, "orders-a", 1),
        ("SomethingNew", "api", "orders-g", 1),
    ]
    assert summary[3].restarts == 7
    assert summary[3].message == "exit 1"
    assert summarize_problems(summary) == summary


def test_a_summary_keeps_a_message_when_the_worst_pod_has_none() -> None:
    problems = [
        PodProblem(pod="a", container="api", reason="CrashLoopBackOff", restarts=3),
        PodProblem(pod="b", container="api", reason="CrashLoopBackOff", restarts=3, message="boom"),
        PodProblem(pod="c", container="api", reason="CrashLoopBackOff", restarts=9),
    ]
    (only,) = summarize_problems(problems)
    assert (only.pod, only.restarts, only.message, only.pods) == ("c", 9, "boom", 3)


# --------------------------------------------------------------------------------------------
# Versions, ownership, storage


@pytest.mark.parametrize(
    ("image", "version"),
    [
        (f"{REGISTRY}:1.4.2", "1.4.2"),
        ("nginx", "latest"),
        ("localhost:5000/orders", "latest"),
        ("localhost:5000/orders:v2", "v2"),
        (f"{REGISTRY}@sha256:{'ab12' * 16}", "sha256:ab12ab12ab12"),
        (f"{REGISTRY}:1.4.2@sha256:{'ab12' * 16}", "1.4.2"),
        ("Not An Image", "Not An Image"),
    ],
)
def test_versions_are_image_tags(image: str, version: str) -> None:
    assert version_of(image) == version


def test_only_changed_containers_are_versions() -> None:
    sidecar = Container(name="proxy", image="envoyproxy/envoy:v1.29.1")
    before = snap(100, 0, containers=(Container(name="api", image=f"{REGISTRY}:1.4.1"), sidecar))
    after = snap(
        101,
        1,
        generation=2,
        containers=(
            Container(name="api", image=f"{REGISTRY}:1.4.2"),
            sidecar,
            Container(name="migrate", image=f"{REGISTRY}:1.4.2"),
        ),
    )
    (rollout,) = observe(final([before]), after).rollouts
    assert [(c.container, c.old_version, c.new_version) for c in rollout.changes] == [
        ("api", "1.4.1", "1.4.2"),
        ("migrate", None, "1.4.2"),
    ]
    assert len(rollout.images) == 3


def catalog() -> Catalog:
    def app(name: str, namespace: str | None = None) -> App:
        return App(
            name=name,
            team="payments",
            source=f"shop/{name}",
            image=f"registry.example.com/shop/{name}",
            manifests=f"apps/{name}/{{env}}/deployment.yaml",
            namespace=namespace or name,
        )

    return Catalog(
        teams=(Team(name="payments", channel="#payments-deploys"),),
        environments=(Environment(name="production", policy="auto"),),
        apps=(app("orders"), app("orders-api"), app("billing", "billing-prod")),
    )


@pytest.mark.parametrize(
    ("labels", "namespace", "expected"),
    [
        ({"appId": "orders-api"}, "shared", "orders-api"),
        ({"appId": "stranger"}, "orders", None),
        ({}, "billing-prod", "billing"),
        ({}, "billing", "billing"),
        ({}, "orders-canary", "orders"),
        ({}, "orders-api-eu", "orders-api"),
        ({}, "ordersx", None),
        ({}, "kube-system", None),
    ],
)
def test_workloads_belong_to_apps_by_label_else_namespace(
    labels: dict[str, str], namespace: str, expected: str | None
) -> None:
    found = owner(snap(1, 0, labels=labels, namespace=namespace), catalog())
    assert (found.name if found else None) == expected


@pytest.mark.parametrize(
    ("apps", "namespace", "expected"),
    [
        (("orders", "orders-api"), "orders-api-eu-west", "orders-api"),
        (("orders", "orders-api"), "orders-apis", "orders"),
        (("orders",), "orders-", "orders"),
        (("orders",), "orders--x", "orders"),
        (("a-b", "a"), "a-b-c-d", "a-b"),
        (("a-b-c-d",), "a-b", None),
        (("orders",), "-orders", None),
        (("orders",), "", None),
    ],
)
def test_namespaces_name_apps_by_their_longest_prefix(
    apps: tuple[str, ...], namespace: str, expected: str | None
) -> None:
    found = _catalog_of(apps).app_named_in(namespace)
    assert (found.name if found else None) == expected


def _catalog_of(names: Iterable[str]) -> Catalog:
    return Catalog(
        teams=(Team(name="payments", channel="#payments-deploys"),),
        environments=(Environment(name="production", policy="auto"),),
        apps=tuple(
            App(
                name=name,
                team="payments",
                source=f"shop/{name}",
                image=f"registry.example.com/shop/{name}",
                manifests=f"apps/{name}/{{env}}/deployment.yaml",
            )
            for name in names
        ),
    )


_PARTS = st.sampled_from(["a", "b", "ab", "orders", "api", "eu", ""])


@given(
    apps=st.lists(st.lists(_PARTS, min_size=1, max_size=3).map("-".join), max_size=6),
    namespace=st.lists(_PARTS, min_size=1, max_size=5).map("-".join),
)
def test_the_prefix_look_up_is_the_longest_matching_app_of_all(
    apps: list[str], namespace: str
) -> None:
    names = sorted({a for a in apps if re.fullmatch(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", a)})
    catalog = _catalog_of(names)
    matching = [n for n in names if namespace == n or namespace.startswith(f"{n}-")]
    found = catalog.app_named_in(namespace)
    assert (found.name if found else None) == max(matching, key=len, default=None)


def test_the_state_survives_storage() -> None:
    adapter = TypeAdapter(Workload)
    failing = final(
        [
            *ROLLOUT[:4],
            STUCK,
            PodsObserved(rollout_id=ROLLOUT_ID, problems=(CRASH, PULL), observed_at=at(630)),
        ]
    )
    superseded = final([*ROLLOUT[:4], snap(104, 30, generation=3, version="1.4.3")])
    for state in (final(ROLLOUT), failing, superseded, final([STABLE])):
        restored = adapter.validate_json(adapter.dump_json(state))
        assert restored == state
        later = snap(900, 1000, generation=4, observed_generation=4, version="1.4.4")
        assert observe(restored, later) == observe(state, later)


def test_rollouts_lists_each_rollout_once_as_it_finally_stands() -> None:
    transition = observe(final([STABLE]), DONE)
    assert [a.what for a in transition.announcements] == ["started", "succeeded"]
    assert [r.phase for r in transition.rollouts] == ["succeeded"]
    assert isinstance(transition.rollouts[0], Rollout)


# --------------------------------------------------------------------------------------------
# Reasons read when a rollout fails, new and old pods, the version to roll back to


def test_a_failure_on_a_watch_event_asks_for_the_pods_and_carries_them() -> None:
    """The reasons of a failure are read when it fails, not at the next periodic reading (by
    which time a rollback may have replaced the pods: the demo's lost "no PAYMENTS_KEY")."""
    state = final(ROLLOUT[:4])
    failing = observe(state, STUCK)
    rollout = needs_pods(failing)
    assert rollout is not None
    assert rollout.id == ROLLOUT_ID
    told = with_problems(
        failing, PodsObserved(rollout_id=ROLLOUT_ID, problems=(CRASH, CRASH), observed_at=at(622))
    )
    [failed] = told.announced("failed")
    assert failed.problems == (replace(CRASH, pods=2),)
    assert told.state.current == failed
    assert needs_pods(told) is None  # read once


@pytest.mark.parametrize(
    ("events", "reading"),
    [
        pytest.param(ROLLOUT[:4], ROLLOUT_ID, id="still-progressing"),
        pytest.param(ROLLOUT, ROLLOUT_ID, id="succeeded"),
        pytest.param([*ROLLOUT[:4], STUCK], "prod/Deployment/orders/orders/9", id="other-rollout"),
    ],
)
def test_pods_are_only_folded_into_the_failure_they_were_read_for(
    events: Sequence[WorkloadSnapshot], reading: str
) -> None:
    _state, transitions = run(events)
    last = transitions[-1]
    if reading == ROLLOUT_ID:
        assert needs_pods(last) is None
    told = with_problems(
        last, PodsObserved(rollout_id=reading, problems=(CRASH,), observed_at=at(700))
    )
    assert told == last


def test_a_failure_found_by_reading_the_pods_needs_no_second_reading() -> None:
    stuck = final(
        [stateful_set(1, 0), db(2, 1, observed_generation=1), db(3, 10, **counts(1, 2, 2, 3))]
    )
    failing = observe_pods(
        stuck, PodsObserved(rollout_id=DB_ID, problems=(CRASH,), observed_at=at(611))
    )
    assert failing.announced("failed")
    assert needs_pods(failing) is None


@pytest.mark.parametrize(
    ("progress", "pods"),
    [
        pytest.param(
            Progress(replicas=3, updated=1, ready=3, available=3, total=4),
            PodCounts(new=1, new_ready=0, old=3, old_serving=3, desired=3),
            id="first-new-pod-crashing",
        ),
        pytest.param(
            Progress(replicas=3, updated=2, ready=3, available=3, total=4),
            PodCounts(new=2, new_ready=1, old=2, old_serving=2, desired=3),
            id="halfway",
        ),
        pytest.param(
            Progress(replicas=3, updated=3, ready=2, available=2, total=3),
            PodCounts(new=3, new_ready=2, old=0, old_serving=0, desired=3),
            id="old-gone",
        ),
        pytest.param(
            Progress(replicas=3, updated=0, ready=3, available=3, total=3),
            PodCounts(new=0, new_ready=0, old=3, old_serving=3, desired=3),
            id="not-started",
        ),
        pytest.param(
            Progress(replicas=3, updated=1, ready=1, available=1),
            PodCounts(new=1, new_ready=1, old=0, old_serving=0, desired=3),
            id="total-unknown",
        ),
    ],
)
def test_new_and_old_pods_are_worked_out_from_the_counters(
    progress: Progress, pods: PodCounts
) -> None:
    assert progress.pods() == pods


def test_a_snapshot_counts_the_pods_of_every_template() -> None:
    state = final(ROLLOUT[:3])
    assert state.current is not None
    assert state.current.progress.pods() == PodCounts(
        new=1, new_ready=0, old=4, old_serving=4, desired=4
    )


def _change(old: str | None, new: str, container: str = "api") -> ImageChange:
    return ImageChange(container=container, old=old, new=new)


@pytest.mark.parametrize(
    ("images", "version"),
    [
        pytest.param((_change(f"{REGISTRY}:1.4.1", f"{REGISTRY}:1.5.0"),), "1.4.1", id="tag"),
        pytest.param(
            (
                _change(f"{REGISTRY}:1.4.1", f"{REGISTRY}:1.5.0"),
                _change("envoyproxy/envoy:v1.29", "envoyproxy/envoy:v1.30", "envoy"),
            ),
            "1.4.1",
            id="sidecar-ignored",
        ),
        pytest.param((_change(None, f"{REGISTRY}:1.5.0"),), None, id="old-unknown"),
        pytest.param((_change(REGISTRY, f"{REGISTRY}:1.5.0"),), None, id="untagged"),
        pytest.param(
            (_change(f"{REGISTRY}@sha256:{'a' * 64}", f"{REGISTRY}:1.5.0"),), None, id="digest"
        ),
        pytest.param(
            (
                _change(f"{REGISTRY}:1.4.1", f"{REGISTRY}:1.5.0"),
                _change(f"{REGISTRY}:1.4.0", f"{REGISTRY}:1.5.0", "worker"),
            ),
            None,
            id="two-versions",
        ),
        pytest.param(
            (_change("envoyproxy/envoy:v1.29", "envoyproxy/envoy:v1.30", "envoy"),),
            None,
            id="only-a-sidecar",
        ),
    ],
)
def test_the_version_to_roll_back_to_is_the_apps_previous_tag(
    images: tuple[ImageChange, ...], version: str | None
) -> None:
    rollout = replace(final([*ROLLOUT[:4], STUCK]).current, images=images)  # type: ignore[type-var]
    assert rollback_version(rollout, image=REGISTRY) == version
