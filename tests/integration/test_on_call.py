"""Slack for the person on call (SPEC 12), through the real bot: signed slash commands, clicks
and Events API deliveries, the real watch protocol of the Kubernetes sandbox, real GitLab
webhooks.

One story per change (a rollout a release follows has no message of its own), failure replies
that name the crash reason and carry a working Roll back button, times as Slack date tokens, the
App Home for an approver and for someone else, ``/pitcrew help`` and "Share in channel".
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from bot.sandbox.slack import Message

from .conftest import eventually
from .release_world import GITOPS, IMAGE, PRODUCTION, TEAM, World, deployment, roll

DATE = re.compile(r"<!date\^\d+\^\{date_short_pretty\} \{time\}\|\d{4}-\d\d-\d\d \d\d:\d\d UTC>")
CRASH = "panic: no PAYMENTS_KEY"


def keys(world: World, channel: str) -> list[str]:
    """The keys of the channel's top-level messages: one per change."""
    return [
        m.metadata["event_payload"]["key"]
        for m in world.slack.messages(channel)
        if m.metadata is not None
    ]


def raw(message: Message) -> str:
    """Everything a message's blocks say, as Slack receives it (date tokens included)."""
    texts = [message.text]
    for block in message.blocks:
        texts.append(str((block.get("text") or {}).get("text", "")))
        texts += [str(e.get("text", "")) for e in block.get("elements") or [] if "text" in e]
    return "\n".join(texts)


async def crash_in_production(world: World, version: str) -> None:
    """The cluster runs ``version`` and its new pods crash on start, past the deadline."""
    world.kube.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:{version}")
    world.kube.fail_rollout("deploy", "orders", "orders", "CrashLoopBackOff", message=CRASH)
    await roll(world.kube, steps=5)


def failure_reply(world: World, message: Message) -> Message:
    [reply] = [r for r in message.replies if "[Roll back to" in world.slack.read(r)]
    return reply


async def click_as(world: World, action: str, *, user: str, message: Any) -> str:
    return await world.send_click(world.signed_click(action, user=user, message=message), user=user)


# --------------------------------------------------------------------------------------------
# One story per change, the reasons, the Roll back button


