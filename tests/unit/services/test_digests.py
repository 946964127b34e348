"""A weekly digest cut short while its chart is made still gets its chart, once.

The digest runs on the replica holding the ``insights`` lease; a lease lost (a busy event loop
misses a renewal) or a stop cancels it wherever it stands. Cut short between claiming the
chart's marker and uploading the chart, it used to keep the marker: the next look posted the
digest again (the same keyed message) but skipped the chart for good, and the channel read
"The chart is in the thread" above a thread with no chart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from bot.domain.dora import Day, Deployment
from bot.services.catalog import CatalogHolder
from bot.services.insights.digests import Digests
from bot.services.ports import AuditEntry, OutgoingMessage, Rendered

CATALOG = Path(__file__).parents[3] / "bot" / "sandbox" / "example_catalog.yaml"
MONDAY = datetime(2026, 3, 30, 9, 0, 5, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\nchart"


class Source:
    async def read(self) -> tuple[str, str]:
        return "catalog.yaml", CATALOG.read_text()


class Store:
    async def histories(
        self, keys: Iterable[tuple[str, str]], *, since: float, until: float
    ) -> dict[tuple[str, str], list[Deployment]]:
        return {key: [] for key in keys}


class Markers:
    """``SET NX`` with a ``DEL``, as the Redis markers do."""

    def __init__(self) -> None:
        self.held: set[str] = set()

    async def claim(self, key: str, *, ttl: float) -> bool:
        if key in self.held:
            return False
        self.held.add(key)
        return True

    async def unclaim(self, key: str) -> None:
        self.held.discard(key)


class Outbox:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: OutgoingMessage, *, version: int | None = None) -> None:
        self.sent.append(message.key)


class Views:
    def digest(self, team: Any, figures: Any, **_: Any) -> Rendered:
        return f"Weekly delivery digest of {team.name}", []

    def chart_title(self, team: Any, **_: Any) -> str:
        return f"{team.name}'s week"

    def chart_in_text(self, days: Sequence[Day], *, reason: str) -> Rendered:
        return "The digest's chart, as text", []


class Charts:
    """Renders at once, or (``hold``) waits until cancelled, as a render under a loaded CPU
    outlives the lease."""

    def __init__(self) -> None:
        self.hold = False
        self.rendering = asyncio.Event()

    async def weekly(self, *, title: str, days: Sequence[Day], zone: tzinfo) -> bytes:
        self.rendering.set()
        if self.hold:
            await asyncio.Event().wait()
        return PNG


class Uploads:
    def __init__(self) -> None:
        self.uploaded: list[str] = []

    async def upload(
        self, *, channel: str, thread_key: str, filename: str, title: str, alt: str, content: bytes
    ) -> None:
        self.uploaded.append(filename)


class Audit:
    async def record(self, entry: AuditEntry) -> None:
        pass


async def test_a_digest_cut_short_while_its_chart_is_made_gets_its_chart_on_the_next_look() -> None:
    catalog = CatalogHolder(Source())
    await catalog.reload()
    markers, outbox, charts, uploads = Markers(), Outbox(), Charts(), Uploads()
    digests = Digests(
        catalog=catalog,
        store=Store(),
        markers=markers,
        outbox=outbox,
        views=Views(),
        charts=charts,
        uploads=uploads,
        audit=Audit(),
        clock=lambda: MONDAY,
    )
    charts.hold = True
    first = asyncio.create_task(digests.tick())
    await asyncio.wait_for(charts.rendering.wait(), timeout=5)
    first.cancel()  # the lease is lost mid-render
    await asyncio.wait({first})
    assert first.cancelled()
    assert uploads.uploaded == []
    assert markers.held == set()  # nothing claimed is kept by work that did not finish

    charts.hold = False
    await digests.tick()  # the next look (this replica or another) posts it all
    teams = [team.name for team in catalog.current.teams if team.digest is not None]
    assert sorted(uploads.uploaded) == sorted(f"dora-{t}-2026-03-30.png" for t in teams)
    assert set(outbox.sent) == {f"digest:{t}:2026-03-30T09:00Z" for t in teams}

    await digests.tick()  # and once only
    assert len(uploads.uploaded) == len(teams)
