"""Button clicks trust who clicked (Slack signs it) and nothing else: not the value, not the
message or channel it came from. End to end, with ``/deploy`` opened in the GitLab sandbox.

A "copy" of a button is a click Slack signs on another message (another channel, an old
message) that carries a real release id: the rules of that release still apply to the clicker.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from bot.sandbox.slack import signed_block_action
from tests.integration.conftest import eventually
from tests.integration.release_world import GITOPS, World
from tests.integration.test_releases import VALUES

APPROVE, REJECT, DEPLOY_ANYWAY = "release_approve", "release_reject", "release_deploy_anyway"
NOT_OURS = "This button is not one of Pitcrew's."
UNKNOWN = "This release is not known to Pitcrew."
EXPIRED = ":no_entry: This confirmation has expired or was already used: run the command again."
PEOPLE = {"alice": "U0ALICE", "bob": "U0BOB", "carol": "U0CAROL", "dave": "U0DAVE"}


def button_value(blocks: list[dict[str, Any]], action: str) -> str:
    for block in blocks:
        for element in [*(block.get("elements") or []), block.get("accessory") or {}]:
            if element.get("action_id") == action:
                return str(element["value"])
    raise AssertionError(f"no {action} button in {blocks}")


def copied_click(
    world: World, action: str, *, value: str, user: str, channel: str = "general"
) -> tuple[bytes, dict[str, str]]:
    """A click Slack signs for ``user`` on a button carrying ``value`` in another message."""
    slack = world.slack
    message_ts = "1700000000.000100"
    return signed_block_action(
        signing_secret=slack.signing_secret,
        action_id=action,
        value=value,
        user_id=PEOPLE[user],
        user_name=user,
        channel_id=slack.channel_id(channel),
        channel_name=channel,
        message_ts=message_ts,
        response_url=slack.response_url(channel=channel, user=user, message_ts=message_ts),
    )


async def release_record(world: World, release_id: str) -> dict[str, Any]:
    assert world.bot.store is not None
    data = await world.bot.store.redis.hget(f"release:{release_id}", "data")
    record: dict[str, Any] = json.loads(data)
    return record


async def audit(world: World) -> list[dict[str, str]]:
    assert world.bot.store is not None
    entries = await world.bot.store.redis.xrange("audit")
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


async def unchanged(world: World, release_id: str) -> None:
    """The release is as ``/deploy`` left it: MR open and unapproved, nobody told otherwise."""
    await world.quiet()
    record = await release_record(world, release_id)
    decided = {k: record[k] for k in ("state", "approvals", "ended_by", "override", "head_sha")}
    assert decided == {
        "state": "awaiting_approval",
        "approvals": [],
        "ended_by": None,
        "override": None,
        "head_sha": world.mrs()[0]["sha"],
    }
    [mr] = world.mrs()
    assert mr["state"] == "opened"
    assert not [n for n in world.gitlab.notes(GITOPS, mr["iid"]) if "Approved" in n["body"]]
    assert world.header() == ":hourglass_flowing_sand: Waiting for approval — 0/1 from @sre-oncall"
    assert world.thread() == []
    assert not [e for e in await audit(world) if e["action"] in ("approve", "reject")]


async def opened_in_production(start: Callable[..., Any]) -> tuple[World, str]:
    world: World = await start()
    answer = await world.slash("/deploy", "orders 1.4.2 to production")
    assert "Opened !1" in answer
    return world, button_value(world.release_message().blocks, APPROVE)


NOT_RELEASE_IDS = {
    "path": "../../etc",
    "json": '{"id":1}',
    "1000-chars": "a" * 1000,
    "empty": "",
    "upper-case-hex": "ABCDEF012345",
    "13-hex": "0123456789abc",
    "11-hex": "0123456789a",
    "id-and-newline": "0123456789ab\n",
    "redis-key": "release:0123456789ab",
    "glob": "*",
}


async def test_a_button_whose_value_is_not_a_release_id_is_not_ours_and_changes_nothing(
    start: Callable[..., Any],
) -> None:
    world, release_id = await opened_in_production(start)
    for value in [*NOT_RELEASE_IDS.values(), release_id + " ", " " + release_id]:
        for action in (APPROVE, REJECT, DEPLOY_ANYWAY):
            # carol is an approver: only the value is wrong
            click = copied_click(world, action, value=value, user="carol", channel="releases")
            assert await world.send_click(click, user="carol") == NOT_OURS, (action, value)
    await unchanged(world, release_id)
    clicks = [e for e in await audit(world) if e["action"].startswith("click ")]
    assert len(clicks) == 36  # every click is recorded, refused or not
    assert {len(e["target"]) for e in clicks} <= set(range(41))  # and its value cut short


async def test_a_well_formed_id_of_nothing_is_not_known(start: Callable[..., Any]) -> None:
    world, release_id = await opened_in_production(start)
    await world.slash("/lock", "production freeze", user="dave")
    await world.slash("/deploy", "orders 1.4.0 to production")  # held by the lock
    prompt = world.slack.ephemerals()[-1]
    request_id = button_value(prompt.blocks, DEPLOY_ANYWAY)
    assert request_id != release_id

    random_id = secrets.token_hex(6)
    for action, value, answer in [
        (APPROVE, random_id, UNKNOWN),
        (REJECT, random_id, UNKNOWN),
        (DEPLOY_ANYWAY, random_id, EXPIRED),
        (APPROVE, request_id, UNKNOWN),  # a confirmation is not a release...
        (REJECT, request_id, UNKNOWN),
        (DEPLOY_ANYWAY, release_id, EXPIRED),  # ...and a release is not a confirmation
    ]:
        click = copied_click(world, action, value=value, user="bob", channel=prompt.channel)
        assert await world.send_click(click, user="bob") == answer, (action, value)
    await world.slash("/unlock", "production", user="dave")
    await unchanged(world, release_id)
    assert len(world.mrs()) == 1  # none for 1.4.0


async def test_a_click_replayed_as_someone_else_is_refused_by_its_signature(
    start: Callable[..., Any],
) -> None:
    world, release_id = await opened_in_production(start)
    before = await audit(world)
    body, headers = world.signed_click(APPROVE, user="alice")  # alice may not approve...
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    payload["user"] = {**payload["user"], "id": "U0CAROL", "username": "carol", "name": "carol"}
    as_carol = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
    async with world.http.post(
        f"{world.bot.url}/slack/events", data=as_carol, headers=headers
    ) as response:
        assert response.status == 401  # ...and cannot borrow carol's name
    await asyncio.sleep(0.2)
    assert world.answers_to("alice") == world.answers_to("carol") == []
    assert await audit(world) == before
    await unchanged(world, release_id)
    # the click as alice really made it is judged as hers
    assert await world.send_click((body, headers), user="alice") == (
        "You are not an approver for production (approvers: @sre-oncall)."
    )


async def test_a_replayed_click_counts_once(start: Callable[..., Any]) -> None:
    world, release_id = await opened_in_production(start)
    click = world.signed_click(APPROVE, user="carol")
    for _ in range(3):
        async with world.http.post(
            f"{world.bot.url}/slack/events", data=click[0], headers=click[1]
        ) as response:
            assert response.status == 200
    await eventually(lambda: world.answers_to("carol"))
    await world.quiet()
    assert [world.slack.read(e) for e in world.answers_to("carol")] == ["Approved (1/1). Merging."]
    clicks = [e for e in await audit(world) if e["action"] == "click approve"]
    assert [(e["actor"], e["target"]) for e in clicks] == [("U0CAROL", release_id)]
    assert (await release_record(world, release_id))["approvals"] == ["U0CAROL"]


async def test_a_copy_of_the_buttons_gives_a_non_approver_nothing(
    start: Callable[..., Any],
) -> None:
    world, release_id = await opened_in_production(start)
    for channel in ("general", "payments-deploys"):
        approve = copied_click(world, APPROVE, value=release_id, user="alice", channel=channel)
        assert await world.send_click(approve, user="alice") == (
            "You are not an approver for production (approvers: @sre-oncall)."
        )
        reject = copied_click(world, REJECT, value=release_id, user="alice", channel=channel)
        assert await world.send_click(reject, user="alice") == (
            "Only the requester or an approver for production can reject (approvers: @sre-oncall)."
        )
    # the real buttons, clicked by the same person, say the same
    assert await world.click(APPROVE, user="alice") == (
        "You are not an approver for production (approvers: @sre-oncall)."
    )
    await unchanged(world, release_id)
    refused = [e for e in await audit(world) if e["action"].endswith("-refused")]
    assert [(e["actor"], e["action"], e["origin"]) for e in refused] == [
        ("U0ALICE", "approve-refused", "slack #general (button)"),
        ("U0ALICE", "reject-refused", "slack #general (button)"),
        ("U0ALICE", "approve-refused", "slack #payments-deploys (button)"),
        ("U0ALICE", "reject-refused", "slack #payments-deploys (button)"),
        ("U0ALICE", "approve-refused", "slack #payments-deploys (button)"),
    ]


TEAM_CATALOG = """
teams:
  payments: {channel: "#payments-deploys", oncall: "@payments-oncall"}
  search: {channel: "#search-deploys", oncall: "@search-oncall"}
