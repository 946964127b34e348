"""The GitOps repo as the services see it: manifests for the inventory (``GitOpsFiles``), the
catalog (``CatalogSource``), and releases (``ReleaseRepository``); and the apps' repos as the
autopilot sees them (``AppTags``, ``IssueTracker``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.adapters.gitlab.errors import GitLabRefused, GitLabUnavailable, NotFoundInGitLab
from bot.adapters.gitlab.repository import GitLabRepository, MergeRequestInfo
from bot.domain.released import Reference
from bot.domain.releases import (
    MAX_REFERENCES,
    Changelog,
    ChangelogEntry,
    PipelineLink,
    referenced_issues,
    references_in,
)
from bot.domain.versions import VersionTag
from bot.services.catalog import CatalogUnavailable
from bot.services.insights import GitOpsHistory, ManifestCommit, MergedRequest
from bot.services.inventory import FileChange
from bot.services.releases import FileEdit, ManifestFile, MergeRequestState


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
        except (GitLabUnavailable, GitLabRefused) as exc:
            raise CatalogUnavailable(str(exc)) from exc
        return f"{self._project}:{CATALOG_FILE}", found.text


class GitOpsReleasesFromGitLab:
    """The ``ReleaseRepository`` port: manifests, tags, changelogs and merge requests."""

    HISTORY = 15
    """Commits of a manifest read to find the version an env ran before."""
    CHANGELOG_ENTRIES = 20
    COMMIT_TIMES = 250
    """Commit times kept per release (the newest): the lead time of a release bringing more
    is counted on these."""

    def __init__(self, repository: GitLabRepository) -> None:
        self._repository = repository

    async def manifest(self, path: str) -> ManifestFile | None:
        try:
            found = await self._repository.read_file(path)
        except NotFoundInGitLab:
            return None
        return ManifestFile(text=found.text, revision=found.last_commit_id)

    async def manifest_history(self, path: str) -> list[str]:
        texts = []
        for change in await self._repository.history(path, limit=self.HISTORY):
            try:
                texts.append((await self._repository.read_file(path, ref=change.sha)).text)
            except NotFoundInGitLab:
                continue  # the commit deleted the file
        return texts

    async def tag_for(self, project: str, version: str) -> str | None:
        return await self._repository.resolve_tag(project, version)

    async def changelog(self, project: str, *, from_tag: str, to_tag: str) -> Changelog:
        comparison = await self._repository.compare(project, from_ref=from_tag, to_ref=to_tag)
        newest_first = list(reversed(comparison.commits))
        references = dict.fromkeys(
            ref for c in newest_first for ref in references_in(c.message or c.title)
        )
        return Changelog(
            references=tuple(references)[:MAX_REFERENCES],
            entries=tuple(
                ChangelogEntry(
                    sha=c.sha,
                    title=c.title,
                    author=c.author_name,
                    url=c.web_url,
                    issues=referenced_issues(c.message or c.title),
                    committed_at=c.committed_at,
                )
                for c in newest_first[: self.CHANGELOG_ENTRIES]
            ),
            total=len(newest_first),
            commit_times=tuple(c.committed_at for c in newest_first if c.committed_at)[
                : self.COMMIT_TIMES
            ],
            compare_url=comparison.web_url or None,
            issues_url=f"{comparison.project_url.rstrip('/')}/-/issues"
            if comparison.project_url
            else None,
        )

    async def open_change(
        self,
        *,
        branch: str,
        edits: Sequence[FileEdit],
        message: str,
        title: str,
        description: str,
    ) -> MergeRequestState:
        actions: list[dict[str, Any]] = []
        for edit in edits:
            action: dict[str, Any] = {"action": edit.action, "file_path": edit.path}
            if edit.content is not None:
                action["content"] = edit.content
            if edit.revision:
                action["last_commit_id"] = edit.revision
            actions.append(action)
        mr = await self._repository.open_change(
            branch=branch,
            actions=actions,
            commit_message=message,
            title=title,
            description=description,
        )
        return _state(mr)

    async def merge_request_of_branch(self, branch: str) -> MergeRequestState | None:
        found = await self._repository.merge_request_of_branch(branch)
        return _state(found) if found is not None else None

    async def merge_request(self, iid: int) -> MergeRequestState:
        return _state(await self._repository.merge_request(iid))

    async def merge(self, iid: int, *, sha: str) -> MergeRequestState:
        return _state(await self._repository.merge(iid, sha=sha, when_pipeline_succeeds=True))

    async def close(self, iid: int) -> None:
        await self._repository.close_merge_request(iid)

    async def cancel_merge(self, iid: int) -> None:
        await self._repository.cancel_auto_merge(iid)

    async def note(self, iid: int, body: str) -> None:
        await self._repository.add_note(iid, body)

    async def merge_requests_of_commit(self, sha: str) -> list[int]:
        return await self._repository.merge_requests_of_commit(sha)

    async def pipeline_of_commit(self, sha: str) -> PipelineLink | None:
        found = await self._repository.pipelines_of_commit(sha)
        if not found:
            return None
        newest = found[0]
        return PipelineLink(id=newest.id, status=newest.status, url=newest.web_url)


class GitOpsHistoryFromGitLab(GitOpsHistory):
    """The ``GitOpsHistory`` port: what ``pitcrew dora backfill`` reads."""

    def __init__(self, repository: GitLabRepository) -> None:
        self._repository = repository

    async def manifest_commits(self, path: str, *, since: datetime) -> list[ManifestCommit]:
        window = await self._repository.commits_touching(path, since=since)
        before = await self._repository.commits_touching(path, until=since, limit=1)
        found = []
        for commit in reversed([*window, *before[:1]]):
            try:
                text: str | None = (await self._repository.read_file(path, ref=commit.sha)).text
            except NotFoundInGitLab:
                text = None  # the commit deleted the file
            found.append(
                ManifestCommit(sha=commit.sha, committed_at=commit.committed_at, text=text)
            )
        return found

    async def merged_requests(self, *, since: datetime) -> list[MergedRequest]:
        return [
            MergedRequest(
                iid=mr.iid,
                title=mr.title,
                description=mr.description,
                created_at=mr.created_at,
                merged_at=mr.merged_at,
                shas=mr.shas,
            )
            for mr in await self._repository.merged_merge_requests(since=since)
        ]

    async def commit_times(self, project: str, *, older: str, newer: str) -> tuple[datetime, ...]:
        older_tag = await self._repository.resolve_tag(project, older)
        newer_tag = await self._repository.resolve_tag(project, newer)
        if older_tag is None or newer_tag is None:
            return ()
        comparison = await self._repository.compare(project, from_ref=older_tag, to_ref=newer_tag)
        return tuple(c.committed_at for c in comparison.commits if c.committed_at is not None)


class AppTagsFromGitLab:
    """The ``AppTags`` port: the recent tags of apps' repositories."""

    def __init__(self, repository: GitLabRepository) -> None:
        self._repository = repository

    async def tags(self, project: str) -> list[VersionTag]:
        found = await self._repository.recent_tags(project)
        return [VersionTag(name=t.name, created_at=t.created_at) for t in found]


