"""The four DORA metrics as pure functions, in tables: what is recorded from each release end,
rollbacks (deployments, not changes; they undo what they moved the env off), failures and
restores, lead times, bands, the previous period, the day-by-day series and ``/dora``'s words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.domain.catalog import parse_catalog
from bot.domain.dora import (
    DAY,
    Deployment,
    DoraQueryError,
    band_of,
    daily,
    deployment_kind,
    failure_starts,
    from_release,
    from_rollout,
    median,
    merge,
    parse_dora,
    percentile,
    report,
    restores_by,
    undone_by,
    unrecorded,
)
from bot.domain.releases import Changelog
from tests.release_records import T0, sample_release

HOUR = 3600.0
START = 1_800_000_000.0  # a period's start; every record below is relative to it


def dep(
    id: str,
    *,
    kind: str = "deploy",
    version: str = "2",
    previous: str | None = "1",
    requested: float | None = None,
    deployed: float | None = None,
    failed: float | None = None,
    commits: tuple[float, ...] = (),
    app: str = "orders",
) -> Deployment:
    """A record ``deployed`` (or ``failed``) hours after ``START``; commits: hours before."""
    at = deployed if deployed is not None else failed
    assert at is not None
    return Deployment(
        id=id,
        app=app,
        env="production",
        kind=kind,  # type: ignore[arg-type]
        version=version,
        previous=previous,
        requested=START + (requested if requested is not None else at) * HOUR,
        deployed=None if deployed is None else START + deployed * HOUR,
        failed=None if failed is None else START + failed * HOUR,
        commits=tuple(START + (at - c) * HOUR for c in commits),
    )


def week(history: list[Deployment], **kwargs: Any) -> Any:
    """The report of the week from START, for one app."""
    by_app: dict[tuple[str, str], list[Deployment]] = {}
    for d in history:
        by_app.setdefault((d.app, d.env), []).append(d)
    return report(by_app, start=START, end=START + 7 * DAY, **kwargs)


# --------------------------------------------------------------------------------------------
# What a release's end records


@pytest.mark.parametrize(
    ("changes", "superseded_by_rollback", "recorded"),
    [
        ({"state": "healthy"}, False, "deployed"),
        ({"state": "deployed"}, False, "deployed"),
        ({"state": "failed", "failed_step": "rollout"}, False, "failed"),
        ({"state": "not_seen"}, False, "failed"),
        ({"state": "superseded"}, True, "failed"),
        # nothing reached the env: no change
        ({"state": "failed", "failed_step": "mr_pipeline", "merged_at": None}, False, None),
        ({"state": "failed", "failed_step": "merge", "merged_at": None}, False, None),
        ({"state": "superseded", "merged_at": None}, True, None),
        # a deploy that supersedes it says nothing of its failure
        ({"state": "superseded"}, False, None),
        ({"state": "rejected", "merged_at": None}, False, None),
        ({"state": "expired", "merged_at": None}, False, None),
        ({"state": "refused", "merged_at": None}, False, None),
    ],
)
def test_what_a_release_end_records(
    changes: dict[str, Any], superseded_by_rollback: bool, recorded: str | None
) -> None:
    release = sample_release(**{"merged_at": T0 + timedelta(minutes=5), **changes})
    at = T0 + timedelta(minutes=30)
    found = from_release(release, at=at, superseded_by_rollback=superseded_by_rollback)
    if recorded is None:
        assert found is None
        return
    assert found is not None
    assert (found.deployed is not None, found.failed is not None) == (
        recorded == "deployed",
        recorded == "failed",
    )
    assert found.requested == T0.timestamp()
    assert (found.version, found.previous) == ("1.4.2", "1.4.1")


def test_a_healthy_release_is_deployed_when_its_rollout_finished_with_its_commit_times() -> None:
    finished = T0 + timedelta(minutes=12)
    commits = (T0 - timedelta(days=2), T0 - timedelta(hours=3))
    release = sample_release(
        state="healthy", finished_at=finished, changelog=Changelog(commit_times=commits)
    )
    found = from_release(release, at=T0 + timedelta(hours=1))
    assert found is not None
    assert found.deployed == finished.timestamp()
    assert found.commits == tuple(c.timestamp() for c in commits)


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        ("healthy", "deployed"),
        ("deployed", "deployed"),
        ("failed", "failed"),
        ("not_seen", "failed"),
    ],
)
def test_an_end_that_carries_its_time_records_the_same_whenever_it_is_worked_out(
    state: str, outcome: str
) -> None:
    """The end listener at the end, a reconcile days later (another month): one event, at the
    end's time, so the store sees the same event twice and keeps it once."""
    ended = T0 + timedelta(minutes=20)
    release = sample_release(state=state, merged_at=T0 + timedelta(minutes=5), finished_at=ended)
    at_the_end = from_release(release, at=ended)
    later = from_release(release, at=T0 + timedelta(days=40))
    assert at_the_end is not None
    assert later == at_the_end
    assert getattr(later, outcome) == ended.timestamp()


