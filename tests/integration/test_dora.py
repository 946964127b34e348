"""Delivery insights through the real bot: real releases (a deploy, a promotion, a failed rollout
and its rollback, an outside rollout) driven by signed slash commands and clicks against the
GitLab, Kubernetes and GitOps controller sandboxes; then ``/dora`` read against figures worked
out by hand, its Share button, the weekly digest with a decodable PNG chart in its thread, the
Prometheus metrics, and the backfill of a GitOps repo with 90 days of history.

Time is the bots' injected clock, set by hand before each step, so every time the figures use
(releases asked for, rollouts finished, digests due) is known to the second; the app's commits
are dated with the GitLab sandbox's ``at=``.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from matplotlib.image import imread

from bot.adapters.store.dora import RedisDeploymentStore
from bot.app import Pitcrew
from bot.domain.dora import Deployment
from bot.domain.errors import Unavailable
from bot.domain.releases import Release
from bot.sandbox.gitlab import GitLabSandbox
from bot.sandbox.slack import Message
from bot.services.insights import DeploymentRecorder

from .conftest import bot_environment, eventually
from .release_world import GITOPS, IMAGE, PRODUCTION, SOURCE, STAGING, TEAM, World, deployment, roll
from .test_autopilot import Clock
from .test_cli import _pitcrew
from .test_release_endings import controller

T0 = datetime(2026, 3, 25, 10, 0, tzinfo=UTC)
"""A Wednesday; the week's digest is due on Monday 30 March at 09:00 UTC."""
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
PNG = b"\x89PNG\r\n\x1a\n"


def release_keys(world: World) -> list[str]:
    return [
        m.metadata["event_payload"]["key"]
        for m in world.slack.messages(TEAM)
        if m.metadata and m.metadata["event_payload"]["key"].startswith("release:")
    ]


def newest_release(world: World) -> Message:
    found = [
        m
        for m in world.slack.messages(TEAM)
        if m.metadata and re.fullmatch(r"release:[0-9a-f]+", m.metadata["event_payload"]["key"])
    ]
    return found[-1]


def header(world: World) -> str:
    return world.slack.read(newest_release(world)).splitlines()[1]


async def approve_and_merge(world: World) -> None:
    mrs = len(world.mrs())
    await world.click("release_approve", user="carol", message=newest_release(world))
    await world.pipelines()
    await eventually(lambda: world.mrs()[mrs - 1]["state"] == "merged", within=15)


async def metrics(world: World) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{world.bot.url}/metrics") as response,
    ):
        return await response.text()


