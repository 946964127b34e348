"""The App Home: what Pitcrew shows one person when they open its tab in Slack.

A person opens it to learn, in one place, what needs them: the releases waiting for *their*
approval (with the buttons), the releases *they* asked for that have not ended, the locks in
force, and what failed in *their teams* in the last 24 hours. Everything here is pure: the home
service reads the releases, locks and failures, resolves user groups, and asks these functions
what to show.

Whose team is it? The catalog has no membership list, so a team is the person's when the
catalog names them for it: in its ``oncall``, or among the approvers of an environment its apps
are released to. Someone named nowhere sees every team's failures, said so, rather than none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from bot.domain.catalog import Catalog
from bot.domain.locks import Lock
from bot.domain.release_flow import FINAL_STATES
from bot.domain.releases import Approved, Release, decide_approval

__all__ = [
    "FAILURE_WINDOW",
    "FailureKind",
    "Home",
    "RecentFailure",
    "is_open",
    "recent_failures",
    "team_people",
    "teams_of",
    "waits_for",
]

FAILURE_WINDOW: Final = timedelta(hours=24)
FailureKind = Literal["pipeline", "rollout", "release"]


@dataclass(frozen=True, kw_only=True)
class RecentFailure:
    """Something of a team's that failed: a pipeline, a rollout no release explains, a release."""

    key: str
    """The message it was told in (``pipeline:…``, ``rollout:…``, ``release:…``): one line
    per failure, however often it was recorded."""
    team: str
    kind: FailureKind
    title: str
    """What failed, for the line: "shop/orders pipeline #10 on main"."""
    reason: str
    url: str | None = None
    """Where to look: the pipeline, the merge request (``None``: nowhere outside Slack)."""
    at: datetime


@dataclass(frozen=True, kw_only=True)
class Home:
    """Everything one person's App Home shows, as of ``now``."""

    user: str
    waiting: tuple[Release, ...]
    """Releases waiting for this person's approval."""
    mine: tuple[Release, ...]
    """Releases this person asked for that have not ended (failed and not seen included: the
    world may still move them, and they may want rolling back)."""
    locks: tuple[Lock, ...]
    teams: tuple[str, ...]
    """Their teams (see the module's docstring); every team when they are named nowhere."""
    named: bool
    """The catalog names them for ``teams``; ``False``: ``teams`` is every team, for lack of one."""
    failures: tuple[RecentFailure, ...]
    now: datetime


def is_open(release: Release) -> bool:
    """Not at a final end: still moving, or failed or not seen (precedence's "open")."""
    return release.state not in FINAL_STATES


def waits_for(release: Release, *, catalog: Catalog, user: str, approvers: frozenset[str]) -> bool:
    """Would ``user``'s click on Approve count now? (``approvers``: the user ids allowed to
    approve it, groups resolved.) The same judgement the click itself gets, so the home never
    offers a button that would only be refused."""
    if release.state != "awaiting_approval" or release.env not in catalog.env_names:
        return False
    env = catalog.environment(release.env)
    return isinstance(
        decide_approval(release.snapshot(env), user=user, approvers=approvers), Approved
    )


def team_people(catalog: Catalog) -> dict[str, tuple[str, ...]]:
    """For each team, the people the catalog names for it (user ids and group handles): its
    oncall, and the approvers of every environment its apps are released to."""
    named: dict[str, list[str]] = {team.name: list(team.oncall or ()) for team in catalog.teams}
    for app in catalog.apps:
        for env in catalog.environments:
            if env.policy == "manual":
                named[app.team].extend(catalog.approvers_for(app, env))
    return {team: tuple(dict.fromkeys(people)) for team, people in named.items()}


def recent_failures(
    failures: Iterable[RecentFailure],
    *,
    teams: Sequence[str],
    now: datetime,
    window: timedelta = FAILURE_WINDOW,
    limit: int = 15,
) -> tuple[RecentFailure, ...]:
    """The teams' failures of the last ``window``, newest first, one per message key (its
    latest record), at most ``limit``."""
    wanted = set(teams)
    latest: dict[str, RecentFailure] = {}
    for failure in failures:
        if failure.team not in wanted or failure.at < now - window:
            continue
        known = latest.get(failure.key)
        if known is None or failure.at > known.at:
            latest[failure.key] = failure
    ordered = sorted(latest.values(), key=lambda f: (f.at, f.key), reverse=True)
    return tuple(ordered[:limit])


def teams_of(user_teams: Mapping[str, frozenset[str]], user: str) -> tuple[str, ...]:
    """The teams whose named people include ``user`` (groups already resolved), in order."""
    return tuple(team for team, members in user_teams.items() if user in members)