def test_an_end_stored_without_its_time_is_dated_when_it_is_worked_out() -> None:
    release = sample_release(state="deployed", merged_at=T0)
    found = from_release(release, at=T0 + timedelta(minutes=9))
    assert found is not None
    assert found.deployed == (T0 + timedelta(minutes=9)).timestamp()


@pytest.mark.parametrize(
    ("wanted", "stored", "missing"),
    [
        # nothing stored of it: recorded late
        (dep("a", deployed=1), None, True),
        (dep("a", failed=1), None, True),
        # stored already (by the end listener, by another replica): nothing to do
        (dep("a", deployed=1), dep("a", deployed=1), False),
        (dep("a", failed=1), dep("a", failed=1), False),
        # failed, then recovered: the recovery is missing, the failure is known
        (dep("a", deployed=2), dep("a", failed=1), True),
        # recovered, and the failure is recorded with it: nothing to do
        (dep("a", deployed=2), dep("a", failed=1, deployed=2), False),
        # a failure whose record only has a deployment (the failure event was lost)
        (dep("a", failed=3), dep("a", deployed=2), True),
        # another record of the same app is no record of this one
        (dep("a", deployed=1), dep("b", deployed=1), True),
    ],
)
def test_which_ended_releases_the_store_lacks(
    wanted: Deployment, stored: Deployment | None, missing: bool
) -> None:
    recorded = {stored.id: stored} if stored is not None else {}
    assert unrecorded([wanted], recorded) == ([wanted] if missing else [])


def test_unrecorded_keeps_the_order_it_was_given() -> None:
    wanted = [dep("c", deployed=3), dep("a", deployed=1), dep("b", deployed=2)]
    assert unrecorded(wanted, {"a": dep("a", deployed=1)}) == [wanted[0], wanted[2]]


def test_a_rollback_records_no_commits_those_are_the_ones_leaving() -> None:
    release = sample_release(
        kind="rollback",
        state="healthy",
        finished_at=T0,
        changelog=Changelog(commit_times=(T0 - timedelta(days=1),)),
    )
    found = from_release(release, at=T0)
    assert found is not None
    assert (found.kind, found.commits) == ("rollback", ())


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({}, "deploy"),
        ({"promoted_from": "staging"}, "promotion"),
        ({"kind": "rollback"}, "rollback"),
        ({"autopilot": "new_version", "requester": "pitcrew"}, "autopilot"),
        ({"autopilot": "promotion", "promoted_from": "staging"}, "autopilot"),
    ],
)
def test_kinds(changes: dict[str, Any], kind: str) -> None:
    assert deployment_kind(sample_release(**changes)) == kind


