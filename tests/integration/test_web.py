"""The HTTP surface of the running bot: Slack verification, GitLab intake, health, metrics."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.adapters.store.connection import client_for
from bot.adapters.store.embedded import EmbeddedRedis
from bot.adapters.store.inbox import stream_name
from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox

from .conftest import WEBHOOK_SECRET, eventually

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gitlab"
PIPELINE = json.dumps(
    {"object_kind": "pipeline", "object_attributes": {"id": 31, "status": "running"}}
).encode()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _hook_headers(event: str = "Pipeline Hook", **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": WEBHOOK_SECRET,
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        **extra,
    }


async def _post_hook(
    http: aiohttp.ClientSession, bot: Pitcrew, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, object]]:
    data = io.BytesIO(body) if len(body) > 1024 * 1024 else body
    async with http.post(f"{bot.url}/webhooks/gitlab", data=data, headers=headers) as response:
        return response.status, await response.json()


# --------------------------------------------------------------------------- Slack


async def test_slack_requests_with_a_bad_signature_are_refused(
    bot: Pitcrew, slack: SlackSandbox, http: aiohttp.ClientSession
) -> None:
    body, headers = slack.slash_command(
        command="/whatsinprod", text="orders", user="alice", channel="payments-deploys"
    )
    forged = {**headers, "X-Slack-Signature": "v0=" + "0" * 64}
    async with http.post(f"{bot.url}/slack/events", data=body, headers=forged) as response:
        assert response.status == 401
    tampered = body.replace(b"orders", b"invoices")
    async with http.post(f"{bot.url}/slack/events", data=tampered, headers=headers) as response:
        assert response.status == 401


async def test_slack_requests_older_than_five_minutes_are_refused(
    bot: Pitcrew, slack: SlackSandbox, http: aiohttp.ClientSession
) -> None:
    old = int(time.time()) - 5 * 60 - 5
    body, headers = slack.slash_command(
        command="/whatsinprod", text="", user="alice", channel="payments-deploys", timestamp=old
    )
    async with http.post(f"{bot.url}/slack/events", data=body, headers=headers) as response:
        assert response.status == 401


async def test_a_command_pitcrew_does_not_know_is_answered_not_dropped(
    bot: Pitcrew, slack: SlackSandbox, http: aiohttp.ClientSession
) -> None:
    """A Slack app manifest newer than the bot (a command added there first)."""
    body, headers = slack.slash_command(
        command="/promote", text="orders", user="alice", channel="payments-deploys"
    )
    async with http.post(f"{bot.url}/slack/events", data=body, headers=headers) as response:
        assert response.status == 200  # Slack shows a plain-text body to the user only
        assert await response.text() == (
            "`/promote` is not available in this version of Pitcrew (0.1.0)."
        )


# --------------------------------------------------------------------------- GitLab


async def test_a_webhook_with_a_wrong_or_missing_token_is_refused(
    bot: Pitcrew, http: aiohttp.ClientSession
) -> None:
    status, body = await _post_hook(http, bot, PIPELINE, _hook_headers(**{"X-Gitlab-Token": "x"}))
    assert (status, body) == (401, {"error": "invalid X-Gitlab-Token"})
    headers = _hook_headers()
    del headers["X-Gitlab-Token"]
    status, _ = await _post_hook(http, bot, PIPELINE, headers)
    assert status == 401


async def test_an_oversized_webhook_is_refused(bot: Pitcrew, http: aiohttp.ClientSession) -> None:
    big = b'{"object_kind":"pipeline","padding":"' + b"x" * (5 * 1024 * 1024) + b'"}'
    status, body = await _post_hook(http, bot, big, _hook_headers())
    assert status == 413
    assert "larger than" in str(body["error"])


async def test_a_webhook_is_stored_once_and_its_retry_is_acknowledged(
    bot: Pitcrew, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    headers = _hook_headers()
    status, body = await _post_hook(http, bot, PIPELINE, headers)
    assert status == 200
    assert body["status"] == "queued"
    status, body = await _post_hook(http, bot, PIPELINE, headers)  # GitLab's retry, same UUID
    assert (status, body) == (200, {"status": "duplicate"})
    entries = await redis.xrange(stream_name("gitlab"))
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"kind"] == b"Pipeline Hook"
    assert fields[b"body"] == PIPELINE


async def test_idempotency_key_takes_precedence_for_de_duplication(
    bot: Pitcrew, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    await _post_hook(http, bot, PIPELINE, _hook_headers(**{"Idempotency-Key": "abc"}))
    _, body = await _post_hook(http, bot, PIPELINE, _hook_headers(**{"Idempotency-Key": "abc"}))
    assert body == {"status": "duplicate"}
    assert len(await redis.xrange(stream_name("gitlab"))) == 1


@pytest.mark.parametrize(
    ("body", "headers", "status", "answer"),
    [
        (b"{not json", {}, 400, {"error": "body is not valid JSON"}),
        (b"[1, 2]", {}, 400, {"error": "body must be a JSON object"}),
        (b"{}", {"X-Gitlab-Event": ""}, 400, {"error": "missing X-Gitlab-Event header"}),
        (
            b"{}",
            {"X-Gitlab-Event": "Wiki Page Hook"},
            200,
            {"status": "ignored", "reason": "'Wiki Page Hook' is not used"},
        ),
    ],
    ids=["malformed-json", "not-an-object", "no-event-header", "unknown-event"],
)
async def test_bad_webhooks_get_a_clear_answer_and_store_nothing(
    bot: Pitcrew,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    body: bytes,
    headers: dict[str, str],
    status: int,
    answer: dict[str, str],
) -> None:
    got = await _post_hook(http, bot, body, {**_hook_headers(), **headers})
    assert got == (status, answer)
    assert await redis.xlen(stream_name("gitlab")) == 0


async def test_webhooks_get_503_while_redis_is_down_and_work_again_after(
    make_bot: Callable[..., Pitcrew], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    bot = make_bot(REDIS_URL=url)
    await bot.start()
    try:
        status, _ = await _post_hook(http, bot, PIPELINE, _hook_headers())
        assert status == 200
        server.stop()
        status, body = await _post_hook(http, bot, PIPELINE, _hook_headers())
        assert (status, body) == (503, {"error": "store unavailable; retry later"})
        async with http.get(f"{bot.url}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["checks"]["redis"] is False
        async with http.get(f"{bot.url}/healthz") as response:
            assert response.status == 200  # alive: restarting the pod would not help

        assert server.start() == url  # same state dir: what was accepted before is still there
        status, _ = await eventually(
            lambda: _post_hook(http, bot, PIPELINE, _hook_headers()), within=10
        )
        assert status == 200
        check = client_for(url)
        assert await check.xlen(stream_name("gitlab")) == 2
        await check.aclose()
    finally:
        await bot.stop()
        server.stop()


# --------------------------------------------------------------------------- health


async def test_health_readiness_and_metrics(bot: Pitcrew, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{bot.url}/healthz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})
    async with http.get(f"{bot.url}/readyz") as response:
        assert response.status == 200
        assert await response.json() == {
            "status": "ready",
            "checks": {"redis": True, "workers": True},
        }
    await _post_hook(http, bot, PIPELINE, _hook_headers(**{"X-Gitlab-Token": "wrong"}))
    async with http.get(f"{bot.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    assert 'pitcrew_http_requests_total{route="gitlab",status="401"}' in text
    assert 'pitcrew_events_total{outcome="rejected",source="gitlab"}' in text
    assert "pitcrew_outbox_pending" in text
    assert WEBHOOK_SECRET not in text


# --------------------------------------------------------------------------- Socket Mode


async def test_socket_mode_takes_slack_traffic_when_an_app_token_is_set(
    make_bot: Callable[..., Pitcrew], slack: SlackSandbox, http: aiohttp.ClientSession
) -> None:
    bot = make_bot(SLACK_APP_TOKEN=slack.app_token, SLACK_SIGNING_SECRET="")
    await bot.start()
    try:
        await eventually(lambda: slack.socket_connections == 1)
        ack = await slack.socket_slash_command(
            command="/promote", text="orders", user="alice", channel="payments-deploys"
        )
        assert ack["payload"] == {
            "text": "`/promote` is not available in this version of Pitcrew (0.1.0)."
        }
        await slack.socket_slash_command(
            command="/lock", text="", user="alice", channel="payments-deploys"
        )
        await eventually(lambda: slack.ephemerals())  # answered through its response_url
        assert "*production* open" in slack.read(slack.ephemerals()[-1])
        body, headers = slack.slash_command(
            command="/whatsinprod", text="", user="alice", channel="payments-deploys"
        )
        async with http.post(f"{bot.url}/slack/events", data=body, headers=headers) as response:
            assert response.status == 404  # no public Slack endpoint in Socket Mode
    finally:
        await bot.stop()
    assert slack.socket_connections == 0


async def test_stop_ends_every_worker(make_bot: Callable[..., Pitcrew]) -> None:
    """A worker that swallowed its cancellation would keep a stopped bot half alive."""
    bot = make_bot()
    await bot.start()
    await asyncio.sleep(0.3)  # the workers are inside their Redis calls by now
    names = {"outbox", "lock-sweeper", "release-sweeper", "gitlab-events", "catalog-refresh"}
    workers = [t for t in asyncio.all_tasks() if t.get_name() in names]
    assert {t.get_name() for t in workers} == names
    await bot.stop()
    assert [t.get_name() for t in workers if not t.done()] == []