class IssuesFromGitLab:
    """The ``IssueTracker`` port: notes and labels on apps' issues and merge requests."""

    def __init__(self, repository: GitLabRepository) -> None:
        self._repository = repository

    async def note(self, reference: Reference, body: str) -> None:
        if reference.kind == "issue":
            await self._repository.add_issue_note(reference.project, reference.iid, body)
        else:
            await self._repository.add_note(reference.iid, body, project=reference.project)

    async def label(self, reference: Reference, label: str) -> None:
        await self._repository.add_labels(
            reference.project,
            iid=reference.iid,
            labels=[label],
            merge_request=reference.kind == "merge_request",
        )


_NOT_MERGEABLE = frozenset(
    {"conflict", "draft_status", "broken_status", "not_open", "need_rebase", "blocked_status"}
)


def _state(mr: MergeRequestInfo) -> MergeRequestState:
    return MergeRequestState(
        iid=mr.iid,
        url=mr.web_url,
        state=mr.state,
        head_sha=mr.head_sha,
        mergeable=not mr.has_conflicts and mr.detailed_merge_status not in _NOT_MERGEABLE,
        auto_merge=mr.merge_when_pipeline_succeeds,
        pipeline=PipelineLink(id=mr.pipeline_id, status=mr.pipeline_status, url=mr.pipeline_url)
        if mr.pipeline_id is not None and mr.pipeline_status is not None
        else None,
    )