def test_an_outside_rollout_is_a_deployment_or_a_failed_change_with_a_short_stable_id() -> None:
    rollout = "prod/Deployment/orders/orders/7"
    ok = from_rollout(
        rollout_id=rollout,
        app="orders",
        env="production",
        version="1.5.0",
        previous="1.4.2",
        started=T0,
        ended=T0 + timedelta(seconds=40),
        succeeded=True,
    )
    failed = ok._replace(deployed=None, failed=ok.deployed)
    assert ok.kind == "outside"
    assert (
        ok.id
        == from_rollout(
            rollout_id=rollout,
            app="orders",
            env="production",
            version="1.5.0",
            previous=None,
            started=None,
            ended=T0,
            succeeded=False,
        ).id
    )
    assert len(ok.id) == 12
    assert (ok.requested, ok.deployed) == (T0.timestamp(), T0.timestamp() + 40)
    assert failed.change


def test_a_failure_then_a_recovery_of_one_record_merge_into_both_times() -> None:
    failed = dep("r", failed=1.0, commits=(5.0,))
    recovered = dep("r", deployed=3.0)
    both = merge(failed, recovered)
    assert (both.failed, both.deployed) == (START + HOUR, START + 3 * HOUR)
    assert both.commits == failed.commits
    # in whatever order they are read
    again = merge(recovered, failed)
    assert (again.failed, again.deployed) == (both.failed, both.deployed)


# --------------------------------------------------------------------------------------------
# Failures, undoing, restores (one app and env)


def test_a_rollback_undoes_the_release_it_moved_the_env_off() -> None:
    history = [
        dep("v2", version="2", previous="1", deployed=1.0),
        dep("v3", version="3", previous="2", deployed=5.0),
        # asked for at 10 h, healthy at 10.5 h: takes production from 3 back to 2
        dep("back", kind="rollback", version="2", previous="3", requested=10.0, deployed=10.5),
    ]
    assert undone_by(history) == {"v3": START + 10 * HOUR}
    [failure] = failure_starts(history)
    assert failure.change.id == "v3"
    assert failure.duration == 0.5 * HOUR  # from the rollback's request to its deployment


def test_a_rollback_of_a_rollback_is_no_change_failing() -> None:
    history = [
        dep("v3", version="3", previous="2", deployed=1.0),
        dep("back", kind="rollback", version="2", previous="3", requested=2.0, deployed=2.2),
        dep("forth", kind="rollback", version="3", previous="2", requested=3.0, deployed=3.1),
    ]
    # the second rollback moved the env off the first rollback: not a change
    assert undone_by(history) == {"v3": START + 2 * HOUR}


def test_a_rollback_undoes_nothing_when_the_version_it_left_was_never_recorded() -> None:
    history = [
        dep("v2", version="2", deployed=1.0),
        dep("back", kind="rollback", version="1", previous="9", requested=2.0, deployed=2.1),
    ]
    assert undone_by(history) == {}


def test_restore_runs_from_the_failure_to_the_next_good_deployment_of_any_kind() -> None:
    history = [
        dep("bad", version="3", failed=2.0),
        dep("hotfix", version="4", previous="2", deployed=6.0),
    ]
    [failure] = failure_starts(history)
    assert failure.duration == 4 * HOUR
    assert restores_by(history, history[1]) == [4 * HOUR]
    assert restores_by(history, history[0]) == []


def test_a_failure_not_yet_restored_has_no_duration() -> None:
    [failure] = failure_starts([dep("bad", failed=2.0)])
    assert (failure.restored, failure.duration) == (None, None)


def test_a_release_that_failed_then_recovered_restores_itself() -> None:
    history = [merge(dep("r", failed=1.0), dep("r", deployed=1.25))]
    [failure] = failure_starts(history)
    assert failure.duration == 0.25 * HOUR


# --------------------------------------------------------------------------------------------
# The report


