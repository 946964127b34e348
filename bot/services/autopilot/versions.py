"""New versions open releases by themselves (SPEC 13).

A ``Tag Push Hook`` of an app's source project, the reconcile at start and every
``AUTOPILOT_INTERVAL`` all do the same thing for an app: find its newest version tag, and for
each ``auto_deploy`` environment ask ``decide_new_version`` whether to open a release of it.
Doing the same in all three places is what makes a lost webhook, or a tag pushed while Pitcrew
was down, harmless: the next look finds what the hook would have.

Two looks racing (the hook and the reconcile, on two replicas) open one release: the second is
judged by precedence against the first and waits. A refusal (the checks failed) is told once in
the team's channel (its message is keyed by app, env and version, so the next look updates it
rather than posting again).
"""

from __future__ import annotations

from bot import logs
from bot.domain.autopilot import OpenRelease, Skip, decide_new_version
from bot.domain.catalog import App, Environment
from bot.domain.errors import PitcrewError
from bot.domain.releases import AUTOPILOT
from bot.domain.versions import VersionTag, is_version, newest
from bot.services.autopilot.ports import AppTags, AutopilotReleases, AutopilotStore
from bot.services.autopilot.telling import Telling
from bot.services.catalog import CatalogHolder
from bot.services.releases import PendingRequest
from bot.services.releases.opening import new_id

log = logs.get(__name__)


class NewVersions:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        releases: AutopilotReleases,
        tags: AppTags,
        store: AutopilotStore,
        telling: Telling,
    ) -> None:
        self._catalog = catalog
        self._releases = releases
        self._tags = tags
        self._store = store
        self._telling = telling

    async def on_tag(self, *, project: str, tag: str) -> None:
        """A tag was pushed to ``project``: if it is an app's source, look at that app."""
        app = self._catalog.current.app_for_source(project)
        if app is None or not is_version(tag, app.versions):
            return
        log.info("autopilot: a new tag", app=app.name, tag=tag)
        try:
            await self.look_at(app, origin=f"autopilot: tag {tag} pushed")
        except PitcrewError as exc:  # GitLab down: the reconcile finds the tag later
            log.warning("autopilot: tag not handled yet", app=app.name, tag=tag, error=str(exc))

    async def reconcile(self) -> None:
        """Every app against every ``auto_deploy`` env: what a lost hook would have opened."""
        catalog = self._catalog.current
        if not any(env.auto_deploy for env in catalog.environments):
            return
        for app in catalog.apps:
            if not app.auto_deploy:
                continue
            try:
                await self.look_at(app, origin="autopilot: reconcile")
            except PitcrewError as exc:  # one app's GitLab trouble must not stop the others
                log.warning("autopilot: could not look at an app", app=app.name, error=str(exc))

    async def look_at(self, app: App, *, origin: str) -> None:
        envs = [e for e in self._catalog.current.environments if e.auto_deploy]
        if not envs or not app.auto_deploy:
            return
        tags = await self._tags.tags(app.source)
        candidate = newest(t for t in tags if is_version(t.name, app.versions))
        if candidate is None:
            return
        for env in envs:
            await self._consider(app, env, candidate, tags=tags, origin=origin)

    async def _consider(
        self,
        app: App,
        env: Environment,
        candidate: VersionTag,
        *,
        tags: list[VersionTag],
        origin: str,
    ) -> None:
        running_name = await self._releases.running_version(app.name, env.name)
        running = tagged(running_name, tags)
        decision = decide_new_version(
            app=app,
            env=env,
            tag=candidate,
            running=running,
            latest=await self._releases.latest_release(app.name, env.name),
            given_up=await self._store.given_up(app.name, env.name),
        )
        if isinstance(decision, Skip):
            log.debug("autopilot: nothing to open", app=app.name, env=env.name, why=decision.reason)
            return
        await self.open(app, env, decision, origin=origin)

    async def open(self, app: App, env: Environment, decision: OpenRelease, *, origin: str) -> None:
        request = PendingRequest(
            id=new_id(),
            kind="deploy",
            app=app.name,
            env=env.name,
            version=decision.version,
            source_env=None,
            requester=AUTOPILOT,
            autopilot=decision.cause,
        )
        outcome = await self._releases.open_for_autopilot(request, origin=origin)
        if outcome.refused is not None:
            await self._telling.refused(
                app=app,
                env=env.name,
                version=decision.version,
                cause=decision.cause,
                reason=outcome.refused,
            )


def tagged(version: str | None, tags: list[VersionTag]) -> VersionTag | None:
    """What runs, with the date of its tag when the tag is among the recent ones."""
    if version is None:
        return None
    for tag in tags:
        if tag.name in (version, f"v{version}") or (version[:1] == "v" and tag.name == version[1:]):
            return VersionTag(name=version, created_at=tag.created_at)
    return VersionTag(name=version)
