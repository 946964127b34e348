"""Reads of the GitOps repo and the apps' repos, and the writes a release needs, over
python-gitlab.

python-gitlab is synchronous, so every request runs in a worker thread, and a semaphore bounds
how many run at once: a full inventory rebuild asks for hundreds of files, and GitLab should not
see them all at the same moment. The semaphore is held only while a request is in flight, never
during a back-off. The threads are the adapter's own (one per allowed request), not the loop's
default executor: requests that block on a slow GitLab for up to ``timeout`` must not starve
everything else the process runs through ``asyncio.to_thread``.

Transient failures (5xx, 429, connection errors, timeouts) are retried with exponential
back-off; once the tries are spent the caller gets ``GitLabUnavailable`` with a one-line reason.
A 404 is an answer, not an outage: it becomes ``NotFoundInGitLab`` at once. What comes back is
frozen dataclasses; no python-gitlab object leaves this module.

Writes that would be doubled by a repeat (creating a commit, a merge request, a note) are never
retried: after a 5xx or a lost answer nobody knows whether GitLab applied them. Writes that are
safe to repeat (a merge pinned to a SHA, a close, a branch delete) are retried like reads. A
change that fails half-way (the commit made, the merge request not) is undone: its branch is
deleted again, so a refused change leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import gitlab
import requests
from gitlab.v4.objects import Project, ProjectCommit

from bot import logs
from bot.adapters.gitlab.errors import (
    GitLabRefused,
    GitLabUnavailable,
    MergeRefused,
    NotFoundInGitLab,
)

__all__ = [
    "Change",
    "CommitSummary",
    "Comparison",
    "FileAtRef",
    "GitLabRepository",
    "MergeRequestInfo",
    "MergeRequestRef",
    "PipelineSummary",
    "Tag",
]

log = logs.get(__name__)

T = TypeVar("T")

TRIES = 3
FIRST_DELAY = 0.1  # seconds; doubles on each retry
_TRANSIENT_STATUS = frozenset({429}) | frozenset(range(500, 600))
_REFUSED_MERGE = frozenset({405, 406, 409, 422})
_GERUNDS = {"read": "reading", "create": "creating", "merge": "merging", "close": "closing"}


@dataclass(frozen=True)
class FileAtRef:
    """A file's text as it is at ``ref``, with the ids an edit needs to detect a race."""

    project: str
    path: str
    ref: str
    text: str
    blob_id: str
    last_commit_id: str


@dataclass(frozen=True)
class MergeRequestRef:
    """The merge request a commit came in with."""

    iid: int
    title: str
    web_url: str
    author_name: str
    author_username: str


@dataclass(frozen=True)
class Change:
    """One commit touching a file, and the MR that brought it when there is one."""

    sha: str
    title: str
    author_name: str
    author_email: str
    committed_at: datetime
    web_url: str
    merge_request: MergeRequestRef | None


@dataclass(frozen=True)
class CommitRef:
    sha: str
    committed_at: datetime


@dataclass(frozen=True)
class MergedMergeRequest:
    """A merged merge request of the GitOps repo, as the backfill reads it."""

    iid: int
    title: str
    description: str
    created_at: datetime
    merged_at: datetime
    shas: frozenset[str]


@dataclass(frozen=True)
class Tag:
    """A tag of an app's repo; ``created_at``: the tag's date if annotated, else its commit's."""

    name: str
    sha: str
    created_at: datetime | None


@dataclass(frozen=True)
class MergeRequestInfo:
    """A merge request of the GitOps repo as GitLab sees it now."""

    iid: int
    web_url: str
    state: str  # "opened" | "closed" | "merged" | "locked"
    head_sha: str
    source_branch: str
    merge_commit_sha: str | None
    has_conflicts: bool
    detailed_merge_status: str  # "mergeable", "ci_still_running", "ci_must_pass", "conflict"...
    merge_when_pipeline_succeeds: bool
    pipeline_status: str | None  # the head pipeline's, if there is one
    pipeline_id: int | None = None
    pipeline_url: str | None = None


