"""``/undeploy`` through the real bot: an approved merge request removes an app from an env.

The GitOps repo holds orders' production manifest, listed by a kustomization; production's
cluster runs orders behind a GitOps controller that prunes what git no longer has; the rollout
watcher sees the workload go.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from bot.adapters.kube.schema import KubeSchemaValidator
from bot.domain.catalog import parse_catalog
from bot.domain.ground_rules import check_ground_rules
from bot.sandbox.gitops import GitOpsController

from .conftest import EXAMPLE_CATALOG, eventually
from .release_world import GITOPS, PRODUCTION, STAGING, TEAM, World

KUSTOMIZATION = "apps/orders/production/kustomization.yaml"
OVERLAY = """# orders in production
namespace: orders
resources:
  - deployment.yaml   # the app
  - pdb.yaml
"""
PDB = """apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: orders
  namespace: orders
spec:
  minAvailable: 1
  selector:
    matchLabels: {app: orders}
"""


def keys(world: World, channel: str = TEAM) -> list[str]:
    return [
        m.metadata["event_payload"]["key"]
        for m in world.slack.messages(channel)
        if m.metadata is not None
    ]


async def test_an_approved_undeploy_removes_the_app_and_the_watcher_sees_it_go(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    await asyncio.to_thread(
        world.gitlab.commit,
        GITOPS,
        {KUSTOMIZATION: OVERLAY, "apps/orders/production/pdb.yaml": PDB},
        message="orders: production overlay",
        author="alice",
    )
    await world.quiet()
    argo = GitOpsController(world.gitlab, world.kube, project=GITOPS, paths=("apps/*/production",))

    answer = await world.slash("/undeploy", "orders production")
    assert answer == (
        ":white_check_mark: Opened !1 *Undeploy orders from production* (`1.4.1` → removed)."
        " It needs 1 approval from @sre-oncall. Follow it in #payments-deploys."
    )
    # One commit: the manifest deleted, its entry out of the kustomization, nothing else.
    mr = world.gitlab.merge_requests(GITOPS)[0]
    branch = mr["source_branch"]
    assert world.gitlab.read_file(GITOPS, PRODUCTION, ref=branch) is None
    edited = world.gitlab.read_file(GITOPS, KUSTOMIZATION, ref=branch)
    assert edited == "# orders in production\nnamespace: orders\nresources:\n  - pdb.yaml\n"
    catalog = parse_catalog(EXAMPLE_CATALOG.read_text(), source="catalog.yaml")
    assert KubeSchemaValidator().problems(edited) == []
    assert check_ground_rules(edited, app=catalog.app("orders"), kind="kustomization") == []
    assert "**Removes:** `apps/orders/production/deployment.yaml`" in mr["description"]
    assert f"**Unlists it from:** `{KUSTOMIZATION}`" in mr["description"]
    assert world.slack.read(world.release_message()).splitlines()[:4] == [
        ":wastebasket: *Undeploy orders from production* · !1",
        ":hourglass_flowing_sand: Waiting for approval — 0/1 from @sre-oncall",
        "`1.4.1` → removed · requested by @bob",
        "Policy: 1 approval from @sre-oncall (an undeploy always needs approval)",
    ]

    # bob asked: he cannot approve it; carol can.
    assert await world.click("release_approve", user="bob") == (
        "You are not an approver for production (approvers: @sre-oncall)."
    )
    assert await world.click("release_approve", user="carol") == "Approved (1/1). Merging."
    await world.pipelines()
    await eventually(lambda: world.mrs()[0]["state"] == "merged")
    await world.quiet()
    assert world.header().startswith(":gear: Removing — GitOps pipeline #")

    # The controller prunes what git no longer has; the watcher sees the Deployment go.
    await asyncio.to_thread(argo.sync)
    assert argo.changes == ["deleted Deployment orders/orders"]
    await eventually(lambda: world.header().startswith(":wastebasket: Removed"))
    await world.quiet()
    assert world.header() == ":wastebasket: Removed from *production* — its workload is gone"
    assert world.thread()[-1] == (
        ":wastebasket: *orders is gone from production*: its workload was deleted from the cluster."
    )
    gone = world.release_message().replies[-1]
    assert gone.reply_broadcast  # in the app's channel, not only in the thread
    assert keys(world) == [world.release_message().metadata["event_payload"]["key"]]

    # /whatsinprod: git has no manifest there any more, and the cluster runs nothing.
    answer = await world.slash("/whatsinprod", "orders production")
    assert "*production* not deployed" in answer
    assert "ready" not in answer


async def test_a_workload_deleted_by_hand_is_said_in_the_apps_channel(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    world.kube.delete("deploy", "orders", "orders")
    await eventually(lambda: any(k.startswith("removed:") for k in keys(world)))
    await world.quiet()
    (message,) = world.slack.messages(TEAM)
    assert world.slack.read(message) == (
        ":wastebasket: *orders* removed from *production*: Deployment orders/orders was deleted"
        " (it ran orders:1.4.1)\ncontext prod"
    )


async def test_an_undeploy_from_an_auto_env_still_needs_an_approval(
    start: Callable[..., Any],
) -> None:
    world: World = await start(RELEASE_PIPELINE_WAIT="1")
    answer = await world.slash("/undeploy", "orders from staging")
    assert "It needs 1 approval from @payments-oncall" in answer
    await world.pipelines()
    assert world.mrs()[0]["state"] == "opened"  # a green pipeline merges nothing here
    assert await world.click("release_approve", user="alice") == "Approved (1/1). Merging."
    await world.pipelines()
    await eventually(lambda: world.mrs()[0]["state"] == "merged")
    assert world.gitlab.read_file(GITOPS, STAGING) is None
    await eventually(lambda: world.header().startswith(":heavy_check_mark: Out of"))
    assert world.header() == (
        ":heavy_check_mark: Out of *staging*'s git — its cluster is not watched"
    )


async def test_nothing_to_undeploy_is_refused_without_a_branch(start: Callable[..., Any]) -> None:
    world: World = await start()
    answer = await world.slash("/undeploy", "search-api production")
    assert answer == (
        ":no_entry: Search-api has no manifest for production in the GitOps repo"
        " (`apps/search-api/production/values.yaml`): there is nothing to undeploy"
    )
    assert world.mrs() == []
    assert world.branches() == ["main"]


async def test_an_undeploy_whose_workload_went_while_the_bot_was_down_ends_removed_once(
    start: Callable[..., Any],
) -> None:
    """Every replica down when the controller pruned it: no DELETED event ever reaches the
    bot, and the list taken at start no longer shows the workload."""
    world: World = await start()
    argo = GitOpsController(world.gitlab, world.kube, project=GITOPS, paths=("apps/*/production",))
    await world.slash("/undeploy", "orders production")
    assert await world.click("release_approve", user="carol") == "Approved (1/1). Merging."
    await world.pipelines()
    await eventually(lambda: world.mrs()[0]["state"] == "merged")
    await world.quiet()
    assert world.header().startswith(":gear: Removing — GitOps pipeline #")

    await world.restart(while_down=argo.sync)
    assert argo.changes == ["deleted Deployment orders/orders"]
    await eventually(lambda: world.header().startswith(":wastebasket: Removed"))
    await world.quiet()
    assert world.header() == ":wastebasket: Removed from *production* — its workload is gone"
    told = world.thread()
    assert told[-1] == (
        ":wastebasket: *orders is gone from production*: its workload was deleted from the cluster."
    )
    assert keys(world) == [world.release_message().metadata["event_payload"]["key"]]
    answer = await world.slash("/whatsinprod", "orders production")
    assert "*production* not deployed" in answer
    assert "ready" not in answer

    await world.restart()  # told once: a later start has nothing more to say
    await world.quiet()
    assert world.thread() == told
    assert keys(world) == [world.release_message().metadata["event_payload"]["key"]]


async def test_a_workload_deleted_while_the_bot_was_down_is_said_once(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    answer = await world.slash("/whatsinprod", "orders production")
    assert "ready" in answer  # the cluster runs it, as the watcher saw
    await world.restart(while_down=lambda: world.kube.delete("deploy", "orders", "orders"))
    await eventually(lambda: any(k.startswith("removed:") for k in keys(world)))
    await world.quiet()
    (message,) = world.slack.messages(TEAM)
    assert world.slack.read(message) == (
        ":wastebasket: *orders* removed from *production*: Deployment orders/orders was deleted"
        " (it ran orders:1.4.1)\ncontext prod"
    )
    answer = await world.slash("/whatsinprod", "orders production")
    assert "ready" not in answer  # nothing runs there any more

    await world.restart()
    await world.quiet()
    assert len(world.slack.messages(TEAM)) == 1


async def test_nothing_deleted_while_the_bot_was_down_nothing_said(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    await world.quiet()
    before = len(world.slack.messages(TEAM))
    # Another app's workload appears and goes while the bot is down: never known, never told.
    world.kube.add_namespace("billing", {"appId": "billing"})

    def come_and_go() -> None:
        world.kube.add_deployment(
            "billing", "billing", image="registry.example.com/b:1", replicas=1
        )
        world.kube.delete("deploy", "billing", "billing")

    await world.restart(while_down=come_and_go)
    await world.quiet()
    await world.restart()
    await world.quiet()
    assert len(world.slack.messages(TEAM)) == before
    answer = await world.slash("/whatsinprod", "orders production")
    assert "ready" in answer  # orders still runs, and is still shown running


async def test_a_state_stored_before_the_upgrade_is_judged_from_the_first_list_on(
    start: Callable[..., Any],
) -> None:
    """The previous version stored states without labels and kept no index of them: the first
    list after the upgrade fills both in (quietly), so a deletion while down later is told."""
    world: World = await start()
    await world.quiet()

    def redis() -> Any:  # the running bot's client (a stopped bot's is closed)
        assert world.bot.store is not None
        return world.bot.store.redis

    record, index = "rollouts:prod/Deployment/orders/orders", "rollouts:known:Deployment:prod"
    data = json.loads(await eventually(lambda: redis().hget(record, "data")))
    assert data.pop("labels")["appId"] == "orders"
    await redis().hset(record, "data", json.dumps(data))  # as the previous version stored it
    await redis().srem(index, "prod/Deployment/orders/orders")

    await world.restart()  # the upgrade
    await world.quiet()

    async def indexed() -> bool:
        return bool(await redis().smembers(index) == {b"prod/Deployment/orders/orders"})

    await eventually(indexed)  # as the first list is judged
    assert json.loads(await redis().hget(record, "data"))["labels"]["appId"] == "orders"
    assert world.slack.messages(TEAM) == []  # said nothing

    await world.restart(while_down=lambda: world.kube.delete("deploy", "orders", "orders"))
    await eventually(lambda: any(k.startswith("removed:") for k in keys(world)))
    await world.quiet()
    assert len(world.slack.messages(TEAM)) == 1
    assert await redis().smembers(index) == set()  # forgotten before it was told
    assert not await redis().exists(record)
