"""Opening a release: ``/deploy``, promotions, ``/rollback`` and ``/undeploy`` as merge requests.

Nothing is written to GitLab before every check passed (the tag exists, the version differs, the
edited manifest passes its schema and the ground rules): a refused release leaves no branch.
Opening the MR is one commit that creates the branch, then the MR; if the MR cannot be opened
the branch is deleted.

The autopilot opens releases through the same ``request`` as people (``PendingRequest`` with
``autopilot`` set, requested by ``AUTOPILOT``): the same checks, MR, changelog and thread. Only
what needs a person differs: nobody is asked to "Deploy anyway" (a release to a locked env opens
and is held there, as any release is), a release in the way is not offered for rejection, and a
refusal is handed back to the autopilot (``Outcome``) to be told in the team's channel.

An undeploy's commit deletes the app's manifest of the env and takes it out of every
kustomization above it that lists it (``bot.domain.kustomize``), each edited kustomization
checked like a manifest; it always needs an approval (``releases.approval_rule``).

Precedence (``release_flow.precedence``) is decided against the latest release of the app and
env, and the new release is stored as the latest only if that is still the one judged: of two
commands racing, the second is judged again against the first. A rollback supersedes whatever
is open there; the superseded release is told (and its MR closed) once the new MR is open, so a
rollback that GitLab refuses leaves the old release as it was.
"""

from __future__ import annotations

import posixpath
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from datetime import UTC
from typing import TypeVar

from bot import logs, metrics
from bot.domain.catalog import App, Environment
from bot.domain.errors import CommandError, PitcrewError, Refused, Unavailable
from bot.domain.ground_rules import check_ground_rules
from bot.domain.kustomize import kustomizations_above, listed_entries, remove_entries
from bot.domain.manifests import ManifestError, read_version, set_version
from bot.domain.release_flow import (
    Blocked,
    Opened,
    OpenFailed,
    Say,
    Supersede,
    Superseded,
    precedence,
)
from bot.domain.releases import (
    AutopilotCause,
    Changelog,
    DeployRequest,
    LockOverride,
    PromoteRequest,
    Release,
    ReleaseHelp,
    ReleaseKind,
    RollbackOffer,
    RollbackRequest,
    UndeployRequest,
    approval_rule,
    merge_request_description,
    parse_deploy,
    parse_rollback,
    parse_undeploy,
)
from bot.services.releases.engine import MAX_RACES, ReleaseEngine
from bot.services.releases.ports import (
    FileEdit,
    ManifestFile,
    ManifestValidator,
    PendingRequest,
    Refusal,
    Reply,
)

log = logs.get(__name__)
T = TypeVar("T")

REQUEST_TTL = 900.0
"""Seconds a "Deploy anyway" button stays valid."""
OFFER_TTL = 30 * 86400.0
"""Seconds a Roll back button on a rollout's failure stays valid."""


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What came of a request: the release opened, or why none was (``None`` for both: the
    person was asked something, or another release is in the way)."""

    opened: Release | None = None
    refused: str | None = None


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
    edits: tuple[FileEdit, ...]
    """The commit: the edited manifest; for an undeploy, its deletion and the kustomizations."""
    unlisted: tuple[str, ...] = ()
    """Kustomizations an undeploy takes the manifest out of."""
    source_env: str | None = None
    """A promotion's source environment."""


