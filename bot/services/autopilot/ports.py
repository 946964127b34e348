"""The ports the autopilot needs: app tags, issue notes, its own markers and memory, the views."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from bot.domain.autopilot import FreezeDecision
from bot.domain.locks import Lock
from bot.domain.released import Reference
from bot.domain.releases import AutopilotCause, Release
from bot.domain.versions import VersionTag
from bot.services.ports import Rendered
from bot.services.releases import Outcome, PendingRequest


class AppTags(Protocol):
    """The tags of an app's repository. Errors are ``Unavailable`` or ``Refused``."""

    async def tags(self, project: str) -> list[VersionTag]:
        """The most recently updated tags (a hundred at most), newest first."""
        ...


class IssueTracker(Protocol):
    """Notes and labels on the issues and merge requests of apps' repositories."""

    async def note(self, reference: Reference, body: str) -> None: ...

    async def label(self, reference: Reference, label: str) -> None: ...


class AutopilotStore(Protocol):
    async def claim(self, key: str, *, ttl: float) -> bool:
        """Set ``key`` if nobody has (``SET NX``): ``True`` for the one caller that did."""
        ...

    async def unclaim(self, key: str) -> None: ...

    async def give_up(self, *, app: str, env: str, version: str, why: str) -> None:
        """Remember that ``version`` is not to be tried in ``env`` again."""
        ...

    async def given_up(self, app: str, env: str) -> frozenset[str]: ...


class AutopilotReleases(Protocol):
    """What the autopilot asks of the releases (``ReleaseService``)."""

    async def open_for_autopilot(self, request: PendingRequest, *, origin: str) -> Outcome: ...

    async def latest_release(self, app: str, env: str) -> Release | None: ...

    async def running_version(self, app: str, env: str) -> str | None: ...


class Freezer(Protocol):
    """Scheduled locks (``LockService``)."""

    async def freeze(
        self, *, env: str, reason: str, end: datetime, origin: str
    ) -> FreezeDecision: ...


class AutopilotViews(Protocol):
    def refused(
        self, *, app: str, env: str, version: str, cause: AutopilotCause, reason: str
    ) -> Rendered:
        """The autopilot could not open a release: what and why, in the team's channel."""
        ...

    def freeze_deferred(self, lock: Lock, *, reason: str, end: datetime) -> Rendered:
        """A freeze window began while a person's lock stands: theirs is left as it is."""
        ...
