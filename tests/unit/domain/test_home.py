"""What one person's App Home shows: whose approval a release waits for, whose teams are whose,
and which failures are recent."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bot.domain.catalog import parse_catalog
from bot.domain.home import (
    RecentFailure,
    is_open,
    recent_failures,
    team_people,
    teams_of,
    waits_for,
)
from bot.domain.releases import Release, ReleaseState
from tests.release_records import T0, sample_release

CATALOG = parse_catalog(
    (Path(__file__).parents[3] / "bot" / "sandbox" / "example_catalog.yaml").read_text(),
    source="example_catalog.yaml",
)
SRE = frozenset({"UCAROL", "UDAVE"})


@pytest.mark.parametrize(
    ("release", "user", "waits"),
    [
        pytest.param(sample_release(), "UCAROL", True, id="an-approver"),
        pytest.param(sample_release(), "UALICE", False, id="not-an-approver"),
        pytest.param(sample_release(requester="UCAROL"), "UCAROL", False, id="self-approval"),
        pytest.param(sample_release(approvals=("UCAROL",)), "UCAROL", False, id="already"),
        pytest.param(
            sample_release(approvals=("UDAVE",), approvals_needed=1), "UCAROL", False, id="enough"
        ),
        pytest.param(sample_release(state="merging"), "UCAROL", False, id="past-approval"),
        pytest.param(sample_release(env="qa"), "UCAROL", False, id="env-gone"),
    ],
)
def test_a_release_waits_for_someone_whose_approval_would_count_now(
    release: Release, user: str, waits: bool
) -> None:
    assert waits_for(release, catalog=CATALOG, user=user, approvers=SRE) is waits


@pytest.mark.parametrize(
    ("state", "open_"),
    [
        ("awaiting_approval", True),
        ("rolling_out", True),
        ("failed", True),
        ("not_seen", True),
        ("healthy", False),
        ("deployed", False),
        ("superseded", False),
        ("rejected", False),
    ],
)
def test_open_releases_include_those_that_may_still_move(state: ReleaseState, open_: bool) -> None:
    assert is_open(sample_release(state=state)) is open_


def test_a_team_is_whoever_the_catalog_names_for_it() -> None:
    assert team_people(CATALOG) == {
        "payments": ("@payments-oncall", "@sre-oncall"),
        "search": ("@sre-oncall",),
    }
    resolved = {"payments": frozenset({"UALICE", "UCAROL"}), "search": frozenset({"UCAROL"})}
    assert teams_of(resolved, "UCAROL") == ("payments", "search")
    assert teams_of(resolved, "UALICE") == ("payments",)
    assert teams_of(resolved, "UBOB") == ()


def failure(key: str, *, hours_ago: float, team: str = "payments") -> RecentFailure:
    return RecentFailure(
        key=key,
        team=team,
        kind="pipeline",
        title=key,
        reason="unit failed",
        at=T0 - timedelta(hours=hours_ago),
    )


def test_recent_failures_are_the_teams_last_day_newest_first_once_each() -> None:
    older = failure("pipeline:shop/orders:10", hours_ago=3)
    again = replace(older, at=T0 - timedelta(hours=1), reason="lint failed")
    shown = recent_failures(
        [
            older,
            failure("rollout:prod/Deployment/invoices/invoices/2", hours_ago=2),
            again,
            failure("pipeline:shop/orders:9", hours_ago=25),  # yesterday's
            failure("pipeline:shop/search-api:4", hours_ago=1, team="search"),  # not theirs
        ],
        teams=["payments"],
        now=T0,
    )
    assert [(f.key, f.reason) for f in shown] == [
        ("pipeline:shop/orders:10", "lint failed"),
        ("rollout:prod/Deployment/invoices/invoices/2", "unit failed"),
    ]


def test_recent_failures_are_capped() -> None:
    many = [failure(f"pipeline:shop/orders:{i}", hours_ago=i / 10) for i in range(40)]
    shown = recent_failures(many, teams=["payments"], now=T0, limit=15)
    assert len(shown) == 15
    assert shown[0].key == "pipeline:shop/orders:0"
