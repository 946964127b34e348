"""The slack-bolt ``AsyncApp``: request verification and the listeners for commands and clicks.

Bolt checks the signature and the 5-minute timestamp window of every request on
``/slack/events`` (answering 401 otherwise) and acknowledges within Slack's 3 seconds; listeners
translate Slack payloads into service calls and return at once. In Socket Mode the same app
receives its traffic over a websocket instead.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs

log = logs.get(__name__)


class _ExpectedClientWarning(logging.Filter):
    """Bolt also reads SLACK_BOT_TOKEN from the environment and warns that our client (built
    from the same token, with SLACK_API_URL) wins. That is intended; the warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


_bolt_logger = logging.getLogger("slack_bolt.AsyncApp")
if not any(isinstance(f, _ExpectedClientWarning) for f in _bolt_logger.filters):
    _bolt_logger.addFilter(_ExpectedClientWarning())


def build_bolt_app(*, client: AsyncWebClient, signing_secret: str | None) -> AsyncApp:
    app = AsyncApp(
        name="pitcrew",  # else Bolt names it after its caller's file, by inspect.stack(): 0.15 s
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


def register_fallbacks(app: AsyncApp, *, version: str) -> None:
    """Answer commands that have no listener (yet) instead of leaving Slack to say
    "dispatch_failed". Registered after every real listener: Bolt tries listeners in order."""

    @app.command(re.compile(r".*"))
    async def unknown_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        name = command.get("command", "this command")
        await ack(text=f"`{name}` is not available in this version of Pitcrew ({version}).")


_TIMESTAMP = re.compile(r"[0-9]{1,15}")


def aiohttp_handler(app: AsyncApp) -> Any:
    async def handle(request: web.Request) -> web.Response:
        # slack_sdk's verifier raises (a 500 and a logged error) on a timestamp int() refuses:
        # refuse it as Bolt refuses every other request it cannot verify.
        if not _TIMESTAMP.fullmatch(request.headers.get("X-Slack-Request-Timestamp", "")):
            return web.json_response({"error": "invalid request"}, status=401)
        response = await app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    return handle