@dataclass(frozen=True)
class PipelineSummary:
    id: int
    status: str
    web_url: str | None


@dataclass(frozen=True)
class CommitSummary:
    sha: str
    title: str
    message: str
    author_name: str
    web_url: str
    committed_at: datetime | None = None


@dataclass(frozen=True)
class Comparison:
    """What ``to_ref`` has that ``from_ref`` has not."""

    commits: tuple[CommitSummary, ...]  # oldest first, as GitLab's compare returns them
    web_url: str  # the compare page: {project_url}/-/compare/1.4.1...1.4.2
    project_url: str  # the project's web_url (issues are {project_url}/-/issues/12)


@dataclass(frozen=True)
class _ProjectInfo:
    default_branch: str
    web_url: str


class _Refused(Exception):
    """Raised in a worker thread for an answer the caller turns into ``MergeRefused``; not a
    ``GitlabError``, so ``_call`` lets it through untouched (and does not retry it)."""

    def __init__(self, status: int, cause: gitlab.GitlabError) -> None:
        super().__init__(status)
        self.status = status
        self.cause = cause


class GitLabRepository:
    """The GitOps repo (and app repos by path): reads, and the writes of a release, with
    retries where they are safe and a bound on concurrent requests."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        gitops_project: str,
        branch: str | None = None,
        concurrency: int = 8,
        timeout: float = 15.0,
        tries: int = TRIES,
        first_delay: float = FIRST_DELAY,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if tries < 1:
            raise ValueError("tries must be at least 1")
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=concurrency)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._client = gitlab.Gitlab(
            url,
            private_token=token,
            timeout=timeout,
            session=session,
            retry_transient_errors=False,
        )
        self.url = url
        self.gitops_project = gitops_project
        self._branch = branch
        self._limit = asyncio.Semaphore(concurrency)
        self._threads = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="gitlab")
        self._tries = tries
        self._first_delay = first_delay
        self._projects: dict[str, _ProjectInfo] = {}
        self._asking: dict[str, asyncio.Future[_ProjectInfo]] = {}

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._client.session.close()

    # ------------------------------------------------------------------ reads

    async def default_branch(self) -> str:
        """The GitOps project's default branch (asked once, then remembered)."""
        return await self._default_branch_of(self.gitops_project)

    async def branch(self) -> str:
        """The branch the GitOps reads follow: the configured one, else the default branch."""
        return self._branch or await self.default_branch()

    async def read_file(
        self, path: str, *, project: str | None = None, ref: str | None = None
    ) -> FileAtRef:
        """``path`` at ``ref`` of ``project`` (default: the GitOps repo at its branch; another
        project at its default branch)."""
        name = project or self.gitops_project
        if ref is None:
            ref = await self.branch() if project is None else await self._default_branch_of(name)
        at = ref

        def get() -> FileAtRef:
            file = self._project(name).files.get(file_path=path, ref=at)
            return FileAtRef(
                project=name,
                path=path,
                ref=at,
                text=file.decode().decode("utf-8"),
                blob_id=str(file.blob_id),
                last_commit_id=str(file.last_commit_id),
            )

        return await self._call(f"{path} at {at} in {name}", get)

    async def last_change(self, path: str) -> Change | None:
        """The newest commit touching ``path`` on the GitOps branch; None if none ever did."""
        changes = await self.history(path, limit=1)
        return changes[0] if changes else None

    async def history(self, path: str, *, limit: int = 20) -> list[Change]:
        """Commits touching ``path`` on the GitOps branch, newest first, at most ``limit``."""
        if limit < 1:
            return []
        branch = await self.branch()
        name = self.gitops_project

        def commits() -> list[ProjectCommit]:
            found = self._project(name).commits.list(
                query_parameters={"path": path, "ref_name": branch},
                per_page=min(limit, 100),
                page=1,
                get_all=False,
            )
            return [c for c in found if isinstance(c, ProjectCommit)][:limit]

        found = await self._call(f"the history of {path} in {name}", commits)
        mrs = await asyncio.gather(*(self._merge_request_of(c, branch=branch) for c in found))
        return [_change(c.attributes, mr) for c, mr in zip(found, mrs, strict=True)]

    async def commits_touching(
        self,
        path: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 5000,
    ) -> list[CommitRef]:
        """Commits touching ``path`` on the GitOps branch in ``[since, until]``, newest first
        in topological order (a child before its parent, whatever their dates say), every
        page (at most ``limit``)."""
        branch = await self.branch()
        name = self.gitops_project
        query: dict[str, Any] = {"path": path, "ref_name": branch, "order": "topo"}
        if since is not None:
            query["since"] = since.isoformat()
        if until is not None:
            query["until"] = until.isoformat()

        def commits() -> list[CommitRef]:
            found = []
            for c in self._project(name).commits.list(
                query_parameters=query, per_page=100, iterator=True
            ):
                when = _when(c.attributes.get("committed_date")) or _when(
                    c.attributes.get("created_at")
                )
                if when is not None:
                    found.append(CommitRef(sha=str(c.attributes["id"]), committed_at=when))
                if len(found) >= limit:
                    break
            return found

        return await self._call(f"the history of {path} in {name}", commits)

    async def merged_merge_requests(self, *, since: datetime) -> list[MergedMergeRequest]:
        """The GitOps repo's merge requests merged into its branch since ``since``."""
        branch = await self.branch()
        name = self.gitops_project

        def get() -> list[MergedMergeRequest]:
            found = []
            for mr in self._project(name).mergerequests.list(
                state="merged",
                target_branch=branch,
                updated_after=since.isoformat(),
                per_page=100,
                iterator=True,
            ):
                data = mr.attributes
                merged = _when(data.get("merged_at"))
                created = _when(data.get("created_at"))
                if merged is None or created is None or merged < since:
                    continue
                shas = {data.get(k) for k in ("sha", "merge_commit_sha", "squash_commit_sha")}
                found.append(
                    MergedMergeRequest(
                        iid=int(data["iid"]),
                        title=str(data.get("title") or ""),
                        description=str(data.get("description") or ""),
                        created_at=created,
                        merged_at=merged,
                        shas=frozenset(str(s) for s in shas if s),
                    )
                )
            return found

        return await self._call(f"the merged merge requests of {name}", get)

    async def tags(self, project: str, *, search: str | None = None) -> list[Tag]:
        """Tags of ``project``, newest first; ``search`` as GitLab takes it (``^v1.4`` etc.)."""

        def get() -> list[Tag]:
            options: dict[str, Any] = {} if search is None else {"search": search}
            found = self._project(project).tags.list(get_all=True, **options)
            return [_tag(t.attributes) for t in found]

        return await self._call(f"the tags of {project}", get)

    async def recent_tags(self, project: str, *, limit: int = 100) -> list[Tag]:
        """The ``limit`` most recently updated tags of ``project`` (one request): where its
        newest version is, without reading a repository's whole history of tags."""

        def get() -> list[Tag]:
            found = self._project(project).tags.list(
                order_by="updated", sort="desc", per_page=min(limit, 100), page=1, get_all=False
            )
            return [_tag(t.attributes) for t in found][:limit]

        return await self._call(f"the tags of {project}", get)

    async def tag_exists(self, project: str, name: str) -> bool:
        """Whether ``project`` has tag ``name``. A missing project is still an error."""
        await self._default_branch_of(project)  # NotFoundInGitLab when the project is missing

        def get() -> bool:
            self._project(project).tags.get(name)
            return True

        try:
            return await self._call(f"tag {name} of {project}", get)
        except NotFoundInGitLab:
            return False

    async def resolve_tag(self, project: str, version: str) -> str | None:
        """The tag of ``project`` for ``version``: ``version`` itself if that tag exists, else
        ``v{version}`` (``1.4.2`` for a ``v1.4.2``), else None. A missing project is an error."""
        bare = version[1:] if version[:1] in ("v", "V") and version[1:2].isdigit() else None
        for name in (version, bare if bare is not None else f"v{version}"):
            if await self.tag_exists(project, name):
                return name
        return None

    async def branch_exists(self, name: str) -> bool:
        """Whether the GitOps project has branch ``name``."""
        gitops = self.gitops_project
        await self._default_branch_of(gitops)  # NotFoundInGitLab when the project is missing

        def get() -> bool:
            self._project(gitops).branches.get(name)
            return True

        try:
            return await self._call(f"branch {name} of {gitops}", get)
        except NotFoundInGitLab:
            return False

    async def compare(self, project: str, *, from_ref: str, to_ref: str) -> Comparison:
        """The commits ``to_ref`` has and ``from_ref`` has not (``1.4.1`` → ``1.4.2``)."""
        project_url = (await self._project_info(project)).web_url

        def get() -> dict[str, Any]:
            found = self._project(project).repository_compare(from_ref, to_ref)
            return dict(found) if isinstance(found, dict) else {}

        data = await self._call(f"{from_ref}...{to_ref} of {project}", get)
        commits = tuple(
            _commit_summary(c, project_url=project_url) for c in data.get("commits") or []
        )
        web_url = data.get("web_url") or f"{project_url}/-/compare/{from_ref}...{to_ref}"
        return Comparison(commits=commits, web_url=str(web_url), project_url=project_url)

    async def pipelines_of_commit(self, sha: str) -> list[PipelineSummary]:
        """The GitOps project's pipelines for commit ``sha``, newest first (one page)."""
        name = self.gitops_project

        def get() -> list[PipelineSummary]:
            found = self._project(name).pipelines.list(
                sha=sha, order_by="id", sort="desc", per_page=20, get_all=False
            )
            return [
                PipelineSummary(
                    id=int(p.attributes["id"]),
                    status=str(p.attributes.get("status", "")),
                    web_url=str(p.attributes.get("web_url") or "") or None,
                )
                for p in found
            ]

        return await self._call(f"the pipelines of commit {sha[:8]} in {name}", get)

    async def merge_requests_of_commit(self, sha: str) -> list[int]:
        """The iids of the GitOps project's MRs containing commit ``sha`` (a merge commit's
        too: GitLab counts the MR it merged), as GitLab lists them."""
        name = self.gitops_project

        def get() -> list[int]:
            commit = self._project(name).commits.get(sha, lazy=True)
            return [int(m["iid"]) for m in commit.merge_requests(get_all=True)]

        found = await self._call(f"the merge requests of commit {sha[:8]} in {name}", get)
        return list(dict.fromkeys(found))

    async def merge_request(self, iid: int) -> MergeRequestInfo:
        """Merge request ``!iid`` of the GitOps project, as it is now."""
        name = self.gitops_project

        def get() -> MergeRequestInfo:
            return _merge_request_info(self._project(name).mergerequests.get(iid).attributes)

        return await self._call(f"merge request !{iid} of {name}", get)

    # ------------------------------------------------------------------ writes

    async def open_merge_request(
        self,
        *,
        branch: str,
        path: str,
        content: str,
        last_commit_id: str | None,
        commit_message: str,
        title: str,
        description: str,
    ) -> MergeRequestInfo:
        """One commit rewriting ``path`` on a new ``branch`` off the GitOps branch, and its merge
        request (the branch removed on merge): ``open_change`` with one update."""
        action: dict[str, Any] = {"action": "update", "file_path": path, "content": content}
        if last_commit_id is not None:
            action["last_commit_id"] = last_commit_id
        return await self.open_change(
            branch=branch,
            actions=[action],
            commit_message=commit_message,
            title=title,
            description=description,
        )

    async def open_change(
        self,
        *,
        branch: str,
        actions: Sequence[Mapping[str, Any]],
        commit_message: str,
        title: str,
        description: str,
    ) -> MergeRequestInfo:
        """One commit of ``actions`` (the Commits API's: ``create``, ``update``, ``delete``,
        each with its ``file_path``) on a new ``branch`` off the GitOps branch, and its merge
        request (the branch removed on merge).

        An action's ``last_commit_id`` (from ``read_file``) makes GitLab refuse the commit if
        its file has changed since it was read. Neither write is retried. When the commit or
        the merge request fails, the branch is deleted again (and a merge request a lost answer
        may have opened is closed) before the one-line error is raised."""
        target = await self.branch()
        name = self.gitops_project
        commit_data = {
            "branch": branch,
            "start_branch": target,
            "commit_message": commit_message,
            "actions": [dict(action) for action in actions],
        }
        mr_data = {
            "source_branch": branch,
            "target_branch": target,
            "title": title,
            "description": description,
            "remove_source_branch": True,
        }

        def commit() -> None:
            self._project(name).commits.create(commit_data)

        def open_mr() -> MergeRequestInfo:
            created = self._project(name).mergerequests.create(mr_data)
            return _merge_request_info(created.attributes)

        try:
            await self._call(
                f"a commit on branch {branch} of {name}", commit, verb="create", retry=False
            )
        except (GitLabUnavailable, GitLabRefused) as exc:
            if _maybe_applied(exc):
                # Nobody knows whether the branch was made; delete it only if its head is ours.
                await self._discard(branch, made_by=commit_message, merge_requests=False)
            raise
        try:
            return await self._call(
                f"the merge request of branch {branch} into {target} of {name}",
                open_mr,
                verb="create",
                retry=False,
            )
        except (GitLabUnavailable, GitLabRefused) as exc:
            await self._discard(branch, made_by=None, merge_requests=_maybe_applied(exc))
            raise

    async def merge_request_of_branch(self, branch: str) -> MergeRequestInfo | None:
        """The newest merge request from ``branch`` of the GitOps repo (any state), if any."""
        name = self.gitops_project

        def get() -> MergeRequestInfo | None:
            found = self._project(name).mergerequests.list(
                source_branch=branch, order_by="created_at", sort="desc", per_page=1
            )
            return _merge_request_info(found[0].attributes) if found else None

        return await self._call(f"the merge requests of branch {branch} of {name}", get)

    async def merge(
        self, iid: int, *, sha: str, when_pipeline_succeeds: bool = True
    ) -> MergeRequestInfo:
        """Merge ``!iid`` if its head is still ``sha``: now when it is mergeable, else (with
        ``when_pipeline_succeeds``) once its head pipeline succeeds. Returns the MR after the
        call. ``MergeRefused`` when GitLab will not: head changed, conflicts, not mergeable."""
        name = self.gitops_project

        def put() -> MergeRequestInfo:
            mr = self._project(name).mergerequests.get(iid, lazy=True)
            try:
                # sha goes as a parameter of the request, which GitLab checks against the head.
                answer = mr.merge(merge_when_pipeline_succeeds=when_pipeline_succeeds, sha=sha)
            except gitlab.GitlabError as exc:
                if exc.response_code in _REFUSED_MERGE:
                    raise _Refused(exc.response_code, exc) from exc
                raise
            return _merge_request_info(answer)

        try:
            # Safe to retry: the SHA pins what gets merged, and a second merge is refused.
            return await self._call(f"merge request !{iid} of {name}", put, verb="merge")
        except _Refused as refused:
            if refused.status == 409:
                raise MergeRefused(
                    f"merge request !{iid} cannot be merged: its head changed"
                ) from refused.cause
            if refused.status == 406:
                raise MergeRefused(
                    f"merge request !{iid} cannot be merged: it has conflicts"
                ) from refused.cause
            try:
                now = await self.merge_request(iid)
            except (GitLabUnavailable, GitLabRefused):
                raise MergeRefused(f"merge request !{iid} is not mergeable") from refused.cause
            if now.state == "merged" and now.head_sha == sha:
                return now  # merged already (a retry after a lost answer, or someone else)
            raise MergeRefused(
                f"merge request !{iid} is not mergeable ({now.detailed_merge_status})"
            ) from refused.cause

    async def close_merge_request(self, iid: int) -> None:
        """Close ``!iid``; closing a closed one is fine, a merged one is ``MergeRefused``."""
        name = self.gitops_project
        before = await self.merge_request(iid)
        if before.state == "closed":
            return
        if before.state == "merged":
            raise MergeRefused(f"merge request !{iid} is already merged: it cannot be closed")

        def put() -> str:
            try:
                answer = self._project(name).mergerequests.update(iid, {"state_event": "close"})
            except gitlab.GitlabError as exc:
                if exc.response_code in _REFUSED_MERGE:
                    raise _Refused(exc.response_code, exc) from exc
                raise
            return str(answer.get("state", ""))

        try:
            state = await self._call(f"merge request !{iid} of {name}", put, verb="close")
        except _Refused as refused:
            state = (await self.merge_request(iid)).state
            if state != "closed":
                raise MergeRefused(
                    f"merge request !{iid} cannot be closed ({state})"
                ) from refused.cause
        if state == "merged":
            raise MergeRefused(f"merge request !{iid} is already merged: it cannot be closed")

    async def add_note(self, iid: int, body: str, *, project: str | None = None) -> None:
        """Comment ``body`` on ``!iid`` of ``project`` (default: the GitOps repo); not
        retried: a repeat would post it twice."""
        name = project or self.gitops_project

        def post() -> None:
            mr = self._project(name).mergerequests.get(iid, lazy=True)
            mr.notes.create({"body": body})

        await self._call(
            f"a note on merge request !{iid} of {name}", post, verb="create", retry=False
        )

    async def add_issue_note(self, project: str, iid: int, body: str) -> None:
        """Comment ``body`` on issue ``#iid`` of ``project`` (not retried, like every note)."""

        def post() -> None:
            issue = self._project(project).issues.get(iid, lazy=True)
            issue.notes.create({"body": body})

        await self._call(f"a note on issue #{iid} of {project}", post, verb="create", retry=False)

    async def add_labels(
        self, project: str, *, iid: int, labels: list[str], merge_request: bool = False
    ) -> None:
        """Add ``labels`` to issue ``#iid`` (or merge request ``!iid``) of ``project``; GitLab
        creates a label it does not know. Safe to repeat, so retried like a read."""
        data = {"add_labels": ",".join(labels)}

        def put() -> None:
            found = self._project(project)
            manager = found.mergerequests if merge_request else found.issues
            manager.update(iid, data)

        what = (
            f"the labels of {'merge request !' if merge_request else 'issue #'}{iid} of {project}"
        )
        await self._call(what, put, verb="update")

    async def cancel_auto_merge(self, iid: int) -> None:
        """Stop ``!iid`` of the GitOps repo merging when its pipeline succeeds; nothing when
        it is not set to (GitLab's 406), or merged or closed already."""
        name = self.gitops_project

        def post() -> None:
            mr = self._project(name).mergerequests.get(iid, lazy=True)
            try:
                mr.cancel_merge_when_pipeline_succeeds()
            except gitlab.GitlabError as exc:
                if exc.response_code in _REFUSED_MERGE:
                    return  # not set to merge (any more): nothing to cancel
                raise

        await self._call(f"the automatic merge of !{iid} of {name}", post, verb="cancel")

    async def _discard(self, branch: str, *, made_by: str | None, merge_requests: bool) -> None:
        """Best effort after a failed change: close the open MRs of ``branch`` (when a lost
        answer may have opened one) and delete it. With ``made_by``, only a branch whose head
        commit has that message is deleted (it may be somebody else's). Never raises: a failure
        is logged with the branch's name, for someone to delete it by hand."""
        name = self.gitops_project

        def open_merge_requests() -> list[int]:
            found = self._project(name).mergerequests.list(
                state="opened", source_branch=branch, get_all=True
            )
            return [int(mr.attributes["iid"]) for mr in found]

        def head_message() -> str:
            found = self._project(name).branches.get(branch)
            return str((found.attributes.get("commit") or {}).get("message", ""))

        def delete() -> None:
            self._project(name).branches.delete(branch)

        try:
            if merge_requests:
                what = f"the merge requests of branch {branch} of {name}"
                for iid in await self._call(what, open_merge_requests):
                    await self.close_merge_request(iid)
            if made_by is not None:
                message = await self._call(f"branch {branch} of {name}", head_message)
                if message.strip() != made_by.strip():
                    log.warning(
                        "branch left alone after a failed change: its head is not ours",
                        branch=branch,
                        project=name,
                    )
                    return
            await self._call(f"branch {branch} of {name}", delete, verb="delete")
        except NotFoundInGitLab:
            return  # no branch: nothing to undo
        except (GitLabUnavailable, GitLabRefused) as exc:
            log.warning(
                "could not delete the branch of a failed change; delete it by hand",
                branch=branch,
                project=name,
                error=str(exc),
            )

    # ------------------------------------------------------------------ plumbing

    def _project(self, name: str) -> Project:
        # lazy: no request, just the URL prefix for the managers.
        return self._client.projects.get(name, lazy=True)

    async def _default_branch_of(self, name: str) -> str:
        return (await self._project_info(name)).default_branch

    async def _project_info(self, name: str) -> _ProjectInfo:
        """The project's default branch and web URL (asked once, then remembered).

        Callers that ask while it is being asked wait for that one answer: the inventory's
        refresh reads thousands of files of one project at once, which would otherwise each
        ask (and, with GitLab down, each retry) the same question.
        """
        cached = self._projects.get(name)
        if cached is not None:
            return cached

        def get() -> _ProjectInfo:
            found = self._client.projects.get(name).attributes
            default = str(found.get("default_branch") or "main")
            web_url = str(found.get("web_url") or f"{self.url.rstrip('/')}/{name}")
            return _ProjectInfo(default_branch=default, web_url=web_url)

        asking = self._asking.get(name)
        if asking is None:
            # A task of its own: a caller that is cancelled does not cancel the others' answer.
            asking = asyncio.ensure_future(self._call(f"project {name}", get))
            self._asking[name] = asking

            def remember(done: asyncio.Future[_ProjectInfo]) -> None:
                self._asking.pop(name, None)
                if not done.cancelled() and done.exception() is None:
                    self._projects[name] = done.result()

            asking.add_done_callback(remember)
        return await asyncio.shield(asking)

    async def _merge_request_of(
        self, commit: ProjectCommit, *, branch: str
    ) -> MergeRequestRef | None:
        def get() -> list[dict[str, Any]]:
            return list(commit.merge_requests())

        sha = str(commit.attributes.get("id", ""))
        found = await self._call(f"the merge requests of commit {sha[:8]}", get)
        merged = [m for m in found if m.get("state") == "merged"]
        into_branch = [m for m in merged if m.get("target_branch") == branch]
        chosen = into_branch or merged
        return _merge_request(chosen[0]) if chosen else None

    async def _call(
        self, what: str, request: Callable[[], T], *, verb: str = "read", retry: bool = True
    ) -> T:
        """Run ``request`` in a thread under the bound, retrying transient failures.

        ``what`` names what is read or written and ``verb`` what is done to it, for the one-line
        reasons (``GitLab failed to read tag v1 of shop/orders``). ``retry=False`` is for writes
        a repeat could double: one try, whatever the answer."""
        tries = self._tries if retry else 1
        delay = self._first_delay
        for attempt in range(1, tries + 1):
            try:
                async with self._limit:
                    return await self._in_thread(request)
            except gitlab.GitlabError as exc:
                status = exc.response_code
                if status == 404:
                    raise NotFoundInGitLab(f"{what} not found in GitLab") from exc
                if status not in _TRANSIENT_STATUS:
                    detail = str(status or type(exc).__name__)
                    if verb != "read" and _message(exc):
                        detail = f"{detail}: {_message(exc)}"
                    raise GitLabRefused(f"GitLab refused to {verb} {what} ({detail})") from exc
                if not retry:
                    raise GitLabUnavailable(
                        f"GitLab failed to {verb} {what}: {status} (not retried)"
                    ) from exc
                if attempt == tries:
                    raise GitLabUnavailable(
                        f"GitLab failed to {verb} {what}: {status} after {attempt} tries"
                    ) from exc
            except requests.RequestException as exc:
                doing = _GERUNDS.get(verb, f"{verb.removesuffix('e')}ing")
                if not retry:
                    raise GitLabUnavailable(
                        f"GitLab at {self.url} unreachable {doing} {what}: {type(exc).__name__}"
                        " (not retried)"
                    ) from exc
                if attempt == tries:
                    raise GitLabUnavailable(
                        f"GitLab at {self.url} unreachable {doing} {what}: {type(exc).__name__}"
                        f" after {attempt} tries"
                    ) from exc
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _in_thread(self, request: Callable[[], T]) -> T:
        # What ``asyncio.to_thread`` does, on our own threads.
        call = functools.partial(contextvars.copy_context().run, request)
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)


