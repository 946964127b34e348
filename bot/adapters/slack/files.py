"""Files into Slack by the external upload flow: ``files.getUploadURLExternal``, the bytes
POSTed to the URL it gives, ``files.completeUploadExternal`` with the channel and thread.

The file goes into the thread of a message the outbox posts (``thread_key``): the upload waits
for that message to be in Slack (the outbox delivers on its own time, paced), then shares the
file there. Needs the bot scope ``files:write``. Every failure — Slack refusing, the upload URL
not answering, the message not posted in time — is one ``SlackUnavailable`` with the step that
failed, so the caller can fall back to text. An upload is not retried here: a retry after a
lost answer could share the file twice, and the caller's marker makes it once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs, metrics
from bot.adapters.slack.outbox import SlackOutbox
from bot.errors import SlackUnavailable

log = logs.get(__name__)

WAIT_FOR_MESSAGE = 120.0
"""Seconds to wait for the thread's message to be posted (the outbox may be pacing)."""
UPLOAD_TIMEOUT = 30.0


class SlackFiles:
    def __init__(
        self,
        client: AsyncWebClient,
        outbox: SlackOutbox,
        *,
        wait_for_message: float = WAIT_FOR_MESSAGE,
    ) -> None:
        self._client = client
        self._outbox = outbox
        self._wait = wait_for_message

    async def upload(
        self,
        *,
        channel: str,
        thread_key: str,
        filename: str,
        title: str,
        alt: str,
        content: bytes,
    ) -> None:
        channel_id, thread_ts = await self._thread(channel, thread_key)
        granted = await self._call(
            "files.getUploadURLExternal", filename=filename, length=len(content), alt_txt=alt
        )
        upload_url, file_id = str(granted.get("upload_url") or ""), granted.get("file_id")
        if not upload_url.startswith(("https://", "http://")) or not file_id:
            raise SlackUnavailable("Slack gave no upload URL for the chart")
        await self._post_bytes(upload_url, content)
        await self._call(
            "files.completeUploadExternal",
            files=[{"id": str(file_id), "title": title}],
            channel_id=channel_id,
            thread_ts=thread_ts,
        )
        log.info("file uploaded", file=filename, bytes=len(content), thread=thread_key)

    async def _thread(self, channel: str, key: str) -> tuple[str, str]:
        deadline = time.monotonic() + self._wait
        while True:
            found = await self._outbox.posted(channel, key)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise SlackUnavailable(f"its message was not posted within {self._wait:.0f} s")
            await asyncio.sleep(0.2)

    async def _post_bytes(self, url: str, content: bytes) -> None:
        session = getattr(self._client, "session", None)
        owned = session is None
        session = session or aiohttp.ClientSession()
        try:
            async with session.post(
                url,
                data=content,
                headers={"Content-Type": "application/octet-stream"},
                timeout=aiohttp.ClientTimeout(total=UPLOAD_TIMEOUT),
            ) as response:
                outcome = "ok" if response.status == 200 else "error"
                metrics.SLACK_CALLS.labels("files.upload_url", outcome).inc()
                if response.status != 200:
                    raise SlackUnavailable(f"the upload URL answered HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            metrics.SLACK_CALLS.labels("files.upload_url", "unreachable").inc()
            raise SlackUnavailable(f"the upload URL did not answer: {type(exc).__name__}") from exc
        finally:
            if owned:
                await session.close()

    async def _call(self, method: str, **params: Any) -> dict[str, Any]:
        try:
            response = await getattr(self._client, method.replace(".", "_"))(**params)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or f"http_{exc.response.status_code}")
            metrics.SLACK_CALLS.labels(method, "error").inc()
            hint = " (the app needs the files:write scope)" if error == "missing_scope" else ""
            raise SlackUnavailable(f"Slack refused {method}: {error}{hint}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            metrics.SLACK_CALLS.labels(method, "unreachable").inc()
            raise SlackUnavailable(f"Slack unreachable for {method}: {type(exc).__name__}") from exc
        metrics.SLACK_CALLS.labels(method, "ok").inc()
        return dict(response.data) if isinstance(response.data, dict) else {}
