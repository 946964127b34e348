"""Reads of the GitOps repo and the apps' repos, over python-gitlab.

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
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import gitlab
import requests
from gitlab.v4.objects import Project, ProjectCommit

from bot.adapters.gitlab.errors import GitLabUnavailable, NotFoundInGitLab

__all__ = [
    "Change",
    "FileAtRef",
    "GitLabRepository",
    "MergeRequestRef",
    "Tag",
]

T = TypeVar("T")

TRIES = 3
FIRST_DELAY = 0.1  # seconds; doubles on each retry
_TRANSIENT_STATUS = frozenset({429}) | frozenset(range(500, 600))


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
class Tag:
    """A tag of an app's repo; ``created_at``: the tag's date if annotated, else its commit's."""

    name: str
    sha: str
    created_at: datetime | None


class GitLabRepository:
    """Read-only access to the GitOps repo (and app repos by path) with retries and a bound."""

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
        self._default_branches: dict[str, str] = {}

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

    async def tags(self, project: str, *, search: str | None = None) -> list[Tag]:
        """Tags of ``project``, newest first; ``search`` as GitLab takes it (``^v1.4`` etc.)."""

        def get() -> list[Tag]:
            options: dict[str, Any] = {} if search is None else {"search": search}
            found = self._project(project).tags.list(get_all=True, **options)
            return [_tag(t.attributes) for t in found]

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

    # ------------------------------------------------------------------ plumbing

    def _project(self, name: str) -> Project:
        # lazy: no request, just the URL prefix for the managers.
        return self._client.projects.get(name, lazy=True)

    async def _default_branch_of(self, name: str) -> str:
        cached = self._default_branches.get(name)
        if cached is not None:
            return cached

        def get() -> str:
            return str(self._client.projects.get(name).default_branch or "main")

        branch = await self._call(f"project {name}", get)
        self._default_branches[name] = branch
        return branch

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

    async def _call(self, what: str, request: Callable[[], T]) -> T:
        """Run ``request`` in a thread under the bound, retrying transient failures.

        ``what`` names what is read, for the one-line reasons (``tag v1 of shop/orders``)."""
        delay = self._first_delay
        for attempt in range(1, self._tries + 1):
            try:
                async with self._limit:
                    return await self._in_thread(request)
            except gitlab.GitlabError as exc:
                status = exc.response_code
                if status == 404:
                    raise NotFoundInGitLab(f"{what} not found in GitLab") from exc
                if status not in _TRANSIENT_STATUS:
                    raise GitLabUnavailable(
                        f"GitLab refused to read {what} ({status or type(exc).__name__})"
                    ) from exc
                if attempt == self._tries:
                    raise GitLabUnavailable(
                        f"GitLab failed to read {what}: {status} after {attempt} tries"
                    ) from exc
            except requests.RequestException as exc:
                if attempt == self._tries:
                    raise GitLabUnavailable(
                        f"GitLab at {self.url} unreachable reading {what}: {type(exc).__name__}"
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


def _tag(data: Mapping[str, Any]) -> Tag:
    commit = data.get("commit") or {}
    return Tag(
        name=str(data["name"]),
        sha=str(commit.get("id", "")),
        created_at=_when(data.get("created_at")) or _when(commit.get("committed_date")),
    )
