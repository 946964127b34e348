"""Keeps one valid catalog in force while people edit the file it comes from.

The catalog is re-read on every push to the GitOps repo and every few minutes besides, so most
reloads find the same text: those are answered without parsing. A text that does not validate is
reported (a log line, and the ``ReloadResult`` for whoever wants to tell people) and the last valid
catalog stays in force, because a typo in one team's entry must not stop the bot for every team.
Only the very first load has nothing to fall back on: it raises, and start-up stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from bot import logs
from bot.domain.catalog import Catalog, CatalogError, parse_catalog
from bot.domain.errors import PitcrewError

__all__ = [
    "CatalogHolder",
    "CatalogNotLoaded",
    "CatalogSource",
    "CatalogUnavailable",
    "ReloadOutcome",
    "ReloadResult",
]

log = logs.get(__name__)


class CatalogUnavailable(PitcrewError):
    """The catalog could not be read at all (missing file, GitLab down); the message says where."""


class CatalogNotLoaded(PitcrewError):
    """Asked for the catalog before the first load succeeded: a wiring mistake."""


class CatalogSource(Protocol):
    async def read(self) -> tuple[str, str]:
        """Return ``(source name, text)``; the name appears in every problem (``catalog.yaml:12``).

        Raises ``CatalogUnavailable`` when the text cannot be had.
        """
        ...


ReloadOutcome = Literal["loaded", "unchanged", "invalid", "unavailable"]


@dataclass(frozen=True, kw_only=True)
class ReloadResult:
    """What a reload did.

    - ``loaded``: a new text validated and is now in force;
    - ``unchanged``: the same text as last time; ``error`` is set if that text was invalid, so a
      caller reports each bad version once, not every five minutes;
    - ``invalid``: the text did not validate; ``error`` says why, the last valid catalog stays;
    - ``unavailable``: the source could not be read; the last valid catalog stays.
    """

    outcome: ReloadOutcome
    catalog: Catalog
    """The catalog in force after the reload."""
    error: CatalogError | CatalogUnavailable | None = None


class CatalogHolder:
    def __init__(self, source: CatalogSource) -> None:
        self._source = source
        self._catalog: Catalog | None = None
        self._last_read: tuple[str, str] | None = None
        self._last_error: CatalogError | None = None
        self._lock = asyncio.Lock()  # a push webhook and the timer may ask at the same moment

    @property
    def current(self) -> Catalog:
        """The catalog in force. Read it afresh for each event rather than keeping it."""
        if self._catalog is None:
            raise CatalogNotLoaded("the catalog has not been loaded yet")
        return self._catalog

    async def on_push(self, paths: Iterable[str] | None) -> None:
        """A push to the GitOps repo: read the catalog again if it may have changed."""
        if paths is None or any(p == "catalog.yaml" for p in paths):
            await self.reload()

    async def reload(self) -> ReloadResult:
        """Read the source again; raises ``CatalogError``/``CatalogUnavailable`` only on the
        first load, when there is no valid catalog to keep."""
        async with self._lock:
            try:
                read = await self._source.read()
            except CatalogUnavailable as exc:
                if self._catalog is None:
                    raise
                log.warning("catalog unreadable; the last valid catalog stays", error=str(exc))
                return ReloadResult(outcome="unavailable", catalog=self._catalog, error=exc)

            if read == self._last_read and self._catalog is not None:
                return ReloadResult(
                    outcome="unchanged", catalog=self._catalog, error=self._last_error
                )

            name, text = read
            try:
                # Parsing hundreds of apps takes a moment: keep the event loop answering webhooks.
                catalog = await asyncio.to_thread(parse_catalog, text, source=name)
            except CatalogError as exc:
                if self._catalog is None:
                    raise
                self._last_read, self._last_error = read, exc
                log.error(
                    "catalog invalid; the last valid catalog stays",
                    source=name,
                    problems=[str(p) for p in exc.problems],
                )
                return ReloadResult(outcome="invalid", catalog=self._catalog, error=exc)

            self._catalog, self._last_read, self._last_error = catalog, read, None
            log.info(
                "catalog loaded",
                source=name,
                teams=len(catalog.teams),
                environments=len(catalog.environments),
                apps=len(catalog.apps),
            )
            return ReloadResult(outcome="loaded", catalog=catalog)
