"""The ports break-glass access needs beyond the releases' (the GitOps repo, people, the outbox)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from bot.domain.access import Grant
from bot.domain.access_flow import GrantNote
from bot.domain.errors import CommandError
from bot.services.ports import Rendered


class GrantStore(Protocol):
    async def create(self, grant: Grant) -> str | None:
        """Store ``grant`` as its requester's grant of its app and env, unless one is held
        there already: then store nothing and return that one's id."""
        ...

    async def current(self, *, app: str, env: str, requester: str) -> str | None:
        """The requester's grant of ``app`` in ``env`` whose file is (or may be) in git."""
        ...

    async def let_go(self, *, app: str, env: str, requester: str, grant_id: str) -> None:
        """The place is no longer ``grant_id``'s (it ended, or its record is gone); a grant
        that ends lets go of it when saved, this is for what a crash left behind."""
        ...

    async def load(self, grant_id: str) -> tuple[Grant | None, int]: ...

    async def save(self, grant: Grant, *, expected: int) -> bool:
        """Compare-and-set; keeps the indexes (by MR, by branch, open, current)."""
        ...

    async def by_mr(self, iid: int) -> str | None:
        """The grant whose grant MR, or revoke MR, this is."""
        ...

    async def by_branch(self, branch: str) -> str | None: ...

    async def open_ids(self) -> list[str]:
        """Grants the sweep still has work on."""
        ...


class AccessPeople(Protocol):
    async def members(self, named: Sequence[str]) -> frozenset[str]: ...

    async def display_name(self, user: str) -> str: ...

    async def email(self, user: str) -> str | None:
        """The person's email in Slack (``users.info``; needs ``users:read.email``)."""
        ...


class BindingReader(Protocol):
    async def present(self, *, env: str, namespace: str, name: str) -> bool:
        """Whether the RoleBinding exists in ``env``'s cluster now (a GET, read-only).
        ``Unavailable`` when the cluster cannot say."""
        ...


class AccessViews(Protocol):
    def message(self, grant: Grant, *, approvers: str, now: datetime) -> Rendered: ...

    def note(self, grant: Grant, kind: GrantNote, *, by: str | None = None) -> Rendered: ...

    def ended(self, grant: Grant) -> Rendered:
        """The direct message to the holder when their access has ended."""
        ...

    def listing(self, grants: Sequence[Grant], *, now: datetime) -> Rendered: ...

    def working(self, what: str) -> Rendered: ...

    def opened(self, grant: Grant, *, channel: str, approvers: str) -> Rendered: ...

    def already(self, grant: Grant, *, now: datetime) -> Rendered: ...

    def refused(self, problem: str) -> Rendered: ...

    def help(self) -> Rendered: ...

    def error(self, error: CommandError) -> Rendered: ...

    def click_answer(self, text: str) -> Rendered: ...
