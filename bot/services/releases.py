"""Releases: ``/deploy``, promotions and ``/rollback`` as merge requests on the GitOps repo.

A release is one record in the store, replaced by compare-and-set, and one Slack message (in the
team's channel, mirrored in the env's) rendered from it, with a thread that tells its story.
What makes it safe to run with several replicas and to restart at any moment:

- Every move of a release (approved, merging, merged, …) is committed by compare-and-set
  before anything is said or done about it, so of two replicas racing on the same click or
  webhook exactly one goes on: a merge is asked for once, a thread reply is posted once.
- Messages are keyed (``release:<id>``, ``release:<id>:<step>``) and versioned by the record's
  version: a replay updates, never duplicates, and an older state never overwrites a newer one.
- Nothing is written to GitLab before every check passed (the tag exists, the version differs,
  the edited manifest passes its schema and the ground rules): a refused release leaves no
  branch. Opening the MR is one commit that creates the branch, then the MR; if the MR cannot be
  opened the branch is deleted.
- Approvals are decided at each click from the stored record (``decide_approval``), and the MR
  is re-read (still open, same head SHA, mergeable) and the env's lock re-checked before an
  approval counts. Button values are release ids; nothing else in a click is trusted.
- ``auto`` releases are merged by the bot when their MR pipeline passes, after checking the lock
  at that moment: a lock set meanwhile holds the merge until the env is unlocked.
- A sweep (on one replica, under a lease) is the backstop for lost webhooks and crashes: it
  expires unapproved releases, merges ``auto`` releases whose pipeline passed or whose lock
  lifted, and re-asks for a merge a crash interrupted.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, TypeVar

from bot import logs, metrics
from bot.domain.catalog import App, Catalog, Environment
from bot.domain.errors import CommandError, PitcrewError
from bot.domain.ground_rules import check_ground_rules
from bot.domain.locks import Lock
from bot.domain.manifests import ManifestError, read_version, set_version
from bot.domain.releases import (
    AlreadyApproved,
    AlreadyComplete,
    ApprovalNotRequired,
    Approved,
    Changelog,
    DeployRequest,
    IllegalTransition,
    LockOverride,
    NotAnApprover,
    PipelineLink,
    PromoteRequest,
    Release,
    ReleaseEvent,
    ReleaseHelp,
    ReleaseKind,
    RollbackRequest,
    SelfApprovalForbidden,
    approval_note,
    approvers_label,
    decide_approval,
    merge_request_description,
    parse_deploy,
    parse_rollback,
)
from bot.domain.rollouts import Happening, Rollout
from bot.services.cancellation import reraise_if_cancelling
from bot.services.catalog import CatalogHolder
from bot.services.ports import AuditEntry, AuditLog, Outbox, OutgoingMessage, Rendered

log = logs.get(__name__)
T = TypeVar("T")

MAX_RACES = 20
SWEEP_EVERY = 15.0
REQUEST_TTL = 900.0
"""Seconds a "Deploy anyway" button stays valid."""
MERGE_RETRY_AFTER = timedelta(minutes=1)
INTERRUPTED = timedelta(minutes=10)
"""A release still ``requested`` after this was interrupted (opening an MR takes seconds)."""
CHANGELOG_LINES = 20
_FINISHED = ("success", "failed", "canceled")

Reply = Callable[[Rendered], Awaitable[None]]
NoteKind = Literal[
    "override",
    "approved",
    "mr_pipeline",
    "held",
    "merging",
    "merged",
    "deploy_pipeline",
    "rollout",
    "healthy",
    "failed",
    "rejected",
    "expired",
]


class Refusal(PitcrewError):
    """The release cannot go ahead as asked; the message says why, in one line."""


# --------------------------------------------------------------------------------------------
# Ports


@dataclass(frozen=True, kw_only=True)
class ManifestFile:
    text: str
    revision: str
    """The last commit that changed it: an edit based on an older one is refused by GitLab."""


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
    """The GitOps repo and the apps' repos, as releases need them."""

    async def manifest(self, path: str) -> ManifestFile | None: ...

    async def manifest_history(self, path: str) -> list[str]:
        """The file's text at each commit that changed it, newest first (a few dozen at most)."""
        ...

    async def tag_for(self, project: str, version: str) -> str | None: ...

    async def changelog(self, project: str, *, from_tag: str, to_tag: str) -> Changelog: ...

    async def open_merge_request(
        self,
        *,
        branch: str,
        path: str,
        content: str,
        revision: str,
        message: str,
        title: str,
        description: str,
    ) -> MergeRequestState: ...

    async def merge_request(self, iid: int) -> MergeRequestState: ...

    async def merge(self, iid: int, *, sha: str) -> MergeRequestState: ...

    async def close(self, iid: int) -> None: ...

    async def note(self, iid: int, body: str) -> None: ...

    async def merge_requests_of_commit(self, sha: str) -> list[int]: ...


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


