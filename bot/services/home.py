"""The App Home: gather what one person's tab shows, and publish it.

Published when the person opens the tab (``app_home_opened``) and again after every click in it,
so that a button that was used disappears and the approval count moves. It is a snapshot, read
when published: a release approved from a channel shows on the tab at its next opening.

Nothing here decides: ``bot.domain.home`` says whose approval a release waits for, which teams
are the person's and which failures are recent; this service reads releases, locks and failures,
resolves user groups through Slack (cached), and hands the result to the views.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from bot import logs
from bot.domain.catalog import Catalog
from bot.domain.errors import PitcrewError
from bot.domain.home import (
    FAILURE_WINDOW,
    Home,
    is_open,
    recent_failures,
    team_people,
    teams_of,
    waits_for,
)
from bot.domain.locks import Lock
from bot.domain.releases import Release
from bot.services.cancellation import reraise_if_cancelling
from bot.services.catalog import CatalogHolder
from bot.services.ports import FailureLog

log = logs.get(__name__)

MAX_LISTED = 10
"""Releases listed per section: the tab is read, not searched (Slack allows 100 blocks)."""


class HomeReleases(Protocol):
    async def open_releases(self) -> list[Release]: ...

    async def requested_by(self, user: str) -> list[Release]: ...


class HomeLocks(Protocol):
    async def locks(self) -> dict[str, Lock]: ...


class HomePeople(Protocol):
    async def members(self, named: Sequence[str]) -> frozenset[str]: ...


class HomeViews(Protocol):
    def home(self, home: Home, *, approvers: Mapping[str, str]) -> Mapping[str, Any]:
        """The view to publish; ``approvers``: release id → who may approve it, as Slack
        shows them."""
        ...


class HomePublisher(Protocol):
    async def publish(self, user: str, view: Mapping[str, Any]) -> None: ...


class HomeService:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        releases: HomeReleases,
        locks: HomeLocks,
        people: HomePeople,
        failures: FailureLog,
        views: HomeViews,
        publisher: HomePublisher,
        approvers: Callable[[Catalog, Release], str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._catalog = catalog
        self._releases = releases
        self._locks = locks
        self._people = people
        self._failures = failures
        self._views = views
        self._publisher = publisher
        self._approvers = approvers
        self._clock = clock

    async def refresh(self, user: str) -> None:
        """Publish ``user``'s App Home as things stand now; a failure is logged, never raised
        (the tab keeps its last version, and the next opening tries again)."""
        try:
            home = await self.home_of(user)
            catalog = self._catalog.current
            approvers = {r.id: self._approvers(catalog, r) for r in (*home.waiting, *home.mine)}
            await self._publisher.publish(user, self._views.home(home, approvers=approvers))
        except Exception:
            reraise_if_cancelling()
            log.exception("the App Home could not be published", user=user)

    async def home_of(self, user: str) -> Home:
        catalog = self._catalog.current
        now = self._clock()
        waiting = [
            release
            for release in await self._releases.open_releases()
            if release.state == "awaiting_approval"
            and waits_for(
                release,
                catalog=catalog,
                user=user,
                approvers=await self._members(self._named_approvers(catalog, release)),
            )
        ]
        mine = [r for r in await self._releases.requested_by(user) if is_open(r)]
        resolved = {
            team: await self._members(named) for team, named in team_people(catalog).items()
        }
        teams = teams_of(resolved, user)
        named = bool(teams)
        if not named:
            teams = catalog.team_names
        failures = recent_failures(
            await self._failures.recent(teams, since=now - FAILURE_WINDOW),
            teams=teams,
            now=now,
        )
        locks = sorted((await self._locks.locks()).values(), key=lambda lock: lock.since)
        return Home(
            user=user,
            waiting=tuple(sorted(waiting, key=lambda r: r.created_at)[:MAX_LISTED]),
            mine=tuple(sorted(mine, key=lambda r: r.created_at, reverse=True)[:MAX_LISTED]),
            locks=tuple(locks),
            teams=tuple(teams),
            named=named,
            failures=failures,
            now=now,
        )

    @staticmethod
    def _named_approvers(catalog: Catalog, release: Release) -> Sequence[str]:
        if release.app not in catalog.app_names or release.env not in catalog.env_names:
            return ()
        return catalog.approvers_for(release.app, release.env)

    async def _members(self, named: Sequence[str]) -> frozenset[str]:
        """Group members, as Slack says (cached there); a group Slack cannot resolve now counts
        nobody, so the tab shows less rather than offering a button that would be refused."""
        if not named:
            return frozenset()
        try:
            return await self._people.members(named)
        except PitcrewError as exc:
            log.warning("approvers could not be resolved for the App Home", error=str(exc))
            return frozenset()
