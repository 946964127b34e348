"""GitLab, Redis and the Kubernetes API failing under the bot: clear answers, nothing half-made,
and the work resumes by itself once they are back."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.adapters.store.embedded import EmbeddedRedis
from bot.app import Pitcrew
from bot.sandbox.slack import SlackSandbox
from tests.integration.conftest import WEBHOOK_SECRET, drained, eventually
from tests.integration.gitlab_payloads import pipeline_hook
from tests.integration.release_world import IMAGE, World
from tests.integration.test_pipelines import CATALOG, CHANNEL
from tests.integration.test_rollouts import roll


@pytest.mark.parametrize(
    ("failing", "status", "applied"),
    [
        ("POST /projects/*/repository/commits", 503, False),
        ("POST /projects/*/repository/commits", 502, True),  # done, but the answer was lost
        ("POST /projects/*/merge_requests", 500, False),
        ("POST /projects/*/merge_requests", 503, True),
    ],
    ids=["commit-refused", "commit-answer-lost", "mr-refused", "mr-answer-lost"],
)
async def test_gitlab_failing_during_a_deploy_leaves_nothing_half_made(
    start: Callable[..., Any],
    failing: str,
    status: int,
    applied: bool,
) -> None:
    world: World = await start()
    world.gitlab.fail(failing, status=status, applied=applied)
    answer = await world.slash("/deploy", "orders 1.4.2 to production")
    assert answer.startswith(":no_entry: The merge request could not be opened: GitLab ")
    assert answer.endswith("Nothing was left in GitLab; try again")
    assert world.branches() == ["main"]
    assert [mr["state"] for mr in world.mrs()] in ([], ["closed"])  # never an open one
    assert world.slack.messages("payments-deploys") == []  # no release message either
    # the app and env are free: the retry goes through
    assert "Opened !" in await world.slash("/deploy", "orders 1.4.2 to production")


async def test_redis_stopped_then_restarted(
    make_bot: Callable[..., Pitcrew], slack: SlackSandbox, tmp_path: Path
) -> None:
    """Webhooks get 503 while Redis is down (GitLab retries them); the workers carry on by
    themselves when it is back, and nothing accepted before is lost."""
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    bot = make_bot(REDIS_URL=url, CATALOG_PATH=str(CATALOG))
    await bot.start()

    async def post(pipeline_id: int, status: str) -> int:
        body = json.dumps(pipeline_hook(pipeline_id=pipeline_id, status=status)).encode()
        headers = {
            "X-Gitlab-Event": "Pipeline Hook",
            "X-Gitlab-Token": WEBHOOK_SECRET,
            "X-Gitlab-Event-UUID": str(uuid.uuid4()),
            "Content-Type": "application/json",
        }
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{bot.url}/webhooks/gitlab", data=body, headers=headers) as response,
        ):
            return response.status

    try:
        assert await post(1, "running") == 200
        await eventually(lambda: slack.messages(CHANNEL))
        server.stop()
        assert await post(2, "running") == 503
        await asyncio.sleep(1.5)  # the workers meet a dead store for a while
        assert server.start() == url
        await eventually(lambda: post(2, "running"), within=15)  # GitLab's retry
        assert await post(1, "success") == 200
        await eventually(lambda: len(slack.messages(CHANNEL)) == 2, within=20)
        await eventually(lambda: " passed " in slack.messages(CHANNEL)[0].text, within=20)
        await eventually(lambda: drained(bot))
        assert bot.gitlab_worker is not None
        assert bot.gitlab_worker.running
    finally:
        await bot.stop()
        server.stop()


async def test_watch_connections_cut_again_and_again_during_a_release(
    start: Callable[..., Any],
) -> None:
    """The Kubernetes API drops the watch repeatedly (a flaky load balancer) while a release
    rolls out: the release still ends healthy, each step said once."""
    world: World = await start()
    await world.slash("/deploy", "orders 1.4.2 to production")
    await world.click("release_approve", user="carol")
    await world.pipelines()
    await eventually(lambda: world.mrs()[0]["state"] == "merged")
    world.kube.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.2")
    for _ in range(8):
        world.kube.cut_watches(abrupt=True)
        await roll(world.kube, steps=1)
        await asyncio.sleep(0.2)
    await roll(world.kube)
    await eventually(lambda: "Healthy" in world.header(), within=30)
    await world.quiet()
    thread = world.thread()
    assert len(thread) == len(set(thread))
    assert thread[-1].startswith(":large_green_circle: *orders 1.4.2 is healthy in production*")
    keys = [m.metadata["event_payload"]["key"] for m in world.slack.all_messages() if m.metadata]
    assert len(keys) == len(set(keys))