class ReleaseStore(Protocol):
    async def create(self, release: Release, *, claim_ttl: float) -> str | None:
        """Store a new release and claim its app and env; the id of the release already in
        flight there (nothing stored) when the claim is taken."""
        ...

    async def load(self, release_id: str) -> tuple[Release | None, int]: ...

    async def save(self, release: Release, *, expected: int) -> bool:
        """Compare-and-set; keeps the indexes (by MR, branch, merge commit, app and env)."""
        ...

    async def by_mr(self, iid: int) -> str | None: ...

    async def by_branch(self, branch: str) -> str | None: ...

    async def by_merge_sha(self, sha: str) -> str | None: ...

    async def following(self, app: str, env: str) -> str | None:
        """The last merged release of ``app`` in ``env``: the one a rollout belongs to."""
        ...

    async def open_ids(self) -> list[str]: ...

    async def put_request(self, request: PendingRequest, *, ttl: float) -> None: ...

    async def get_request(self, request_id: str) -> PendingRequest | None: ...

    async def take_request(self, request_id: str) -> PendingRequest | None: ...


class ReleaseViews(Protocol):
    def message(self, release: Release, *, approvers: str) -> Rendered: ...

    def note(self, release: Release, kind: NoteKind, *, by: str | None = None) -> Rendered: ...

    def working(self, what: str) -> Rendered: ...

    def opened(self, release: Release, *, channel: str, approvers: str) -> Rendered: ...

    def refused(self, problem: str) -> Rendered: ...

    def lock_prompt(self, lock: Lock, *, request_id: str, what: str, now: datetime) -> Rendered: ...

    def help(self, usage: str) -> Rendered: ...

    def error(self, error: CommandError) -> Rendered: ...

    def click_answer(self, text: str) -> Rendered: ...


# --------------------------------------------------------------------------------------------
# The service


@dataclass(frozen=True, kw_only=True)
class _Plan:
    kind: ReleaseKind
    app: App
    env: Environment
    path: str
    manifest: ManifestFile
    from_version: str | None
    to_version: str
    from_tag: str | None
    to_tag: str
    content: str


