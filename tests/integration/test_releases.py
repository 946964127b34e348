"""Releases end to end: slash commands and button clicks signed like Slack's, to the real bot,
against the GitLab sandbox (a real git repo, MRs, pipelines, webhooks) and the Kubernetes one.

The story a user follows is read back from the Slack sandbox as a person would read it: the
release message, its thread, and the answers only the clicker sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from .conftest import eventually
from .release_world import (
    GITOPS,
    IMAGE,
    PRODUCTION,
    STAGING,
    World,
    deployment,
    roll,
)

# --------------------------------------------------------------------------------------------
# The stories


async def test_a_deploy_to_an_auto_env_goes_straight_through(start: Callable[..., Any]) -> None:
    world: World = await start()
    answer = await world.slash("/deploy", "orders 1.4.2 to staging")
    assert answer.startswith(":white_check_mark: Opened !1 *Deploy orders 1.4.2 to staging*")
    assert "It merges when its pipeline passes" in answer

    [mr] = world.mrs()
    assert mr["title"] == "Deploy orders 1.4.2 to staging"
    assert "Requested by **Bob Okafor (@\u200bbob)** in Slack" in mr["description"]
    assert "- **Version:** 1.4.1 → **1.4.2**" in mr["description"]
    assert "### Changelog: 2 commits" in mr["description"]
    assert "Round invoices half-up" in mr["description"]
    assert "/-/issues/12)" in mr["description"]
    source = mr["source_branch"]
    changed = world.gitlab.read_file(GITOPS, STAGING, ref=source)
    assert changed == deployment("1.4.1").replace(f"{IMAGE}:1.4.1", f"{IMAGE}:1.4.2")
    assert world.gitlab.read_file(GITOPS, PRODUCTION, ref=source) == deployment("1.4.1")

    await eventually(lambda: "Waiting for the MR pipeline" in world.header())
    await world.pipelines()
    await eventually(lambda: world.mrs()[0]["state"] == "merged")
    await eventually(lambda: "Deployed" in world.header())
    await world.quiet()

    assert world.header() == (
        ":heavy_check_mark: Deployed by GitOps pipeline #4 — *staging*'s cluster is not watched"
    )
    thread = world.thread()
    assert thread[0].startswith(":white_check_mark: MR pipeline #")
    assert thread[0].endswith(" passed")
    assert thread[1:] == [
        ":twisted_rightwards_arrows: Merging !1 when its pipeline passes",
        ":twisted_rightwards_arrows: Merged !1. Waiting for the GitOps pipeline (*staging*'s"
        " cluster is not watched).",
        ":white_check_mark: GitOps pipeline #4 passed",
    ]
    assert world.branches() == ["main"]  # the source branch went with the merge
    assert "1.4.2" in world.gitlab.read_file(GITOPS, STAGING)
    async with world.http.get(f"{world.bot.url}/metrics") as response:
        metrics = await response.text()
    assert 'pitcrew_releases_total{kind="deploy",step="deployed"}' in metrics
    assert 'pitcrew_command_seconds_count{command="/deploy",outcome="ok"}' in metrics


async def test_a_promotion_to_production_is_approved_and_followed_to_healthy(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    await asyncio.to_thread(
        world.gitlab.commit,
        GITOPS,
        {STAGING: deployment("1.4.2")},
        message="orders 1.4.2 in staging",
        author="alice",
    )
    answer = await world.slash("/deploy", "orders from staging to production")
    assert "Opened !1 *Deploy orders 1.4.2 to production*" in answer
    assert "It needs 1 approval from @sre-oncall" in answer

    message = world.release_message()
    text = world.slack.read(message)
    assert text.splitlines()[0] == ":rocket: *Deploy orders 1.4.2 to production* · !1"
    assert world.header() == ":hourglass_flowing_sand: Waiting for approval — 0/1 from @sre-oncall"
    assert "`1.4.1` → `1.4.2` · requested by @bob" in text
    assert "Changelog* (2 commits" in text
    # the env's channel gets the same message
    assert world.header("releases") == world.header()

    assert await world.click("release_approve", user="carol") == "Approved (1/1). Merging."
    await eventually(lambda: "Merging" in world.header())
    await world.pipelines()
    await eventually(lambda: world.mrs()[0]["state"] == "merged")
    notes = world.gitlab.notes(GITOPS, 1)
    assert any(
        "Approved in Slack through Pitcrew by Carol Chen (@\u200bcarol) (1/1)" in n["body"]
        for n in notes
    )

    await eventually(lambda: "Merged" in world.header() or "Deploying" in world.header())
    world.kube.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.2")
    await eventually(lambda: "Rolling out" in world.header())
    await roll(world.kube)
    await eventually(lambda: "Healthy" in world.header())
    await world.quiet()

    assert world.header().startswith(":large_green_circle: Healthy in *production* after ")
    thread = world.thread()
    assert thread[0] == ":white_check_mark: Approved by @carol (1/1)"
    assert ":twisted_rightwards_arrows: Merging !1 when its pipeline passes" in thread
    assert any(line.startswith(":white_check_mark: GitOps pipeline #") for line in thread)
    assert ":arrows_counterclockwise: Rolling out `1.4.2` in *production*…" in thread
    assert thread[-1].startswith(
        ":large_green_circle: *orders 1.4.2 is healthy in production* after "
    )
    # one message per key, whatever was updated
    keys = [m.metadata["event_payload"]["key"] for m in world.slack.all_messages() if m.metadata]
    assert len(keys) == len(set(keys))


async def test_approvals_that_must_not_count_are_refused_and_change_nothing(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    await world.slash("/deploy", "orders 1.4.2 to production", user="dave")  # an approver
    message = world.release_message()

    assert await world.click("release_approve", user="alice") == (
        "You are not an approver for production (approvers: @sre-oncall)."
    )
    assert await world.click("release_approve", user="dave") == (
        "You asked for this release: someone else must approve it (production forbids"
        " self-approval)."
    )
    await world.slash("/lock", "production hotfix freeze", user="dave")
    locked = await world.click("release_approve", user="carol")
    assert locked == (
        "production is locked by @dave: hotfix freeze. Approvals wait until `/unlock production`."
    )
    await world.slash("/unlock", "production", user="dave")

    # someone pushes to the MR's branch: the reviewed change is not the one that would merge
    branch = world.mrs()[0]["source_branch"]
    await asyncio.to_thread(
        world.gitlab.commit,
        GITOPS,
        {PRODUCTION: deployment("1.4.0")},
        message="sneaky",
        author="alice",
        branch=branch,
    )
    changed = await world.click("release_approve", user="carol")
    assert changed.startswith("!1 changed since it was opened (its head is now `")
    await world.quiet()
    assert world.header() == ":hourglass_flowing_sand: Waiting for approval — 0/1 from @sre-oncall"
    assert world.thread() == []
    assert world.mrs()[0]["state"] == "opened"
    assert world.slack.read(message).count("Approve") == 1  # the buttons are still there


async def test_a_double_click_counts_once(start: Callable[..., Any]) -> None:
    world: World = await start(RELEASE_EXPIRY_HOURS="24")
    world.slack.add_usergroup("sre-oncall", ["U0CAROL", "U0DAVE"])
    await world.slash("/deploy", "orders 1.4.2 to production")
    # two clicks on the button before the message changes
    clicks = [world.signed_click("release_approve", user="carol") for _ in range(2)]
    first = await world.send_click(clicks[0], user="carol")
    again = await world.send_click(clicks[1], user="carol")
    assert first == "Approved (1/1). Merging."
    assert again == "Your approval is already counted."
    await world.quiet()
    assert [line for line in world.thread() if "Approved by" in line] == [
        ":white_check_mark: Approved by @carol (1/1)"
    ]


async def test_reject_closes_the_merge_request(start: Callable[..., Any]) -> None:
    world: World = await start()
    await world.slash("/deploy", "orders 1.4.2 to production")
    refused = await world.click("release_reject", user="alice")
    assert refused.startswith("Only the requester or an approver for production can reject")
    assert await world.click("release_reject", user="dave") == (
        "Rejected: the merge request is closed."
    )
    await world.quiet()
    assert world.mrs()[0]["state"] == "closed"
    assert world.header() == ":no_entry_sign: Rejected by @dave — !1 closed"
    assert world.thread() == [":no_entry_sign: Rejected by @dave: !1 is closed."]
    assert "Approve" not in world.slack.read(world.release_message())
    # the app and env are free again
    answer = await world.slash("/deploy", "orders 1.4.2 to production")
    assert "Opened !2" in answer


async def test_an_unapproved_release_expires(start: Callable[..., Any]) -> None:
    world: World = await start(RELEASE_EXPIRY_HOURS="0.0003")  # about a second
    await world.slash("/deploy", "orders 1.4.2 to production")
    await eventually(lambda: world.mrs()[0]["state"] == "closed", within=10)
    await eventually(lambda: "Expired" in world.header())
    await world.quiet()
    assert world.header() == ":zzz: Expired: not approved within 1 s — !1 closed"
    assert world.thread() == [":zzz: Expired (not approved within 1 s): !1 is closed."]


async def test_a_manifest_that_breaks_the_ground_rules_is_refused_and_leaves_no_branch(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    await asyncio.to_thread(
        world.gitlab.commit,
        GITOPS,
        {PRODUCTION: deployment("1.4.1", namespace="shop")},
        message="move orders to the shop namespace",
        author="alice",
    )
    answer = await world.slash("/deploy", "orders 1.4.2 to production")
    assert answer.startswith(
        ":no_entry: The edited `apps/orders/production/deployment.yaml` would break the rules:"
    )
    assert "shop" in answer
    assert world.branches() == ["main"]
    assert world.mrs() == []


async def test_refusals_before_anything_is_written(start: Callable[..., Any]) -> None:
    world: World = await start()
    assert await world.slash("/deploy", "orders 9.9.9 to production") == (
        ":no_entry: Shop/orders has no tag 9.9.9 (nor v9.9.9)"
    )
    assert await world.slash("/deploy", "orders 1.4.1 to production") == (
        ":no_entry: Orders 1.4.1 is already what production runs (per git)"
    )
    usage = await world.slash("/deploy", "orders 1.4.2 to prod")
    assert ":warning: No environment “prod” — environments are staging, production" in usage
    assert "Usage: `/deploy <app> <version> to <env>`" in usage
    assert world.mrs() == []


async def test_gitlab_failing_to_open_the_merge_request_leaves_nothing_behind(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    world.gitlab.fail("POST /projects/*/merge_requests", status=500)
    answer = await world.slash("/deploy", "orders 1.4.2 to production")
    assert answer.startswith(":no_entry: The merge request could not be opened: ")
    assert "Nothing was left in GitLab; try again" in answer
    assert world.branches() == ["main"]
    assert world.mrs() == []
    assert "Opened !1" in await world.slash("/deploy", "orders 1.4.2 to production")


async def test_a_locked_env_asks_before_deploying_and_shows_the_override(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    await world.slash("/lock", "production black friday", user="dave")
    prompt = await world.slash("/deploy", "orders 1.4.2 to production")
    assert prompt.startswith(":lock: *production* is locked by @dave (just now): “black friday”")
    assert world.mrs() == []
    ephemeral = world.slack.ephemerals()[-1]

    not_mine = await world.click("release_deploy_anyway", user="carol", message=ephemeral)
    assert not_mine.startswith(":no_entry: Only @bob, who asked, can confirm this.")
    opened = await world.click("release_deploy_anyway", user="bob", message=ephemeral)
    assert "Opened !1" in opened
    await world.quiet()
    assert world.thread() == [
        ":unlock: @bob chose *Deploy anyway* through @dave's lock on *production*: “black friday”"
    ]
    assert ":unlock: Deployed through the lock of @dave (black friday), on @bob's say-so" in (
        world.slack.read(world.release_message())
    )
    assert (
        "- **Lock:** locked by Dave Roy (@\u200bdave) (black friday)"
        in world.mrs()[0]["description"]
    )
    # the override covers this lock: approving is allowed
    assert await world.click("release_approve", user="carol") == "Approved (1/1). Merging."


async def test_an_auto_release_waits_for_the_lock_then_merges_on_unlock(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    await world.slash("/deploy", "orders 1.4.2 to staging")
    await world.slash("/lock", "staging demo in progress", user="dave")
    await world.pipelines()
    await eventually(lambda: "Held" in world.header())
    assert world.mrs()[0]["state"] == "opened"
    await world.slash("/unlock", "staging", user="dave")
    await world.pipelines()
    await eventually(lambda: world.mrs()[0]["state"] == "merged")
    await world.quiet()
    thread = world.thread()
    assert (
        ":lock: The MR pipeline passed, but *staging* is locked by @dave: this release merges as"
        " soon as it is unlocked." in thread
    )
    assert thread.index(":twisted_rightwards_arrows: Merging !1 when its pipeline passes") > 1


async def test_a_failed_rollout_is_rolled_back_to_the_previous_version(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    await world.slash("/deploy", "orders 1.4.2 to production")
    await world.click("release_approve", user="carol")
    await world.pipelines()
    await eventually(lambda: world.mrs()[0]["state"] == "merged")
    world.kube.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.2")
    world.kube.fail_rollout("deploy", "orders", "orders", "CrashLoopBackOff")
    await roll(world.kube, steps=5)
    await eventually(lambda: "Rolling out" in world.header())
    world.kube.advance(700)  # past progressDeadlineSeconds
    await eventually(lambda: "Failed" in world.header(), within=20)
    await world.quiet()
    assert world.header() == (
        ":red_circle: Failed: the rollout failed: ProgressDeadlineExceeded · new pods 0/1 ready"
        " · old pods 2/2 serving — `/rollback orders production`"
    )

    answer = await world.slash("/rollback", "orders production")
    assert "Opened !2 *Roll back orders to 1.4.1 in production*" in answer
    rollback = world.mrs()[0] if world.mrs()[0]["iid"] == 2 else world.mrs()[1]
    assert rollback["title"] == "Roll back orders to 1.4.1 in production"
    assert "(rollback)" in rollback["description"]
    assert "### Commits leaving: 2 commits" in rollback["description"]


async def test_two_replicas_merge_once_and_post_once(start: Callable[..., Any]) -> None:
    world: World = await start(replicas=2)
    await world.slash("/deploy", "orders 1.4.2 to production", bot=1)
    # two approvers click at the same moment, each on another replica
    carol = world.signed_click("release_approve", user="carol")
    dave = world.signed_click("release_approve", user="dave")
    first, second = await asyncio.gather(
        world.send_click(carol, user="carol", bot=0), world.send_click(dave, user="dave", bot=1)
    )
    assert sorted([first, second]) == sorted(
        ["Approved (1/1). Merging.", "This release already has the approvals it needs."]
    ), (first, second)
    await world.pipelines()
    await eventually(lambda: world.mrs()[0]["state"] == "merged")
    await world.quiet()
    merges = [c for c in world.gitlab.calls if c.method == "PUT" and c.path.endswith("/merge")]
    assert len(merges) == 1
    keys = [m.metadata["event_payload"]["key"] for m in world.slack.all_messages() if m.metadata]
    assert len(keys) == len(set(keys))
    assert len([line for line in world.thread() if "Approved by" in line]) == 1


KUSTOMIZATION = """# invoices in staging
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: invoices
resources: [../base]
images:
  - name: registry.example.com/shop/invoices
    newTag: "2.0.0"   # bumped by Pitcrew