environments:
  - {name: staging, policy: manual, approvals: 1}   # approvers: the owning team's oncall
  - {name: production, policy: manual, approvals: 1, approvers: "@sre-oncall"}
apps:
  orders:
    team: payments
    source: shop/orders
    image: registry.example.com/shop/orders
    manifests: "apps/orders/{env}/deployment.yaml"
    namespace: orders
  search-api:
    team: search
    source: shop/search-api
    image: registry.example.com/shop/search-api
    manifests: "apps/search-api/{env}/values.yaml"
    version_key: image.tag
    namespace: search-api
"""


async def test_another_teams_oncall_cannot_approve(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(TEAM_CATALOG)
    world: World = await start(CATALOG_PATH=str(catalog))
    world.slack.add_usergroup("search-oncall", ["U0DAVE"])
    source = "shop/search-api"
    await asyncio.to_thread(world.gitlab.add_project, source)
    await asyncio.to_thread(
        world.gitlab.commit, source, {"README.md": "x\n"}, message="init", author="alice"
    )
    await asyncio.to_thread(world.gitlab.tag, source, "3.2.1")
    await asyncio.to_thread(
        world.gitlab.commit,
        GITOPS,
        {"apps/search-api/staging/values.yaml": VALUES},
        message="search-api",
        author="alice",
    )
    answer = await world.slash("/deploy", "search-api 3.2.1 to staging")
    assert "Opened !1" in answer, answer
    assert "It needs 1 approval from @search-oncall" in answer
    message = world.release_message("search-deploys")

    for outsider in ("alice", "carol"):  # payments' oncall; production's approvers
        assert await world.click(APPROVE, user=outsider, message=message) == (
            "You are not an approver for staging (approvers: @search-oncall)."
        )
        assert await world.click(REJECT, user=outsider, message=message) == (
            "Only the requester or an approver for staging can reject (approvers: @search-oncall)."
        )
    assert world.mrs()[0]["state"] == "opened"
    assert await world.click(APPROVE, user="dave", message=message) == "Approved (1/1). Merging."


async def test_only_the_requester_can_deploy_through_a_lock(start: Callable[..., Any]) -> None:
    world: World = await start()
    await world.slash("/lock", "production black friday", user="dave")
    prompt = await world.slash("/deploy", "orders 1.4.2 to production", user="bob")
    assert prompt.startswith(":lock: *production* is locked by @dave")
    ephemeral = world.slack.ephemerals()[-1]
    request_id = button_value(ephemeral.blocks, DEPLOY_ANYWAY)

    refusal = ":no_entry: Only @bob, who asked, can confirm this."
    assert await world.click(DEPLOY_ANYWAY, user="carol", message=ephemeral) == refusal
    copy = copied_click(world, DEPLOY_ANYWAY, value=request_id, user="dave")  # the lock holder
    assert await world.send_click(copy, user="dave") == refusal
    await world.quiet()
    assert world.mrs() == []
    assert world.branches() == ["main"]
    assert not [e for e in await audit(world) if e["action"] == "lock-override"]

    # refusals did not use the confirmation up: the requester still can
    assert "Opened !1" in await world.click(DEPLOY_ANYWAY, user="bob", message=ephemeral)
    overrides = [e for e in await audit(world) if e["action"] == "lock-override"]
    assert [(e["actor"], e["detail"]) for e in overrides] == [("U0BOB", "lock by U0DAVE")]


ROLL_BACK, ROLLOUT_ROLL_BACK, SHARE = "release_roll_back", "rollout_roll_back", "whatsinprod_share"


async def test_roll_back_and_share_buttons_trust_nothing_but_a_known_id(
    start: Callable[..., Any],
) -> None:
    """A Roll back button names a release (or a kept offer), a Share button a kept question;
    made-up values, ids of something else, or a release that did not fail open nothing."""
    world, release_id = await opened_in_production(start)
    random_id = secrets.token_hex(6)
    for action in (ROLL_BACK, ROLLOUT_ROLL_BACK, SHARE):
        for value in NOT_RELEASE_IDS.values():
            click = copied_click(world, action, value=value, user="carol", channel="releases")
            assert await world.send_click(click, user="carol") == NOT_OURS, (action, value)
    for action, value, answer in [
        (ROLL_BACK, random_id, UNKNOWN),
        # a release waiting for approval has nothing to roll back
        (
            ROLL_BACK,
            release_id,
            "Deploy orders 1.4.2 to production is awaiting approval: there is nothing to roll"
            " back.",
        ),
        (
            ROLLOUT_ROLL_BACK,
            random_id,
            ":no_entry: This button has expired: run `/rollback <app> <env> to <version>`.",
        ),
        # a release id is no rollback offer
        (
            ROLLOUT_ROLL_BACK,
            release_id,
            ":no_entry: This button has expired: run `/rollback <app> <env> to <version>`.",
        ),
        (
            SHARE,
            random_id,
            "This answer can no longer be shared (it was asked over a day ago, or the catalog"
            " changed): ask `/whatsinprod` again.",
        ),
    ]:
        click = copied_click(world, action, value=value, user="carol", channel="releases")
        assert await world.send_click(click, user="carol") == answer, (action, value)
    await unchanged(world, release_id)
    assert len(world.mrs()) == 1
    assert world.slack.messages("releases")[1:] == []  # nothing was shared


async def test_access_buttons_trust_nothing_but_a_known_grant_id(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    assert "Opened !1" in await world.slash("/access", "production orders for 1h")
    [message] = [
        m
        for m in world.slack.messages("payments-deploys")
        if m.metadata and m.metadata["event_payload"]["key"].startswith("access:")
    ]
    grant_id = button_value(message.blocks, "access_approve")
    await world.slash("/deploy", "orders 1.4.2 to production")
    release_id = button_value(world.release_message().blocks, APPROVE)

    for action, value, user, answer in [
        # a grant's id is no release, a release's id no grant
        (APPROVE, grant_id, "carol", UNKNOWN),
        ("access_approve", release_id, "carol", "This access request is not known to Pitcrew."),
        ("access_reject", release_id, "bob", "This access request is not known to Pitcrew."),
        ("access_approve", "../../etc", "carol", NOT_OURS),
        # a copy of the buttons elsewhere gives a non-approver nothing
        (
            "access_approve",
            grant_id,
            "alice",
            "You are not an approver for production (approvers: @sre-oncall).",
        ),
        (
            "access_reject",
            grant_id,
            "alice",
            "Only the requester or an approver for production can reject (approvers: @sre-oncall).",
        ),
        # and the requester approves nothing of their own
        (
            "access_approve",
            grant_id,
            "bob",
            "You are not an approver for production (approvers: @sre-oncall).",
        ),
    ]:
        click = copied_click(world, action, value=value, user=user, channel="general")
        assert await world.send_click(click, user=user) == answer, (action, value, user)
    await world.quiet()
    assert [mr["state"] for mr in world.mrs()] == ["opened", "opened"]
    assert world.gitlab.read_file(GITOPS, "access/production/orders-bob.yaml") is None
    assert (
        world.slack.read(message)
        .splitlines()[1]
        .startswith(":hourglass_flowing_sand: Waiting for approval — 0/1")
    )
    refused = [e["action"] for e in await audit(world) if e["action"].endswith("-refused")]
    assert refused == ["access-approve-refused", "access-reject-refused", "access-approve-refused"]