class ReleaseService:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        store: ReleaseStore,
        repo: ReleaseRepository,
        validator: ManifestValidator,
        outbox: Outbox,
        people: ReleasePeople,
        locks: LockReader,
        audit: AuditLog,
        views: ReleaseViews,
        watched_envs: frozenset[str] = frozenset(),
        expiry: timedelta = timedelta(hours=24),
        sweep_every: float = SWEEP_EVERY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._repo = repo
        self._validator = validator
        self._outbox = outbox
        self._people = people
        self._locks = locks
        self._audit = audit
        self._views = views
        self._watched = watched_envs
        self._expiry = expiry
        self._sweep_every = sweep_every
        self._clock = clock

    # ------------------------------------------------------------------ commands

    async def command(
        self, *, kind: ReleaseKind, user: str, text: str, reply: Reply, origin: str
    ) -> None:
        """``/deploy`` or ``/rollback``: check, then open the MR (or ask about the lock)."""
        catalog = self._catalog.current
        try:
            request = (
                parse_deploy(text, catalog=catalog)
                if kind == "deploy"
                else parse_rollback(text, catalog=catalog)
            )
        except CommandError as exc:
            await reply(self._views.error(exc))
            return
        if isinstance(request, ReleaseHelp):
            await reply(self._views.help(request.usage))
            return
        pending = _pending(request, requester=user)
        await reply(self._views.working(_asking(pending)))
        try:
            plan = await self._plan(pending)
        except Refusal as exc:
            metrics.RELEASES.labels(kind, "refused").inc()
            await self._record(user, f"{kind}-refused", pending.env, _asking(pending), str(exc))
            await reply(self._views.refused(str(exc)))
            return
        lock = await self._locks.lock_of(plan.env.name)
        if lock is not None:
            await self._store.put_request(pending, ttl=REQUEST_TTL)
            await self._record(user, f"{kind}-held-by-lock", plan.env.name, _asking(pending))
            await reply(
                self._views.lock_prompt(
                    lock, request_id=pending.id, what=_asking(pending), now=self._clock()
                )
            )
            return
        await self._open(plan, requester=user, override=None, reply=reply, origin=origin)

    async def deploy_anyway(self, *, request_id: str, user: str, reply: Reply, origin: str) -> None:
        """The requester confirmed a release to a locked env: the override is recorded."""
        pending = await self._store.get_request(request_id)
        if pending is None:
            await reply(
                self._views.refused(
                    "This confirmation has expired or was already used: run the command again."
                )
            )
            return
        if pending.requester != user:
            await reply(
                self._views.refused(f"Only <@{pending.requester}>, who asked, can confirm this.")
            )
            return
        if await self._store.take_request(request_id) is None:
            return  # a double click: the first one is opening the release
        await reply(self._views.working(_asking(pending)))
        try:
            plan = await self._plan(pending)
        except Refusal as exc:
            await reply(self._views.refused(str(exc)))
            return
        lock = await self._locks.lock_of(plan.env.name)
        override = (
            LockOverride(holder=lock.holder, reason=lock.reason, since=lock.since, by=user)
            if lock is not None
            else None
        )
        if override is not None:
            await self._record(
                user, "lock-override", plan.env.name, _asking(pending), f"lock by {override.holder}"
            )
        await self._open(plan, requester=user, override=override, reply=reply, origin=origin)

    async def _plan(self, request: PendingRequest) -> _Plan:
        catalog = self._catalog.current
        if request.app not in catalog.app_names or request.env not in catalog.env_names:
            raise Refusal(f"{request.app} or {request.env} is no longer in the catalog")
        app, env = catalog.app(request.app), catalog.environment(request.env)
        path = catalog.manifest_path(app, env)
        manifest = await self._read(path)
        if manifest is None:
            raise Refusal(
                f"{app.name} has no manifest for {env.name} in the GitOps repo (`{path}`):"
                " its first deploy there is a merge request by hand"
            )
        current = self._version_in(manifest.text, app=app, path=path)
        if request.source_env is not None:
            source_path = catalog.manifest_path(app, request.source_env)
            source = await self._read(source_path)
            if source is None:
                raise Refusal(
                    f"{app.name} does not run in {request.source_env}: nothing to promote"
                )
            target = self._version_in(source.text, app=app, path=source_path)
        elif request.version is not None:
            target = request.version
        else:
            target = await self._previous_version(path, app=app, current=current, env=env.name)
        if target == current:
            raise Refusal(f"{app.name} {target} is already what {env.name} runs (per git)")
        to_tag = await self._guard(self._repo.tag_for(app.source, target))
        if to_tag is None:
            raise Refusal(f"{app.source} has no tag {target} (nor v{target})")
        from_tag = None
        if current is not None:
            try:
                from_tag = await self._repo.tag_for(app.source, current)
            except PitcrewError:
                from_tag = None  # only the changelog needs it
        try:
            content = set_version(manifest.text, app=app, version=target)
        except ManifestError as exc:
            raise Refusal(f"`{path}` cannot be edited: {exc}") from exc
        try:
            problems = [*self._validator.problems(content), *check_ground_rules(content, app=app)]
        except ManifestError as exc:
            raise Refusal(f"`{path}` cannot be checked: {exc}") from exc
        if problems:
            shown = "; ".join(problems[:3]) + (
                f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            )
            raise Refusal(f"the edited `{path}` would break the rules: {shown}")
        return _Plan(
            kind=request.kind,
            app=app,
            env=env,
            path=path,
            manifest=manifest,
            from_version=current,
            to_version=target,
            from_tag=from_tag,
            to_tag=to_tag,
            content=content,
        )

    async def _read(self, path: str) -> ManifestFile | None:
        return await self._guard(self._repo.manifest(path))

    @staticmethod
    async def _guard(call: Awaitable[T]) -> T:
        try:
            return await call
        except Refusal:
            raise
        except PitcrewError as exc:
            raise Refusal(f"GitLab did not answer: {exc}") from exc

    @staticmethod
    def _version_in(text: str, *, app: App, path: str) -> str:
        try:
            return read_version(text, app=app).version
        except ManifestError as exc:
            raise Refusal(f"`{path}` cannot be read: {exc}") from exc

    async def _previous_version(self, path: str, *, app: App, current: str, env: str) -> str:
        for text in await self._guard(self._repo.manifest_history(path)):
            try:
                version = read_version(text, app=app).version
            except ManifestError:
                continue
            if version != current:
                return version
        raise Refusal(
            f"the history of `{path}` has no earlier version of {app.name} in {env}:"
            f" name one with `/rollback {app.name} {env} to <version>`"
        )

    async def _open(
        self,
        plan: _Plan,
        *,
        requester: str,
        override: LockOverride | None,
        reply: Reply,
        origin: str,
    ) -> None:
        catalog = self._catalog.current
        app, env = plan.app, plan.env
        changelog = await self._changelog(plan)
        release = Release(
            id=_new_id(),
            kind=plan.kind,
            app=app.name,
            team=app.team,
            env=env.name,
            policy=env.policy,
            approvals_needed=env.approvals if env.policy == "manual" else 0,
            from_version=plan.from_version,
            to_version=plan.to_version,
            requester=requester,
            created_at=self._clock(),
            changelog=changelog,
            watched=env.name in self._watched,
            override=override,
        )
        in_flight = await self._store.create(
            release, claim_ttl=(self._expiry + timedelta(days=1)).total_seconds()
        )
        if in_flight is not None:
            other, _ = await self._store.load(in_flight)
            where = f": {other.mr_url}" if other is not None and other.mr_url else ""
            await reply(
                self._views.refused(
                    f"a release of {app.name} to {env.name} is already in progress{where} —"
                    " it must finish (or be rejected) first"
                )
            )
            return
        approvers = self._approvers(catalog, release)
        description = merge_request_description(
            release,
            requester_name=await self._people.display_name(requester),
            approvers=", ".join(catalog.approvers_for(app, env)) or "nobody",
            lock=await self._lock_line(override),
        )
        try:
            mr = await self._repo.open_merge_request(
                branch=f"pitcrew/{app.name}-{env.name}-{release.id}",
                path=plan.path,
                content=plan.content,
                revision=plan.manifest.revision,
                message=f"{release.title}\n\nRequested in Slack through Pitcrew ({release.id}).",
                title=release.title,
                description=description,
            )
        except PitcrewError as exc:
            failure = str(exc)
            await self._commit(release.id, lambda r: r.moved("refused", failure=failure))
            await self._record(requester, f"{plan.kind}-failed", env.name, release.title, str(exc))
            await reply(
                self._views.refused(
                    f"the merge request could not be opened: {exc}. Nothing was left in GitLab;"
                    " try again"
                )
            )
            return
        event: ReleaseEvent = "await_approval" if env.policy == "manual" else "await_pipeline"
        opened = await self._commit(
            release.id,
            lambda r: r.moved(
                event,
                mr_iid=mr.iid,
                mr_url=mr.url,
                branch=f"pitcrew/{app.name}-{env.name}-{release.id}",
                head_sha=mr.head_sha,
            ),
        )
        if opened is None:
            return
        release, version = opened
        await self._record(
            requester,
            plan.kind,
            env.name,
            release.title,
            f"MR !{mr.iid}" + (" · lock overridden" if override else ""),
            origin=origin,
        )
        await self._show(release, version)
        if override is not None:
            await self._say(release, version, "override", by=override.by)
        await reply(
            self._views.opened(release, channel=catalog.channel_for_app(app), approvers=approvers)
        )

    async def _changelog(self, plan: _Plan) -> Changelog:
        if plan.from_tag is None:
            current = plan.from_version or "the current version"
            return Changelog(unavailable=f"{plan.app.source} has no tag for {current}")
        older, newer = (
            (plan.to_tag, plan.from_tag)
            if plan.kind == "rollback"
            else (plan.from_tag, plan.to_tag)
        )
        try:
            return await self._repo.changelog(plan.app.source, from_tag=older, to_tag=newer)
        except PitcrewError as exc:
            return Changelog(unavailable=str(exc))

    # ------------------------------------------------------------------ clicks

    async def approve(self, *, release_id: str, user: str, answer: Reply, origin: str) -> None:
        for _ in range(MAX_RACES):
            release, version = await self._store.load(release_id)
            if release is None:
                await answer(self._views.click_answer("This release is not known to Pitcrew."))
                return
            catalog = self._catalog.current
            if release.env not in catalog.env_names:
                await answer(
                    self._views.click_answer(f"{release.env} is no longer in the catalog.")
                )
                return
            env = catalog.environment(release.env)
            named = (
                catalog.approvers_for(release.app, env) if release.app in catalog.app_names else ()
            )
            if release.state != "awaiting_approval":
                decision: object = (
                    AlreadyApproved()
                    if user in release.approvals
                    else AlreadyComplete(approvals=release.approvals)
                )
            else:
                try:
                    members = await self._people.members(named)
                except PitcrewError as exc:
                    await answer(
                        self._views.click_answer(
                            f"Approvers could not be checked: {exc}. Try again."
                        )
                    )
                    return
                decision = decide_approval(
                    release.snapshot(env), user=user, approvers=members, named=named
                )
            refusal = _refusal(decision, release=release)
            if refusal is not None:
                await self._record(
                    user, "approve-refused", release.env, release.title, refusal, origin=origin
                )
                await answer(self._views.click_answer(refusal))
                return
            assert isinstance(decision, Approved)
            problem = await self._still_mergeable(release)
            if problem is None:
                problem = await self._lock_problem(release)
            if problem is not None:
                await self._record(
                    user, "approve-refused", release.env, release.title, problem, origin=origin
                )
                await answer(self._views.click_answer(problem))
                return
            updated = replace(release, approvals=decision.approvals)
            if decision.complete:
                updated = updated.moved("approved")
            if not await self._store.save(updated, expected=version):
                continue  # someone else clicked at the same moment: judge again
            if decision.complete:
                metrics.RELEASES.labels(updated.kind, "approved").inc()
            version += 1
            await self._record(
                user,
                "approve",
                release.env,
                release.title,
                f"{decision.count}/{decision.needed}",
                origin=origin,
            )
            await self._say(updated, version, "approved", by=user, suffix=user)
            await self._show(updated, version)
            if decision.complete:
                await self._merge(updated.id)
                names = [await self._people.display_name(u) for u in updated.approvals]
                note = approval_note(names, needed=updated.approvals_needed)
                await self._quietly(self._repo.note(updated.mr_iid or 0, note))
            await answer(
                self._views.click_answer(
                    f"Approved ({decision.count}/{decision.needed})."
                    + (" Merging." if decision.complete else "")
                )
            )
            return
        await answer(self._views.click_answer("The release kept changing; try again."))

    async def reject(self, *, release_id: str, user: str, answer: Reply, origin: str) -> None:
        release, _ = await self._store.load(release_id)
        if release is None:
            await answer(self._views.click_answer("This release is not known to Pitcrew."))
            return
        catalog = self._catalog.current
        named = (
            catalog.approvers_for(release.app, release.env)
            if release.app in catalog.app_names and release.env in catalog.env_names
            else ()
        )
        if user != release.requester:
            try:
                members = await self._people.members(named)
            except PitcrewError as exc:
                await answer(
                    self._views.click_answer(f"Approvers could not be checked: {exc}. Try again.")
                )
                return
            if user not in members:
                problem = (
                    f"Only the requester or an approver for {release.env} can reject"
                    f" (approvers: {approvers_label(named)})."
                )
                await self._record(
                    user, "reject-refused", release.env, release.title, problem, origin=origin
                )
                await answer(self._views.click_answer(problem))
                return
        if not release.before_merge or release.state in ("rejected", "expired", "refused"):
            await answer(
                self._views.click_answer(f"Too late to reject: the release is {release.state}.")
            )
            return
        moved = await self._commit(release_id, lambda r: r.moved("rejected", ended_by=user))
        if moved is None:
            await answer(
                self._views.click_answer("The release moved on meanwhile; nothing rejected.")
            )
            return
        rejected, version = moved
        await self._quietly(self._repo.close(rejected.mr_iid or 0))
        await self._record(
            user, "reject", rejected.env, rejected.title, f"MR !{rejected.mr_iid}", origin=origin
        )
        await self._say(rejected, version, "rejected", by=user)
        await self._show(rejected, version)
        await answer(self._views.click_answer("Rejected: the merge request is closed."))

    async def _still_mergeable(self, release: Release) -> str | None:
        """Re-read the MR at click time: still open, unchanged since it was opened, mergeable."""
        if release.mr_iid is None:
            return "This release has no merge request yet."
        try:
            mr = await self._repo.merge_request(release.mr_iid)
        except PitcrewError as exc:
            return f"GitLab could not be asked about !{release.mr_iid}: {exc}. Try again."
        if mr.state != "opened":
            return f"!{mr.iid} is {mr.state} in GitLab: there is nothing to approve."
        if mr.head_sha != release.head_sha:
            return (
                f"!{mr.iid} changed since it was opened (its head is now `{mr.head_sha[:8]}`):"
                " approvals are refused. Reject it and run the command again."
            )
        if not mr.mergeable:
            return (
                f"!{mr.iid} cannot be merged as it stands (a conflict or a draft):"
                " fix it in GitLab first."
            )
        return None

    async def _lock_problem(self, release: Release) -> str | None:
        lock = await self._locks.lock_of(release.env)
        if lock is None or _overridden(release, lock):
            return None
        reason = f": {lock.reason}" if lock.reason else ""
        return (
            f"{release.env} is locked by <@{lock.holder}>{reason}. Approvals wait until"
            f" `/unlock {release.env}`."
        )

    # ------------------------------------------------------------------ merging

    async def _merge(self, release_id: str) -> None:
        """``approved`` → ``merging``, once across replicas, then ask GitLab to merge when the
        pipeline succeeds (at once if it already did)."""
        moved = await self._commit(
            release_id,
            lambda r: r.moved("merge_started", held_by=None) if r.state == "approved" else None,
        )
        if moved is None:
            return
        release, version = moved
        await self._say(release, version, "merging")
        await self._show(release, version)
        await self._ask_merge(release)

    async def _ask_merge(self, release: Release) -> None:
        try:
            await self._repo.merge(release.mr_iid or 0, sha=release.head_sha or "")
        except PitcrewError as exc:
            reason = f"GitLab refused the merge: {exc}"
            moved = await self._commit(
                release.id,
                lambda r: r.moved("failed", failure=reason) if r.state == "merging" else None,
            )
            if moved is not None:
                await self._say(moved[0], moved[1], "failed")
                await self._show(*moved)
            await self._record("pitcrew", "merge-failed", release.env, release.title, str(exc))

    async def _auto_merge(self, release_id: str) -> None:
        """An ``auto`` release whose MR pipeline passed: merge now, unless the env is locked."""
        release, _ = await self._store.load(release_id)
        if release is None or release.policy != "auto":
            return
        if release.state == "waiting_pipeline":
            moved = await self._commit(
                release_id,
                lambda r: r.moved("pipeline_passed") if r.state == "waiting_pipeline" else None,
            )
            if moved is None:
                return
            release = moved[0]
        if release.state != "approved":
            return
        lock = await self._locks.lock_of(release.env)
        if lock is not None and not _overridden(release, lock):
            if release.held_by != lock.holder:
                held = await self._commit(
                    release_id,
                    lambda r: replace(r, held_by=lock.holder) if r.state == "approved" else None,
                )
                if held is not None:
                    await self._say(held[0], held[1], "held", by=lock.holder)
                    await self._show(*held)
            return
        await self._merge(release_id)

    async def on_unlocked(self, env: str) -> None:
        """Held ``auto`` releases of ``env`` go on as soon as it is unlocked."""
        for release_id in await self._store.open_ids():
            release, _ = await self._store.load(release_id)
            if release is not None and release.env == env and release.held_by is not None:
                await self._auto_merge(release_id)

    # ------------------------------------------------------------------ GitLab events

    async def on_merge_request(
        self, *, iid: int, action: str, merge_sha: str | None, by: str | None
    ) -> None:
        release_id = await self._store.by_mr(iid)
        if release_id is None:
            return
        if action == "merge":

            def merged(r: Release) -> Release | None:
                if r.state not in ("awaiting_approval", "waiting_pipeline", "approved", "merging"):
                    return None
                done = r.moved(
                    "merged",
                    merge_sha=merge_sha or r.merge_sha,
                    ended_by=None if r.state == "merging" else by,
                )
                if not done.watched and done.mr_pipeline is None:
                    return done.moved("deployed")  # no pipelines, no cluster: the end
                return done

            moved = await self._commit(release_id, merged)
            if moved is not None:
                await self._say(moved[0], moved[1], "merged", by=moved[0].ended_by)
                await self._show(*moved)
        elif action == "close":
            moved = await self._commit(
                release_id,
                lambda r: (
                    r.moved("rejected", ended_by=by)
                    if r.before_merge
                    and r.state not in ("rejected", "expired", "refused", "requested")
                    else None
                ),
            )
            if moved is not None:
                await self._say(moved[0], moved[1], "rejected", by=by)
                await self._show(*moved)

    async def on_pipeline(
        self,
        *,
        pipeline_id: int,
        status: str,
        ref: str,
        sha: str,
        url: str | None,
        merge_request_iid: int | None,
    ) -> None:
        """A pipeline of the GitOps repo: a release's MR pipeline, or the deploy of its merge."""
        release_id = None
        if merge_request_iid is not None:
            release_id = await self._store.by_mr(merge_request_iid)
        if release_id is None:
            release_id = await self._store.by_branch(ref)
        if release_id is not None:
            await self._mr_pipeline(
                release_id, PipelineLink(id=pipeline_id, status=status, url=url), sha=sha
            )
            return
        release_id = await self._store.by_merge_sha(sha)
        if release_id is None and await self._store.open_ids():
            # only while a release is on its way to a merge: other GitOps pipelines (people's
            # own pushes) must not cost a GitLab call per pipeline event
            release_id = await self._release_of_commit(sha)
        if release_id is not None:
            await self._deploy_pipeline(
                release_id, PipelineLink(id=pipeline_id, status=status, url=url), sha=sha
            )

    async def _release_of_commit(self, sha: str) -> str | None:
        """A deploy pipeline can be reported before the MR's merge: ask GitLab which MR the
        commit came with."""
        try:
            iids = await self._repo.merge_requests_of_commit(sha)
        except PitcrewError as exc:
            log.warning(
                "could not find the merge request of a GitOps commit", sha=sha, error=str(exc)
            )
            return None
        for iid in iids:
            release_id = await self._store.by_mr(iid)
            if release_id is not None:
                release, _ = await self._store.load(release_id)
                if release is not None and release.head_sha != sha:
                    return release_id
        return None

    async def _mr_pipeline(self, release_id: str, pipeline: PipelineLink, *, sha: str) -> None:
        """The MR's pipeline moved. Webhooks come late, twice and out of order, and a branch
        has two pipelines (push and merge request): the newest pipeline wins, and a finished
        one is never shown running again."""

        def step(r: Release) -> Release | None:
            if sha != r.head_sha or not (r.before_merge or r.state == "merging"):
                return None
            known = r.mr_pipeline
            if known is not None and (
                known.id > pipeline.id
                or (known.id == pipeline.id and (known.status in _FINISHED or known == pipeline))
            ):
                return None
            return replace(r, mr_pipeline=pipeline)

        moved = await self._commit(release_id, step)
        if moved is None:
            return
        release, version = moved
        if pipeline.status not in _FINISHED:
            await self._show(release, version)
            return
        await self._say(release, version, "mr_pipeline")
        await self._show(release, version)
        if pipeline.status == "success":
            await self._auto_merge(release_id)
            return
        reason = f"the merge request's pipeline {pipeline.status}"
        failed = await self._commit(
            release_id,
            lambda r: (
                r.moved("failed", failure=reason)
                if r.state in ("awaiting_approval", "waiting_pipeline", "approved", "merging")
                and r.mr_pipeline == pipeline
                else None
            ),
        )
        if failed is not None:
            await self._quietly(self._repo.close(failed[0].mr_iid or 0))
            await self._say(failed[0], failed[1], "failed")
            await self._show(*failed)

    async def _deploy_pipeline(self, release_id: str, pipeline: PipelineLink, *, sha: str) -> None:
        def step(r: Release) -> Release | None:
            if r.state in (
                "merged",
                "deploying",
                "rolling_out",
                "healthy",
                "failed",
            ) and r.merge_sha in (None, sha):
                known = r.deploy_pipeline
                if known is not None and (
                    known.id > pipeline.id
                    or (
                        known.id == pipeline.id and (known.status in _FINISHED or known == pipeline)
                    )
                ):
                    return None  # an older pipeline, or a stale event of a finished one
                updated = replace(r, deploy_pipeline=pipeline, merge_sha=sha)
                if r.state == "merged":
                    updated = updated.moved("deploy_started")
                if pipeline.status in ("failed", "canceled") and updated.state == "deploying":
                    updated = updated.moved(
                        "failed", failure=f"the GitOps pipeline {pipeline.status}"
                    )
                if pipeline.status == "success" and updated.state == "deploying" and not r.watched:
                    updated = updated.moved("deployed")  # no cluster to follow: the end
                return updated
            return None

        moved = await self._commit(release_id, step)
        if moved is not None:
            release, version = moved
            await self._say(release, version, "deploy_pipeline")
            if (
                release.state == "failed"
                and release.failure
                and "GitOps pipeline" in release.failure
            ):
                await self._say(release, version, "failed")
            await self._show(release, version)

    # ------------------------------------------------------------------ rollouts

    async def on_rollout(self, *, app: str, env: str, rollout: Rollout, what: Happening) -> None:
        """The watcher saw ``app`` roll out in ``env``: the release that merged that version
        follows it to the end."""
        release_id = await self._store.following(app, env)
        if release_id is None:
            return
        release, _ = await self._store.load(release_id)
        if release is None or not any(c.new_version == release.to_version for c in rollout.changes):
            return
        now = self._clock()

        def step(r: Release) -> Release | None:
            try:
                if what in ("started", "progressed", "problems"):
                    if r.state == "rolling_out":
                        return None
                    return r.moved("rollout_started", rollout_started_at=rollout.started_at or now)
                if what in ("succeeded", "recovered"):
                    started = (
                        r
                        if r.state == "rolling_out" or r.state == "failed"
                        else r.moved(
                            "rollout_started", rollout_started_at=rollout.started_at or now
                        )
                    )
                    return started.moved(
                        "rollout_healthy", finished_at=rollout.finished_at or now, failure=None
                    )
                if what == "failed":
                    started = (
                        r
                        if r.state == "rolling_out"
                        else r.moved(
                            "rollout_started", rollout_started_at=rollout.started_at or now
                        )
                    )
                    return started.moved(
                        "failed",
                        failure=f"the rollout failed: {rollout.reason or rollout.message}",
                        finished_at=rollout.finished_at or now,
                    )
            except IllegalTransition:
                return None
            return None

        moved = await self._commit(release_id, step)
        if moved is None:
            return
        release, version = moved
        if release.state == "rolling_out":
            await self._say(release, version, "rollout")
        elif release.state == "healthy":
            await self._say(release, version, "healthy")
        elif release.state == "failed":
            await self._say(release, version, "failed")
        await self._show(release, version)

    # ------------------------------------------------------------------ the sweep

    async def sweep(self) -> None:
        """Expire unapproved releases; the backstop for lost webhooks and interrupted merges."""
        now = self._clock()
        for release_id in await self._store.open_ids():
            release, _ = await self._store.load(release_id)
            if release is None:
                continue
            if release.state == "requested":
                if now - release.created_at >= INTERRUPTED:
                    await self._interrupted(release)
                continue
            if release.mr_iid is None:
                continue
            try:
                if (
                    release.state == "awaiting_approval"
                    and now - release.created_at >= self._expiry
                ):
                    await self._expire(release)
                elif release.state == "waiting_pipeline":
                    mr = await self._repo.merge_request(release.mr_iid)
                    if mr.pipeline is not None and mr.pipeline.status in _FINISHED:
                        await self._mr_pipeline(release_id, mr.pipeline, sha=mr.head_sha)
                elif release.state == "approved" and release.held_by is not None:
                    await self._auto_merge(release_id)
                elif (
                    release.state == "merging"
                    and now - (release.finished_at or release.created_at) >= MERGE_RETRY_AFTER
                ):
                    mr = await self._repo.merge_request(release.mr_iid)
                    if mr.state == "merged":
                        continue  # the merge webhook will (or did) move it
                    if (
                        mr.state == "opened"
                        and not mr.auto_merge
                        and mr.pipeline_status not in ("failed", "canceled")
                    ):
                        await self._ask_merge(release)
            except PitcrewError as exc:
                log.warning(
                    "release sweep: GitLab did not answer", release=release_id, error=str(exc)
                )

    async def _interrupted(self, release: Release) -> None:
        """A crash between claiming the app and env and opening the MR: free them."""
        failure = "interrupted before its merge request was opened; run the command again"
        moved = await self._commit(
            release.id,
            lambda r: r.moved("refused", failure=failure) if r.state == "requested" else None,
        )
        if moved is not None:
            log.warning("release interrupted before its MR; refused", release=release.id)

    async def _expire(self, release: Release) -> None:
        moved = await self._commit(
            release.id, lambda r: r.moved("expired") if r.state == "awaiting_approval" else None
        )
        if moved is None:
            return
        expired, version = moved
        await self._quietly(self._repo.close(expired.mr_iid or 0))
        await self._record("pitcrew", "expire", expired.env, expired.title, f"MR !{expired.mr_iid}")
        await self._say(expired, version, "expired")
        await self._show(expired, version)

    async def run_sweeper(self) -> None:
        while True:
            reraise_if_cancelling()
            try:
                await self.sweep()
            except Exception:
                reraise_if_cancelling()
                log.exception("release sweep failed")
            await asyncio.sleep(self._sweep_every)

    # ------------------------------------------------------------------ internals

    async def _commit(
        self, release_id: str, step: Callable[[Release], Release | None]
    ) -> tuple[Release, int] | None:
        """Apply ``step`` to the stored release by compare-and-set; ``None`` when it declined
        (or the move made no sense any more)."""
        for _ in range(MAX_RACES):
            release, version = await self._store.load(release_id)
            if release is None:
                return None
            try:
                updated = step(release)
            except IllegalTransition as exc:
                log.info("release event ignored", release=release_id, reason=str(exc))
                return None
            if updated is None or updated == release:
                return None
            if await self._store.save(updated, expected=version):
                if updated.state != release.state:
                    metrics.RELEASES.labels(updated.kind, updated.state).inc()
                return updated, version + 1
        log.warning("release kept changing; event dropped", release=release_id)
        return None

    async def _lock_line(self, override: LockOverride | None) -> str | None:
        if override is None:
            return None
        holder = await self._people.display_name(override.holder)
        reason = f" ({override.reason})" if override.reason else ""
        since = override.since.astimezone(UTC)
        return (
            f"locked by {holder}{reason} since {since:%Y-%m-%d %H:%M} UTC —"
            " the requester chose to deploy anyway"
        )

    def _approvers(self, catalog: Catalog, release: Release) -> str:
        if release.app not in catalog.app_names or release.env not in catalog.env_names:
            return "nobody"
        return approvers_label(catalog.approvers_for(release.app, release.env))

    async def _show(self, release: Release, version: int) -> None:
        catalog = self._catalog.current
        text, blocks = self._views.message(release, approvers=self._approvers(catalog, release))
        for index, channel in enumerate(self._channels(catalog, release)):
            key = f"release:{release.id}" if index == 0 else f"release:{release.id}@{channel}"
            await self._outbox.send(
                OutgoingMessage(key=key, channel=channel, text=text, blocks=blocks),
                version=version,
            )

    async def _say(
        self,
        release: Release,
        version: int,
        kind: NoteKind,
        *,
        by: str | None = None,
        suffix: str | None = None,
    ) -> None:
        catalog = self._catalog.current
        text, blocks = self._views.note(release, kind, by=by)
        key = f"release:{release.id}:{kind}" + (f":{suffix}" if suffix else "")
        await self._outbox.send(
            OutgoingMessage(
                key=key,
                channel=self._channels(catalog, release)[0],
                text=text,
                blocks=blocks,
                thread_key=f"release:{release.id}",
                broadcast=kind in ("healthy", "failed") and release.state in ("healthy", "failed"),
            ),
            version=version,
        )

    @staticmethod
    def _channels(catalog: Catalog, release: Release) -> tuple[str, ...]:
        if release.app in catalog.app_names and release.env in catalog.env_names:
            return catalog.release_channels(release.app, release.env)
        if release.team in catalog.team_names:
            return (catalog.team(release.team).channel,)
        return ("#general",)

    async def _record(
        self,
        actor: str,
        action: str,
        env: str,
        target: str,
        detail: str = "",
        *,
        origin: str = "",
    ) -> None:
        await self._audit.record(
            AuditEntry(
                at=self._clock().timestamp(),
                actor=actor,
                action=action,
                env=env,
                target=target,
                detail=detail[:300],
                origin=origin,
            )
        )

    async def _quietly(self, call: Awaitable[None]) -> None:
        """GitLab bookkeeping (a note, closing an MR) that must not undo what was decided."""
        try:
            await call
        except PitcrewError as exc:
            log.warning("GitLab bookkeeping failed", error=str(exc))


