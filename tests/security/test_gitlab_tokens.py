"""``POST /webhooks/gitlab`` stores nothing unless ``X-Gitlab-Token`` is exactly the secret.

Requests are written byte for byte on a socket, so that what is tested is what is on the wire
(an HTTP client would refuse, or quietly fix, some of these headers).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import uuid
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.adapters.store.inbox import stream_name
from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox, signed_slash_command
from tests.integration.conftest import WEBHOOK_SECRET

SECRET = WEBHOOK_SECRET.encode()
PIPELINE = json.dumps(
    {"object_kind": "pipeline", "object_attributes": {"id": 31, "status": "running"}}
).encode()
STREAM = stream_name("gitlab")


async def post_hook(bot: Pitcrew, token: bytes | None, body: bytes = PIPELINE) -> tuple[int, Any]:
    """One webhook as raw HTTP/1.1; ``token`` is the ``X-Gitlab-Token`` value (None: absent)."""
    head = [
        b"POST /webhooks/gitlab HTTP/1.1",
        b"Host: pitcrew",
        b"Content-Type: application/json",
        b"X-Gitlab-Event: Pipeline Hook",
        b"X-Gitlab-Event-UUID: " + str(uuid.uuid4()).encode(),
        b"Content-Length: " + str(len(body)).encode(),
        b"Connection: close",
    ]
    if token is not None:
        head.append(b"X-Gitlab-Token: " + token)
    reader, writer = await asyncio.open_connection("127.0.0.1", bot.bound_port)
    try:
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    try:
        decoded: Any = json.loads(payload)
    except ValueError:
        decoded = payload
    return int(status_line.split()[1]), decoded


WRONG_TOKENS = {
    "wrong": b"not-the-secret",
    "empty": b"",
    "missing": None,
    "a-prefix": SECRET[:-1],
    "first-character": SECRET[:1],
    "one-character-more": SECRET + b"x",
    "other-case": SECRET.upper(),
    "trailing-no-break-space": SECRET + "\u00a0".encode(),
    "trailing-ideographic-space": SECRET + "\u3000".encode(),
    "very-long": SECRET + b"x" * 7000,  # under the server's 8 KiB header line limit
    "not-utf-8": SECRET + b"\xff\xfe",
    "the-slack-signing-secret": b"sandbox-signing-secret",
}


@pytest.mark.parametrize("token", WRONG_TOKENS.values(), ids=WRONG_TOKENS.keys())
async def test_a_webhook_without_the_exact_token_is_refused_and_stores_nothing(
    bot: Pitcrew, redis: aioredis.Redis, token: bytes | None
) -> None:
    assert await post_hook(bot, token) == (401, {"error": "invalid X-Gitlab-Token"})
    assert await redis.xlen(STREAM) == 0
    # the right token, for contrast
    status, answer = await post_hook(bot, SECRET)
    assert (status, answer["status"]) == (200, "queued")
    assert await redis.xlen(STREAM) == 1


async def test_a_token_beyond_the_header_size_limit_is_refused_by_http_itself(
    bot: Pitcrew, redis: aioredis.Redis
) -> None:
    status, _ = await post_hook(bot, SECRET * 1000)
    assert status in (400, 431)
    assert await redis.xlen(STREAM) == 0


async def test_only_the_first_token_header_counts(bot: Pitcrew, redis: aioredis.Redis) -> None:
    """A second ``X-Gitlab-Token`` with the secret does not rescue a wrong first one."""
    status, _ = await post_hook(bot, b"wrong\r\nX-Gitlab-Token: " + SECRET)
    assert status == 401
    assert await redis.xlen(STREAM) == 0


async def test_whitespace_around_the_token_is_not_part_of_it(
    bot: Pitcrew, redis: aioredis.Redis
) -> None:
    """HTTP strips spaces and tabs around a header value (RFC 9110, 5.5) before Pitcrew sees
    it: the secret followed by a space *is* the secret, which only its holder can send."""
    for padded in (SECRET + b" ", SECRET + b"\t", b" " + SECRET + b"  "):
        status, answer = await post_hook(bot, padded)
        assert (status, answer["status"]) == (200, "queued")
    assert await redis.xlen(STREAM) == 3


async def test_the_token_and_the_slack_signature_are_compared_in_constant_time(
    bot: Pitcrew, slack: SlackSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No timing test: the comparisons are seen going through ``hmac.compare_digest``."""
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert (await post_hook(bot, b"not-the-secret"))[0] == 401
    assert (b"not-the-secret", SECRET) in compared
    assert (await post_hook(bot, SECRET))[0] == 200
    assert (SECRET, SECRET) in compared

    body, headers = signed_slash_command(
        signing_secret="not-the-signing-secret",
        command="/lock",
        text="",
        user_id="U0ALICE",
        user_name="alice",
        channel_id=slack.channel_id("general"),
        channel_name="general",
        response_url=slack.response_url(channel="general", user="alice"),
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{bot.url}/slack/events", data=body, headers=headers) as response,
    ):
        assert response.status == 401
    forged = headers["X-Slack-Signature"]
    assert any(forged in (a, b) for a, b in compared)
