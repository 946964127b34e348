"""Pipeline notifications end to end: GitLab webhooks into the running bot, Slack transcript out."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot import metrics
from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox

from .conftest import WEBHOOK_SECRET, eventually
from .gitlab_payloads import T0, fixture, job_hook, pipeline_hook

CATALOG = Path(__file__).parents[1] / "fixtures" / "catalog.yaml"
CHANNEL = "payments-deploys"


@pytest.fixture
async def bot(make_bot: Callable[..., Pitcrew]) -> AsyncIterator[Pitcrew]:
    pitcrew = make_bot(CATALOG_PATH=str(CATALOG))
    await pitcrew.start()
    yield pitcrew
    await pitcrew.stop()


@pytest.fixture
async def gitlab(bot: Pitcrew) -> AsyncIterator[Callable[..., Any]]:
    """Send webhooks as GitLab does: one event id per delivery, the same one on its retries."""
    async with aiohttp.ClientSession() as http:

        async def send(kind: str, payload: dict[str, Any] | bytes, event_id: str = "") -> int:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Gitlab-Event": kind,
                "X-Gitlab-Token": WEBHOOK_SECRET,
                "X-Gitlab-Event-UUID": event_id or str(uuid.uuid4()),
            }
            async with http.post(f"{bot.url}/webhooks/gitlab", data=body, headers=headers) as r:
                return r.status

        yield send


async def settled(bot: Pitcrew) -> bool:
    """Every stored event handled and every Slack message delivered."""
    assert bot.store is not None
    assert bot.outbox is not None
    groups = await bot.store.redis.xinfo_groups("events:gitlab")
    busy = not groups or any(g["pending"] or g["lag"] for g in groups)
    return not busy and await bot.outbox.pending() == 0


def message_failed(pipeline_id: int) -> str:
    return f"shop/orders pipeline #{pipeline_id} failed on main: Add retries to the payment client"


async def test_gitlab_documented_pipeline_hook_becomes_one_message(
    bot: Pitcrew, slack: SlackSandbox, gitlab: Callable[..., Any]
) -> None:
    assert await gitlab("Pipeline Hook", fixture("pipeline_hook")) == 200
    await eventually(lambda: settled(bot))

    assert slack.render(CHANNEL) == (
        "#payments-deploys\n"
        "pitcrew: :white_check_mark: *passed* · gitlab-org/gitlab-test · pipeline #31\n"
        "         Ref: !1 Test    Commit: bcbb5ec3 test\n"
        "         Author: User    Duration: 1m 3s\n"
        # GitLab's own example says "success" although its test job failed (not allowed to).
        "         :white_check_mark: build → :x: test → :hourglass: deploy\n"
    )


async def test_documented_job_and_deployment_hooks_are_handled_quietly(
    bot: Pitcrew, slack: SlackSandbox, gitlab: Callable[..., Any]
) -> None:
    """The documented Job Hook is a created job on a feature branch: the default filter (default
    branch, tags, failures) does not show it. The Deployment Hook is stored for later use."""
    assert await gitlab("Job Hook", fixture("job_hook")) == 200
    assert await gitlab("Deployment Hook", fixture("deployment_hook")) == 200
    await eventually(lambda: settled(bot))
    assert slack.all_messages() == []
    assert bot.gitlab_worker is not None
    assert bot.gitlab_worker.running


def _run(pipeline_id: int, final: str, *, started=T0, failed_job: str | None = None):  # type: ignore[no-untyped-def]
    """A pipeline's webhooks in the order GitLab sends them."""
    hooks: list[tuple[str, dict[str, Any]]] = []
    for status in ("created", "pending", "running"):
        hooks.append(
            (
                "Pipeline Hook",
                pipeline_hook(pipeline_id=pipeline_id, status=status, started=started),
            )
        )
    hooks.append(
        (
            "Job Hook",
            job_hook(pipeline_id=pipeline_id, name="compile", status="success", started=started),
        )
    )
    hooks.append(
        (
            "Job Hook",
            job_hook(pipeline_id=pipeline_id, name="unit", status="running", started=started),
        )
    )
    unit = "failed" if final == "failed" and (failed_job or "unit") == "unit" else "success"
    hooks.append(
        ("Job Hook", job_hook(pipeline_id=pipeline_id, name="unit", status=unit, started=started))
    )
    hooks.append(
        (
            "Pipeline Hook",
            pipeline_hook(
                pipeline_id=pipeline_id, status=final, started=started, failed_job=failed_job
            ),
        )
    )
    return hooks


