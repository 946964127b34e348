"""The one place a grant changes: apply an event, commit it, then say and do what it says.

The release engine's pattern for ``access_flow``: load → ``apply`` (pure) → compare-and-set →
thread replies and the message → effects. The commit comes first, so of two replicas racing on
the same click, webhook or deadline exactly one goes on: the revoke MR is opened once, the
holder told once. Messages are keyed (``access:<id>``, ``access:<id>:<kind>``) and versioned by
the record's version, so a replay updates, never duplicates.

The merge requests go through the releases' GitOps port (``ReleaseRepository``): opening one
commit of file edits, merging at the reviewed head when the pipeline passes, closing with a note.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from bot import logs, metrics
from bot.domain.access import Grant, revoke_description
from bot.domain.access_flow import (
    GrantEvent,
    GrantSay,
    GrantStep,
    MergeRevoke,
    OpenRevoke,
    RevokeMerged,
    RevokeMergeFailed,
    RevokeOpened,
    RevokeOpenFailed,
    RevokeUnneeded,
    TellHolder,
    apply,
)
from bot.domain.catalog import Catalog
from bot.domain.errors import PitcrewError, Unavailable
from bot.domain.release_flow import Audit, CloseMergeRequest, Merge, MergeFailed
from bot.domain.releases import approvers_label
from bot.services.access.ports import AccessPeople, AccessViews, GrantStore
from bot.services.catalog import CatalogHolder
from bot.services.ports import AuditEntry, AuditLog, Outbox, OutgoingMessage
from bot.services.releases.ports import FileEdit, ReleaseRepository

log = logs.get(__name__)

MAX_RACES = 20


@dataclass(frozen=True, kw_only=True)
class Committed:
    step: GrantStep
    version: int

    @property
    def grant(self) -> Grant:
        return self.step.grant


class AccessEngine:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        store: GrantStore,
        repo: ReleaseRepository,
        outbox: Outbox,
        people: AccessPeople,
        audit: AuditLog,
        views: AccessViews,
        clock: Callable[[], datetime],
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.repo = repo
        self.outbox = outbox
        self.people = people
        self.audit = audit
        self.views = views
        self.clock = clock

    # ------------------------------------------------------------------ committing

    async def drive(self, grant_id: str, event: GrantEvent) -> Grant | None:
        """Apply ``event`` to the stored grant, then tell and carry out what it asks for.
        ``None`` when it changed nothing (a duplicate, a stale or foreign event)."""
        for _ in range(MAX_RACES):
            grant, version = await self.store.load(grant_id)
            if grant is None:
                return None
            step = apply(grant, event)
            if step is None:
                return None
            committed = await self.save(step, previous=grant, expected=version)
            if committed is not None:
                await self.follow_through(committed)
                return committed.grant
        log.warning("grant kept changing; event dropped", grant=grant_id, what=type(event).__name__)
        return None

    async def save(self, step: GrantStep, *, previous: Grant, expected: int) -> Committed | None:
        if not await self.store.save(step.grant, expected=expected):
            return None
        if previous.state != step.grant.state:
            metrics.ACCESS_GRANTS.labels(step.grant.env, step.grant.state).inc()
        return Committed(step=step, version=expected + 1)

    async def follow_through(self, committed: Committed) -> None:
        grant, version = committed.grant, committed.version
        for said in committed.step.says:
            await self.say(grant, version, said)
        if grant.mr_iid is not None:  # shown from its MR on, never before
            await self.show(grant, version)
        for effect in committed.step.effects:
            if isinstance(effect, Merge):
                await self.ask_merge(grant, revoke=False)
            elif isinstance(effect, MergeRevoke):
                await self.ask_merge(grant, revoke=True)
            elif isinstance(effect, CloseMergeRequest):
                await self._close(grant, note=effect.note)
            elif isinstance(effect, OpenRevoke):
                await self.open_revoke(grant.id)
            elif isinstance(effect, TellHolder):
                await self._tell_holder(grant, version)
            elif isinstance(effect, Audit):
                await self.record("pitcrew", effect.action, grant.env, grant.title, effect.detail)

    # ------------------------------------------------------------------ GitLab

    async def ask_merge(self, grant: Grant, *, revoke: bool) -> None:
        """Ask GitLab to merge (when the pipeline passes) at the head Pitcrew knows. A refusal
        ends that MR's hope; GitLab not answering leaves it, and the sweep asks again."""
        iid, sha = (
            (grant.revoke_iid, grant.revoke_head) if revoke else (grant.mr_iid, grant.head_sha)
        )
        if iid is None or sha is None:
            return
        try:
            await self.repo.merge(iid, sha=sha)
        except Unavailable as exc:
            log.warning("merge not asked: GitLab did not answer", grant=grant.id, error=str(exc))
        except PitcrewError as exc:
            reason = f"GitLab refused to merge !{iid}: {exc}"
            await self.drive(
                grant.id, RevokeMergeFailed(reason=reason) if revoke else MergeFailed(reason=reason)
            )

    async def open_revoke(self, grant_id: str) -> None:
        """Open the MR that deletes the grant's file: once, whatever the retries. A second
        attempt (after a lost answer or a crash) finds the first one's MR by its branch; a file
        already gone from git needs none."""
        grant, _ = await self.store.load(grant_id)
        if grant is None or grant.state != "revoking" or grant.revoke_iid is not None:
            return
        branch = grant.revoke_branch_name
        try:
            found = await self.repo.merge_request_of_branch(branch)
            if found is None or found.state == "closed":
                current = await self.repo.manifest(grant.path)
                if current is None:
                    await self.drive(grant_id, RevokeUnneeded(at=self.clock()))
                    return
                by = await self.people.display_name(grant.revoked_by) if grant.revoked_by else None
                found = await self.repo.open_change(
                    branch=branch,
                    edits=(FileEdit(path=grant.path, action="delete", revision=current.revision),),
                    message=f"{grant.revoke_title}\n\nThrough Pitcrew (access {grant.id}).",
                    title=grant.revoke_title,
                    description=revoke_description(grant, by_name=by),
                )
        except PitcrewError as exc:
            await self.drive(grant_id, RevokeOpenFailed(reason=f"GitLab: {exc}", at=self.clock()))
            return
        opened = await self.drive(
            grant_id,
            RevokeOpened(
                mr_iid=found.iid, mr_url=found.url, branch=branch, head_sha=found.head_sha
            ),
        )
        if found.state == "merged" and opened is not None:
            await self.drive(grant_id, RevokeMerged(at=self.clock()))

    async def _close(self, grant: Grant, *, note: str | None) -> None:
        if grant.mr_iid is None:
            return
        await self.quietly(self.repo.close(grant.mr_iid))
        if note:
            await self.quietly(self.repo.note(grant.mr_iid, note))

    async def quietly(self, call: Awaitable[None]) -> None:
        """GitLab bookkeeping (a note, closing an MR) that must not undo what was decided."""
        try:
            await call
        except PitcrewError as exc:
            log.warning("GitLab bookkeeping failed", error=str(exc))

    # ------------------------------------------------------------------ telling

    async def show(self, grant: Grant, version: int) -> None:
        catalog = self.catalog.current
        text, blocks = self.views.message(
            grant, approvers=self.approvers(catalog, grant), now=self.clock()
        )
        for index, channel in enumerate(self.channels(catalog, grant)):
            key = f"access:{grant.id}" if index == 0 else f"access:{grant.id}@{channel}"
            await self.outbox.send(
                OutgoingMessage(key=key, channel=channel, text=text, blocks=blocks),
                version=version,
            )

    async def say(self, grant: Grant, version: int, said: GrantSay) -> None:
        catalog = self.catalog.current
        text, blocks = self.views.note(grant, said.kind, by=said.by)
        await self.outbox.send(
            OutgoingMessage(
                key=f"access:{grant.id}:{said.kind}",
                channel=self.channels(catalog, grant)[0],
                text=text,
                blocks=blocks,
                thread_key=f"access:{grant.id}",
                broadcast=said.broadcast,
            ),
            version=version,
        )

    async def _tell_holder(self, grant: Grant, version: int) -> None:
        text, blocks = self.views.ended(grant)
        await self.outbox.send(
            OutgoingMessage(
                key=f"access:{grant.id}:ended", channel=grant.requester, text=text, blocks=blocks
            ),
            version=version,
        )

    @staticmethod
    def named_approvers(catalog: Catalog, grant: Grant) -> tuple[str, ...]:
        if grant.app not in catalog.app_names or grant.env not in catalog.env_names:
            return ()
        return catalog.approvers_for(grant.app, grant.env)

    def approvers(self, catalog: Catalog, grant: Grant) -> str:
        named = self.named_approvers(catalog, grant)
        return approvers_label(named) if named else "nobody"

    @staticmethod
    def channels(catalog: Catalog, grant: Grant) -> tuple[str, ...]:
        if grant.app in catalog.app_names and grant.env in catalog.env_names:
            return catalog.release_channels(grant.app, grant.env)
        if grant.team in catalog.team_names:
            return (catalog.team(grant.team).channel,)
        return ("#general",)

    async def is_approver(self, grant: Grant, user: str) -> bool:
        return user in await self.people.members(self.named_approvers(self.catalog.current, grant))

    # ------------------------------------------------------------------ bookkeeping

    async def record(
        self,
        actor: str,
        action: str,
        env: str,
        target: str,
        detail: str = "",
        *,
        origin: str = "",
    ) -> None:
        await self.audit.record(
            AuditEntry(
                at=self.clock().timestamp(),
                actor=actor,
                action=action,
                env=env,
                target=target,
                detail=detail[:300],
                origin=origin,
            )
        )