def _refusal(decision: object, *, release: Release) -> str | None:
    if isinstance(decision, Approved):
        return None
    if isinstance(decision, NotAnApprover):
        return f"You are not an approver for {release.env} (approvers: {decision.approvers_label})."
    if isinstance(decision, SelfApprovalForbidden):
        return (
            "You asked for this release: someone else must approve it"
            f" ({release.env} forbids self-approval)."
        )
    if isinstance(decision, AlreadyApproved):
        return "Your approval is already counted."
    if isinstance(decision, ApprovalNotRequired):
        return (
            f"{release.env} releases merge when their pipeline passes: there is nothing to approve."
        )
    if isinstance(decision, AlreadyComplete):
        if release.state in ("rejected", "expired", "refused"):
            return f"This release is {release.state}: there is nothing to approve."
        if release.state == "failed":
            return f"This release failed ({release.failure}): there is nothing to approve."
        return "This release already has the approvals it needs."
    return "This approval was not accepted."


def _overridden(release: Release, lock: Lock) -> bool:
    """The requester chose "Deploy anyway" through this very lock."""
    override = release.override
    return override is not None and override.holder == lock.holder and override.since == lock.since


def _pending(
    request: DeployRequest | PromoteRequest | RollbackRequest, *, requester: str
) -> PendingRequest:
    return PendingRequest(
        id=_new_id(),
        kind="rollback" if isinstance(request, RollbackRequest) else "deploy",
        app=request.app,
        env=request.env,
        version=None if isinstance(request, PromoteRequest) else request.version,
        source_env=request.source_env if isinstance(request, PromoteRequest) else None,
        requester=requester,
    )


def _asking(request: PendingRequest) -> str:
    if request.kind == "rollback":
        to = f" to {request.version}" if request.version else ""
        return f"roll back {request.app} in {request.env}{to}"
    if request.source_env is not None:
        return f"promote {request.app} from {request.source_env} to {request.env}"
    return f"deploy {request.app} {request.version} to {request.env}"


def _new_id() -> str:
    """Opaque and unguessable: a button's value is a key to a server-side record only."""
    return secrets.token_hex(6)
