"""What the autopilot says in Slack besides its releases: a release it could not open."""

from __future__ import annotations

from bot.domain.catalog import App
from bot.domain.releases import AutopilotCause
from bot.services.autopilot.ports import AutopilotViews
from bot.services.catalog import CatalogHolder
from bot.services.ports import Outbox, OutgoingMessage


class Telling:
    def __init__(self, *, catalog: CatalogHolder, outbox: Outbox, views: AutopilotViews) -> None:
        self._catalog = catalog
        self._outbox = outbox
        self.views = views

    async def refused(
        self, *, app: App, env: str, version: str, cause: AutopilotCause, reason: str
    ) -> None:
        """Once per app, env and version: the next look updates the same message."""
        text, blocks = self.views.refused(
            app=app.name, env=env, version=version, cause=cause, reason=reason
        )
        catalog = self._catalog.current
        await self._outbox.send(
            OutgoingMessage(
                key=f"autopilot:{app.name}:{env}:{version}:refused",
                channel=catalog.channel_for_app(app),
                text=text,
                blocks=blocks,
            )
        )