async def test_a_failing_then_fixed_branch_reads_right_whatever_the_order(
    bot: Pitcrew, slack: SlackSandbox, gitlab: Callable[..., Any]
) -> None:
    rng = random.Random(7)
    failing = _run(100, "failed")
    deliveries = [(kind, body, str(uuid.uuid4())) for kind, body in failing]
    deliveries += rng.sample(deliveries, 3)  # GitLab retries: same event id
    rng.shuffle(deliveries)
    for kind, body, event_id in deliveries:
        assert await gitlab(kind, body, event_id) == 200
    # Sidekiq also sends the same content twice under different ids.
    for kind, body in rng.sample(failing, 2):
        await gitlab(kind, body)
    await eventually(lambda: settled(bot))

    [message] = slack.messages(CHANNEL)
    assert " failed " in message.text
    [failure] = message.replies
    assert "<@U0ALICE>" in failure.text
    assert "unit" in failure.text
    assert "script failed" in slack.render(CHANNEL)

    fixed_at = T0 + timedelta(minutes=10)
    for kind, body in _run(101, "success", started=fixed_at):
        await gitlab(kind, body)
    await eventually(lambda: settled(bot))

    first, second = slack.messages(CHANNEL)
    assert " passed " in second.text
    [fixed] = second.replies
    assert fixed.reply_broadcast
    assert "fixed" in fixed.text
    assert first.replies == [failure]
    posts = [c for c in slack.calls if c.method == "chat.postMessage" and c.ok]
    assert len(posts) == 4  # two pipelines, one failure reply, one "fixed" reply


async def test_a_throttled_author_lookup_still_mentions_the_author(
    bot: Pitcrew, slack: SlackSandbox, gitlab: Callable[..., Any]
) -> None:
    """Slack answers ``users.lookupByEmail`` with 429 a few times: the failure reply waits its
    ``Retry-After`` and still pings the author (the GitLab name in its place is never corrected)."""
    slack.fail("users.lookupByEmail", status=429, times=3, retry_after=1)
    for kind, body in _run(300, "failed"):
        assert await gitlab(kind, body) == 200
    await eventually(lambda: settled(bot), within=20)

    [message] = slack.messages(CHANNEL)
    [failure] = message.replies
    assert "<@U0ALICE>" in failure.text
    assert "Alice Martin" not in failure.text
    assert "by @alice" in slack.render(CHANNEL)
    lookups = [c for c in slack.calls if c.method == "users.lookupByEmail"]
    assert [c.status for c in lookups] == [429, 429, 429, 200]
    assert all(b.time - a.time >= 1.0 for a, b in itertools.pairwise(lookups))


async def test_an_author_lookup_throttled_for_long_names_the_gitlab_user(
    bot: Pitcrew, slack: SlackSandbox, gitlab: Callable[..., Any]
) -> None:
    """Slack asks to wait a minute: the failure reply does not wait that long, names the author
    as GitLab does (no ping), and Slack is not asked again before the minute is over."""
    slack.fail_for("users.lookupByEmail", status=429, seconds=120, retry_after=60)
    for kind, body in _run(301, "failed"):
        assert await gitlab(kind, body) == 200
    bob = _run(302, "failed")
    bob[-1][1]["commit"]["author"] = {"name": "Bob Okafor", "email": "bob@example.com"}
    for kind, body in bob:
        assert await gitlab(kind, body) == 200
    await eventually(lambda: settled(bot))

    replies = [m.replies[0].text for m in slack.messages(CHANNEL)]
    assert len(replies) == 2
    assert "Alice Martin" in replies[0]
    assert "Bob Okafor" in replies[1]
    assert "<@" not in " ".join(replies)
    lookups = [c for c in slack.calls if c.method == "users.lookupByEmail"]
    assert [c.status for c in lookups] == [429]


