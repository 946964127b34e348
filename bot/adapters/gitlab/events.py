"""Turning stored GitLab webhooks into domain observations for the services.

Runs in the stream worker, after the intake stored the raw body. A body that does not parse is
logged with its event id and dropped: it can never parse later, and it must not block the stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import structlog

from bot import logs, metrics
from bot.adapters.gitlab.payloads import PayloadError, PushHook, observed, parse_event
from bot.domain.pipelines import JobObserved, PipelineObserved

log = logs.get(__name__)


class PipelineObserver(Protocol):
    async def observe(self, event: PipelineObserved | JobObserved) -> None: ...


class PushObserver(Protocol):
    async def on_push(self, paths: Iterable[str] | None) -> None: ...


class GitLabEvents:
    def __init__(
        self,
        *,
        pipelines: PipelineObserver,
        gitops_project: str,
        gitops_pushes: Sequence[PushObserver] = (),
    ) -> None:
        self._pipelines = pipelines
        self._gitops_project = gitops_project.lower()
        self._gitops_pushes = gitops_pushes

    async def handle(self, *, kind: str, body: bytes, event_id: str) -> None:
        with structlog.contextvars.bound_contextvars(event_id=event_id, kind=kind):
            try:
                event = parse_event(kind, body)
                observation = observed(event)
            except PayloadError as exc:
                metrics.EVENTS.labels("gitlab", "malformed").inc()
                log.warning("gitlab event dropped: unreadable payload", reason=str(exc))
                return
            if isinstance(event, PushHook) and self._is_gitops_push(event):
                # GitLab lists at most 20 commits; beyond that, every file may have changed.
                paths = event.changed_paths if event.lists_every_commit else None
                for observer in self._gitops_pushes:
                    await observer.on_push(paths)
                return
            if observation is None:
                return  # kinds other services will consume (pushes, merge requests)
            await self._pipelines.observe(observation)

    def _is_gitops_push(self, push: PushHook) -> bool:
        project = (push.project.path_with_namespace or "").lower()
        return project == self._gitops_project and not push.is_tag