def sample(page: str, name: str, **labels: str) -> float:
    """One sample of the /metrics page (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(rf"^{pattern}$", page, re.M)
    return float(found.group(1)) if found else 0.0


async def dated_versions(world: World) -> None:
    """orders 1.5.0 (two commits, 48 h and 24 h before T0) and 1.5.1 (one, 6 h after)."""
    commits = (
        ("Feature A (#21)", {"a.py": "A\n"}, T0 - 48 * HOUR, None),
        ("Release 1.5.0", {"VERSION": "1.5.0\n"}, T0 - 24 * HOUR, "1.5.0"),
        ("Fix B (#22)", {"VERSION": "1.5.1\n"}, T0 + 6 * HOUR, "1.5.1"),
    )
    for message, files, at, tag in commits:
        await asyncio.to_thread(
            world.gitlab.commit, SOURCE, files, message=message, author="alice", at=at
        )
        if tag:
            await asyncio.to_thread(world.gitlab.tag, SOURCE, tag)


async def the_week(world: World, clock: Clock) -> None:
    """Production's week, by hand:

    - T0: someone applies 1.4.2 by hand (git and cluster): an outside rollout, healthy at T0;
    - T0+2h: ``/deploy orders 1.5.0 to staging`` (staging is not production: not counted);
    - T0+4h: ``/deploy orders from staging to production`` (a promotion), healthy at T0+4h:
      its commits are 52 h and 28 h old;
    - T0+10h: ``/deploy orders 1.5.1 to production``; its rollout crashes, failed at T0+11h;
    - T0+12h: ``/rollback orders production`` (to 1.5.0), merged; the controller applies it
      at T0+12h10 (within the 30 min the bot waits for a rollout), healthy at T0+12h30.
    """
    argo = controller(world)
    try:
        clock.now = T0
        await asyncio.to_thread(
            world.gitlab.commit,
            GITOPS,
            {PRODUCTION: deployment("1.4.2"), STAGING: deployment("1.4.2")},
            message="orders 1.4.2 (by hand)",
            author="alice",
        )
        await asyncio.to_thread(argo.sync)
        await roll(world.kube)
        await eventually(
            lambda: any(" rolled out " in world.slack.read(m) for m in world.slack.messages(TEAM)),
            within=15,
        )
        await world.quiet()

        clock.now = T0 + 2 * HOUR
        await world.slash("/deploy", "orders 1.5.0 to staging")
        await world.pipelines()
        await eventually(lambda: header(world).startswith(":heavy_check_mark:"), within=15)

        clock.now = T0 + 4 * HOUR
        answer = await world.slash("/deploy", "orders from staging to production")
        assert "Opened !2" in answer, answer
        await approve_and_merge(world)
        await asyncio.to_thread(argo.sync)
        await roll(world.kube)
        await eventually(lambda: "Healthy" in header(world), within=15)

        clock.now = T0 + 10 * HOUR
        answer = await world.slash("/deploy", "orders 1.5.1 to production")
        assert "Opened !3" in answer, answer
        await approve_and_merge(world)
        await asyncio.to_thread(argo.sync)
        world.kube.fail_rollout("deploy", "orders", "orders", "CrashLoopBackOff", message="boom")
        await roll(world.kube, steps=5)
        await eventually(lambda: "Rolling out" in header(world), within=15)
        clock.now = T0 + 11 * HOUR
        world.kube.advance(700)
        await eventually(lambda: "Failed" in header(world), within=20)

        clock.now = T0 + 12 * HOUR
        answer = await world.slash("/rollback", "orders production")
        assert "Opened !4 *Roll back orders to 1.5.0 in production*" in answer, answer
        await approve_and_merge(world)
        # The controller applies the rollback ten minutes after its merge, well within
        # RELEASE_ROLLOUT_WAIT (30 min), and the bot is seen following it before the clock
        # moves on: applied only at 30 min, the rollback would rightly be "not seen" by a
        # sweep that comes before the rollout does, and counted failed, then recovered.
        clock.now = T0 + 12 * HOUR + 10 * MINUTE
        await asyncio.to_thread(argo.sync)
        await eventually(lambda: "Rolling out" in header(world), within=15)
        clock.now = T0 + 12 * HOUR + 30 * MINUTE
        await roll(world.kube)
        await eventually(lambda: "Healthy" in header(world), within=15)
        await world.quiet()
    finally:
        argo.close()


# --------------------------------------------------------------------------------------------


async def test_dora_reads_what_the_bot_saw_against_figures_worked_out_by_hand(
    start: Callable[..., Any],
) -> None:
    clock = Clock(T0 - 24 * HOUR)
    world: World = await start(clock=clock)
    await dated_versions(world)
    before = await metrics(world)
    await the_week(world, clock)

    clock.now = T0 + 24 * HOUR
    answer = await world.slash("/dora", "orders 7d")
    assert answer.splitlines() == [
        ":bar_chart: *orders* in *production* · last 7 days",
        # the outside rollout, the promotion and the rollback
        "*Deployments* 3 · 0.4 a day · :large_blue_circle: high · ↑ from 0",
        # the promotion's commits, 52 h and 28 h old: median 40 h, p90 28 + 0.9 * 24 = 49.6 h
        "*Lead time* median 40.0 h · p90 2.1 d · :large_blue_circle: high · none before",
        # changes: the outside rollout, the promotion, 1.5.1; failed: 1.5.1 (the rollback is
        # a deployment, not a change)
        "*Change failure rate* 33.3 % · 1 of 3 changes · :red_circle: low · none before",
        # 1.5.1 failed at T0+11h, the rollback was healthy at T0+12h30
        "*Time to restore* median 1.5 h · 1 restored · :large_blue_circle: high · none before",
        "2026-03-19 10:00 UTC → 2026-03-26 10:00 UTC · bands: DORA 2023",
        "[Share in channel]",
    ]
    staging = await world.slash("/dora", "staging 7d orders")
    assert staging.splitlines()[1] == (
        "*Deployments* 1 · 0.1 a day · :large_blue_circle: high · ↑ from 0"
    )
    # the team's answer names the apps that weigh most
    team = await world.slash("/dora", "payments 7d")
    assert "*Weighing most*" in team
    assert "• most deployments: *orders* 3" in team
    assert "• slowest lead time: *orders* 40.0 h" in team
    assert "• most failed changes: *orders* 1 of 3" in team
    assert "• longest to restore: *orders* 1.5 h" in team

    # shared in the channel, as it stands at the click, saying who shared it
    [asked] = [
        e for e in world.answers_to("bob") if e.text == "DORA: orders in production, last 7 days"
    ]
    body, headers = world.signed_click("dora_share", user="bob", message=asked)
    async with world.http.post(
        f"{world.bot.url}/slack/events", data=body, headers=headers
    ) as response:
        assert response.status == 200
    shown = await eventually(
        lambda: [m for m in world.slack.messages(TEAM) if m.text.startswith("DORA:")]
    )
    shared = world.slack.read(shown[0])
    assert "[Share in channel]" not in shared
    assert shared.endswith("Shared by @bob · `/dora orders 7d`"), shared
    assert "*Change failure rate* 33.3 %" in shared

    # Prometheus: what this test recorded, counted once
    after = await metrics(world)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    production = {"app": "orders", "env": "production"}
    assert moved("pitcrew_dora_deployments_total", kind="outside", **production) == 1
    assert moved("pitcrew_dora_deployments_total", kind="promotion", **production) == 1
    assert moved("pitcrew_dora_deployments_total", kind="rollback", **production) == 1
    assert moved("pitcrew_dora_deployments_total", kind="deploy", **production) == 0
    assert moved("pitcrew_dora_deployments_total", app="orders", env="staging", kind="deploy") == 1
    assert moved("pitcrew_dora_failed_changes_total", **production) == 1
    assert moved("pitcrew_dora_lead_time_seconds_count", env="production") == 2
    assert moved("pitcrew_dora_lead_time_seconds_sum", env="production") == (52 + 28) * 3600
    assert moved("pitcrew_dora_restore_seconds_count", env="production") == 1
    assert moved("pitcrew_dora_restore_seconds_sum", env="production") == 1.5 * 3600

    # the weekly digest: Monday 09:00 UTC, once, with its chart in the thread
    clock.now = datetime(2026, 3, 30, 9, 0, 5, tzinfo=UTC)
    await eventually(lambda: world.slack.files(TEAM), within=20)
    await world.quiet()
    digests = [m for m in world.slack.messages(TEAM) if "Weekly delivery digest" in m.text]
    assert len(digests) == 1
    digest = world.slack.read(digests[0])
    assert digest.splitlines()[0].startswith(
        ":bar_chart: *Weekly delivery digest of payments* in *production* · 2026-03-23 09:00 UTC"
    )
    assert "*Deployments* 3 · 0.4 a day" in digest
    assert "*This week*: 3 deployed, 1 failed without recovery" in digest
    assert "`1.5.0` → `1.5.1` · deploy · :x: failed" in digest
    assert "`1.5.1` → `1.5.0` · rollback · :white_check_mark:" in digest
    [chart] = world.slack.files(TEAM)
    assert chart.thread_ts == digests[0].ts
    assert chart.name == "dora-payments-2026-03-30.png"
    assert digests[0].replies[-1].files == [chart]
    png = world.slack.file_bytes(chart.id)
    assert png.startswith(PNG)
    assert len(png) > 5000
    image = imread(io.BytesIO(png), format="png")
    assert image.shape[:2] == (400, 800)
    # search's digest too (a quiet week), and nothing twice on the next looks
    await eventually(lambda: world.slack.files("search-deploys"), within=20)
    await asyncio.sleep(0.5)
    assert len([m for m in world.slack.messages(TEAM) if "Weekly delivery" in m.text]) == 1
    assert len(world.slack.files()) == 2


async def test_a_rollback_applied_only_after_the_rollout_wait_is_not_seen_then_recovers(
    start: Callable[..., Any],
) -> None:
    """What the flaky week once showed, on purpose: the controller applies a merged rollback
    only when ``RELEASE_ROLLOUT_WAIT`` (30 min) has passed. The channel is told it was not
    seen, the late rollout is still followed to healthy, and the digest counts the rollback
    as it was told: failed, then recovered, landed when it was first said to have failed."""
    clock = Clock(T0)
    world: World = await start(clock=clock)
    await dated_versions(world)
    argo = controller(world)
    try:
        answer = await world.slash("/deploy", "orders 1.5.0 to production")
        assert "Opened !1" in answer, answer
        await approve_and_merge(world)
        await asyncio.to_thread(argo.sync)
        await roll(world.kube)
        await eventually(lambda: "Healthy" in header(world), within=15)

        clock.now = T0 + HOUR
        answer = await world.slash("/rollback", "orders production")
        assert "Opened !2 *Roll back orders to 1.4.1 in production*" in answer, answer
        await approve_and_merge(world)
        await eventually(lambda: "Merged" in header(world) or "Deploying" in header(world))
        # half an hour later, the controller has still applied nothing: the sweep says so
        clock.now = T0 + HOUR + 30 * MINUTE
        await eventually(lambda: "Not seen" in header(world), within=15)
        assert header(world) == (
            ":grey_question: Not seen: merged, but production never ran 1.4.1 within 30 min of"
            " the merge — is the GitOps controller syncing? — `/rollback orders production`"
        )
        # the controller catches up: the late rollout is followed to its end
        clock.now = T0 + HOUR + 40 * MINUTE
        await asyncio.to_thread(argo.sync)
        await roll(world.kube)
        await eventually(lambda: "Healthy" in header(world), within=15)
        await world.quiet()
    finally:
        argo.close()

    clock.now = datetime(2026, 3, 30, 9, 0, 5, tzinfo=UTC)
    await eventually(lambda: world.slack.files(TEAM), within=20)
    await world.quiet()
    [digest] = [m for m in world.slack.messages(TEAM) if "Weekly delivery digest" in m.text]
    lines = world.slack.read(digest).splitlines()
    assert "*This week*: 2 deployed, 0 failed without recovery" in lines
    assert (
        ":rewind: *orders* `1.5.0` → `1.4.1` · rollback · :warning: failed, then recovered"
        " · 2026-03-25 11:30 UTC"
    ) in lines


async def test_a_digest_whose_chart_cannot_be_uploaded_says_its_figures_as_text(
    start: Callable[..., Any],
) -> None:
    clock = Clock(datetime(2026, 3, 30, 8, 59, tzinfo=UTC))
    world: World = await start(clock=clock, upload_wait=5.0)
    world.slack.fail("files.getUploadURLExternal", status=200, error="ratelimited", times=10)
    clock.now = datetime(2026, 3, 30, 9, 0, 5, tzinfo=UTC)
    await eventually(
        lambda: any(
            r.text == "The digest's chart, as text"
            for m in world.slack.messages(TEAM)
            for r in m.replies
        ),
        within=20,
    )
    [digest] = [m for m in world.slack.messages(TEAM) if "Weekly delivery" in m.text]
    [fallback] = digest.replies
    text = world.slack.read(fallback)
    assert text.startswith(
        ":warning: The chart could not be uploaded (Slack refused files.getUploadURLExternal:"
        " ratelimited): here are its figures."
    )
    assert "`Mon 23 Mar` 0" in text
    assert world.slack.files() == []


async def test_a_digest_due_while_the_bot_was_down_comes_late_once(
    start: Callable[..., Any],
) -> None:
    """Monday 09:00 passed with no replica running: the digest comes when one starts, about
    the week to 09:00, and a restart does not send it again."""
    clock = Clock(datetime(2026, 3, 30, 12, 30, tzinfo=UTC))
    world: World = await start(clock=clock)
    digests = await eventually(
        lambda: [m for m in world.slack.messages(TEAM) if "Weekly delivery" in m.text], within=20
    )
    assert (
        world.slack.read(digests[0])
        .splitlines()[0]
        .endswith("2026-03-23 09:00 UTC → 2026-03-30 09:00 UTC")
    )
    await eventually(lambda: world.slack.files(TEAM), within=20)  # its chart, then a restart
    await world.restart()
    await asyncio.sleep(1.0)
    await world.quiet()
    assert len([m for m in world.slack.messages(TEAM) if "Weekly delivery" in m.text]) == 1


async def test_two_replicas_post_one_digest_and_record_each_deployment_once(
    start: Callable[..., Any], redis_url: str
) -> None:
    clock = Clock(T0)
    world: World = await start(replicas=2, clock=clock)
    await asyncio.to_thread(
        world.gitlab.commit, GITOPS, {PRODUCTION: deployment("1.4.2")}, message="x", author="bob"
    )
    world.kube.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.2")
    await roll(world.kube)
    await world.quiet()
    # both replicas hear of the end (a replayed listener, a second replica): one record
    store = RedisDeploymentStore(world.bots[1].store.redis)  # type: ignore[union-attr]
    [recorded] = await eventually(
        lambda: store.history(
            "orders", "production", since=T0.timestamp() - 86400, until=T0.timestamp() + 86400
        )
    )
    assert (recorded.kind, recorded.version, recorded.previous) == ("outside", "1.4.2", "1.4.1")
    for bot in world.bots:
        assert bot.insights is not None
        assert not await bot.insights.recorder.record(recorded)
    clock.now = datetime(2026, 3, 30, 9, 0, 5, tzinfo=UTC)
    await eventually(lambda: len(world.slack.files()) == 2, within=20)
    await asyncio.sleep(1.0)
    await world.quiet()
    assert len([m for m in world.slack.messages(TEAM) if "Weekly delivery" in m.text]) == 1
    assert len(world.slack.files()) == 2


# --------------------------------------------------------------------------------------------
# A record the end listener missed


def redis_gone_once(monkeypatch: pytest.MonkeyPatch, *, env: str) -> list[Deployment]:
    """The deployment store does not answer the first write of a record in ``env`` (Redis
    restarting, a failover): what the end listener meets. Returns what it was refused."""
    refused: list[Deployment] = []
    write = RedisDeploymentStore.record

    async def flaky(self: RedisDeploymentStore, deployment: Deployment) -> bool:
        if deployment.env == env and not refused:
            refused.append(deployment)
            raise Unavailable("Redis did not answer (connection reset)")
        return await write(self, deployment)

    monkeypatch.setattr(RedisDeploymentStore, "record", flaky)
    return refused


def staging_history(world: World, bot: int = 0) -> Any:
    store = RedisDeploymentStore(world.bots[bot].store.redis)  # type: ignore[union-attr]
    return store.history(
        "orders", "staging", since=T0.timestamp() - 86400, until=T0.timestamp() + 86400
    )


async def deployed_to_staging_with_its_record_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> list[Deployment]:
    """``/deploy orders 1.5.0 to staging`` (no approval, no cluster watched there): deployed
    when the GitOps pipeline passes; the end listener's write of its record is refused."""
    await dated_versions(world)
    refused = redis_gone_once(monkeypatch, env="staging")
    answer = await world.slash("/deploy", "orders 1.5.0 to staging")
    assert "Opened !1" in answer, answer
    await world.pipelines()
    await eventually(lambda: header(world).startswith(":heavy_check_mark:"), within=15)
    await eventually(lambda: refused, within=15)
    await world.quiet()
    return refused


