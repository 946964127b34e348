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
from structlog.testing import capture_logs

from bot.adapters.gitlab.intake import MAX_BODY
from bot.adapters.store.connection import client_for
from bot.adapters.store.embedded import EmbeddedRedis
from bot.adapters.store.inbox import stream_name
from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox

from .conftest import WEBHOOK_SECRET, drained, eventually
from .gitlab_payloads import pipeline_hook

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gitlab"
PIPELINE = json.dumps(
    {"object_kind": "pipeline", "object_attributes": {"id": 31, "status": "running"}}
).encode()
CHANNEL = "payments-deploys"
"""Where the example catalog sends shop/orders, the project of ``pipeline_hook``."""


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


async def _post_in_two_writes(bot: Pitcrew, body: bytes) -> tuple[int, dict[str, object]]:
    """POST a Pipeline Hook over a plain socket: the headers and half the body, then 50 ms later
    the other half, as a proxy or a busy GitLab sends it (two TCP segments)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", bot.bound_port)
    head = (
        "POST /webhooks/gitlab HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{bot.bound_port}\r\n"
        "Content-Type: application/json\r\n"
        "X-Gitlab-Event: Pipeline Hook\r\n"
        f"X-Gitlab-Token: {WEBHOOK_SECRET}\r\n"
        f"X-Gitlab-Event-UUID: {uuid.uuid4()}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode()
    half = len(body) // 2
    try:
        writer.write(head + body[:half])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(body[half:])
        await writer.drain()
        response = await reader.read()  # up to the close the request asked for
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = response.partition(b"\r\n")
    _, _, content = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(content)


async def test_a_webhook_body_arriving_in_two_segments_is_read_whole(
    bot: Pitcrew, slack: SlackSandbox
) -> None:
    """``request.content.read(n)`` returned the first segment only: GitLab got "body is not
    valid JSON" for a real Pipeline Hook, and disables a hook after four such failures."""
    body = json.dumps(pipeline_hook(pipeline_id=4101, status="failed")).encode()
    status, answer = await _post_in_two_writes(bot, body)
    assert (status, answer["status"]) == (200, "queued")
    await eventually(lambda: slack.messages(CHANNEL))
    [message] = slack.messages(CHANNEL)
    assert message.text == (
        "shop/orders pipeline #4101 failed on main: Add retries to the payment client"
    )


def _pipeline_with_many_jobs(pipeline_id: int, *, size: int) -> bytes:
    """A passed Pipeline Hook whose ``builds`` (a big test matrix) bring it close to ``size``."""
    hook = pipeline_hook(pipeline_id=pipeline_id, status="success")
    template = hook["builds"][1]
    shard = len(json.dumps({**template, "id": pipeline_id * 10_000, "name": "unit 0000/9999"}))
    count = (size - len(json.dumps(hook))) // (shard + 2)
    hook["builds"] += [
        {**template, "id": pipeline_id * 10_000 + n, "name": f"unit {n:04}/{count:04}"}
        for n in range(count)
    ]
    return json.dumps(hook).encode()


async def test_a_pipeline_with_thousands_of_jobs_is_accepted_and_shown(
    bot: Pitcrew, slack: SlackSandbox, http: aiohttp.ClientSession
) -> None:
    """Bodies of 384 kB to 1.9 MB were refused every time (read cut short, and aiohttp's
    ``client_max_size`` of 1 MiB would have refused them next)."""
    body = _pipeline_with_many_jobs(4102, size=1_900_000)
    assert 1_800_000 < len(body) < MAX_BODY
    status, answer = await _post_hook(http, bot, body, _hook_headers())
    assert (status, answer["status"]) == (200, "queued")
    await eventually(lambda: slack.messages(CHANNEL), within=30)
    [message] = slack.messages(CHANNEL)
    assert message.text.startswith("shop/orders pipeline #4102 passed on main")
    assert ":white_check_mark: build → :white_check_mark: test → :white_check_mark: deploy" in (
        slack.render(CHANNEL)
    )


