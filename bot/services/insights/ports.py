"""The ports of delivery insights: the records, the chart, the file upload, the GitOps history,
the views."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol

from bot.domain.catalog import Team
from bot.domain.dora import Day, Deployment, DoraQuery, Report
from bot.domain.errors import CommandError
from bot.domain.releases import Release
from bot.services.ports import Rendered


class DeploymentStore(Protocol):
    async def record(self, deployment: Deployment) -> bool:
        """Keep it (once: ``False`` when this event of this record was written already)."""
        ...

    async def history(self, app: str, env: str, *, since: float, until: float) -> list[Deployment]:
        """The records of ``app`` in ``env`` around ``[since, until]``, in the order they
        landed."""
        ...

    async def histories(
        self, pairs: Iterable[tuple[str, str]], *, since: float, until: float
    ) -> dict[tuple[str, str], list[Deployment]]: ...


class Markers(Protocol):
    """Once-per-slot markers (``SET NX``), shared with the autopilot's store."""

    async def claim(self, key: str, *, ttl: float) -> bool: ...

    async def unclaim(self, key: str) -> None: ...


class ReleaseLookup(Protocol):
    async def release(self, release_id: str) -> Release | None: ...

    async def ended_since(self, since: datetime) -> list[Release]:
        """Releases that reached an end since ``since`` (the last week's at most)."""
        ...


class ChartRenderer(Protocol):
    async def weekly(self, *, title: str, days: Sequence[Day], zone: tzinfo) -> bytes:
        """A PNG: deployments per day (bars) and the median lead time (a line). Rendered off
        the event loop: drawing takes tens of milliseconds."""
        ...


class FileUploads(Protocol):
    async def upload(
        self,
        *,
        channel: str,
        thread_key: str,
        filename: str,
        title: str,
        alt: str,
        content: bytes,
    ) -> None:
        """Upload ``content`` into the thread of the outbox's message ``thread_key`` of
        ``channel`` (the channel the message was sent to, as it was given) (waiting
        for it to be posted). Raises ``Unavailable``/``Refused`` when it cannot."""
        ...


@dataclass(frozen=True, kw_only=True)
class ManifestCommit:
    """A commit of the GitOps repo that touched an app's manifest: the version it left."""

    sha: str
    committed_at: datetime
    text: str | None
    """The manifest as this commit left it (``None``: the commit deleted it)."""


@dataclass(frozen=True, kw_only=True)
class MergedRequest:
    """A merged merge request of the GitOps repo."""

    iid: int
    title: str
    description: str
    created_at: datetime
    merged_at: datetime
    shas: frozenset[str]
    """Its head, merge and squash commits: how a manifest commit finds the MR it came in."""


class GitOpsHistory(Protocol):
    """What ``pitcrew dora backfill`` reads. Errors are ``Unavailable`` or ``Refused``."""

    async def manifest_commits(self, path: str, *, since: datetime) -> list[ManifestCommit]:
        """Commits touching ``path`` since ``since``, oldest first, and the last one before
        (what the env ran when the window began)."""
        ...

    async def merged_requests(self, *, since: datetime) -> list[MergedRequest]: ...

    async def commit_times(self, project: str, *, older: str, newer: str) -> tuple[datetime, ...]:
        """When each commit between two versions of an app was committed (``()``: unknown)."""
        ...


class DoraViews(Protocol):
    def report(
        self,
        query: DoraQuery,
        report: Report,
        *,
        share: str | None = None,
        shared_by: str | None = None,
        asked: str = "",
    ) -> Rendered: ...

    def error(self, error: CommandError) -> Rendered: ...

    def digest(
        self,
        team: Team,
        report: Report,
        *,
        env: str,
        week: Sequence[Deployment],
        start: datetime,
        end: datetime,
    ) -> Rendered: ...

    def chart_in_text(self, days: Sequence[Day], *, reason: str) -> Rendered:
        """The chart's figures as text, when the chart could not be uploaded."""
        ...

    def chart_title(self, team: Team, *, env: str, start: datetime, end: datetime) -> str: ...