def test_the_figures_of_a_week_by_hand() -> None:
    history = [
        # deploy 2: commits 2 h and 10 h before; healthy
        dep("a", version="2", previous="1", deployed=1.0, commits=(2.0, 10.0)),
        # deploy 3: commit 4 h before; failed at 20 h
        dep("b", version="3", previous="2", failed=20.0, commits=(4.0,)),
        # hotfix 4: commit 1 h before; healthy at 26 h (restores b: 6 h)
        dep("c", version="4", previous="2", deployed=26.0, commits=(1.0,)),
        # rollback to 2 asked at 30 h, healthy at 31 h: undoes c (restore 1 h)
        dep("d", kind="rollback", version="2", previous="4", requested=30.0, deployed=31.0),
        # an outside rollout of 5, healthy at 40 h
        dep("e", kind="outside", version="5", previous="2", deployed=40.0),
    ]
    figures = week(history).current
    assert figures.deployments == 4  # a, c, d, e: the rollback counts, the failure does not
    assert figures.changes == 4  # a, b, c, e: not the rollback
    assert figures.failed_changes == 2  # b failed, c was undone
    assert figures.failure_rate == 0.5
    assert figures.commits == 3  # b never deployed: its commit has no lead time
    assert figures.lead_median == 2 * HOUR  # 1 h, 2 h, 10 h
    assert figures.lead_p90 == pytest.approx(8.4 * HOUR)
    assert figures.restore_median == pytest.approx(3.5 * HOUR)  # 6 h and 1 h
    assert (figures.restored, figures.unrestored) == (2, 0)
    assert figures.per_day == pytest.approx(4 / 7)
    assert figures.per_app_week == pytest.approx(4.0)
    assert figures.band("deployments") == "high"
    assert figures.band("lead_time") == "elite"
    assert figures.band("failure_rate") == "low"
    assert figures.band("restore") == "high"


def test_superseded_by_a_rollback_counts_as_a_failed_change_and_restores_at_the_rollback() -> None:
    history = [
        dep("v2", version="2", previous="1", deployed=1.0),
        # merged, rolling out at 3 h when a rollback superseded it
        dep("v3", version="3", previous="2", failed=3.0),
        dep("back", kind="rollback", version="2", previous="3", requested=3.0, deployed=3.5),
    ]
    figures = week(history).current
    assert (figures.changes, figures.failed_changes) == (2, 1)
    assert figures.restore_median == 0.5 * HOUR


def test_what_falls_outside_the_period_is_the_previous_periods_or_nobodys() -> None:
    history = [
        dep("older", deployed=-200.0),  # before the previous week: in neither
        dep("before", deployed=-24.0, commits=(48.0,)),  # the previous week
        dep("during", deployed=24.0, commits=(1.0,)),
        dep("after", deployed=24.0 * 8),  # after the end: not yet
    ]
    result = week(history)
    assert (result.current.deployments, result.previous.deployments) == (1, 1)
    assert result.previous.lead_median == 48 * HOUR
    assert result.current.lead_median == HOUR


def test_a_later_rollback_makes_a_change_of_the_period_a_failed_one() -> None:
    history = [
        dep("v2", version="2", previous="1", deployed=24.0 * 6),
        dep("back", kind="rollback", version="1", previous="2", requested=24.0 * 8, deployed=193),
    ]
    current = week(history, now=START + 9 * DAY).current
    assert (current.changes, current.failed_changes) == (1, 1)
    # the failure began after the period: its restore belongs to the next one
    assert current.restored == 0


def test_an_open_failure_is_counted_apart() -> None:
    current = week([dep("bad", failed=3.0)]).current
    assert (current.failed_changes, current.restored, current.unrestored) == (1, 0, 1)
    assert current.restore_median is None
    assert current.band("restore") is None


def test_nothing_recorded_gives_no_figure_and_no_band() -> None:
    current = week([]).current
    assert (current.deployments, current.lead_median, current.failure_rate) == (0, None, None)
    assert [current.band(m) for m in ("deployments", "lead_time", "failure_rate", "restore")] == [
        None
    ] * 4