class Opening:
    def __init__(
        self,
        engine: ReleaseEngine,
        *,
        validator: ManifestValidator,
        watched_envs: frozenset[str],
    ) -> None:
        self._engine = engine
        self._validator = validator
        self._watched = watched_envs

    async def command(
        self, *, kind: ReleaseKind, user: str, text: str, reply: Reply, origin: str
    ) -> None:
        """``/deploy``, ``/rollback`` or ``/undeploy``: check, then open the MR (or ask about the
        lock)."""
        engine = self._engine
        catalog = engine.catalog.current
        request: DeployRequest | PromoteRequest | RollbackRequest | UndeployRequest | ReleaseHelp
        try:
            if kind == "deploy":
                request = parse_deploy(text, catalog=catalog)
            elif kind == "rollback":
                request = parse_rollback(text, catalog=catalog)
            else:
                request = parse_undeploy(text, catalog=catalog)
        except CommandError as exc:
            await reply(engine.views.error(exc))
            return
        if isinstance(request, ReleaseHelp):
            await reply(engine.views.help(request.usage))
            return
        await self.request(_pending(request, requester=user), reply=reply, origin=origin)

    async def request(self, pending: PendingRequest, *, reply: Reply, origin: str) -> Outcome:
        """Check a release asked for by a person (or the autopilot), then open it, or ask
        about the lock."""
        engine = self._engine
        await reply(engine.views.working(_asking(pending)))
        try:
            plan = await self._plan(pending)
        except Refusal as exc:
            metrics.RELEASES.labels(pending.kind, "refused").inc()
            await engine.record(
                pending.requester,
                f"{pending.kind}-refused",
                pending.env,
                _asking(pending),
                str(exc),
                origin=origin,
            )
            await reply(engine.views.refused(str(exc)))
            return Outcome(refused=str(exc))
        lock = await engine.locks.lock_of(plan.env.name)
        if lock is not None and pending.autopilot is None:
            await engine.store.put_request(pending, ttl=REQUEST_TTL)
            await engine.record(
                pending.requester, f"{pending.kind}-held-by-lock", plan.env.name, _asking(pending)
            )
            await reply(
                engine.views.lock_prompt(
                    lock, request_id=pending.id, what=_asking(pending), now=engine.clock()
                )
            )
            return Outcome()
        opened = await self._open(
            plan,
            requester=pending.requester,
            override=None,
            reply=reply,
            origin=origin,
            autopilot=pending.autopilot,
        )
        return Outcome(opened=opened)

    async def deploy_anyway(self, *, request_id: str, user: str, reply: Reply, origin: str) -> None:
        """The requester confirmed a release to a locked env: the override is recorded."""
        engine = self._engine
        pending = await engine.store.get_request(request_id)
        if pending is None:
            await reply(
                engine.views.refused(
                    "This confirmation has expired or was already used: run the command again."
                )
            )
            return
        if pending.requester != user:
            await reply(engine.views.only_requester(pending.requester))
            return
        if await engine.store.take_request(request_id) is None:
            return  # a double click: the first one is opening the release
        await reply(engine.views.working(_asking(pending)))
        try:
            plan = await self._plan(pending)
        except Refusal as exc:
            await reply(engine.views.refused(str(exc)))
            return
        lock = await engine.locks.lock_of(plan.env.name)
        override = (
            LockOverride(holder=lock.holder, reason=lock.reason, since=lock.since, by=user)
            if lock is not None
            else None
        )
        if override is not None:
            await engine.record(
                user, "lock-override", plan.env.name, _asking(pending), f"lock by {override.holder}"
            )
        await self._open(plan, requester=user, override=override, reply=reply, origin=origin)

    # ------------------------------------------------------------------ Roll back buttons

    async def roll_back_release(
        self, *, release_id: str, user: str, reply: Reply, origin: str
    ) -> None:
        """The Roll back button of a failed release: ``/rollback <app> <env> to <the version it
        replaced>``, run as the person who clicked, with every check and approval that
        implies. The release is read now; nothing in the button is trusted."""
        engine = self._engine
        release, _ = await engine.store.load(release_id)
        if release is None:
            await reply(engine.views.click_answer("This release is not known to Pitcrew."))
            return
        version = release.rollback_to
        if version is None:
            await reply(engine.views.click_answer(_nothing_to_roll_back(release)))
            return
        pending = PendingRequest(
            id=new_id(),
            kind="rollback",
            app=release.app,
            env=release.env,
            version=version,
            source_env=None,
            requester=user,
        )
        await self.request(pending, reply=reply, origin=origin)

    async def offer(self, *, key: str, app: str, env: str, version: str) -> RollbackOffer:
        return await self._engine.store.offer(
            RollbackOffer(id=new_id(), app=app, env=env, version=version), key=key, ttl=OFFER_TTL
        )

    async def roll_back_offer(self, *, offer_id: str, user: str, reply: Reply, origin: str) -> None:
        """The Roll back button of a rollout no release explains: the same as a typed
        ``/rollback <app> <env> to <version>`` by the person who clicked."""
        engine = self._engine
        offer = await engine.store.get_offer(offer_id)
        if offer is None:
            await reply(
                engine.views.refused(
                    "This button has expired: run `/rollback <app> <env> to <version>`."
                )
            )
            return
        pending = PendingRequest(
            id=new_id(),
            kind="rollback",
            app=offer.app,
            env=offer.env,
            version=offer.version,
            source_env=None,
            requester=user,
        )
        await self.request(pending, reply=reply, origin=origin)

    # ------------------------------------------------------------------ checks

    async def _plan(self, request: PendingRequest) -> _Plan:
        catalog = self._engine.catalog.current
        if request.app not in catalog.app_names or request.env not in catalog.env_names:
            raise Refusal(f"{request.app} or {request.env} is no longer in the catalog")
        if request.kind == "undeploy":
            return await self._plan_undeploy(request)
        app, env = catalog.app(request.app), catalog.environment(request.env)
        path = catalog.manifest_path(app, env)
        manifest = await self._read(path)
        if manifest is None:
            raise Refusal(
                f"{app.name} has no manifest for {env.name} in the GitOps repo (`{path}`):"
                " its first deploy there is a merge request by hand"
            )
        current = _version_in(manifest.text, app=app, path=path)
        if request.source_env is not None:
            source_path = catalog.manifest_path(app, request.source_env)
            source = await self._read(source_path)
            if source is None:
                raise Refusal(
                    f"{app.name} does not run in {request.source_env}: nothing to promote"
                )
            target = _version_in(source.text, app=app, path=source_path)
        elif request.version is not None:
            target = request.version
        else:
            target = await self._previous_version(path, app=app, current=current, env=env.name)
        if target == current:
            raise Refusal(f"{app.name} {target} is already what {env.name} runs (per git)")
        repo = self._engine.repo
        to_tag = await _guard(repo.tag_for(app.source, target))
        if to_tag is None:
            raise Refusal(f"{app.source} has no tag {target} (nor v{target})")
        from_tag = None
        if current is not None:
            try:
                from_tag = await repo.tag_for(app.source, current)
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
            edits=(
                FileEdit(path=path, action="update", content=content, revision=manifest.revision),
            ),
            source_env=request.source_env,
        )

    async def _plan_undeploy(self, request: PendingRequest) -> _Plan:
        """The manifest's deletion, and its entry out of each kustomization that lists it."""
        catalog = self._engine.catalog.current
        app, env = catalog.app(request.app), catalog.environment(request.env)
        path = catalog.manifest_path(app, env)
        manifest = await self._read(path)
        if manifest is None:
            raise Refusal(
                f"{app.name} has no manifest for {env.name} in the GitOps repo (`{path}`):"
                " there is nothing to undeploy"
            )
        try:
            current: str | None = read_version(manifest.text, app=app).version
        except ManifestError:
            current = None  # an unreadable manifest can still be removed
        edits = [FileEdit(path=path, action="delete", revision=manifest.revision)]
        unlisted: list[str] = []
        for candidate in kustomizations_above(path):
            found = await self._read(candidate)
            if found is None:
                continue
            try:
                entries = listed_entries(found.text, kustomization=candidate, path=path)
                if not entries:
                    continue
                content = remove_entries(found.text, entries)
            except ManifestError as exc:
                raise Refusal(f"`{candidate}` lists `{path}` but {exc}") from exc
            problems = self._validator.problems(content)
            if posixpath.dirname(candidate) == posixpath.dirname(path):  # the app's own
                problems += check_ground_rules(content, app=app, kind="kustomization")
            if problems:
                raise Refusal(f"the edited `{candidate}` would break the rules: {problems[0]}")
            edits.append(
                FileEdit(path=candidate, action="update", content=content, revision=found.revision)
            )
            unlisted.append(candidate)
        return _Plan(
            kind="undeploy",
            app=app,
            env=env,
            path=path,
            manifest=manifest,
            from_version=current,
            to_version="",
            from_tag=None,
            to_tag="",
            edits=tuple(edits),
            unlisted=tuple(unlisted),
        )

    async def _read(self, path: str) -> ManifestFile | None:
        return await _guard(self._engine.repo.manifest(path))

    async def _previous_version(self, path: str, *, app: App, current: str, env: str) -> str:
        for text in await _guard(self._engine.repo.manifest_history(path)):
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

    async def _changelog(self, plan: _Plan) -> Changelog:
        if plan.kind == "undeploy":
            return Changelog()  # nothing comes in: the app leaves
        if plan.from_tag is None:
            current = plan.from_version or "the current version"
            return Changelog(unavailable=f"{plan.app.source} has no tag for {current}")
        older, newer = (
            (plan.to_tag, plan.from_tag)
            if plan.kind == "rollback"
            else (plan.from_tag, plan.to_tag)
        )
        try:
            return await self._engine.repo.changelog(plan.app.source, from_tag=older, to_tag=newer)
        except PitcrewError as exc:
            return Changelog(unavailable=str(exc))

    # ------------------------------------------------------------------ opening

    async def _open(
        self,
        plan: _Plan,
        *,
        requester: str,
        override: LockOverride | None,
        reply: Reply,
        origin: str,
        autopilot: AutopilotCause | None = None,
    ) -> Release | None:
        engine = self._engine
        catalog = engine.catalog.current
        app, env = plan.app, plan.env
        rule = approval_rule(plan.kind, env)
        release = Release(
            id=new_id(),
            kind=plan.kind,
            app=app.name,
            team=app.team,
            env=env.name,
            policy="manual" if rule.required else "auto",
            approvals_needed=rule.needed if rule.required else 0,
            from_version=plan.from_version,
            to_version=plan.to_version,
            requester=requester,
            created_at=engine.clock(),
            changelog=await self._changelog(plan),
            watched=env.name in self._watched,
            override=override,
            autopilot=autopilot,
            promoted_from=plan.source_env,
        )
        claimed = await self._claim(release, reply=reply, user=requester)
        if claimed is None:
            return None
        release, replaced = claimed
        description = merge_request_description(
            release,
            requester_name="Pitcrew's autopilot"
            if autopilot
            else await engine.people.display_name(requester),
            approvers=", ".join(catalog.approvers_for(app, env)) or "nobody",
            lock=await self._lock_line(override),
            removed=plan.path if plan.kind == "undeploy" else None,
            unlisted_from=plan.unlisted,
        )
        branch = f"pitcrew/{app.name}-{env.name}-{release.id}"
        try:
            mr = await engine.repo.open_change(
                branch=branch,
                edits=plan.edits,
                message=f"{release.title}\n\n"
                + (
                    f"Opened by Pitcrew's autopilot ({release.id})."
                    if autopilot
                    else f"Requested in Slack through Pitcrew ({release.id})."
                ),
                title=release.title,
                description=description,
            )
        except PitcrewError as exc:
            await engine.drive(release.id, OpenFailed(reason=str(exc)))
            await engine.record(requester, f"{plan.kind}-failed", env.name, release.title, str(exc))
            retry = "; try again" if isinstance(exc, Unavailable) else ""
            await reply(
                engine.views.refused(
                    f"the merge request could not be opened: {exc}. Nothing was left in"
                    f" GitLab{retry}"
                )
            )
            return None
        opened = await engine.drive(
            release.id,
            Opened(mr_iid=mr.iid, mr_url=mr.url, branch=branch, head_sha=mr.head_sha),
        )
        if opened is None:
            return None
        detail = f"MR !{mr.iid}" + (" · lock overridden" if override else "")
        if replaced is not None:
            detail += f" · supersedes {replaced.id}"
        await engine.record(requester, plan.kind, env.name, opened.title, detail, origin=origin)
        if override is not None:
            _, version = await engine.store.load(opened.id)
            await engine.say(opened, version, Say(kind="override", by=override.by))
        if replaced is not None:
            superseded = await engine.drive(
                replaced.id, Superseded(by=opened.ref, at=engine.clock())
            )
            if superseded is not None:
                await engine.record(
                    requester, "supersede", env.name, replaced.title, f"by {opened.title}"
                )
        await reply(
            engine.views.opened(
                opened,
                channel=catalog.channel_for_app(app),
                approvers=engine.approvers(catalog, opened),
            )
        )
        return opened

    async def _claim(
        self, release: Release, *, reply: Reply, user: str
    ) -> tuple[Release, Release | None] | None:
        """Store ``release`` as the latest of its app and env, as precedence allows: with the
        release it supersedes, or ``None`` when it must wait (the person was told)."""
        engine = self._engine
        latest = await engine.store.latest(release.app, release.env)
        for _ in range(MAX_RACES):
            current = (await engine.store.load(latest))[0] if latest else None
            decision = precedence(
                current,
                kind=release.kind,
                autopilot=release.autopilot is not None,
                version=release.to_version,
            )
            if isinstance(decision, Blocked):
                blocking = decision.current
                await engine.record(
                    user, f"{release.kind}-blocked", release.env, release.title, blocking.id
                )
                if release.autopilot is not None:
                    return None  # the autopilot tries again at its next look
                await reply(
                    engine.views.blocked(
                        blocking, can_reject=await self._may_reject(blocking, user)
                    )
                )
                return None
            replaced = decision.current if isinstance(decision, Supersede) else None
            claimed = release if replaced is None else replace(release, supersedes=replaced.ref)
            latest = await engine.store.create(claimed, replacing=current.id if current else None)
            if latest is None:
                return claimed, replaced
        await reply(engine.views.refused("releases there kept changing; try again"))
        return None

    async def _may_reject(self, release: Release, user: str) -> bool:
        try:
            return await self._engine.may_reject(release, user)
        except PitcrewError:
            return False  # Slack could not say: no button, the link is still there

    async def _lock_line(self, override: LockOverride | None) -> str | None:
        if override is None:
            return None
        holder = await self._engine.people.display_name(override.holder)
        reason = f" ({override.reason})" if override.reason else ""
        since = override.since.astimezone(UTC)
        return (
            f"locked by {holder}{reason} since {since:%Y-%m-%d %H:%M} UTC —"
            " the requester chose to deploy anyway"
        )


