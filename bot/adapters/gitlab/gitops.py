"""The GitOps repo as the inventory service reads it (``GitOpsFiles`` port)."""

from __future__ import annotations

from bot.adapters.gitlab.errors import NotFoundInGitLab
from bot.adapters.gitlab.repository import GitLabRepository
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