def test_the_apps_that_weigh_most_on_each_figure() -> None:
    history = [
        dep("o1", app="orders", deployed=1.0, commits=(1.0,)),
        dep("o2", app="orders", deployed=2.0, commits=(1.0,)),
        dep("o3", app="orders", version="3", failed=3.0),
        dep("o4", app="orders", version="4", previous="2", deployed=5.0),
        dep("i1", app="invoices", deployed=1.0, commits=(30.0,)),
        dep("i2", app="invoices", version="3", failed=4.0),
        dep("i3", app="invoices", version="4", previous="2", deployed=14.0),
        dep("s1", app="search", deployed=3.0, commits=(5.0,)),
    ]
    weighing = week(history).weighing
    assert weighing.deployments == (("orders", 3), ("invoices", 2), ("search", 1))
    assert weighing.lead_time == (("invoices", 30 * HOUR), ("search", 5 * HOUR), ("orders", HOUR))
    assert weighing.failure_rate == (("invoices", 1, 3), ("orders", 1, 4))
    assert weighing.restore == (("invoices", 10 * HOUR), ("orders", 2 * HOUR))


def test_deployments_per_app_are_counted_over_the_apps_that_deploy() -> None:
    history = [
        *(dep(f"o{i}", app="orders", deployed=float(i)) for i in range(14)),
        dep("old", app="invoices", deployed=-30.0),  # deployed last week: active, slow
    ]
    current = week(history).current
    assert current.active_apps == 2
    assert current.per_app_week == 7.0
    assert current.band("deployments") == "elite"


@pytest.mark.parametrize(
    ("metric", "value", "band"),
    [
        ("deployments", 7.0, "elite"),
        ("deployments", 6.99, "high"),
        ("deployments", 1.0, "high"),
        ("deployments", 0.99, "medium"),
        ("deployments", 7 / 30, "medium"),
        ("deployments", 0.2, "low"),
        ("lead_time", DAY - 1, "elite"),
        ("lead_time", DAY, "high"),
        ("lead_time", 7 * DAY - 1, "high"),
        ("lead_time", 7 * DAY, "medium"),
        ("lead_time", 30 * DAY, "low"),
        ("failure_rate", 0.0, "elite"),
        ("failure_rate", 0.05, "elite"),
        ("failure_rate", 0.051, "high"),
        ("failure_rate", 0.10, "high"),
        ("failure_rate", 0.15, "medium"),
        ("failure_rate", 0.16, "low"),
        ("restore", 3599.0, "elite"),
        ("restore", 3600.0, "high"),
        ("restore", DAY, "medium"),
        ("restore", 7 * DAY, "low"),
        ("restore", None, None),
    ],
)
def test_bands(metric: Any, value: float | None, band: str | None) -> None:
    assert band_of(metric, value) == band


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [([], 50, None), ([3.0], 90, 3.0), ([1.0, 3.0], 50, 2.0), ([4.0, 1.0, 2.0, 3.0], 90, 3.7)],
)
def test_percentiles(values: list[float], p: float, expected: float | None) -> None:
    assert percentile(values, p) == pytest.approx(expected) if expected else expected is None
    if p == 50:
        assert median(values) == percentile(values, 50)


DAY_DELTA = timedelta(days=1)

# --------------------------------------------------------------------------------------------
# Day by day, in the digest's zone


def test_daily_counts_and_lead_times_in_the_digests_zone() -> None:
    rome = ZoneInfo("Europe/Rome")
    monday = datetime(2026, 3, 2, tzinfo=rome)  # midnight in Rome: 23:00 UTC on Sunday
    at = monday.timestamp()
    history = [
        dep("late-sunday-utc", deployed=0.0)._replace(deployed=at + 60, commits=(at - 3600,)),
        dep("tuesday", deployed=0.0)._replace(deployed=at + DAY + 5, commits=()),
        dep("too-early", deployed=0.0)._replace(deployed=at - 60),
        dep("failed", failed=0.0)._replace(failed=at + 10),
    ]
    days = daily([history], start=monday.astimezone(UTC), end=monday + 7 * DAY_DELTA, zone=rome)
    assert [d.deployments for d in days] == [1, 1, 0, 0, 0, 0, 0]
    assert days[0].lead_median == 3660.0
    assert days[1].lead_median is None
    assert days[0].day == monday