async def test_a_release_tells_its_rollout_once_with_the_crash_and_a_roll_back_button(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    await world.slash("/deploy", "orders 1.4.2 to production")
    await world.click("release_approve", user="carol")
    await world.pipelines()
    await eventually(lambda: world.mrs()[0]["state"] == "merged")
    await crash_in_production(world, "1.4.2")
    await eventually(lambda: "Rolling out" in world.header(), within=15)
    assert world.header().startswith(
        ":arrows_counterclockwise: Rolling out in *production* · new pods 0/1 ready"
    )
    world.kube.advance(700)  # past progressDeadlineSeconds
    await eventually(lambda: "Failed" in world.header(), within=20)
    await world.quiet()

    # one top-level message per change, in each channel: the release, not its rollout
    assert [k.split(":")[0] for k in keys(world, TEAM)] == ["release"]
    assert [k.split(":")[0] for k in keys(world, "releases")] == ["release"]
    assert world.header() == (
        ":red_circle: Failed: the rollout failed: ProgressDeadlineExceeded · new pods 0/1 ready"
        " · old pods 2/2 serving — `/rollback orders production`"
    )
    # the failure reply names the crash and offers the way back, in the channel too
    reply = failure_reply(world, world.release_message())
    text = world.slack.read(reply)
    assert text.startswith(
        ":red_circle: *Deploy orders 1.4.2 to production failed*: the rollout failed:"
        " ProgressDeadlineExceeded · new pods 0/1 ready · old pods 2/2 serving.\n"
        ":mag: New pods: `orders-"
    )
    assert "orders — CrashLoopBackOff (restarted " in text
    assert text.endswith(f"): {CRASH}\n[Roll back to 1.4.1]")
    assert reply.reply_broadcast
    # the times in the message are Slack date tokens
    assert DATE.search(raw(world.release_message()))

    # alice is on call for payments but no approver of production: the rollback opens as hers
    # and waits for an approver, as a typed /rollback would
    answer = await click_as(world, "release_roll_back", user="alice", message=reply)
    assert "Opened !2 *Roll back orders to 1.4.1 in production*" in answer, answer
    assert "It needs 1 approval from @sre-oncall" in answer
    await world.quiet()
    releases = [world.slack.read(m) for m in world.slack.messages(TEAM)]
    rollback = next(r for r in releases if r.startswith(":rewind:"))
    assert rollback.splitlines()[1] == (
        ":hourglass_flowing_sand: Waiting for approval — 0/1 from @sre-oncall"
    )
    assert "`1.4.2` → `1.4.1` · requested by @alice" in rollback
    assert {mr["iid"]: mr["title"] for mr in world.mrs()}[
        2
    ] == "Roll back orders to 1.4.1 in production"
    assert any("Superseded by *Roll back orders to 1.4.1" in r for r in releases)

    # the same button again: nothing twice
    again = await click_as(world, "release_roll_back", user="bob", message=reply)
    assert again == (
        "Nothing to do: Deploy orders 1.4.2 to production was already superseded by Roll back"
        " orders to 1.4.1 in production (requested by @alice)."
    )
    assert len(world.mrs()) == 2


async def test_a_rollout_no_release_explains_keeps_its_message_and_can_be_rolled_back(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    # someone merged 1.4.2 into production by hand, outside Pitcrew, and the controller applied it
    await asyncio.to_thread(
        world.gitlab.commit,
        GITOPS,
        {PRODUCTION: deployment("1.4.2")},
        message="orders 1.4.2 (by hand)",
        author="alice",
    )
    await crash_in_production(world, "1.4.2")
    world.kube.advance(700)
    await eventually(lambda: world.slack.messages(TEAM), within=15)
    await eventually(
        lambda: " failed in " in world.slack.read(world.slack.messages(TEAM)[0]), within=20
    )
    await world.quiet()
    assert keys(world, TEAM) == ["rollout:prod/Deployment/orders/orders/2"]
    [message] = world.slack.messages(TEAM)
    assert world.slack.read(message).startswith(
        ":x: *orders* 1.4.2 failed in *production*: ProgressDeadlineExceeded · new pods 0/1 ready"
        " · old pods 2/2 serving"
    )
    reply = failure_reply(world, message)
    assert CRASH in world.slack.read(reply)
    [button] = next(b for b in reply.blocks if b["type"] == "actions")["elements"]
    assert re.fullmatch(r"[0-9a-f]{12}", button["value"])  # a server-side record, not a version

    answer = await click_as(world, "rollout_roll_back", user="alice", message=reply)
    assert "Opened !1 *Roll back orders to 1.4.1 in production* (`1.4.2` → `1.4.1`)" in answer
    assert "It needs 1 approval from @sre-oncall" in answer
    await world.quiet()
    assert world.header().startswith(":hourglass_flowing_sand: Waiting for approval — 0/1")


# --------------------------------------------------------------------------------------------
# Times


async def test_lock_times_are_date_tokens_that_everyone_reads_in_their_zone(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    answer_before = len(world.answers_to("alice"))
    await world.slash("/lock", "production for 2h freeze", user="alice")
    [announcement] = world.slack.messages("releases")
    assert DATE.search(raw(announcement))
    assert " · until 20" in world.slack.read(announcement)  # the fallback: a UTC date
    assert world.slack.read(announcement).endswith(" UTC")
    [answer] = world.answers_to("alice")[answer_before:]
    assert DATE.search(answer.blocks[0]["text"]["text"])


# --------------------------------------------------------------------------------------------
# The App Home


async def open_home(world: World, user: str) -> str:
    before = [c for c in world.slack.calls if c.method == "views.publish"]
    body, headers = world.slack.app_home_opened(user=user)
    async with world.http.post(
        f"{world.bot.url}/slack/events", data=body, headers=headers
    ) as response:
        assert response.status == 200
    await eventually(
        lambda: len([c for c in world.slack.calls if c.method == "views.publish"]) > len(before)
    )
    return world.slack.read_home(user)


async def test_the_app_home_shows_an_approver_what_waits_for_them_and_redraws_after_a_click(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    # invoices (payments' too) has CI; its main fails
    await asyncio.to_thread(world.gitlab.add_project, "shop/invoices", ci=True)
    world.gitlab.set_pipeline_outcome("shop/invoices", outcome="failed", failed_job="test")
    await asyncio.to_thread(
        world.gitlab.commit, "shop/invoices", {"b.py": "2\n"}, message="Break", author="alice"
    )
    await world.pipelines()
    await world.slash("/deploy", "orders 1.4.2 to production")
    await world.slash("/lock", "staging for 1h migrating", user="alice")
    await world.quiet()

    home = await open_home(world, "carol")
    assert home.startswith("Pitcrew\n:wave: @carol: what waits for you")
    assert (
        ":hourglass_flowing_sand: Waiting for your approval* (1)\n"
        "*Deploy orders 1.4.2 to production* · !1\n"
        "`1.4.1` → `1.4.2` · requested by @bob "
    ) in home
    assert " · 0/1 approvals from @sre-oncall\n[Approve] [Reject]" in home
    assert ":lock: *staging* locked by @alice just now — migrating · until 20" in home
    assert "Your teams' failures, last 24 h* · payments, search" in home
    assert re.search(r":x: shop/invoices pipeline #\d+ on main — test failed · just now", home)

    body, headers = world.slack.home_action(user="carol", action_id="release_approve")
    async with world.http.post(
        f"{world.bot.url}/slack/events", data=body, headers=headers
    ) as response:
        assert response.status == 200
    await eventually(lambda: world.slack.messages("U0CAROL"))
    assert world.slack.read(world.slack.messages("U0CAROL")[-1]) == "Approved (1/1). Merging."
    await eventually(lambda: "Waiting for your approval* (0)" in world.slack.read_home("carol"))
    assert "Nothing waits for your approval." in world.slack.read_home("carol")
    assert "[Approve]" not in world.slack.read_home("carol")


async def test_the_app_home_of_someone_else_shows_their_releases_and_not_the_buttons(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    await world.slash("/deploy", "orders 1.4.2 to production")
    await world.quiet()

    bob = await open_home(world, "bob")
    assert "Waiting for your approval* (0)\nNothing waits for your approval." in bob
    assert (
        "Your releases in progress* (1)\n*Deploy orders 1.4.2 to production* · !1\n"
        ":hourglass_flowing_sand: Waiting for approval — 0/1 from @sre-oncall"
    ) in bob
    assert "[Approve]" not in bob
    assert ":unlock: No environment is locked." in bob
    assert "The catalog names you in no team" in bob

    alice = await open_home(world, "alice")  # payments' oncall: not an approver of production
    assert "Nothing waits for your approval." in alice
    assert "Your releases in progress* (0)" in alice
    assert "Your teams' failures, last 24 h* · payments\nNone: :large_green_circle: all quiet." in (
        alice
    )


# --------------------------------------------------------------------------------------------
# /pitcrew help and Share in channel


async def test_pitcrew_help_lists_every_command_with_an_example(start: Callable[..., Any]) -> None:
    world: World = await start()
    answer = await world.slash("/pitcrew", "help")
    for command in ("/whatsinprod", "/deploy", "/rollback", "/lock", "/unlock", "/pitcrew"):
        assert f"*{command}* `" in answer
    assert "e.g. `/deploy orders 1.4.2 to staging`" in answer
    assert "Home tab" in answer
    assert await world.slash("/pitcrew", "") == answer
    unknown = await world.slash("/pitcrew", "frob")
    assert unknown.startswith(":warning: `/pitcrew frob` is not something Pitcrew knows")


async def test_a_whatsinprod_answer_is_shared_in_the_channel_by_a_click(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    answer = await world.slash("/whatsinprod", "orders", user="carol")
    assert answer.endswith("[Share in channel]")
    [ephemeral] = world.answers_to("carol")
    assert world.slack.messages(TEAM) == []

    body, headers = world.signed_click("whatsinprod_share", user="carol", message=ephemeral)
    async with world.http.post(
        f"{world.bot.url}/slack/events", data=body, headers=headers
    ) as response:
        assert response.status == 200
    await eventually(lambda: world.slack.messages(TEAM))
    [shared] = world.slack.messages(TEAM)
    text = world.slack.read(shared)
    assert text.splitlines()[0] == answer.splitlines()[0]
    assert text.endswith("Shared by @carol · `/whatsinprod orders`")
    assert "[Share in channel]" not in text