async def _guard(call: Awaitable[T]) -> T:
    """A GitLab error while checking becomes the refusal a person reads: GitLab not answering
    (try again) is not GitLab saying no (the token or the request is wrong)."""
    try:
        return await call
    except Refusal:
        raise
    except Unavailable as exc:
        raise Refusal(f"GitLab is not answering ({exc}); try again in a minute") from exc
    except Refused as exc:
        raise Refusal(str(exc)) from exc
    except PitcrewError as exc:
        raise Refusal(str(exc)) from exc


def _version_in(text: str, *, app: App, path: str) -> str:
    try:
        return read_version(text, app=app).version
    except ManifestError as exc:
        raise Refusal(f"`{path}` cannot be read: {exc}") from exc


def _pending(
    request: DeployRequest | PromoteRequest | RollbackRequest | UndeployRequest, *, requester: str
) -> PendingRequest:
    if isinstance(request, UndeployRequest):
        return PendingRequest(
            id=new_id(),
            kind="undeploy",
            app=request.app,
            env=request.env,
            version=None,
            source_env=None,
            requester=requester,
        )
    return PendingRequest(
        id=new_id(),
        kind="rollback" if isinstance(request, RollbackRequest) else "deploy",
        app=request.app,
        env=request.env,
        version=None if isinstance(request, PromoteRequest) else request.version,
        source_env=request.source_env if isinstance(request, PromoteRequest) else None,
        requester=requester,
    )


def _nothing_to_roll_back(release: Release) -> str:
    if release.state == "superseded" and release.superseded_by is not None:
        other = release.superseded_by
        return (
            f"Nothing to do: {release.title} was already superseded by {other.title}"
            f" (requested by <@{other.requester}>)."
        )
    if release.kind == "rollback":
        return (
            "This was a rollback: the version it left is the one that failed. Name one with"
            f" `/rollback {release.app} {release.env} to <version>`."
        )
    return f"{release.title} is {release.state.replace('_', ' ')}: there is nothing to roll back."


def _asking(request: PendingRequest) -> str:
    if request.kind == "undeploy":
        return f"undeploy {request.app} from {request.env}"
    if request.kind == "rollback":
        to = f" to {request.version}" if request.version else ""
        return f"roll back {request.app} in {request.env}{to}"
    if request.source_env is not None:
        return f"promote {request.app} from {request.source_env} to {request.env}"
    return f"deploy {request.app} {request.version} to {request.env}"


def new_id() -> str:
    """Opaque and unguessable: a button's value is a key to a server-side record only."""
    return secrets.token_hex(6)