def test_a_digest_at_nine_charts_every_day_it_counts() -> None:
    """A digest at 09:00 counts Monday 09:00 to Monday 09:00: the chart has eight days, the
    first and last partial, and shows the deployment of the last Monday at 08:00."""
    rome = ZoneInfo("Europe/Rome")
    start = datetime(2026, 12, 14, 9, tzinfo=rome)
    end = start + 7 * DAY_DELTA
    history = [
        dep("before-the-window", deployed=0.0)._replace(deployed=start.timestamp() - 60),
        dep("monday-8am", deployed=0.0)._replace(deployed=end.timestamp() - 3600),
        dep("after-the-window", deployed=0.0)._replace(deployed=end.timestamp()),
    ]
    days = daily([history], start=start, end=end, zone=rome)
    assert [f"{d.day:%a %d}" for d in days] == [
        "Mon 14", "Tue 15", "Wed 16", "Thu 17", "Fri 18", "Sat 19", "Sun 20", "Mon 21",
    ]  # fmt: skip
    assert [d.deployments for d in days] == [0, 0, 0, 0, 0, 0, 0, 1]


def test_the_days_follow_the_clock_change() -> None:
    """The week of the change to summer time in Rome: every bar starts at a local midnight."""
    rome = ZoneInfo("Europe/Rome")
    start = datetime(2026, 3, 23, tzinfo=rome)
    days = daily([], start=start, end=datetime(2026, 3, 30, tzinfo=rome), zone=rome)
    assert len(days) == 7
    assert all((d.day.hour, d.day.minute) == (0, 0) for d in days)


# --------------------------------------------------------------------------------------------
# /dora's words

CATALOG = parse_catalog(
    (Path(__file__).parents[3] / "bot" / "sandbox" / "example_catalog.yaml").read_text(),
    source="example_catalog.yaml",
)


@pytest.mark.parametrize(
    ("text", "kind", "subject", "apps", "env", "days"),
    [
        ("", "all", "all", ("orders", "invoices", "search-api"), "production", 30),
        ("all 90d", "all", "all", ("orders", "invoices", "search-api"), "production", 90),
        ("payments 30d", "team", "payments", ("orders", "invoices"), "production", 30),
        ("orders", "app", "orders", ("orders",), "production", 30),
        ("ORDERS 7d staging", "app", "orders", ("orders",), "staging", 7),
        ("staging 7d orders", "app", "orders", ("orders",), "staging", 7),
        ("staging", "all", "all", ("orders", "invoices", "search-api"), "staging", 30),
        ("search\x00 90d", "team", "search", ("search-api",), "production", 90),
    ],
)
def test_dora_words(
    text: str, kind: str, subject: str, apps: tuple[str, ...], env: str, days: int
) -> None:
    query = parse_dora(text, catalog=CATALOG)
    assert (query.kind, query.subject, query.apps, query.env, query.days) == (
        kind,
        subject,
        apps,
        env,
        days,
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("14d", "“14d” is not a period: 7d, 30d or 90d"),
        ("7d 30d", "one period at a time, not 7d and 30d"),
        ("orders invoices", "one app or team at a time, not orders and invoices"),
        ("staging production", "one environment at a time, not staging and production"),
        ("ordrs", "no app, team or environment named “ordrs” — did you mean orders?"),
        ("help", None),
    ],
)
def test_dora_words_typed_wrong(text: str, problem: str | None) -> None:
    with pytest.raises(DoraQueryError) as caught:
        parse_dora(text, catalog=CATALOG)
    assert caught.value.problem == problem
    assert caught.value.usage.startswith("Usage: `/dora [app|team|all] [7d|30d|90d] [env]`")


def test_a_query_says_its_period_and_title() -> None:
    query = parse_dora("payments", catalog=CATALOG)
    assert query.title == "payments in production, last 30 days"
    assert query.window(T0) == (T0.timestamp() - 30 * DAY, T0.timestamp())
