"""The GitLab worker handles events by the batch: what a person reads in Slack is what handling
them one at a time would show, a batch replayed after a crash posts nothing twice and never an
older state, and two replicas on one Redis still give one message per pipeline."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.adapters.slack.outbox import SlackOutbox
from bot.adapters.store.connection import client_for
from bot.adapters.store.inbox import RedisInbox
from bot.adapters.store.streams import StreamConsumer
from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox
from bot.services.ports import InboundEvent
from bot.settings import Settings

from .conftest import CHANNELS, WEBHOOK_SECRET, bot_environment, drained, eventually
from .gitlab_payloads import T0, pipeline_hook
from .test_pipelines import CATALOG, CHANNEL, _run, settled

Delivery = tuple[str, bytes, str]
"""Kind, body, event id."""


def _retried(pipeline_id: int) -> list[tuple[str, dict[str, Any]]]:
    """A pipeline that fails, is retried (a new job in place of the failed one) and passes."""
    later = T0 + timedelta(minutes=20)
    retried = pipeline_hook(pipeline_id=pipeline_id, status="running", started=T0)
    retried["builds"][1].update(
        id=pipeline_id * 10,
        status="running",
        started_at=later.strftime("%Y-%m-%d %H:%M:%S UTC"),
        finished_at=None,
    )
    passed = pipeline_hook(pipeline_id=pipeline_id, status="success", started=T0)
    passed["builds"][1].update(
        id=pipeline_id * 10,
        started_at=later.strftime("%Y-%m-%d %H:%M:%S UTC"),
        finished_at=(later + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
    passed["object_attributes"]["finished_at"] = (later + timedelta(minutes=1)).strftime(
        "%Y-%m-%d %H:%M:%S UTC"
    )
    return [
        ("Pipeline Hook", pipeline_hook(pipeline_id=pipeline_id, status="running")),
        ("Pipeline Hook", pipeline_hook(pipeline_id=pipeline_id, status="failed")),
        ("Pipeline Hook", retried),
        ("Pipeline Hook", passed),
    ]


def traffic(pipelines: int = 12, *, first_id: int = 500) -> list[Delivery]:
    """Pipelines of one branch passing and failing, one failing then retried and passing, their
    hooks interleaved as GitLab delivers them (each pipeline's in order), and GitLab's retries."""
    timeline: list[tuple[float, Delivery]] = []
    for j in range(pipelines):
        pipeline_id = first_id + j
        final = "failed" if j % 3 == 1 else "success"
        hooks = _run(pipeline_id, final, started=T0 + timedelta(minutes=2 * j))
        if j == pipelines // 2:
            hooks = _retried(pipeline_id)
        for k, (kind, body) in enumerate(hooks):
            timeline.append(
                (j * 2.0 + k * 3.0, (kind, json.dumps(body).encode(), str(uuid.uuid4())))
            )
    timeline.sort(key=lambda item: item[0])
    deliveries = [delivery for _, delivery in timeline]
    return deliveries + deliveries[::7]  # retries: same event ids, answered "duplicate"


def transcript(slack: SlackSandbox) -> dict[str, tuple[str, list[tuple[str, bool]]]]:
    """Each pipeline message's text and its thread's replies, by the message's key."""
    out = {}
    for message in slack.messages(CHANNEL):
        key = message.metadata["event_payload"]["key"] if message.metadata else message.ts
        assert key not in out, f"two messages for {key}"
        out[key] = (message.text, [(r.text, r.reply_broadcast) for r in message.replies])
    return out


def posts(slack: SlackSandbox) -> int:
    return len([c for c in slack.calls if c.method == "chat.postMessage" and c.ok])


async def store_backlog(redis_url: str, deliveries: list[Delivery]) -> None:
    """Store webhooks as the intake does, before any worker runs: the worker's first read takes
    them all, one batch."""
    redis = client_for(redis_url)
    inbox = RedisInbox(redis)
    try:
        for kind, body, event_id in deliveries:
            await inbox.append(
                InboundEvent(
                    source="gitlab",
                    kind=kind,
                    dedup_key=event_id,
                    body=body,
                    received_at=time.time(),
                    request_id=uuid.uuid4().hex,
                )
            )
    finally:
        await redis.aclose()


async def pending(bot: Pitcrew) -> int:
    assert bot.store is not None
    groups = await bot.store.redis.xinfo_groups("events:gitlab")
    return sum(int(g["pending"]) for g in groups)


async def one_at_a_time(redis_url: str, tmp_path: Path, deliveries: list[Delivery]) -> Any:
    """The same webhooks through a bot that handles each before the next arrives."""
    redis = client_for(redis_url)
    await redis.flushall()
    await redis.aclose()
    async with SlackSandbox(channels=CHANNELS, enforce_pacing=False) as slack:
        env = {
            **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "alone"),
            "CATALOG_PATH": str(CATALOG),
        }
        settings = Settings(_env_file=None, **env)  # type: ignore[call-arg]
        bot = Pitcrew(settings, host="127.0.0.1", port=0, outbox_pacing=0.005)
        await bot.start()
        try:
            async with aiohttp.ClientSession() as http:
                for kind, body, event_id in deliveries:
                    headers = {
                        "X-Gitlab-Event": kind,
                        "X-Gitlab-Token": WEBHOOK_SECRET,
                        "X-Gitlab-Event-UUID": event_id,
                    }
                    url = f"{bot.url}/webhooks/gitlab"
                    async with http.post(url, data=body, headers=headers) as response:
                        assert response.status == 200
                    await eventually(lambda: settled(bot))
        finally:
            await bot.stop()
        return transcript(slack), posts(slack)