async def test_a_late_running_event_never_reopens_a_finished_pipeline(
    bot: Pitcrew, slack: SlackSandbox, gitlab: Callable[..., Any]
) -> None:
    await gitlab("Pipeline Hook", pipeline_hook(pipeline_id=7, status="success"))
    await gitlab("Pipeline Hook", pipeline_hook(pipeline_id=7, status="running"))
    await gitlab("Job Hook", job_hook(pipeline_id=7, name="unit", status="running"))
    await eventually(lambda: settled(bot))
    [message] = slack.messages(CHANNEL)
    assert " passed " in message.text


async def test_a_retry_after_the_result_shows_running_then_the_new_result(
    bot: Pitcrew, slack: SlackSandbox, gitlab: Callable[..., Any]
) -> None:
    await gitlab("Pipeline Hook", pipeline_hook(pipeline_id=8, status="failed"))
    await eventually(lambda: settled(bot))
    later = T0 + timedelta(minutes=20)
    retried = pipeline_hook(pipeline_id=8, status="running", started=T0)
    retried["builds"][1].update(
        id=999,
        status="running",
        started_at=later.strftime("%Y-%m-%d %H:%M:%S UTC"),
        finished_at=None,
    )
    await gitlab("Pipeline Hook", retried)
    await eventually(lambda: settled(bot))
    assert " running " in slack.messages(CHANNEL)[0].text

    passed = pipeline_hook(pipeline_id=8, status="success", started=T0)
    passed["object_attributes"]["finished_at"] = (later + timedelta(minutes=1)).strftime(
        "%Y-%m-%d %H:%M:%S UTC"
    )
    await gitlab("Pipeline Hook", passed)
    await eventually(lambda: settled(bot))
    [message] = slack.messages(CHANNEL)
    assert " passed " in message.text


async def test_feature_branch_pipelines_show_only_when_they_fail(
    bot: Pitcrew, slack: SlackSandbox, gitlab: Callable[..., Any]
) -> None:
    await gitlab("Pipeline Hook", pipeline_hook(pipeline_id=20, status="success", ref="feature-x"))
    await gitlab("Pipeline Hook", pipeline_hook(pipeline_id=21, status="running", ref="feature-y"))
    await gitlab("Pipeline Hook", pipeline_hook(pipeline_id=21, status="failed", ref="feature-y"))
    await eventually(lambda: settled(bot))
    [message] = slack.messages(CHANNEL)
    assert "feature-y" in slack.render(CHANNEL)
    assert " failed " in message.text


async def test_unknown_projects_are_counted_and_dropped(
    bot: Pitcrew, slack: SlackSandbox, gitlab: Callable[..., Any]
) -> None:
    before = metrics.EVENTS_UNROUTED.labels("gitlab")._value.get()
    for pipeline_id in (1, 2, 3):
        await gitlab(
            "Pipeline Hook",
            pipeline_hook(project="elsewhere/unknown", pipeline_id=pipeline_id, status="failed"),
        )
    await eventually(lambda: settled(bot))
    assert slack.all_messages() == []
    async with aiohttp.ClientSession() as http, http.get(f"{bot.url}/metrics") as response:
        assert f'pitcrew_events_unrouted_total{{source="gitlab"}} {before + 3}' in (
            await response.text()
        )


