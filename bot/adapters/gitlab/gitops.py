"""The GitOps repo as the services read it: manifests for the inventory (``GitOpsFiles``) and
the catalog (``CatalogSource``)."""

from __future__ import annotations

from bot.adapters.gitlab.errors import GitLabUnavailable, NotFoundInGitLab
from bot.adapters.gitlab.repository import GitLabRepository
from bot.services.catalog import CatalogUnavailable
from bot.services.inventory import FileChange


class GitOpsFilesFromGitLab:
    def __init__(self, repository: GitLabRepository) -> None:
        self._repository = repository

    async def text(self, path: str) -> str | None:
        try:
            return (await self._repository.read_file(path)).text
        except NotFoundInGitLab:
            return None

    async def last_change(self, path: str) -> FileChange | None:
        change = await self._repository.last_change(path)
        if change is None:
            return None
        mr = change.merge_request
        return FileChange(
            author_name=change.author_name,
            committed_at=change.committed_at,
            web_url=change.web_url,
            mr_iid=mr.iid if mr else None,
            mr_url=mr.web_url if mr else None,
        )


CATALOG_FILE = "catalog.yaml"


class GitLabCatalogSource:
    """``catalog.yaml`` at the GitOps repo's root (the ``CatalogSource`` port)."""

    def __init__(self, repository: GitLabRepository, *, project: str) -> None:
        self._repository = repository
        self._project = project

    async def read(self) -> tuple[str, str]:
        try:
            found = await self._repository.read_file(CATALOG_FILE)
        except NotFoundInGitLab:
            raise CatalogUnavailable(
                f"{self._project} has no {CATALOG_FILE} at its root (or set CATALOG_PATH)"
            ) from None
        except GitLabUnavailable as exc:
            raise CatalogUnavailable(str(exc)) from exc
        return f"{self._project}:{CATALOG_FILE}", found.text
