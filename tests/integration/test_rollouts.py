"""Rollout notifications: the real bot, the official client, the Kubernetes sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from bot.app import Pitcrew
from bot.sandbox.kube import KubeSandbox
from bot.sandbox.slack import SlackSandbox

from .conftest import drained, eventually

IMAGE = "registry.example.com/shop/orders"
CHANNEL = "payments-deploys"
ROLLOUT = "rollout:prod/Deployment/orders/orders/2"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[KubeSandbox, Path]]:
    async with KubeSandbox() as sandbox:
        sandbox.add_namespace("orders", {"appId": "orders"})
        sandbox.add_deployment(
            "orders", "orders", image=f"{IMAGE}:1.4.1", replicas=3, labels={"appId": "orders"}
        )
        yield sandbox, sandbox.kubeconfig(tmp_path / "kubeconfig", context="prod")


@pytest.fixture
async def start_bot(
    make_bot: Callable[..., Pitcrew], cluster: tuple[KubeSandbox, Path]
) -> AsyncIterator[Callable[..., Any]]:
    _, kubeconfig = cluster
    bots: list[Pitcrew] = []

    async def start(**options: Any) -> Pitcrew:
        bot = make_bot(
            KUBE_CONTEXTS="production=prod", KUBECONFIG=str(kubeconfig), lease_ttl=1.0, **options
        )
        await bot.start()
        bots.append(bot)
        return bot

    yield start
    for bot in bots:
        await bot.stop()


async def watching(sandbox: KubeSandbox) -> bool:
    return sandbox.open_watches == 3


async def roll(sandbox: KubeSandbox, *, steps: int = 40) -> None:
    """Let the controller work, one replica at a time, while the watch keeps up."""
    for _ in range(steps):
        if not sandbox.step():
            return
        await asyncio.sleep(0.02)


def says(slack: SlackSandbox, words: str, index: int = 0) -> bool:
    messages = slack.messages(CHANNEL)
    return len(messages) > index and words in slack.read(messages[index])


def keys(slack: SlackSandbox) -> list[str]:
    return [m.metadata["event_payload"]["key"] for m in slack.all_messages() if m.metadata]


async def test_a_rollout_is_reported_once_from_start_to_success(
    start_bot: Callable[..., Any], cluster: tuple[KubeSandbox, Path], slack: SlackSandbox
) -> None:
    sandbox, _ = cluster
    bot = await start_bot()
    await eventually(lambda: watching(sandbox))
    sandbox.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.2")
    await eventually(lambda: slack.messages(CHANNEL))
    first = slack.read(slack.messages(CHANNEL)[0])
    assert first.startswith(":arrows_counterclockwise: *orders* 1.4.1 → 1.4.2 rolling out in")
    await roll(sandbox)
    await eventually(lambda: says(slack, "rolled out"))
    await eventually(lambda: drained(bot))
    [message] = slack.messages(CHANNEL)
    assert slack.read(message).startswith(
        ":white_check_mark: *orders* 1.4.2 rolled out in *production* in "
    )
    assert keys(slack) == [ROLLOUT]


async def test_a_failure_names_the_new_pods_problems_in_the_thread(
    start_bot: Callable[..., Any], cluster: tuple[KubeSandbox, Path], slack: SlackSandbox
) -> None:
    sandbox, _ = cluster
    bot = await start_bot()
    await eventually(lambda: watching(sandbox))
    sandbox.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.3")
    sandbox.fail_rollout("deploy", "orders", "orders", "CrashLoopBackOff")
    await roll(sandbox, steps=5)
    sandbox.advance(700)  # past progressDeadlineSeconds
    await eventually(lambda: says(slack, " failed "), within=15)
    await eventually(lambda: says(slack, "") and slack.messages(CHANNEL)[0].replies, within=20)
    await eventually(lambda: drained(bot))
    [message] = slack.messages(CHANNEL)
    assert "ProgressDeadlineExceeded" in slack.read(message)
    [reply] = message.replies
    assert "CrashLoopBackOff" in slack.read(reply)


async def test_a_cut_watch_and_a_410_neither_duplicate_nor_miss(
    start_bot: Callable[..., Any], cluster: tuple[KubeSandbox, Path], slack: SlackSandbox
) -> None:
    sandbox, _ = cluster
    bot = await start_bot()
    await eventually(lambda: watching(sandbox))
    sandbox.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.2")
    sandbox.step()
    sandbox.cut_watches()
    sandbox.step()
    await eventually(lambda: watching(sandbox), within=15)
    sandbox.cut_watches()
    await roll(sandbox)
    sandbox.expire()  # the watcher's version is gone: it must list again
    await eventually(lambda: says(slack, "rolled out"), within=20)
    await eventually(lambda: drained(bot))
    assert keys(slack) == [ROLLOUT]


async def test_a_restart_mid_rollout_neither_replays_nor_misses(
    start_bot: Callable[..., Any], cluster: tuple[KubeSandbox, Path], slack: SlackSandbox
) -> None:
    sandbox, _ = cluster
    bot = await start_bot()
    await eventually(lambda: watching(sandbox))
    sandbox.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.2")
    await eventually(lambda: slack.messages(CHANNEL))
    await eventually(lambda: drained(bot))
    await bot.stop()
    await roll(sandbox)  # finishes while no bot is watching

    bot = await start_bot()
    await eventually(lambda: says(slack, "rolled out"), within=15)
    await eventually(lambda: drained(bot))
    assert keys(slack) == [ROLLOUT]
    posts = [c for c in slack.calls if c.method == "chat.postMessage" and c.ok]
    assert len(posts) == 1


async def test_two_replicas_produce_one_set_of_messages(
    start_bot: Callable[..., Any], cluster: tuple[KubeSandbox, Path], slack: SlackSandbox
) -> None:
    sandbox, _ = cluster
    first, second = await start_bot(), await start_bot()
    await eventually(lambda: watching(sandbox))
    sandbox.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.2")
    await roll(sandbox)
    await eventually(lambda: slack.messages(CHANNEL))
    await eventually(lambda: says(slack, "rolled out"), within=15)
    await first.stop()  # the leader may be either; the other takes over
    sandbox.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.3")
    await eventually(lambda: watching(sandbox), within=15)
    await roll(sandbox)
    await eventually(lambda: len(slack.messages(CHANNEL)) == 2, within=15)
    await eventually(lambda: says(slack, "rolled out", 1), within=15)
    await eventually(lambda: drained(second))
    assert keys(slack) == [ROLLOUT, ROLLOUT.replace("/2", "/3")]


async def test_five_thousand_quiet_deployments_post_nothing(
    start_bot: Callable[..., Any], cluster: tuple[KubeSandbox, Path], slack: SlackSandbox
) -> None:
    sandbox, _ = cluster
    sandbox.bulk_add_deployments(5000, labels={"appId": "orders"})
    bot = await start_bot()
    await eventually(lambda: watching(sandbox), within=30)
    assert bot.watchers[0].listed.get("Deployment") == 1
    sandbox.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.2")
    await roll(sandbox)
    await eventually(lambda: slack.messages(CHANNEL), within=15)
    await eventually(lambda: drained(bot))
    assert keys(slack) == [ROLLOUT]


async def test_a_recovery_after_a_failure_is_reported_to_the_channel(
    start_bot: Callable[..., Any], cluster: tuple[KubeSandbox, Path], slack: SlackSandbox
) -> None:
    sandbox, _ = cluster
    bot = await start_bot()
    await eventually(lambda: watching(sandbox))
    sandbox.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.3")
    sandbox.fail_rollout("deploy", "orders", "orders", "ImagePullBackOff")
    await roll(sandbox, steps=5)
    sandbox.advance(700)
    await eventually(lambda: says(slack, " failed "), within=15)
    sandbox.recover("deploy", "orders", "orders")
    await roll(sandbox)
    await eventually(
        lambda: any("recovered" in slack.read(r) for r in slack.messages(CHANNEL)[0].replies),
        within=20,
    )
    await eventually(lambda: drained(bot))
    [message] = slack.messages(CHANNEL)
    recovered = [r for r in message.replies if "recovered" in slack.read(r)]
    assert len(recovered) == 1
    assert recovered[0].reply_broadcast


async def test_a_restart_among_thousands_of_workloads_tells_every_rollout_once(
    start_bot: Callable[..., Any], cluster: tuple[KubeSandbox, Path], slack: SlackSandbox
) -> None:
    """The list at start is judged page by page: a rollout told before the restart is not told
    again, one that ran or began while no bot watched is told, and one that begins while the
    list is being read (after its first page) comes through the watch that follows it."""
    sandbox, _ = cluster
    made = sandbox.bulk_add_deployments(1200, labels={"appId": "orders"})  # 3 pages of 500
    bot = await start_bot()
    await eventually(lambda: watching(sandbox), within=30)
    sandbox.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.2")
    await roll(sandbox)
    await eventually(lambda: says(slack, "rolled out"), within=15)
    await eventually(lambda: drained(bot))
    await bot.stop()

    def new_image(index: int) -> None:
        namespace, name = made[index]
        sandbox.set_image("deploy", namespace, name, name, f"registry.example.com/bulk/{name}:2")

    new_image(1)
    await roll(sandbox)  # began and ended while no bot watched
    new_image(2)  # began while no bot watched, still rolling out
    during: list[str] = []

    def on_page(resource: str, query: Mapping[str, str]) -> None:
        if resource == "deployments" and query.get("continue") and not during:
            during.append(query["continue"])
            new_image(0)  # its page was read already, at the old template

    sandbox.after_list_page = on_page
    bot = await start_bot()
    await eventually(lambda: bool(during), within=30)  # the rollout began during the list
    await eventually(lambda: watching(sandbox), within=30)
    await roll(sandbox)
    expected = [ROLLOUT, *(f"rollout:prod/Deployment/{ns}/{name}/2" for ns, name in made[:3])]
    await eventually(lambda: sorted(keys(slack)) == sorted(expected), within=20)
    await eventually(
        lambda: all("rolled out in" in slack.read(m) for m in slack.messages(CHANNEL)), within=20
    )
    await eventually(lambda: drained(bot))
    assert sorted(keys(slack)) == sorted(expected)  # each rollout once, none twice
    posts = [c for c in slack.calls if c.method == "chat.postMessage" and c.ok]
    assert len(posts) == len(expected)


async def test_a_narrower_label_selector_after_a_restart_is_no_deletion(
    start_bot: Callable[..., Any], cluster: tuple[KubeSandbox, Path], slack: SlackSandbox
) -> None:
    """Restarted with a selector that leaves orders out: orders is no longer listed, yet not
    deleted, and nothing says it is; the worker, which the selector covers, was deleted while
    the bot was down, and that is said (once)."""
    sandbox, _ = cluster
    sandbox.add_deployment(
        "orders",
        "worker",
        image=f"{IMAGE}:1.4.1",
        replicas=1,
        labels={"appId": "orders", "tier": "worker"},
    )
    first = await start_bot()
    await eventually(lambda: watching(sandbox))
    assert first.store is not None
    redis = first.store.redis
    for name in ("orders", "worker"):
        await eventually(lambda n=name: redis.exists(f"rollouts:prod/Deployment/orders/{n}"))
    await first.stop()
    await eventually(lambda: sandbox.open_watches == 0)
    sandbox.delete("deploy", "orders", "worker")

    second = await start_bot(KUBE_LABEL_SELECTOR="tier=worker")
    await eventually(lambda: watching(sandbox))
    await eventually(lambda: says(slack, "Deployment orders/worker was deleted"))
    await eventually(lambda: drained(second))
    assert [slack.read(m) for m in slack.messages(CHANNEL)] == [
        ":wastebasket: *orders* removed from *production*: Deployment orders/worker was deleted"
        " (it ran orders:1.4.1)\ncontext prod"
    ]
    assert second.store is not None
    assert await second.store.redis.exists("rollouts:prod/Deployment/orders/orders")
