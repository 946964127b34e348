"""``pitcrew dora backfill``: deployments from before Pitcrew, read from the GitOps repo.

Git is the source of truth of what ran where: every commit that changed the version in an app's
manifest for an env is a deployment of that version, at the time its merge request merged (or
the commit's, for a commit pushed without one). Its kind: ``rollback`` when its merge request
says so (Pitcrew's "Roll back …" titles) or when the version is one the env ran before, else
``deploy``. Its changelog's commit times come from the app's repo, between the two versions'
tags. What git cannot say is assumed: each deployment is taken as healthy at its merge (git
does not know about failed rollouts), so the change failure rate of history comes from its
rollbacks only.

Releases made through Pitcrew (their merge request carries Pitcrew's marker) are skipped: they
were recorded when they ended. Every backfilled record is keyed by its commit, so running the
backfill again writes nothing twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from bot import logs
from bot.domain.catalog import App
from bot.domain.dora import Deployment, Kind
from bot.domain.errors import PitcrewError
from bot.domain.manifests import ManifestError, read_version
from bot.services.catalog import CatalogHolder
from bot.services.insights.ports import GitOpsHistory, ManifestCommit, MergedRequest
from bot.services.insights.recorder import DeploymentRecorder

log = logs.get(__name__)

PITCREW_MARKER: Final = re.compile(r"<!-- pitcrew release [0-9a-f]+ -->")
ROLLBACK_TITLE: Final = re.compile(r"^(Roll back|Rollback|Revert)\b", re.IGNORECASE)


@dataclass(kw_only=True)
class BackfillResult:
    recorded: int = 0
    already: int = 0
    """Found, but recorded before (an earlier backfill)."""
    pitcrew: int = 0
    """Releases made through Pitcrew: recorded when they ended."""
    problems: list[str] = field(default_factory=list)
    """One line per app and env that could not be read."""
    by_env: dict[str, int] = field(default_factory=dict)


class Backfill:
    def __init__(
        self,
        *,
        catalog: CatalogHolder,
        history: GitOpsHistory,
        recorder: DeploymentRecorder,
        clock: Callable[[], datetime],
    ) -> None:
        self._catalog = catalog
        self._history = history
        self._recorder = recorder
        self._clock = clock

    async def run(self, *, days: int) -> BackfillResult:
        catalog = self._catalog.current
        since = self._clock() - timedelta(days=days)
        result = BackfillResult()
        merged = await self._history.merged_requests(since=since - timedelta(days=30))
        by_sha = {sha: mr for mr in merged for sha in mr.shas}
        for app in catalog.apps:
            for env in catalog.env_names:
                path = catalog.manifest_path(app, env)
                try:
                    commits = await self._history.manifest_commits(path, since=since)
                    found = await self._deployments(app, env, commits, by_sha, since, result)
                except PitcrewError as exc:
                    result.problems.append(f"{app.name} in {env} ({path}): {exc}")
                    continue
                for deployment in found:
                    if await self._recorder.record(deployment, counted=False):
                        result.recorded += 1
                        result.by_env[env] = result.by_env.get(env, 0) + 1
                    else:
                        result.already += 1
        return result

    async def _deployments(
        self,
        app: App,
        env: str,
        commits: Sequence[ManifestCommit],
        by_sha: dict[str, MergedRequest],
        since: datetime,
        result: BackfillResult,
    ) -> list[Deployment]:
        found: list[Deployment] = []
        ran: list[str] = []
        for commit in commits:
            version = _version(commit, app)
            previous = ran[-1] if ran else None
            if version is None or version == previous:
                continue
            seen_before = version in ran
            ran.append(version)
            if commit.committed_at < since:
                continue  # what the env ran when the window began
            mr = by_sha.get(commit.sha)
            if mr is not None and PITCREW_MARKER.search(mr.description):
                result.pitcrew += 1
                continue
            kind: Kind = (
                "rollback"
                if (mr is not None and ROLLBACK_TITLE.match(mr.title)) or seen_before
                else "deploy"
            )
            deployed = mr.merged_at if mr is not None else commit.committed_at
            requested = mr.created_at if mr is not None else commit.committed_at
            times: tuple[datetime, ...] = ()
            if kind != "rollback" and previous is not None:
                try:
                    times = await self._history.commit_times(
                        app.source, older=previous, newer=version
                    )
                except PitcrewError as exc:
                    log.info("no changelog for backfill", app=app.name, error=str(exc))
            found.append(
                Deployment(
                    id="g" + commit.sha[:11],
                    app=app.name,
                    env=env,
                    kind=kind,
                    version=version,
                    previous=previous,
                    requested=min(requested, deployed).timestamp(),
                    deployed=deployed.timestamp(),
                    failed=None,
                    commits=tuple(t.timestamp() for t in times),
                )
            )
        return found


def _version(commit: ManifestCommit, app: App) -> str | None:
    if commit.text is None:
        return None
    try:
        return read_version(commit.text, app=app).version
    except ManifestError:
        return None