def _when(value: object) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None


def _merge_request(data: Mapping[str, Any]) -> MergeRequestRef:
    author = data.get("author") or {}
    return MergeRequestRef(
        iid=int(data["iid"]),
        title=str(data.get("title", "")),
        web_url=str(data.get("web_url", "")),
        author_name=str(author.get("name", "")),
        author_username=str(author.get("username", "")),
    )


def _change(data: Mapping[str, Any], mr: MergeRequestRef | None) -> Change:
    committed = _when(data.get("committed_date")) or _when(data.get("created_at"))
    if committed is None:
        raise GitLabUnavailable(f"GitLab sent commit {data.get('id')} without a date")
    return Change(
        sha=str(data["id"]),
        title=str(data.get("title", "")),
        author_name=str(data.get("author_name", "")),
        author_email=str(data.get("author_email", "")),
        committed_at=committed,
        web_url=str(data.get("web_url", "")),
        merge_request=mr,
    )


def _merge_request_info(data: Mapping[str, Any]) -> MergeRequestInfo:
    pipeline = data.get("head_pipeline") or data.get("pipeline") or {}
    status = pipeline.get("status")
    merge_commit = data.get("merge_commit_sha")
    return MergeRequestInfo(
        iid=int(data["iid"]),
        web_url=str(data.get("web_url", "")),
        state=str(data.get("state", "")),
        head_sha=str(data.get("sha") or (data.get("diff_refs") or {}).get("head_sha") or ""),
        source_branch=str(data.get("source_branch", "")),
        merge_commit_sha=str(merge_commit) if merge_commit else None,
        has_conflicts=bool(data.get("has_conflicts")),
        detailed_merge_status=str(data.get("detailed_merge_status") or "unknown"),
        merge_when_pipeline_succeeds=bool(data.get("merge_when_pipeline_succeeds")),
        pipeline_status=str(status) if status else None,
        pipeline_id=int(pipeline["id"]) if pipeline.get("id") else None,
        pipeline_url=str(pipeline["web_url"]) if pipeline.get("web_url") else None,
    )


