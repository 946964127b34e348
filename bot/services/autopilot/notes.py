"""Released notes (SPEC 13): the issues and merge requests of a shipped changelog hear of it.

Called when a release ends. For each reference the domain names (``references_to_note``), a
marker keyed by env and reference is claimed first (``SET NX``): whatever the replays of the end
and the number of replicas, one note per issue and env. Writing to GitLab may fail: that is
logged, the marker is given back when the note was not written (a replay may try again), and
the release is never held by it.
"""

from __future__ import annotations

from typing import Final

from bot import logs
from bot.domain.errors import PitcrewError
from bot.domain.released import deployed_label, references_to_note, released_note
from bot.domain.releases import Release
from bot.services.autopilot.ports import AutopilotStore, IssueTracker
from bot.services.catalog import CatalogHolder

log = logs.get(__name__)

NOTED_TTL: Final = 400 * 86400.0
"""Seconds an issue is remembered as told, per env: longer than any issue waits to ship twice."""


class ReleasedNotes:
    def __init__(
        self, *, catalog: CatalogHolder, issues: IssueTracker, store: AutopilotStore
    ) -> None:
        self._catalog = catalog
        self._issues = issues
        self._store = store

    async def on_release_ended(self, release: Release) -> None:
        catalog = self._catalog.current
        if release.app not in catalog.app_names:
            return
        source = catalog.app(release.app).source
        references = references_to_note(release, source=source)
        if not references:
            return
        body = released_note(release)
        label = deployed_label(release.env)
        written = 0
        for reference in references:
            key = f"released:{release.env}:{reference.key.lower()}"
            if not await self._store.claim(key, ttl=NOTED_TTL):
                continue
            try:
                await self._issues.note(reference, body)
            except PitcrewError as exc:
                await self._store.unclaim(key)
                log.warning(
                    "released note not written",
                    release=release.id,
                    reference=reference.key,
                    error=str(exc),
                )
                continue
            written += 1
            try:
                await self._issues.label(reference, label)
            except PitcrewError as exc:  # the note is written: never write it twice
                log.warning(
                    "released label not set",
                    release=release.id,
                    reference=reference.key,
                    label=label,
                    error=str(exc),
                )
        if written:
            log.info("released notes written", release=release.id, count=written)
