"""The ports releases need: the GitOps repo, the store, people, locks and the views."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from bot.domain.errors import CommandError, PitcrewError
from bot.domain.locks import Lock
from bot.domain.release_flow import NoteKind
from bot.domain.releases import (
    AutopilotCause,
    Changelog,
    PipelineLink,
    Release,
    ReleaseKind,
    RollbackOffer,
)
from bot.services.ports import Rendered

Reply = Callable[[Rendered], Awaitable[None]]


class Refusal(PitcrewError):
    """The release cannot go ahead as asked; the message says why, in one line."""


@dataclass(frozen=True, kw_only=True)
class ManifestFile:
    text: str
    revision: str
    """The last commit that changed it: an edit based on an older one is refused by GitLab."""


@dataclass(frozen=True, kw_only=True)
class FileEdit:
    """One file of a merge request's commit."""

    path: str
    action: Literal["create", "update", "delete"]
    content: str | None = None
    """The new text (``create``, ``update``)."""
    revision: str | None = None
    """The last commit that changed it when it was read (``update``, ``delete``): GitLab refuses
    the commit if the file changed since."""


@dataclass(frozen=True, kw_only=True)
class MergeRequestState:
    iid: int
    url: str
    state: str
    """``opened``, ``closed``, ``merged`` or ``locked``."""
    head_sha: str
    mergeable: bool
    """No conflict, not a draft: GitLab could merge it once its checks pass."""
    auto_merge: bool
    """Set to merge when its pipeline succeeds."""
    pipeline: PipelineLink | None = None
    """Its head pipeline, if it has one."""

    @property
    def pipeline_status(self) -> str | None:
        return self.pipeline.status if self.pipeline else None


class ReleaseRepository(Protocol):
    """The GitOps repo and the apps' repos, as releases need them.

    Errors are ``Unavailable`` (GitLab did not answer: try again later) or ``Refused`` (GitLab
    said no: the token or the request is wrong)."""

    async def manifest(self, path: str) -> ManifestFile | None: ...

    async def manifest_history(self, path: str) -> list[str]:
        """The file's text at each commit that changed it, newest first (a few dozen at most)."""
        ...

    async def tag_for(self, project: str, version: str) -> str | None: ...

    async def changelog(self, project: str, *, from_tag: str, to_tag: str) -> Changelog: ...

    async def open_change(
        self,
        *,
        branch: str,
        edits: Sequence[FileEdit],
        message: str,
        title: str,
        description: str,
    ) -> MergeRequestState:
        """One commit of ``edits`` on a new ``branch``, and its MR; nothing is left behind when
        either cannot be made."""
        ...

    async def merge_request_of_branch(self, branch: str) -> MergeRequestState | None:
        """The newest MR from ``branch``: finds the one a lost answer opened."""
        ...

    async def merge_request(self, iid: int) -> MergeRequestState: ...

    async def merge(self, iid: int, *, sha: str) -> MergeRequestState: ...

    async def cancel_merge(self, iid: int) -> None:
        """Stop a merge asked for "when the pipeline succeeds" (nothing if none is set)."""
        ...

    async def close(self, iid: int) -> None: ...

    async def note(self, iid: int, body: str) -> None: ...

    async def merge_requests_of_commit(self, sha: str) -> list[int]: ...

    async def pipeline_of_commit(self, sha: str) -> PipelineLink | None:
        """The newest pipeline the GitOps repo ran for commit ``sha``, if any."""
        ...


class ManifestValidator(Protocol):
    def problems(self, text: str) -> list[str]:
        """Schema problems of the Kubernetes resources in ``text``, one line each."""
        ...


class ReleasePeople(Protocol):
    async def members(self, named: Sequence[str]) -> frozenset[str]:
        """User ids of the people named: user ids as they are, group handles resolved."""
        ...

    async def display_name(self, user: str) -> str: ...


class LockReader(Protocol):
    async def lock_of(self, env: str) -> Lock | None: ...


@dataclass(frozen=True, kw_only=True)
class PendingRequest:
    """A release waiting for its requester to confirm "Deploy anyway"."""

    id: str
    kind: ReleaseKind
    app: str
    env: str
    version: str | None
    source_env: str | None
    requester: str
    autopilot: AutopilotCause | None = None
    """Asked for by the autopilot: it opens whatever the lock (the release is held there, as
    any release is), nobody is asked anything, and only the autopilot's own older release is
    superseded."""


class ReleaseStore(Protocol):
    async def create(self, release: Release, *, replacing: str | None) -> str | None:
        """Store a new release as the latest of its app and env, if the latest there is still
        ``replacing`` (``None``: none yet). Else store nothing and return the latest's id."""
        ...

    async def latest(self, app: str, env: str) -> str | None:
        """The newest release of ``app`` in ``env``: the one a rollout there belongs to."""
        ...

    async def restore_latest(self, release: Release) -> None:
        """``release`` never opened: the one it would have replaced is the latest again."""
        ...

    async def load(self, release_id: str) -> tuple[Release | None, int]: ...

    async def save(self, release: Release, *, expected: int) -> bool:
        """Compare-and-set; keeps the indexes (by MR, branch, merge commit)."""
        ...

    async def by_mr(self, iid: int) -> str | None: ...

    async def by_branch(self, branch: str) -> str | None: ...

    async def by_merge_sha(self, sha: str) -> str | None: ...

    async def by_rollout(self, rollout_id: str) -> str | None:
        """The release that follows this rollout (``Release.rollout_id``)."""
        ...

    async def of_requester(self, user: str) -> list[str]:
        """The latest releases ``user`` asked for, newest first (a few dozen at most)."""
        ...

    async def open_ids(self) -> list[str]:
        """Releases that have not reached an end: the sweep's work."""
        ...

    async def ended_ids(self, *, since: float) -> list[str]:
        """Releases that reached an end since ``since`` (Unix seconds), in the order they did:
        the last week's at most."""
        ...

    async def put_request(self, request: PendingRequest, *, ttl: float) -> None: ...

    async def get_request(self, request_id: str) -> PendingRequest | None: ...

    async def take_request(self, request_id: str) -> PendingRequest | None: ...

    async def offer(self, offer: RollbackOffer, *, key: str, ttl: float) -> RollbackOffer:
        """Keep ``offer`` for a Roll back button, unless one is kept for ``key`` already: then
        that one (the button of a reply updated in place keeps its id)."""
        ...

    async def get_offer(self, offer_id: str) -> RollbackOffer | None: ...


class ReleaseViews(Protocol):
    def message(self, release: Release, *, approvers: str) -> Rendered: ...

    def note(self, release: Release, kind: NoteKind, *, by: str | None = None) -> Rendered: ...

    def working(self, what: str) -> Rendered: ...

    def opened(self, release: Release, *, channel: str, approvers: str) -> Rendered: ...

    def refused(self, problem: str) -> Rendered:
        """A release that cannot go ahead; ``problem`` is plain text, shown as typed."""
        ...

    def only_requester(self, requester: str) -> Rendered: ...

    def blocked(self, current: Release, *, can_reject: bool) -> Rendered:
        """A ``/deploy`` waiting on a release still before its merge: which, and a Reject
        button for those allowed to reject it."""
        ...

    def lock_prompt(self, lock: Lock, *, request_id: str, what: str, now: datetime) -> Rendered: ...

    def help(self, usage: str) -> Rendered: ...

    def error(self, error: CommandError) -> Rendered: ...

    def click_answer(self, text: str) -> Rendered: ...
