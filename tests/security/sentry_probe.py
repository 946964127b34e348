"""Errors that carry every secret, reported with logs and Sentry set up as ``pitcrew serve`` sets
them up (``bot.cli``), from the settings in the environment. Run by ``test_secrets.py`` in its
own process, so that Sentry's global client and integrations stay out of the test process.

1. An exception whose message holds the secrets, logged with its traceback (structlog).
2. The same kind of exception, raised where local variables hold the secrets, sent to Sentry.
3. An aiohttp handler failing on a request whose headers and query string carry the secrets:
   Sentry's aiohttp integration reports it with the request attached.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import sentry_sdk
from aiohttp import web

from bot import logs
from bot.cli import _configure_observability
from bot.settings import load_settings

log = logs.get("probe")


def _call_gitlab(secrets: list[str], token: str) -> None:
    headers = {"PRIVATE-TOKEN": token}  # noqa: F841 - local variables Sentry sees
    raise RuntimeError(f"GitLab answered 401 to {', '.join(secrets)}")


async def _failing_handler(request: web.Request) -> web.Response:
    secrets: Any = request.app["secrets"]  # noqa: F841 - locals again
    raise RuntimeError("the handler failed")


async def main() -> None:
    settings = load_settings()
    _configure_observability(settings)
    secrets = settings.secrets
    bot_token = settings.slack_bot_token.get_secret_value()
    gitlab_token = settings.gitlab_token.get_secret_value()
    webhook_secret = settings.gitlab_webhook_secret.get_secret_value()
    assert settings.slack_signing_secret is not None
    signing_secret = settings.slack_signing_secret.get_secret_value()

    try:
        _call_gitlab(secrets, gitlab_token)
    except RuntimeError:
        log.exception("gitlab call failed", detail=f"token {gitlab_token}")
    try:
        _call_gitlab(secrets, gitlab_token)
    except RuntimeError as exc:
        sentry_sdk.capture_exception(exc)

    app = web.Application()
    app["secrets"] = secrets
    app.router.add_post("/hook", _failing_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{port}/hook?private_token={gitlab_token}",
            data=f"token={bot_token}",
            headers={
                "X-Gitlab-Token": webhook_secret,
                "X-Slack-Signature": f"v0={signing_secret}",
                "Authorization": f"Bearer {bot_token}",
                "Cookie": f"session={bot_token}",
                "X-Forwarded-Token": gitlab_token,  # no name tells it is a secret
            },
        ) as response,
    ):
        assert response.status == 500
    await runner.cleanup()
    sentry_sdk.flush(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
