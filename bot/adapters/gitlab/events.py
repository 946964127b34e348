"""Turning stored GitLab webhooks into domain observations for the services.

Runs in the stream worker, after the intake stored the raw body. A body that does not parse is
logged with its event id and dropped: it can never parse later, and it must not block the stream.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from bot import logs, metrics
from bot.adapters.gitlab.payloads import PayloadError, observed, parse_event
from bot.domain.pipelines import JobObserved, PipelineObserved

log = logs.get(__name__)


class PipelineObserver(Protocol):
    async def observe(self, event: PipelineObserved | JobObserved) -> None: ...


class GitLabEvents:
    def __init__(self, *, pipelines: PipelineObserver) -> None:
        self._pipelines = pipelines

    async def handle(self, *, kind: str, body: bytes, event_id: str) -> None:
        with structlog.contextvars.bound_contextvars(event_id=event_id, kind=kind):
            try:
                observation = observed(parse_event(kind, body))
            except PayloadError as exc:
                metrics.EVENTS.labels("gitlab", "malformed").inc()
                log.warning("gitlab event dropped: unreadable payload", reason=str(exc))
                return
            if observation is None:
                return  # kinds other services will consume (pushes, merge requests)
            await self._pipelines.observe(observation)