def _commit_summary(data: Mapping[str, Any], *, project_url: str) -> CommitSummary:
    sha = str(data["id"])
    return CommitSummary(
        sha=sha,
        title=str(data.get("title", "")),
        message=str(data.get("message", "")),
        author_name=str(data.get("author_name", "")),
        web_url=str(data.get("web_url") or f"{project_url}/-/commit/{sha}"),
        committed_at=_when(data.get("committed_date")) or _when(data.get("created_at")),
    )


def _maybe_applied(exc: Exception) -> bool:
    """Whether a failed write may still have taken effect: anything but a definite 4xx answer
    (a 5xx, a timeout, a lost connection)."""
    cause = exc.__cause__
    if isinstance(cause, gitlab.GitlabError) and cause.response_code is not None:
        return cause.response_code >= 500
    return True


def _message(exc: gitlab.GitlabError) -> str:
    """GitLab's own reason for a refusal, on one line and short."""
    raw = exc.error_message
    if isinstance(raw, list | tuple) and raw:
        raw = "; ".join(str(item) for item in raw)
    text = " ".join(str(raw or "").split())
    return text if len(text) <= 200 else f"{text[:199]}…"


def _tag(data: Mapping[str, Any]) -> Tag:
    commit = data.get("commit") or {}
    return Tag(
        name=str(data["name"]),
        sha=str(commit.get("id", "")),
        created_at=_when(data.get("created_at")) or _when(commit.get("committed_date")),
    )