"""
VALUES = """# search-api values for staging
replicaCount: 2
image:
  repository: registry.example.com/shop/search-api
  tag: '3.2.0'
resources: {limits: {memory: 512Mi}}
"""


@pytest.mark.parametrize(
    ("app", "path", "original", "old", "new"),
    [
        (
            "invoices",
            "apps/invoices/staging/kustomization.yaml",
            KUSTOMIZATION,
            '"2.0.0"',
            '"2.1.0"',
        ),
        ("search-api", "apps/search-api/staging/values.yaml", VALUES, "'3.2.0'", "'3.2.1'"),
    ],
    ids=["kustomization", "helm-values"],
)
async def test_every_kind_of_manifest_changes_only_its_version(
    start: Callable[..., Any], app: str, path: str, original: str, old: str, new: str
) -> None:
    world: World = await start()
    source = f"shop/{app}"
    await asyncio.to_thread(world.gitlab.add_project, source)
    await asyncio.to_thread(
        world.gitlab.commit, source, {"README.md": "x\n"}, message="init", author="alice"
    )
    version = new.strip("'\"")
    await asyncio.to_thread(world.gitlab.tag, source, version)
    await asyncio.to_thread(
        world.gitlab.commit, GITOPS, {path: original}, message=f"{app}", author="alice"
    )
    answer = await world.slash("/deploy", f"{app} {version} to staging")
    assert "Opened !1" in answer, answer
    branch = world.mrs()[0]["source_branch"]
    assert world.gitlab.read_file(GITOPS, path, ref=branch) == original.replace(old, new)


async def test_a_click_on_a_view_is_answered_in_a_direct_message(
    start: Callable[..., Any],
) -> None:
    """A button on the App Home (or a modal) comes with no response_url and no channel: the
    answer reaches the person in a direct message, and the click still counts."""
    world: World = await start()
    await world.slash("/deploy", "orders 1.4.2 to production")
    buttons = next(b for b in world.release_message().blocks if b["type"] == "actions")
    publisher = AsyncWebClient(token=world.slack.bot_token, base_url=world.slack.api_url)
    await publisher.views_publish(user_id="U0CAROL", view={"type": "home", "blocks": [buttons]})
    answered_before = len([c for c in world.slack.calls if c.method == "response_url"])
    body, headers = world.slack.home_action(user="carol", action_id="release_approve")
    async with world.http.post(
        f"{world.bot.url}/slack/events", data=body, headers=headers
    ) as response:
        assert response.status == 200
    await eventually(lambda: world.slack.messages("U0CAROL"))
    [answer] = world.slack.messages("U0CAROL")
    assert world.slack.read(answer) == "Approved (1/1). Merging."
    await eventually(lambda: "Merging" in world.header())
    answered = [c for c in world.slack.calls if c.method == "response_url"]
    assert len(answered) == answered_before  # nothing was tried without a response_url