@pytest.mark.parametrize(
    ("kind", "body", "status"),
    [
        ("Pipeline Hook", b"{not json", 400),
        ("Merge Request Hook Deluxe", b"{}", 200),
        ("Pipeline Hook", b'{"object_kind": "pipeline"}', 200),
        ("Pipeline Hook", b'{"object_kind": "pipeline", "object_attributes": {"id": "x"}}', 200),
    ],
    ids=["malformed-json", "unknown-event", "no-object-attributes", "wrong-types"],
)
async def test_bad_events_are_answered_and_leave_the_worker_running(
    bot: Pitcrew,
    slack: SlackSandbox,
    gitlab: Callable[..., Any],
    kind: str,
    body: bytes,
    status: int,
) -> None:
    assert await gitlab(kind, body) == status
    await gitlab("Pipeline Hook", pipeline_hook(pipeline_id=5, status="failed"))
    await eventually(lambda: settled(bot))
    assert len(slack.messages(CHANNEL)) == 1  # the good event behind the bad one went through
    assert bot.gitlab_worker is not None
    assert bot.gitlab_worker.running
    assert bot.store is not None
    assert await bot.store.redis.xlen("events:gitlab:dead") == 0  # dropped, not poison


async def test_a_burst_of_2000_events_for_200_pipelines(
    make_bot: Callable[..., Pitcrew], slack: SlackSandbox
) -> None:
    bot = make_bot(CATALOG_PATH=str(CATALOG), outbox_pacing=0.005)
    await bot.start()
    rng = random.Random(42)
    finals = {1000 + i: rng.choice(("success", "failed")) for i in range(200)}
    deliveries: list[tuple[str, bytes, str]] = []
    for pipeline_id, final in finals.items():
        hooks = _run(pipeline_id, final)
        hooks += [hooks[rng.randrange(len(hooks))] for _ in range(3)]  # 10 per pipeline
        order = [(k, json.dumps(b).encode(), str(uuid.uuid4())) for k, b in hooks]
        rng.shuffle(order)
        deliveries += order
    slack.fail("chat.postMessage", status=429, times=15, retry_after=1)
    slack.fail("chat.update", status=429, times=15, retry_after=1)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as http:
            queue: asyncio.Queue[tuple[str, bytes, str]] = asyncio.Queue()
            for item in deliveries:
                queue.put_nowait(item)

            async def client() -> None:
                while not queue.empty():
                    kind, body, event_id = queue.get_nowait()
                    headers = {
                        "X-Gitlab-Event": kind,
                        "X-Gitlab-Token": WEBHOOK_SECRET,
                        "X-Gitlab-Event-UUID": event_id,
                        "Content-Type": "application/json",
                    }
                    url = f"{bot.url}/webhooks/gitlab"
                    async with http.post(url, data=body, headers=headers) as response:
                        assert response.status == 200

            await asyncio.gather(*(client() for _ in range(50)))
        await eventually(lambda: settled(bot), within=120, interval=0.2)
    finally:
        await bot.stop()

    messages = slack.messages(CHANNEL)
    assert len(messages) == 200
    shown = {}
    for message in messages:
        pipeline_id = int(message.metadata["event_payload"]["key"].rsplit(":", 1)[1])
        shown[pipeline_id] = "success" if " passed " in message.text else message.text
    expected = {p: "success" if f == "success" else message_failed(p) for p, f in finals.items()}
    assert shown == expected
    failed = [m for m in messages if " failed " in m.text]
    assert all(len(m.replies) == 1 for m in failed)
    throttled = [c for c in slack.calls if c.status == 429 and c.method == "chat.postMessage"]
    assert len(throttled) == 15  # each answered by waiting, then the same post went through
    passed = [m for m in messages if " passed " in m.text]
    # All 200 share `main`: a pass that follows a failure is announced as "fixed" in its thread.
    assert all(len(m.replies) <= 1 for m in passed)
    assert all(r.reply_broadcast and "fixed" in r.text for m in passed for r in m.replies)
    replies = sum(len(m.replies) for m in messages)
    posts = [c for c in slack.calls if c.method == "chat.postMessage" and c.ok]
    assert len(posts) == 200 + replies  # nothing was posted twice
    # A 429 says nothing was posted: no reading of history to find out.
    reads = [
        c for c in slack.calls if c.method in ("conversations.history", "conversations.replies")
    ]
    assert reads == []
