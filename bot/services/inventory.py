"""What runs where, from git: the inventory behind ``/whatsinprod``.

For every app and environment of the catalog, the version is read from the app's manifest in the
GitOps repo (``bot.domain.manifests``) with the commit and merge request that last changed it.
The result is cached in Redis and rebuilt at start, every 5 minutes, and for the changed files on
every push to the GitOps repo, so that ``/whatsinprod`` answers from the cache and never waits on
GitLab. When GitLab cannot be reached the previous entries stay, and the answer says how old
they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from bot import logs
from bot.domain.catalog import App, Catalog
from bot.domain.inventory import Deployed, Inventory, Key
from bot.domain.manifests import ManifestError, read_version
from bot.services.catalog import CatalogHolder
from bot.services.periodic import every

log = logs.get(__name__)

REFRESH_EVERY = 300.0


@dataclass(frozen=True, kw_only=True)
class FileChange:
    """The commit that last changed a file, and the merge request that brought it."""

    author_name: str
    committed_at: datetime
    web_url: str
    mr_iid: int | None = None
    mr_url: str | None = None


class GitOpsFiles(Protocol):
    """The GitOps repo, read: a file's text (``None`` when it does not exist) and last change."""

    async def text(self, path: str) -> str | None: ...

    async def last_change(self, path: str) -> FileChange | None: ...


class InventoryCache(Protocol):
    async def load(self) -> Inventory: ...

    async def save(self, entries: Iterable[Deployed], *, refreshed_at: datetime) -> None: ...


class InventoryService:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        files: GitOpsFiles,
        cache: InventoryCache,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._catalog = catalog
        self._files = files
        self._cache = cache
        self._clock = clock

    async def current(self) -> Inventory:
        return await self._cache.load()

    async def rebuild(self) -> None:
        """Every app in every environment of the catalog."""
        catalog = self._catalog.current
        keys = [(app.name, env) for app in catalog.apps for env in catalog.env_names]
        await self._refresh(catalog, keys)

    async def on_push(self, paths: Iterable[str] | None) -> None:
        """A push to the GitOps repo: refresh the entries whose manifest changed (``None``:
        GitLab did not list every file, so everything)."""
        catalog = self._catalog.current
        if paths is None:
            await self.rebuild()
            return
        changed = set(paths)
        keys = [
            (app.name, env)
            for app in catalog.apps
            for env in catalog.env_names
            if catalog.manifest_path(app, env) in changed
        ]
        if keys:
            await self._refresh(catalog, keys)

    async def run_refresher(self) -> None:
        """Answers come from the cache while a refresh fails."""
        await every(REFRESH_EVERY, self.rebuild, what="inventory refresh")

    async def _refresh(self, catalog: Catalog, keys: list[Key]) -> None:
        reads = [
            asyncio.ensure_future(self._read(catalog.app(app), env, catalog=catalog))
            for app, env in keys
        ]
        try:
            entries = await asyncio.gather(*reads)
        except BaseException:
            # One read failed (GitLab down): the hundreds of others must not go on asking.
            for read in reads:
                read.cancel()
            await asyncio.gather(*reads, return_exceptions=True)
            raise
        await self._cache.save(entries, refreshed_at=self._clock())

    async def _read(self, app: App, env: str, *, catalog: Catalog) -> Deployed:
        path = catalog.manifest_path(app, env)
        text = await self._files.text(path)
        if text is None:
            return Deployed(app=app.name, env=env)
        change = await self._files.last_change(path)
        version, unreadable = None, None
        try:
            version = read_version(text, app=app).version
        except ManifestError as exc:
            unreadable = str(exc)
        return Deployed(
            app=app.name,
            env=env,
            version=version,
            unreadable=unreadable,
            changed_at=change.committed_at if change else None,
            changed_by=change.author_name if change else None,
            commit_url=change.web_url if change else None,
            mr_iid=change.mr_iid if change else None,
            mr_url=change.mr_url if change else None,
        )
