"""Break-glass access: ``/access`` as merge requests on the GitOps repo, taken back by Pitcrew.

The sibling of the release service, built on the same pieces: the GitOps repo's port
(``ReleaseRepository``), the approval rule (``decide_approval`` with ``ACCESS_RULE``: one approval
by an allowed approver other than the requester, whatever the env's policy), the MR checked at
click time (``mergeable_problem``), the outbox's keyed messages and threads, and a sweep under a
lease whose deadlines (``Tick``) end what nobody approved and take back what expired. How a
grant moves is pure domain (``bot.domain.access_flow``); ``AccessEngine`` applies and carries
out.

Nothing is written to GitLab before the RoleBinding file passed its schema and the ground rules,
and before the requester was found to hold no grant of that app and env already. A lock does not
hold access back: break-glass is for when things go wrong, and a freeze is when they do.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot import logs, metrics
from bot.domain.access import (
    ACCESS_RULE,
    HELD,
    OPEN_STATES,
    AccessHelp,
    Grant,
    GrantRequest,
    ListAccess,
    RevokeRequest,
    access_user,
    binding_manifest,
    binding_name,
    grant_description,
    parse_access,
)
from bot.domain.access_flow import (
    BindingSeen,
    Revoke,
    RevokeClosed,
    RevokeMerged,
    RevokePipeline,
    apply,
)
from bot.domain.errors import CommandError, PitcrewError
from bot.domain.ground_rules import check_ground_rules
from bot.domain.manifests import ManifestError
from bot.domain.release_flow import (
    Approve,
    Closed,
    Deadlines,
    Merged,
    MrPipeline,
    Opened,
    OpenFailed,
    Reject,
    Tick,
)
from bot.domain.releases import (
    AlreadyApproved,
    Approved,
    NotAnApprover,
    PipelineLink,
    ReleaseSnapshot,
    SelfApprovalForbidden,
    approval_note,
    approvers_label,
    decide_approval,
)
from bot.services.access.engine import MAX_RACES, AccessEngine
from bot.services.access.ports import AccessPeople, AccessViews, BindingReader, GrantStore
from bot.services.catalog import CatalogHolder
from bot.services.periodic import every
from bot.services.ports import AuditLog, Outbox
from bot.services.releases.approvals import mergeable_problem
from bot.services.releases.ports import FileEdit, ManifestValidator, ReleaseRepository, Reply

__all__ = ["AccessService"]

log = logs.get(__name__)

SWEEP_EVERY = 15.0
RETRY_AFTER = timedelta(minutes=1)
"""A merge or a revoke MR that GitLab did not take is asked for again after this."""


class AccessService:
    """What the rest of Pitcrew calls: the command, clicks, GitLab events, the sweep."""

    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        store: GrantStore,
        repo: ReleaseRepository,
        validator: ManifestValidator,
        outbox: Outbox,
        people: AccessPeople,
        audit: AuditLog,
        views: AccessViews,
        deadlines: Deadlines,
        watched_envs: frozenset[str] = frozenset(),
        bindings: BindingReader | None = None,
        sweep_every: float = SWEEP_EVERY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = AccessEngine(
            catalog=catalog,
            store=store,
            repo=repo,
            outbox=outbox,
            people=people,
            audit=audit,
            views=views,
            clock=clock,
        )
        self._validator = validator
        self._deadlines = deadlines
        self._watched = watched_envs
        self._bindings = bindings
        self._sweep_every = sweep_every

    # ------------------------------------------------------------------ the command

    async def command(self, *, user: str, text: str, reply: Reply, origin: str) -> None:
        engine = self._engine
        catalog = engine.catalog.current
        if catalog.access is None:
            await reply(
                engine.views.refused(
                    "break-glass access is not set up here: the platform team adds an `access`"
                    " section to the catalog (docs/catalog.md) to offer it"
                )
            )
            return
        try:
            request = parse_access(text, catalog=catalog, limit=catalog.access.max)
        except CommandError as exc:
            if exc.problem is not None:
                await engine.record(user, "access-refused", "", text[:100], exc.problem)
            await reply(engine.views.error(exc))
            return
        if isinstance(request, AccessHelp):
            await reply(engine.views.help())
        elif isinstance(request, ListAccess):
            await reply(engine.views.listing(await self.grants(), now=engine.clock()))
        elif isinstance(request, RevokeRequest):
            await self._revoke(request, user=user, reply=reply, origin=origin)
        else:
            await self._grant(request, user=user, reply=reply, origin=origin)

    async def grants(self) -> list[Grant]:
        """Grants waiting for approval or held, oldest first."""
        found = []
        for grant_id in await self._engine.store.open_ids():
            grant, _ = await self._engine.store.load(grant_id)
            if grant is not None and grant.state in OPEN_STATES:
                found.append(grant)
        return sorted(found, key=lambda g: g.created_at)

    async def _grant(self, request: GrantRequest, *, user: str, reply: Reply, origin: str) -> None:
        engine = self._engine
        catalog = engine.catalog.current
        assert catalog.access is not None
        what = f"give you access to {request.app} in {request.env}"
        await reply(engine.views.working(what))
        email = await engine.people.email(user)
        if not email:
            await self._refuse(
                user,
                request,
                "Slack did not give Pitcrew your email, which names you to Kubernetes (the app"
                " needs the users:read.email scope, and your profile an email)",
                reply=reply,
            )
            return
        app, env = catalog.app(request.app), catalog.environment(request.env)
        slug = access_user(email)
        now = engine.clock()
        held = await self._held(app=app.name, env=env.name, requester=user)
        if held is not None:
            await reply(engine.views.already(held, now=now))
            return
        grant = Grant(
            id=new_id(),
            app=app.name,
            team=app.team,
            env=env.name,
            namespace=app.namespace,
            requester=user,
            email=email,
            user=slug,
            subject=catalog.access.subject_for(email=email, user=slug),
            role=catalog.access.role,
            path=catalog.access.path_for(
                env=env.name, namespace=app.namespace, user=slug, app=app.name
            ),
            binding=binding_name(slug),
            reason=request.reason,
            duration=request.duration,
            created_at=now,
            expires_at=now + request.duration,
            watched=env.name in self._watched,
        )
        content = binding_manifest(grant)
        try:
            problems = [
                *self._validator.problems(content),
                *check_ground_rules(content, app=app, kind="workload"),
            ]
        except ManifestError as exc:
            problems = [str(exc)]
        if problems:
            await self._refuse(
                user, request, f"the RoleBinding would break the rules: {problems[0]}", reply=reply
            )
            return
        try:
            existing = await engine.repo.manifest(grant.path)
        except PitcrewError as exc:
            await self._refuse(
                user, request, f"GitLab did not answer ({exc}); try again", reply=reply
            )
            return
        if existing is not None:
            await self._refuse(
                user,
                request,
                f"`{grant.path}` is already in the GitOps repo: that access is granted (see"
                " `/access`), or a file was left behind for the platform team to remove",
                reply=reply,
            )
            return
        held = await self._claim(grant)
        if held is not None:
            await reply(engine.views.already(held, now=now))
            return
        requester_name = await engine.people.display_name(user)
        description = grant_description(
            grant,
            requester_name=requester_name,
            approvers=", ".join(engine.named_approvers(catalog, grant)) or "nobody",
        )
        branch = f"pitcrew/access-{grant.id}"
        try:
            mr = await engine.repo.open_change(
                branch=branch,
                edits=(FileEdit(path=grant.path, action="create", content=content),),
                message=f"{grant.title}\n\nRequested in Slack through Pitcrew ({grant.id}).",
                title=grant.title,
                description=description,
            )
        except PitcrewError as exc:
            await engine.drive(grant.id, OpenFailed(reason=str(exc)))
            await engine.record(user, "access-failed", grant.env, grant.title, str(exc))
            await reply(
                engine.views.refused(
                    f"the merge request could not be opened: {exc}. Nothing was left in GitLab"
                )
            )
            return
        opened = await engine.drive(
            grant.id,
            Opened(mr_iid=mr.iid, mr_url=mr.url, branch=branch, head_sha=mr.head_sha),
        )
        if opened is None:
            return
        await engine.record(
            user,
            "access",
            grant.env,
            grant.title,
            f"MR !{mr.iid} · until {grant.expires_at.isoformat()} · {grant.subject}",
            origin=origin,
        )
        await reply(
            engine.views.opened(
                opened,
                channel=engine.channels(catalog, opened)[0],
                approvers=engine.approvers(catalog, opened),
            )
        )

    async def _held(self, *, app: str, env: str, requester: str) -> Grant | None:
        store = self._engine.store
        grant_id = await store.current(app=app, env=env, requester=requester)
        if grant_id is None:
            return None
        grant, _ = await store.load(grant_id)
        return grant if grant is not None and grant.state in OPEN_STATES else None

    async def _claim(self, grant: Grant) -> Grant | None:
        """Store ``grant`` as the requester's one grant of its app and env; the one held there
        already, if any (a pointer left by a grant that has since ended is let go)."""
        store = self._engine.store
        for _ in range(MAX_RACES):
            existing_id = await store.create(grant)
            if existing_id is None:
                return None
            existing, _ = await store.load(existing_id)
            if existing is not None and existing.state in OPEN_STATES:
                return existing
            await store.let_go(
                app=grant.app, env=grant.env, requester=grant.requester, grant_id=existing_id
            )
        return None

    async def _refuse(
        self, user: str, request: GrantRequest, problem: str, *, reply: Reply
    ) -> None:
        metrics.ACCESS_GRANTS.labels(request.env, "refused").inc()
        await self._engine.record(
            user, "access-refused", request.env, f"{request.app} in {request.env}", problem
        )
        await reply(self._engine.views.refused(problem))

    async def _revoke(
        self, request: RevokeRequest, *, user: str, reply: Reply, origin: str
    ) -> None:
        """The holder ends their own grant; an approver of the env may end anyone's there."""
        engine = self._engine
        own = await engine.store.current(app=request.app, env=request.env, requester=user)
        targets: list[Grant] = []
        if own is not None:
            grant, _ = await engine.store.load(own)
            if grant is not None and grant.state in OPEN_STATES:
                targets = [grant]
        where = f"{request.app} in {request.env}"
        if not targets:
            others = [
                g for g in await self.grants() if g.app == request.app and g.env == request.env
            ]
            if not others:
                await reply(engine.views.click_answer(f"Nobody holds access to {where}."))
                return
            try:
                allowed = await engine.is_approver(others[0], user)
            except PitcrewError as exc:
                await reply(engine.views.refused(f"approvers could not be checked: {exc}"))
                return
            if not allowed:
                holders = ", ".join(f"<@{g.requester}>" for g in others)
                named = approvers_label(engine.named_approvers(engine.catalog.current, others[0]))
                await engine.record(user, "access-revoke-refused", request.env, where, holders)
                await reply(
                    engine.views.click_answer(
                        f":no_entry: You hold no access to {where}; {holders} do. Only they, or"
                        f" an approver for {request.env} ({named}), can revoke it."
                    )
                )
                return
            targets = others
        lines = []
        for grant in targets:
            ended = await engine.drive(grant.id, Revoke(by=user, at=engine.clock()))
            holder = "your" if grant.requester == user else f"<@{grant.requester}>'s"
            if ended is None:
                latest, _ = await engine.store.load(grant.id)
                state = (latest or grant).state.replace("_", " ")
                lines.append(f"• {holder} access to {where} is {state}: nothing to revoke now.")
                continue
            await engine.record(user, "access-revoke", grant.env, grant.title, origin=origin)
            if ended.state == "rejected":
                lines.append(
                    f"• {holder} request for {where} is withdrawn: !{ended.mr_iid} is closed."
                )
            else:
                lines.append(
                    f"• Revoking {holder} access to {where}: Pitcrew opens and merges the merge"
                    " request that removes it, and says so in its thread."
                )
        await reply(engine.views.click_answer("\n".join(lines)))

    # ------------------------------------------------------------------ clicks

    async def approve(self, *, grant_id: str, user: str, answer: Reply, origin: str) -> None:
        """Judged now, from the record: an allowed approver, not the requester, the MR still
        open and unchanged. Committed against the very version judged."""
        engine = self._engine
        views = engine.views
        for _ in range(MAX_RACES):
            grant, version = await engine.store.load(grant_id)
            if grant is None:
                await answer(views.click_answer("This access request is not known to Pitcrew."))
                return
            catalog = engine.catalog.current
            if grant.env not in catalog.env_names or grant.app not in catalog.app_names:
                await answer(views.click_answer(f"{grant.app} or {grant.env} left the catalog."))
                return
            problem = await self._approval_problem(grant, user)
            if problem is not None:
                await engine.record(
                    user, "access-approve-refused", grant.env, grant.title, problem, origin=origin
                )
                await answer(views.click_answer(problem))
                return
            step = apply(grant, Approve(by=user, approvals=(*grant.approvals, user), complete=True))
            if step is None:
                continue
            committed = await engine.save(step, previous=grant, expected=version)
            if committed is None:
                continue
            await engine.record(user, "access-approve", grant.env, grant.title, origin=origin)
            await engine.follow_through(committed)
            names = [await engine.people.display_name(u) for u in committed.grant.approvals]
            await engine.quietly(
                engine.repo.note(grant.mr_iid or 0, approval_note(names, needed=1))
            )
            await answer(views.click_answer("Approved (1/1). Merging."))
            return
        await answer(views.click_answer("The request kept changing; try again."))

    async def _approval_problem(self, grant: Grant, user: str) -> str | None:
        engine = self._engine
        catalog = engine.catalog.current
        if grant.state != "awaiting_approval":
            if user in grant.approvals:
                return "Your approval is already counted."
            return f"This access request is {grant.state.replace('_', ' ')}: nothing to approve."
        named = engine.named_approvers(catalog, grant)
        try:
            members = await engine.people.members(named)
        except PitcrewError as exc:
            return f"Approvers could not be checked: {exc}. Try again."
        decision = decide_approval(
            ReleaseSnapshot(
                requester=grant.requester,
                approvals=grant.approvals,
                env=catalog.environment(grant.env),
                rule=ACCESS_RULE,
            ),
            user=user,
            approvers=members,
            named=named,
        )
        if isinstance(decision, NotAnApprover):
            return (
                f"You are not an approver for {grant.env} (approvers: {decision.approvers_label})."
            )
        if isinstance(decision, SelfApprovalForbidden):
            return (
                "You asked for this access: someone else must approve it (break-glass access is"
                " never self-approved)."
            )
        if isinstance(decision, AlreadyApproved):
            return "Your approval is already counted."
        if not isinstance(decision, Approved):
            return "This access request already has its approval."
        return await mergeable_problem(
            engine.repo, mr_iid=grant.mr_iid or 0, head_sha=grant.head_sha
        )

    async def reject(self, *, grant_id: str, user: str, answer: Reply, origin: str) -> None:
        engine = self._engine
        views = engine.views
        grant, _ = await engine.store.load(grant_id)
        if grant is None:
            await answer(views.click_answer("This access request is not known to Pitcrew."))
            return
        try:
            allowed = user == grant.requester or await engine.is_approver(grant, user)
        except PitcrewError as exc:
            await answer(views.click_answer(f"Approvers could not be checked: {exc}. Try again."))
            return
        if not allowed:
            named = approvers_label(engine.named_approvers(engine.catalog.current, grant))
            problem = (
                f"Only the requester or an approver for {grant.env} can reject (approvers:"
                f" {named})."
            )
            await engine.record(
                user, "access-reject-refused", grant.env, grant.title, problem, origin=origin
            )
            await answer(views.click_answer(problem))
            return
        rejected = await engine.drive(grant_id, Reject(by=user))
        if rejected is None:
            latest, _ = await engine.store.load(grant_id)
            state = (latest or grant).state.replace("_", " ")
            await answer(views.click_answer(f"Too late to reject: the request is {state}."))
            return
        await engine.record(user, "access-reject", grant.env, grant.title, origin=origin)
        await answer(views.click_answer("Rejected: the merge request is closed."))

    # ------------------------------------------------------------------ GitLab

    async def on_merge_request(
        self,
        *,
        iid: int,
        action: str,
        merge_sha: str | None,
        by: str | None,
        head_sha: str | None = None,
    ) -> None:
        engine = self._engine
        grant_id = await engine.store.by_mr(iid)
        if grant_id is None:
            return
        grant, _ = await engine.store.load(grant_id)
        if grant is None or action not in ("merge", "close"):
            return
        now = engine.clock()
        if iid == grant.mr_iid:
            if action == "merge":
                await engine.drive(
                    grant_id, Merged(merge_sha=merge_sha, head_sha=head_sha, by=by, at=now)
                )
            else:
                await engine.drive(grant_id, Closed(by=by))
        elif iid == grant.revoke_iid:
            if action == "merge":
                await engine.drive(grant_id, RevokeMerged(at=now, by=by))
            else:
                await engine.drive(grant_id, RevokeClosed(by=by))

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
        engine = self._engine
        grant_id = None
        if merge_request_iid is not None:
            grant_id = await engine.store.by_mr(merge_request_iid)
        if grant_id is None:
            grant_id = await engine.store.by_branch(ref)
        if grant_id is None:
            return
        grant, _ = await engine.store.load(grant_id)
        if grant is None:
            return
        pipeline = PipelineLink(id=pipeline_id, status=status, url=url)
        if sha == grant.revoke_head or ref == grant.revoke_branch:
            await engine.drive(grant_id, RevokePipeline(pipeline=pipeline, sha=sha))
        else:
            await engine.drive(grant_id, MrPipeline(pipeline=pipeline, sha=sha))

    # ------------------------------------------------------------------ the clock

    async def sweep(self) -> None:
        """Deadlines (expiry, approval), the backstop for lost webhooks and interrupted
        revokes, and the cluster's view of each RoleBinding."""
        engine = self._engine
        held: dict[str, int] = {}
        for grant_id in await engine.store.open_ids():
            grant, _ = await engine.store.load(grant_id)
            if grant is None:
                continue
            try:
                await self._repair(grant)
                await self._look(grant)
            except PitcrewError as exc:
                log.warning("access sweep: could not check", grant=grant_id, error=str(exc))
            latest = await engine.drive(
                grant_id, Tick(now=engine.clock(), deadlines=self._deadlines)
            )
            latest = latest or (await engine.store.load(grant_id))[0]
            if latest is not None and latest.state in HELD:
                held[latest.env] = held.get(latest.env, 0) + 1
        for env in engine.catalog.current.env_names:
            metrics.ACCESS_HELD.labels(env).set(held.get(env, 0))

    async def _repair(self, grant: Grant) -> None:
        engine = self._engine
        now = engine.clock()
        if grant.state == "merging" and grant.mr_iid is not None:
            mr = await engine.repo.merge_request(grant.mr_iid)
            if mr.state == "merged":
                await engine.drive(
                    grant.id, Merged(merge_sha=None, head_sha=mr.head_sha, by=None, at=now)
                )
            elif (
                mr.state == "opened"
                and not mr.auto_merge
                and mr.pipeline_status
                not in (
                    "failed",
                    "canceled",
                )
            ):
                await engine.ask_merge(grant, revoke=False)
        elif grant.state == "revoking" and grant.revoke_iid is None:
            asked = grant.revoke_asked_at
            if asked is None or now - asked >= RETRY_AFTER:
                await engine.open_revoke(grant.id)
        elif grant.state == "revoking" and grant.revoke_iid is not None:
            mr = await engine.repo.merge_request(grant.revoke_iid)
            if mr.state == "merged":
                await engine.drive(grant.id, RevokeMerged(at=now))
            elif mr.state == "closed":
                await engine.drive(grant.id, RevokeClosed(by=None))
            elif mr.pipeline is not None and mr.pipeline_status in ("failed", "canceled"):
                await engine.drive(grant.id, RevokePipeline(pipeline=mr.pipeline, sha=mr.head_sha))
            elif not mr.auto_merge and now - (grant.revoke_asked_at or now) >= RETRY_AFTER:
                await engine.ask_merge(grant, revoke=True)

    async def _look(self, grant: Grant) -> None:
        """Read the RoleBinding where the cluster is watched, while there is something to
        confirm: that it is there once merged, that it is gone once revoked."""
        if self._bindings is None or not grant.watched:
            return
        engine = self._engine
        looking_for_it = grant.state in ("merging", "active") and grant.seen_at is None
        looking_for_none = grant.state == "revoked" and grant.gone_at is None
        if not (looking_for_it or looking_for_none):
            return
        present = await self._bindings.present(
            env=grant.env, namespace=grant.namespace, name=grant.binding
        )
        await engine.drive(grant.id, BindingSeen(present=present, at=engine.clock()))

    async def run_sweeper(self) -> None:
        await every(self._sweep_every, self.sweep, what="access sweep")


def new_id() -> str:
    """Opaque and unguessable: a button's value is a key to a server-side record only."""
    return secrets.token_hex(6)
