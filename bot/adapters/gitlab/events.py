"""Turning stored GitLab webhooks into domain observations for the services.

Runs in the stream worker, after the intake stored the raw body. A body that does not parse is
logged with its event id and dropped: it can never parse later, and it must not block the stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from bot import logs, metrics
from bot.adapters.gitlab.payloads import (
    GitLabEvent,
    MergeRequestHook,
    PayloadError,
    PushHook,
    observed,
    parse_event,
)
from bot.domain.batches import runs
from bot.domain.pipelines import JobObserved, PipelineObserved

log = logs.get(__name__)


class PipelineObserver(Protocol):
    async def observe(self, event: PipelineObserved | JobObserved) -> None: ...

    async def observe_many(self, events: Sequence[PipelineObserved | JobObserved]) -> None: ...


@dataclass(frozen=True)
class Stored:
    """A webhook as the stream holds it."""

    kind: str
    body: bytes
    event_id: str


@dataclass(frozen=True)
class _Read:
    stored: Stored
    event: GitLabEvent
    observation: PipelineObserved | JobObserved | None


class PushObserver(Protocol):
    async def on_push(self, paths: Iterable[str] | None) -> None: ...


class TagObserver(Protocol):
    async def on_tag(self, *, project: str, tag: str) -> None: ...


class ReleaseObserver(Protocol):
    async def on_pipeline(
        self,
        *,
        pipeline_id: int,
        status: str,
        ref: str,
        sha: str,
        url: str | None,
        merge_request_iid: int | None,
    ) -> None: ...

    async def on_merge_request(
        self,
        *,
        iid: int,
        action: str,
        merge_sha: str | None,
        by: str | None,
        head_sha: str | None = None,
    ) -> None: ...


class GitLabEvents:
    def __init__(
        self,
        *,
        pipelines: PipelineObserver,
        gitops_project: str,
        gitops_pushes: Sequence[PushObserver] = (),
        releases: ReleaseObserver | None = None,
        tags: TagObserver | None = None,
        access: ReleaseObserver | None = None,
    ) -> None:
        self._pipelines = pipelines
        self._releases = releases
        self._tags = tags
        self._access = access
        self._gitops_project = gitops_project.lower()
        self._gitops_pushes = gitops_pushes

    async def handle(self, *, kind: str, body: bytes, event_id: str) -> None:
        await self.handle_many([Stored(kind, body, event_id)])

    async def handle_many(self, stored: Sequence[Stored]) -> None:
        """Handle webhooks in the order they were stored. Consecutive observations of app
        pipelines are handed over together (the pipeline service keeps each pipeline's order);
        every other event (a change of the GitOps repo, a release's merge request or pipeline, a
        tag) is handled alone, after what came before it and before what comes after it."""
        read: list[_Read] = []
        for item in stored:
            try:
                event = parse_event(item.kind, item.body)
                observation = observed(event)
            except PayloadError as exc:
                metrics.EVENTS.labels("gitlab", "malformed").inc()
                log.warning(
                    "gitlab event dropped: unreadable payload",
                    reason=str(exc),
                    event_id=item.event_id,
                    kind=item.kind,
                )
                continue
            read.append(_Read(item, event, observation))
        for run in runs([r for r in read if not self._ignored(r)], self._app_pipeline):
            if self._app_pipeline(run[0]):
                await self._pipelines.observe_many([r.observation for r in run if r.observation])
                continue
            one = run[0]
            with structlog.contextvars.bound_contextvars(
                event_id=one.stored.event_id, kind=one.stored.kind
            ):
                await self._one(one.event, one.observation)

    def _ignored(self, read: _Read) -> bool:
        """Pushes and merge requests of app repos: nothing to do (and no reason to hold up the
        pipelines' events around them)."""
        event = read.event
        if read.observation is not None or self._is_gitops(event):
            return False
        return not (isinstance(event, PushHook) and event.tag is not None and self._tags)

    def _app_pipeline(self, read: _Read) -> bool:
        """An observation of an app's pipeline (not of the GitOps repo's: releases own those)."""
        if read.observation is None:
            return False
        return self._releases is None or not self._is_gitops(read.event)

    async def _one(
        self, event: GitLabEvent, observation: PipelineObserved | JobObserved | None
    ) -> None:
        if isinstance(event, PushHook) and self._is_gitops_push(event):
            # GitLab lists at most 20 commits; beyond that, every file may have changed.
            paths = event.changed_paths if event.lists_every_commit else None
            for observer in self._gitops_pushes:
                await observer.on_push(paths)
            return
        if isinstance(event, PushHook) and event.tag is not None and self._tags is not None:
            # a new version of an app, maybe: the autopilot looks (SPEC 13)
            project = event.project.path_with_namespace or ""
            await self._tags.on_tag(project=project, tag=event.tag)
            return
        if self._releases is not None and self._is_gitops(event):
            await self._to_releases(self._releases, event, observation)
            if self._access is not None:  # break-glass grants' MRs are GitOps MRs too
                await self._to_releases(self._access, event, observation)
            return  # the GitOps repo's pipelines belong to the releases they deploy
        if observation is None:
            return  # pushes of app repos, merge requests of app repos
        await self._pipelines.observe(observation)

    def _is_gitops(self, event: object) -> bool:
        project = getattr(event, "project", None)
        path = getattr(project, "path_with_namespace", None) or ""
        return path.lower() == self._gitops_project

    @staticmethod
    async def _to_releases(
        releases: ReleaseObserver,
        event: object,
        observation: PipelineObserved | JobObserved | None,
    ) -> None:
        if isinstance(event, MergeRequestHook):
            attributes = event.object_attributes
            await releases.on_merge_request(
                iid=attributes.iid,
                action=attributes.action or "",
                merge_sha=attributes.merge_commit_sha,
                by=event.user.name if event.user else None,
                head_sha=attributes.last_commit.id if attributes.last_commit else None,
            )
        elif isinstance(observation, PipelineObserved):
            await releases.on_pipeline(
                pipeline_id=observation.pipeline_id,
                status=observation.status,
                ref=observation.ref,
                sha=observation.sha,
                url=observation.url,
                merge_request_iid=observation.merge_request.iid
                if observation.merge_request
                else None,
            )

    def _is_gitops_push(self, push: PushHook) -> bool:
        project = (push.project.path_with_namespace or "").lower()
        return project == self._gitops_project and not push.is_tag
