"""The watcher with the official client against the Kubernetes sandbox: list, watch, resume."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.kube.watcher import KubeWatcher, ListedPage, ListEnded, ObjectEvent
from bot.sandbox.kube import KubeSandbox

from .conftest import eventually


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[KubeSandbox, str]]:
    async with KubeSandbox() as sandbox:
        sandbox.add_namespace("orders", {"appId": "orders"})
        sandbox.add_deployment(
            "orders",
            "orders",
            image="registry.example.com/shop/orders:1.4.1",
            replicas=3,
            labels={"appId": "orders"},
        )
        config = sandbox.kubeconfig(tmp_path / "kubeconfig", context="prod")
        yield sandbox, str(config)


async def _watching(sandbox: KubeSandbox, config: str, **options: object):  # type: ignore[no-untyped-def]
    seen: list[ObjectEvent] = []

    async def handle(event: ObjectEvent) -> None:
        seen.append(event)

    watcher = KubeWatcher(context="prod", kubeconfig=config, **options)  # type: ignore[arg-type]
    task = asyncio.create_task(watcher.run(handle))
    await eventually(lambda: sandbox.open_watches == 3)
    return watcher, task, seen


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _versions(seen: list[ObjectEvent], name: str) -> list[int]:
    return [
        int(e.obj["metadata"]["resourceVersion"])
        for e in seen
        if e.obj["metadata"]["name"] == name and e.type != "LISTED"
    ]


async def test_lists_every_kind_then_follows_a_rollout(cluster) -> None:
    sandbox, config = cluster
    _, task, seen = await _watching(sandbox, config)
    try:
        assert [(e.kind, e.type, e.obj["metadata"]["name"]) for e in seen] == [
            ("Deployment", "LISTED", "orders")
        ]
        sandbox.set_image(
            "deploy", "orders", "orders", "orders", "registry.example.com/shop/orders:1.4.2"
        )
        sandbox.settle()

        def done() -> bool:
            last = [e for e in seen if e.type == "MODIFIED"]
            return (
                bool(last)
                and last[-1].obj["status"].get("updatedReplicas") == 3
                and last[-1].obj["status"].get("availableReplicas") == 3
            )

        await eventually(done)
        versions = _versions(seen, "orders")
        assert versions == sorted(versions)
        assert len(versions) == len(set(versions))
    finally:
        await _stop(task)


async def test_a_cut_watch_resumes_without_missing_or_repeating(cluster) -> None:
    sandbox, config = cluster
    watcher, task, seen = await _watching(sandbox, config, max_backoff=0.2)
    try:
        for tag in ("1.4.2", "1.4.3", "1.4.4"):
            sandbox.set_image(
                "deploy", "orders", "orders", "orders", f"registry.example.com/shop/orders:{tag}"
            )
            sandbox.step()
            sandbox.cut_watches()
            sandbox.step()
            await eventually(lambda: sandbox.open_watches == 3)
        sandbox.settle()
        final = sandbox.get("deploy", "orders", "orders")
        final_version = int(final["metadata"]["resourceVersion"])
        await eventually(lambda: _versions(seen, "orders")[-1:] == [final_version])
        versions = _versions(seen, "orders")
        assert versions == sorted(set(versions))  # nothing repeated, nothing out of order
        assert watcher.listed == {"Deployment": 1, "StatefulSet": 1, "DaemonSet": 1}
    finally:
        await _stop(task)


async def test_an_expired_version_makes_the_watcher_list_again(cluster) -> None:
    sandbox, config = cluster
    watcher, task, seen = await _watching(sandbox, config, max_backoff=0.2)
    try:
        sandbox.cut_watches()
        sandbox.set_image(
            "deploy", "orders", "orders", "orders", "registry.example.com/shop/orders:1.5.0"
        )
        sandbox.settle()
        sandbox.expire()
        await eventually(lambda: watcher.listed.get("Deployment") == 2)
        relisted = [e for e in seen if e.type == "LISTED"][-1]
        containers = relisted.obj["spec"]["template"]["spec"]["containers"]
        assert containers[0]["image"].endswith(":1.5.0")  # the change made during the gap
    finally:
        await _stop(task)


async def test_five_thousand_deployments_are_listed_in_pages(cluster) -> None:
    sandbox, config = cluster
    sandbox.bulk_add_deployments(5000)
    _, task, seen = await _watching(sandbox, config, page_size=500)
    try:
        await eventually(lambda: len([e for e in seen if e.kind == "Deployment"]) == 5001)
        assert sum(1 for r in sandbox.requests if "limit=500" in r) >= 11
    finally:
        await _stop(task)


async def test_a_list_is_handed_over_by_the_page_and_the_watch_by_the_event(cluster) -> None:
    sandbox, config = cluster
    sandbox.bulk_add_deployments(1200)
    pages: list[ListedPage] = []
    events: list[ObjectEvent] = []

    async def on_page(page: ListedPage) -> None:
        pages.append(page)

    async def on_event(event: ObjectEvent) -> None:
        events.append(event)

    watcher = KubeWatcher(context="prod", kubeconfig=config, page_size=500, queue_size=600)
    task = asyncio.create_task(watcher.run(on_event, on_page))
    try:
        await eventually(lambda: sandbox.open_watches == 3)
        assert [(p.kind, len(p.objs)) for p in pages] == [
            ("Deployment", 500),
            ("Deployment", 500),
            ("Deployment", 201),
        ]
        names = [o["metadata"]["name"] for p in pages for o in p.objs]
        assert len(set(names)) == 1201
        assert events == []
        sandbox.set_image(
            "deploy", "orders", "orders", "orders", "registry.example.com/shop/orders:1.4.2"
        )
        await eventually(lambda: [e.type for e in events][:1] == ["MODIFIED"])
        assert len(pages) == 3
    finally:
        await _stop(task)


async def test_only_a_complete_list_is_handed_over_as_ended(cluster) -> None:
    """What a list held is named once its last page is read: a list whose next page expired
    (410 on its continue token) ends nothing, the complete list taken again does; a list
    again after a 410 on the watch ends again, without what was deleted in the gap."""
    sandbox, config = cluster
    sandbox.bulk_add_deployments(1200)
    pages: list[ListedPage] = []
    ends: list[ListEnded] = []
    events: list[ObjectEvent] = []

    async def on_page(page: ListedPage) -> None:
        pages.append(page)
        if len(pages) == 1:  # the list's continue token is gone before its third page
            sandbox.set_image(
                "deploy", "orders", "orders", "orders", "registry.example.com/shop/orders:1.4.2"
            )
            sandbox.expire()

    async def on_end(ended: ListEnded) -> None:
        ends.append(ended)

    async def on_event(event: ObjectEvent) -> None:
        events.append(event)

    watcher = KubeWatcher(
        context="prod", kubeconfig=config, page_size=500, queue_size=600, max_backoff=0.2
    )
    task = asyncio.create_task(watcher.run(on_event, on_page, on_end))
    try:
        await eventually(lambda: sandbox.open_watches == 3)
        assert {e.kind for e in ends} == {"DaemonSet", "Deployment", "StatefulSet"}
        assert watcher.listed["Deployment"] == 1
        assert len([p for p in pages if p.kind == "Deployment"]) > 3  # the cut list's, and more
        (deployments,) = [e for e in ends if e.kind == "Deployment"]
        assert len(deployments.present) == 1201
        assert ("orders", "orders") in deployments.present
        assert (deployments.context, deployments.label_selector) == ("prod", None)
        assert {e.present for e in ends if e.kind != "Deployment"} == {frozenset()}

        sandbox.cut_watches()
        sandbox.delete("deploy", "orders", "orders")
        sandbox.expire()
        await eventually(lambda: watcher.listed.get("Deployment") == 2)
        await eventually(lambda: len([e for e in ends if e.kind == "Deployment"]) == 2)
        again = [e for e in ends if e.kind == "Deployment"][-1]
        assert len(again.present) == 1200
        assert ("orders", "orders") not in again.present
        assert [e.type for e in events if e.type == "DELETED"] == []  # the gap hid it
    finally:
        await _stop(task)


async def test_a_cancellation_a_handler_swallows_still_ends_the_run(cluster) -> None:
    """Some library under a handler may swallow a cancellation (the bot stopping): the run
    ends anyway, and its threads with it, instead of waiting for items while they watch on."""
    sandbox, config = cluster
    handling = asyncio.Event()

    async def swallowing(event: ObjectEvent) -> None:
        handling.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)

    watcher = KubeWatcher(context="prod", kubeconfig=config)
    task = asyncio.create_task(watcher.run(swallowing))
    await asyncio.wait_for(handling.wait(), 10)
    task.cancel()
    await asyncio.wait({task}, timeout=10)
    assert task.cancelled()
    await eventually(lambda: sandbox.open_watches == 0)
    await eventually(
        lambda: not any(t.name.startswith("watch:prod:") for t in threading.enumerate())
    )


@pytest.mark.parametrize("cut", ["while listing", "while watching"])
async def test_a_run_cut_short_ends_its_threads_and_the_next_run_watches_alone(
    cluster, cut: str
) -> None:
    """A lease lost, then won again: the first run's threads end (those blocked reading a
    watch stream too), and only the second run's watch and tell."""
    sandbox, config = cluster
    sandbox.bulk_add_deployments(1200)
    events: list[ObjectEvent] = []
    pages: list[ListedPage] = []

    async def on_event(event: ObjectEvent) -> None:
        events.append(event)

    holding = cut == "while listing"
    never = asyncio.Event()

    async def on_page(page: ListedPage) -> None:
        pages.append(page)
        if holding:  # the first run is cut while its first page is handled: mid-list
            await never.wait()

    def threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name.startswith("watch:prod:"))

    watcher = KubeWatcher(context="prod", kubeconfig=config, page_size=500)
    first = asyncio.create_task(watcher.run(on_event, on_page))
    if cut == "while listing":
        await eventually(lambda: len(pages) == 1)
        holding = False
    else:
        await eventually(lambda: sandbox.open_watches == 3)
    await _stop(first)
    await eventually(lambda: threads() == 0)
    pages.clear()
    second = asyncio.create_task(watcher.run(on_event, on_page))
    try:
        await eventually(lambda: sum(len(p.objs) for p in pages) == 1201)
        lists = 1 if cut == "while listing" else 2  # a list cut short counts for none
        await eventually(lambda: watcher.listed.get("Deployment") == lists)
        assert threads() == 3
        sandbox.set_image(
            "deploy", "orders", "orders", "orders", "registry.example.com/shop/orders:1.4.2"
        )
        sandbox.settle()
        final = int(sandbox.get("deploy", "orders", "orders")["metadata"]["resourceVersion"])
        await eventually(lambda: _versions(events, "orders")[-1:] == [final])
        versions = _versions(events, "orders")
        assert versions == sorted(set(versions))  # told by one run only
        await eventually(lambda: sandbox.open_watches == 3)  # the first run's are gone
    finally:
        await _stop(second)
