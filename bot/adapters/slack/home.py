"""The App Home in Slack: ``app_home_opened`` in, ``views.publish`` out.

Slack sends ``app_home_opened`` each time a person opens the app's tabs (its ``tab`` says which:
``home`` or ``messages``); the home is drawn for them then. Events are acknowledged by Bolt at
once and drawn after; a redelivered event draws the tab again, which changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs, metrics
from bot.errors import SlackUnavailable

log = logs.get(__name__)


class SlackHome:
    """The ``HomePublisher`` port, and the listener that asks for a home to be drawn."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    async def publish(self, user: str, view: Mapping[str, Any]) -> None:
        try:
            await self._client.views_publish(user_id=user, view=dict(view))
        except SlackApiError as exc:
            metrics.SLACK_CALLS.labels("views.publish", "error").inc()
            error = exc.response.get("error") if exc.response is not None else None
            raise SlackUnavailable(f"views.publish failed: {error or exc}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            metrics.SLACK_CALLS.labels("views.publish", "error").inc()
            raise SlackUnavailable(f"views.publish failed: {exc!r}") from exc
        metrics.SLACK_CALLS.labels("views.publish", "ok").inc()

    @staticmethod
    def register(app: AsyncApp, *, draw: Callable[[str], Awaitable[None]]) -> None:
        @app.event("app_home_opened")
        async def opened(event: dict[str, Any]) -> None:
            user = str(event.get("user") or "")
            if event.get("tab", "home") != "home" or not user:
                return
            await draw(user)