async def _chunks_of(size: int, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    yield b'{"object_kind": "pipeline", "padding": "'
    for start in range(0, size, piece):
        yield b"x" * min(piece, size - start)
    yield b'"}'


async def test_an_oversized_chunked_webhook_is_refused(
    bot: Pitcrew, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    """Without a ``Content-Length`` the size is only known by reading: reading stops past 2 MiB."""
    async with http.post(
        f"{bot.url}/webhooks/gitlab", data=_chunks_of(MAX_BODY), headers=_hook_headers()
    ) as response:
        assert "Content-Length" not in response.request_info.headers  # sent chunked
        assert (response.status, await response.json()) == (
            413,
            {"error": f"body larger than {MAX_BODY} bytes"},
        )
    assert await redis.xlen(stream_name("gitlab")) == 0
    status, _ = await _post_hook(http, bot, PIPELINE, _hook_headers())
    assert status == 200  # the bot still takes webhooks


@pytest.mark.parametrize("depth", [1_000, 100_000])
async def test_deeply_nested_json_is_a_bad_request_not_a_crash(
    bot: Pitcrew, http: aiohttp.ClientSession, redis: aioredis.Redis, depth: int
) -> None:
    """It used to be a 500 with an error-level traceback (``RecursionError`` in ``json``)."""
    body = b'{"object_kind": "pipeline", "x": ' + b"[" * depth + b"]" * depth + b"}"
    with capture_logs() as logged:
        status, answer = await _post_hook(http, bot, body, _hook_headers())
    assert (status, answer) == (400, {"error": "body is not valid JSON"})
    assert [e for e in logged if e["log_level"] in ("error", "exception", "critical")] == []
    assert await redis.xlen(stream_name("gitlab")) == 0


async def _malformed_count(http: aiohttp.ClientSession, bot: Pitcrew) -> float:
    async with http.get(f"{bot.url}/metrics") as response:
        text = await response.text()
    name = 'pitcrew_events_total{outcome="malformed",source="gitlab"} '
    lines = [line for line in text.splitlines() if line.startswith(name)]
    return float(lines[0].removeprefix(name)) if lines else 0.0


@pytest.mark.parametrize(
    ("where", "value"),
    [
        pytest.param("object_attributes.id", -1, id="pipeline-id-negative"),
        pytest.param("object_attributes.id", 10**30, id="pipeline-id-past-int64"),
        pytest.param("object_attributes.id", True, id="pipeline-id-true"),
        pytest.param("object_attributes.id", 0, id="pipeline-id-zero"),
        pytest.param("object_attributes.id", 4103.0, id="pipeline-id-float"),
        pytest.param("object_attributes.id", "4103", id="pipeline-id-string"),
        pytest.param("object_attributes.iid", 2**63, id="pipeline-iid-past-int64"),
        pytest.param("builds.0.id", -5, id="job-id"),
        pytest.param("project.id", True, id="project-id"),
        pytest.param("user.id", 0, id="user-id"),
    ],
)
async def test_a_pipeline_with_an_id_gitlab_cannot_have_is_dropped(
    bot: Pitcrew,
    slack: SlackSandbox,
    http: aiohttp.ClientSession,
    where: str,
    value: object,
) -> None:
    """Pipelines -1, 10**30 and ``true`` used to be posted as "#-1", "#1000…" and "#1"."""
    before = await _malformed_count(http, bot)
    hostile = pipeline_hook(pipeline_id=4103, status="failed")
    *path, last = where.split(".")
    node = hostile
    for step in path:
        node = node[int(step)] if step.isdigit() else node[step]
    node[int(last) if last.isdigit() else last] = value
    status, _ = await _post_hook(http, bot, json.dumps(hostile).encode(), _hook_headers())
    assert status == 200  # JSON, so stored; the worker is the one that reads it
    good = pipeline_hook(pipeline_id=4104, status="failed")
    await _post_hook(http, bot, json.dumps(good).encode(), _hook_headers())

    await eventually(lambda: slack.messages(CHANNEL))  # handled in order: the hostile one first
    await eventually(lambda: drained(bot))
    assert [m.text for m in slack.all_messages()] == [  # the good pipeline and its failure
        "shop/orders pipeline #4104 failed on main: Add retries to the payment client",
        ":x: Pipeline #4104 failed on main: unit — <@U0ALICE>",
    ]
    assert await _malformed_count(http, bot) == before + 1


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