async def test_a_backlog_handled_as_one_batch_reads_as_one_event_at_a_time(
    make_bot: Callable[..., Pitcrew], slack: SlackSandbox, redis_url: str, tmp_path: Path
) -> None:
    deliveries = traffic()
    await store_backlog(redis_url, deliveries)
    bot = make_bot(CATALOG_PATH=str(CATALOG), outbox_pacing=0.005)
    await bot.start()
    try:
        await eventually(lambda: settled(bot), within=60)
    finally:
        await bot.stop()
    batched, batched_posts = transcript(slack), posts(slack)

    alone, alone_posts = await one_at_a_time(redis_url, tmp_path, deliveries)
    assert batched == alone
    assert batched_posts == alone_posts  # one post per message and reply, nothing twice
    retried = batched["pipeline:shop/orders:506"]
    assert " passed " in retried[0]
    assert any("failed" in text for text, _ in retried[1])  # its first run's failure, told


@pytest.mark.parametrize("dies_in", ["the ack", "the outbox"])
async def test_a_batch_replayed_after_a_crash_posts_nothing_twice_and_no_older_state(
    dies_in: str,
    make_bot: Callable[..., Pitcrew],
    slack: SlackSandbox,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first bot stops for good in the middle of its batch: after committing the states
    and queueing the messages but before acknowledging the entries, or after committing but
    before queueing. Another bot claims the batch and handles it again."""
    deliveries = traffic(first_id=700)
    await store_backlog(redis_url, deliveries)

    async def dead(*_: Any, **__: Any) -> None:
        await asyncio.Event().wait()  # a process that died here

    ack = StreamConsumer._ack

    async def ack_or_die(self: StreamConsumer, *ids: str) -> None:
        if self.stream == "events:gitlab":
            await dead()
        await ack(self, *ids)

    if dies_in == "the ack":
        monkeypatch.setattr(StreamConsumer, "_ack", ack_or_die)
    else:
        monkeypatch.setattr(SlackOutbox, "send_many", dead)
    first = make_bot(CATALOG_PATH=str(CATALOG), outbox_pacing=0.005)
    await first.start()
    try:
        assert first.store is not None
        redis = first.store.redis
        if dies_in == "the ack":  # its effects all reached Slack, its entries are pending
            await eventually(lambda: len(slack.messages(CHANNEL)) == 12)
            await eventually(lambda: drained(first), within=30)
        else:  # some states committed, nothing queued for Slack
            await eventually(lambda: redis.exists("pipelines:{shop/orders}:700"))
        assert await pending(first) == len(set(deliveries))
    finally:
        await first.stop()
    before = transcript(slack), posts(slack)
    monkeypatch.undo()

    second = make_bot(CATALOG_PATH=str(CATALOG), outbox_pacing=0.005, claim_idle=0.2)
    await second.start()
    try:
        await eventually(lambda: settled(second), within=60)
        assert await pending(second) == 0
    finally:
        await second.stop()

    shown = transcript(slack)
    assert len(shown) == 12
    if dies_in == "the ack":
        assert (shown, posts(slack)) == before  # the replay changed nothing anyone can see
    for key, (text, replies) in shown.items():
        pipeline_id = int(key.rsplit(":", 1)[1])
        j = pipeline_id - 700
        if j == 6:  # failed, retried, passed
            assert " passed " in text
            assert [r for r, _ in replies if "failed" in r]
        else:
            assert (" failed " if j % 3 == 1 else " passed ") in text
        assert len(replies) <= 2
    replies = sum(len(r) for _, r in shown.values())
    assert posts(slack) == len(shown) + replies  # nothing posted twice


async def test_two_replicas_on_one_redis_still_post_one_message_per_pipeline(
    make_bot: Callable[..., Pitcrew], slack: SlackSandbox
) -> None:
    deliveries = traffic(pipelines=40, first_id=900)
    a = make_bot(CATALOG_PATH=str(CATALOG), outbox_pacing=0.005)
    b = make_bot(CATALOG_PATH=str(CATALOG), outbox_pacing=0.005)
    await a.start()
    await b.start()
    try:
        queue: asyncio.Queue[tuple[int, Delivery]] = asyncio.Queue()
        for item in enumerate(deliveries):
            queue.put_nowait(item)
        async with aiohttp.ClientSession() as http:

            async def client() -> None:
                while not queue.empty():
                    index, (kind, body, event_id) = queue.get_nowait()
                    target = (a, b)[index % 2]  # a Service in front of two replicas
                    headers = {
                        "X-Gitlab-Event": kind,
                        "X-Gitlab-Token": WEBHOOK_SECRET,
                        "X-Gitlab-Event-UUID": event_id,
                    }
                    url = f"{target.url}/webhooks/gitlab"
                    async with http.post(url, data=body, headers=headers) as response:
                        assert response.status == 200

            await asyncio.gather(*(client() for _ in range(20)))
        await eventually(lambda: settled(a), within=90)
    finally:
        await a.stop()
        await b.stop()
    shown = transcript(slack)
    assert len(shown) == 40
    for key, (text, replies) in shown.items():
        j = int(key.rsplit(":", 1)[1]) - 900
        if j == 20:
            assert " passed " in text
            assert [r for r, _ in replies if "failed" in r]
        else:
            assert (" failed " if j % 3 == 1 else " passed ") in text
        failures = [r for r, _ in replies if "failed" in r]
        assert len(failures) == (1 if j % 3 == 1 or j == 20 else 0)
    replies = sum(len(r) for _, r in shown.values())
    assert posts(slack) == len(shown) + replies  # nothing posted twice