async def test_a_deployment_whose_record_redis_refused_at_its_end_is_recorded_at_restart_once(
    start: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(T0)
    world: World = await start(clock=clock)
    before = await metrics(world)
    [refused] = await deployed_to_staging_with_its_record_refused(world, monkeypatch)
    assert (refused.kind, refused.version, refused.deployed) == (
        "deploy",
        "1.5.0",
        T0.timestamp(),
    )
    # the release says deployed, but its record is missing: /dora does not see it
    assert await staging_history(world) == []
    missed = await world.slash("/dora", "staging 7d orders")
    assert missed.splitlines()[1].startswith("*Deployments* 0 ·"), missed

    # later the same day, a new pod: the reconcile at its start records it
    clock.now = T0 + 3 * HOUR
    await world.restart()
    [recorded] = await eventually(lambda: staging_history(world), within=20)
    assert recorded == refused  # as the listener would have written it, at the end's time
    answer = await world.slash("/dora", "staging 7d orders")
    assert answer.splitlines()[1] == (
        "*Deployments* 1 · 0.1 a day · :large_blue_circle: high · ↑ from 0"
    )
    # once: another reconcile, another restart add nothing
    assert world.bot.insights is not None
    assert await world.bot.insights.recorder.reconcile() == 0
    await world.restart()
    await world.quiet()
    assert world.bot.insights is not None
    assert await world.bot.insights.recorder.reconcile() == 0
    assert await staging_history(world) == [recorded]
    after = await metrics(world)
    staging = {"app": "orders", "env": "staging", "kind": "deploy"}
    assert (
        sample(after, "pitcrew_dora_deployments_total", **staging)
        - sample(before, "pitcrew_dora_deployments_total", **staging)
        == 1
    )


async def test_a_bot_stopped_between_a_release_end_and_its_record_records_it_at_restart(
    start: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replica that committed the end stops before its end listener writes the record
    (the listener is held where the process stopped): the next start records it."""
    reached = asyncio.Event()

    async def stopped_here(self: DeploymentRecorder, release: Release) -> None:
        reached.set()
        await asyncio.Event().wait()  # what follows never runs: the process is stopping

    monkeypatch.setattr(DeploymentRecorder, "on_release_ended", stopped_here)
    clock = Clock(T0)
    world: World = await start(clock=clock)  # its end listener is the held one
    await dated_versions(world)
    answer = await world.slash("/deploy", "orders 1.5.0 to staging")
    assert "Opened !1" in answer, answer
    await world.pipelines()
    await eventually(lambda: header(world).startswith(":heavy_check_mark:"), within=15)
    await asyncio.wait_for(reached.wait(), timeout=15)
    assert await staging_history(world) == []

    monkeypatch.undo()  # the new pod's listener is the real one
    clock.now = T0 + HOUR
    await world.restart()
    [recorded] = await eventually(lambda: staging_history(world), within=20)
    assert (recorded.kind, recorded.version, recorded.deployed) == (
        "deploy",
        "1.5.0",
        T0.timestamp(),
    )
    answer = await world.slash("/dora", "staging 7d orders")
    assert answer.splitlines()[1].startswith("*Deployments* 1 ·"), answer


async def test_two_replicas_reconciling_a_missed_record_write_it_once(
    start: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(T0)
    world: World = await start(replicas=2, clock=clock)
    before = await metrics(world)
    await deployed_to_staging_with_its_record_refused(world, monkeypatch)
    clock.now = T0 + HOUR
    written = await asyncio.gather(
        *(bot.insights.recorder.reconcile() for bot in world.bots if bot.insights is not None)
    )
    # one replica wrote it (or the insights lease moved between the two under load, and the
    # new holder's reconcile at its start did): never both
    assert sorted(written) in ([0, 1], [0, 0]), written
    for bot in (0, 1):
        [recorded] = await eventually(lambda b=bot: staging_history(world, b), within=20)
        assert (recorded.kind, recorded.version) == ("deploy", "1.5.0")
    after = await metrics(world)
    staging = {"app": "orders", "env": "staging", "kind": "deploy"}
    assert (
        sample(after, "pitcrew_dora_deployments_total", **staging)
        - sample(before, "pitcrew_dora_deployments_total", **staging)
        == 1
    )
    answer = await world.slash("/dora", "staging 7d orders", bot=1)
    assert answer.splitlines()[1].startswith("*Deployments* 1 ·"), answer


# --------------------------------------------------------------------------------------------
# The backfill


HISTORY_CATALOG = """
teams:
  payments:
    channel: "#payments-deploys"
    digest: off
environments:
  - name: staging
    policy: auto
  - name: production
    policy: manual
    approvers: "@sre-oncall"
apps:
  orders:
    team: payments
    source: shop/orders
    image: registry.example.com/shop/orders
    manifests: "apps/orders/{env}/deployment.yaml"
    namespace: orders
"""


async def test_backfill_records_90_days_of_gitops_history_once(
    slack: Any, redis_url: str, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(HISTORY_CATALOG)
    now = datetime.now(UTC).replace(microsecond=0)
    days = (85, 70, 55, 40, 25, 10)
    versions = [f"2.{i}.0" for i in range(len(days))]
    async with GitLabSandbox(tmp_path / "gitlab") as gitlab:
        gitlab.add_user("alice", name="Alice Martin", email="alice@example.com")
        gitlab.add_user("bob", name="Bob Okafor", email="bob@example.com")
        gitlab.add_project(SOURCE)
        gitlab.add_project(GITOPS)

        def commit(project: str, files: dict[str, str], message: str, at: datetime) -> None:
            gitlab.commit(project, files, message=message, author="alice", at=at)

        # the app's versions, each committed a day before production got it
        commit(SOURCE, {"VERSION": "1.4.1\n"}, "Release 1.4.1", now - timedelta(days=130))
        gitlab.tag(SOURCE, "1.4.1")
        for version, ago in zip(versions, days, strict=True):
            commit(
                SOURCE,
                {"VERSION": f"{version}\n"},
                f"Release {version}",
                now - timedelta(days=ago + 1),
            )
            gitlab.tag(SOURCE, version)
        # the GitOps repo's history, oldest first: production and staging before the window,
        # then one deployment of each version to production, a rollback by hand from 2.5.0
        # to 2.4.0, and a commit that changed something else (no deployment)
        commit(
            GITOPS,
            {PRODUCTION: deployment("1.4.1"), STAGING: deployment("1.4.1")},
            "orders manifests",
            now - timedelta(days=120),
        )
        for version, ago in zip(versions, days, strict=True):
            commit(
                GITOPS,
                {PRODUCTION: deployment(version)},
                f"orders {version}",
                now - timedelta(days=ago),
            )
        commit(
            GITOPS,
            {PRODUCTION: deployment("2.4.0")},
            "Revert orders 2.5.0",
            now - timedelta(days=5),
        )
        commit(
            GITOPS,
            {PRODUCTION: deployment("2.4.0").replace("replicas: 3", "replicas: 4")},
            "orders: 4 replicas",
            now - timedelta(days=2),
        )

        env = {
            **bot_environment(slack=slack, redis_url=redis_url, state_dir=tmp_path / "var"),
            "GITLAB_URL": gitlab.url,
            "CATALOG_PATH": str(catalog),
        }
        code, out, err = await _pitcrew("dora", "backfill", "--days", "90", env=env, cwd=tmp_path)
        assert code == 0, err
        assert out.strip() == (
            "recorded 7 deployments of the last 90 days (production 7); 0 already recorded;"
            " 0 made through Pitcrew (recorded as they ended)"
        )
        code, out, err = await _pitcrew("dora", "backfill", env=env, cwd=tmp_path)
        assert code == 0, err
        assert out.strip() == (
            "recorded 0 deployments of the last 90 days; 7 already recorded;"
            " 0 made through Pitcrew (recorded as they ended)"
        )

        # /dora over 90 days reads them: the rollback undid 2.5.0
        bot = Pitcrew(_settings(env), host="127.0.0.1", port=0, clock=lambda: now)
        await bot.start()
        try:
            assert bot.insights is not None
            query = bot.insights.reports.parse("orders 90d")
            report = await bot.insights.reports.report(query)
        finally:
            await bot.stop()
    current = report.current
    assert (current.deployments, current.changes, current.failed_changes) == (7, 6, 1)
    assert current.lead_median == 86400.0  # every version was committed a day before
    assert current.restore_median == 0.0  # all git can say: restored by the revert's merge
    assert report.previous.deployments == 0


def _settings(env: dict[str, str]) -> Any:
    from bot.settings import Settings

    return Settings(_env_file=None, **env)  # type: ignore[call-arg]
