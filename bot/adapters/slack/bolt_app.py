"""The slack-bolt ``AsyncApp``: request verification and the listeners for commands and clicks.

Bolt checks the signature and the 5-minute timestamp window of every request on
``/slack/events`` (answering 401 otherwise) and acknowledges within Slack's 3 seconds; listeners
translate Slack payloads into service calls and return at once. In Socket Mode the same app
receives its traffic over a websocket instead.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs

log = logs.get(__name__)


def build_bolt_app(*, client: AsyncWebClient, signing_secret: str | None) -> AsyncApp:
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        request_verification_enabled=signing_secret is not None,
        process_before_response=False,
        raise_error_for_unhandled_request=False,
    )

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error(
            "slack listener failed", kind=body.get("type") or body.get("command"), exc_info=error
        )

    return app


def aiohttp_handler(app: AsyncApp) -> Any:
    async def handle(request: web.Request) -> web.Response:
        response = await app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    return handle
