"""Break-glass access through the real bot, end to end (SPEC 16).

Signed slash commands and clicks; the GitOps repo in the GitLab sandbox (its CI runs on merge
requests and branches); production's cluster in the Kubernetes sandbox, behind a GitOps
controller that applies RoleBinding files and removes them; the sweep driving the deadlines,
with a clock the test moves, across a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from bot.adapters.kube.schema import KubeSchemaValidator
from bot.adapters.store.audit import RedisAuditLog
from bot.domain.catalog import parse_catalog
from bot.domain.ground_rules import check_ground_rules
from bot.sandbox.gitops import GitOpsController

from .conftest import EXAMPLE_CATALOG, eventually
from .release_world import GITOPS, World

TEAM = "payments-deploys"
PRODUCTION_FILE = "access/production/orders-bob.yaml"
STAGING_FILE = "access/staging/orders-alice.yaml"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DATE = "<!date^1772449200^{date_short_pretty} {time}|2026-03-02 11:00 UTC>"


@dataclass
class Clock:
    """The bots' clock, moved by the test (the sweep's deadlines read it)."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def controller(world: World) -> GitOpsController:
    """Argo CD for the production cluster: it applies what merges under access/production."""
    return GitOpsController(
        world.gitlab, world.kube, project=GITOPS, paths=("access/production", "apps/*/production")
    )


def access_message(world: World, channel: str = TEAM) -> Any:
    found = [
        m
        for m in world.slack.messages(channel)
        if m.metadata and m.metadata["event_payload"]["key"].startswith("access:")
    ]
    assert len(found) == 1, [world.slack.read(m) for m in found]
    return found[0]


def header(world: World, channel: str = TEAM) -> str:
    return world.slack.read(access_message(world, channel)).splitlines()[1]


def thread(world: World) -> list[str]:
    return [world.slack.read(r) for r in access_message(world).replies]


def dms(world: World, user: str) -> list[str]:
    return [world.slack.read(m) for m in world.slack.messages(user)]


async def merged(world: World, iid: int) -> None:
    await world.pipelines()
    await eventually(lambda: world.gitlab.merge_request(GITOPS, iid)["state"] == "merged")
    await world.quiet()


async def synced(world: World, argo: GitOpsController) -> None:
    await asyncio.to_thread(argo.sync)


def binding(world: World, name: str = "pitcrew-access-bob") -> dict[str, Any] | None:
    found: dict[str, Any] | None = world.kube.get("RoleBinding", "orders", name)
    return found


async def granted_in_production(world: World, argo: GitOpsController) -> None:
    """bob asks, carol approves, GitLab merges, the controller applies."""
    answer = await world.slash("/access", "production orders for 2h checkout is down")
    assert "Opened !1" in answer
    approved = await world.click("access_approve", user="carol", message=access_message(world))
    assert approved == "Approved (1/1). Merging."
    await merged(world, 1)
    await synced(world, argo)
    await eventually(lambda: header(world).startswith(":key: Access granted until"))
    await world.quiet()


# --------------------------------------------------------------------------------------------
# Granted


async def test_access_is_granted_by_a_merge_request_that_someone_else_approved(
    start: Callable[..., Any],
) -> None:
    world: World = await start(clock=Clock())
    argo = controller(world)

    answer = await world.slash("/access", "production orders for 2h checkout is down")
    assert answer == (
        ":white_check_mark: Opened !1 *Grant admin on orders in production to bob for 2 h*, until"
        " 2026-03-02 11:00 UTC. It needs 1 approval from @sre-oncall — anyone but you. Follow it"
        " in #payments-deploys."
    )

    # The MR adds one file: a valid RoleBinding that keeps the ground rules.
    mr = world.gitlab.merge_requests(GITOPS)[0]
    assert mr["title"] == "Grant admin on orders in production to bob for 2 h"
    text = world.gitlab.read_file(GITOPS, PRODUCTION_FILE, ref=mr["source_branch"])
    assert text is not None
    catalog = parse_catalog(EXAMPLE_CATALOG.read_text(), source="catalog.yaml")
    assert KubeSchemaValidator().problems(text) == []
    assert check_ground_rules(text, app=catalog.app("orders"), kind="workload") == []
    manifest = YAML(typ="safe").load(text)
    assert manifest["kind"] == "RoleBinding"
    assert manifest["metadata"]["name"] == "pitcrew-access-bob"
    assert manifest["metadata"]["namespace"] == "orders"
    assert manifest["metadata"]["labels"]["appId"] == "orders"
    assert manifest["metadata"]["annotations"]["pitcrew.io/expires"] == "2026-03-02T11:00:00Z"
    assert manifest["metadata"]["annotations"]["pitcrew.io/reason"] == "checkout is down"
    assert manifest["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "admin",
    }
    assert manifest["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "oidc:bob@example.com"}
    ]

    # Announced in the team's channel and the env's, waiting for one approval by someone else.
    assert world.slack.read(access_message(world)).splitlines() == [
        ":key: *Grant admin on orders in production to bob for 2 h* · !1",
        ":hourglass_flowing_sand: Waiting for approval — 0/1 from @sre-oncall, anyone but the"
        " requester",
        "For 2 h, until 2026-03-02 11:00 UTC · requested by @bob · “checkout is down”",
        "As `oidc:bob@example.com` · ClusterRole `admin` in namespace `orders` ·"
        " `access/production/orders-bob.yaml`",
        "[Approve] [Reject]",
        f"access `{access_id(world)}` · team payments · requested 2026-03-02 09:00 UTC",
    ]
    assert header(world, "releases") == header(world)

    approved = await world.click("access_approve", user="carol", message=access_message(world))
    assert approved == "Approved (1/1). Merging."
    await merged(world, 1)
    assert header(world) == (
        ":twisted_rightwards_arrows: Merged — waiting for the RoleBinding in *production*"
    )
    assert binding(world) is None

    # The controller applies it; Pitcrew sees the RoleBinding and says until when it lasts.
    await synced(world, argo)
    await eventually(lambda: header(world).startswith(":key: Access granted until"))
    await world.quiet()
    assert header(world) == (
        ":key: Access granted until 2026-03-02 11:00 UTC — the RoleBinding is in *production*"
    )
    assert thread(world) == [
        ":white_check_mark: Approved by @carol (1/1)",
        ":twisted_rightwards_arrows: Merging !1 when its pipeline passes",
        ":twisted_rightwards_arrows: Merged !1. Waiting for the RoleBinding to appear in"
        " *production*.",
        ":key: *Access granted until 2026-03-02 11:00 UTC*: @bob is `admin` on *orders* in"
        " *production* (as `oidc:bob@example.com`) — the RoleBinding is in the cluster.",
    ]
    granted = access_message(world).replies[-1]
    assert DATE in granted.text  # each reader sees their own zone
    assert granted.reply_broadcast
    assert (binding(world) or {})["subjects"][0]["name"] == "oidc:bob@example.com"

    assert await world.slash("/access", "") == (
        ":key: *Break-glass access* · 1 held · 0 waiting\n"
        "• :key: @bob: `admin` on *orders* in *production* until 2026-03-02 11:00 UTC (2 h left)"
        " · !1"
    )
    audit = await RedisAuditLog(world.bot.store.redis).query()  # type: ignore[union-attr]
    assert {"access", "access-approve"} <= {e.action for e in audit}


def access_id(world: World) -> str:
    key: str = access_message(world).metadata["event_payload"]["key"]
    return key.removeprefix("access:")


# --------------------------------------------------------------------------------------------
# Taken back


def mr_titles(world: World) -> list[str]:
    return [mr["title"] for mr in sorted(world.mrs(), key=lambda m: m["iid"])]


def ended(world: World) -> list[str]:
    """The direct messages bob got."""
    try:
        return [world.slack.read(m) for m in world.slack.messages("U0BOB")]
    except KeyError:
        return []


async def test_at_expiry_pitcrew_takes_the_access_back_once_across_a_restart_and_replicas(
    start: Callable[..., Any],
) -> None:
    clock = Clock()
    world: World = await start(replicas=2, clock=clock)
    argo = controller(world)
    await granted_in_production(world, argo)
    assert binding(world) is not None

    # Time passes beyond the expiry while the first replica restarts (a new pod, same Redis).
    clock.advance(timedelta(hours=2, minutes=1))
    await world.restart()
    await eventually(lambda: len(world.mrs()) == 2, within=15)
    assert mr_titles(world)[1] == "Revoke admin on orders in production from bob (expired)"
    revoke = world.gitlab.merge_request(GITOPS, 2)
    assert "it expired at 2026-03-02T11:00:00Z" in revoke["description"]

    # Pitcrew merges it by itself (no approval), and the file leaves git.
    await merged(world, 2)
    assert world.gitlab.read_file(GITOPS, PRODUCTION_FILE) is None
    await eventually(lambda: header(world).startswith(":lock: Access ended"))
    await eventually(lambda: ended(world))
    assert ended(world) == [
        ":lock: Your break-glass access to *orders* in *production* has ended (the access"
        " expired): !2 removed the RoleBinding. If you still need it, ask again with"
        " `/access production orders for <duration>`."
    ]

    # The controller removes the RoleBinding; Pitcrew sees it gone.
    await synced(world, argo)
    assert binding(world) is None
    await eventually(lambda: header(world).endswith("the RoleBinding is gone from *production*"))
    await world.quiet()
    assert header(world) == (
        ":lock: Access ended 2026-03-02 11:01 UTC (the access expired) — !2 merged, the"
        " RoleBinding is gone from *production*"
    )
    assert thread(world)[-3:] == [
        ":hourglass_flowing_sand: The access expired: merging !2, which removes the RoleBinding.",
        ":lock: *@bob's access to orders in production has ended* (the access expired): !2"
        " merged. Waiting for the RoleBinding to leave *production*.",
        ":white_check_mark: The RoleBinding `pitcrew-access-bob` is gone from *production*.",
    ]
    # once, whatever the replicas and the restart did
    await asyncio.sleep(1)
    assert len(world.mrs()) == 2
    assert len(ended(world)) == 1
    audit = await RedisAuditLog(world.bot.store.redis).query(actor="pitcrew")  # type: ignore[union-attr]
    assert [e.action for e in audit if e.action.startswith("access-")] == [
        "access-expired",
        "access-revoked",
    ]
    assert await world.slash("/access", "") == (
        ":key: Nobody holds break-glass access right now. Ask with"
        " `/access <env> <app> for <duration> [reason]`."
    )


async def test_the_holder_revokes_early_and_may_ask_again(start: Callable[..., Any]) -> None:
    clock = Clock()
    world: World = await start(clock=clock)
    argo = controller(world)
    await granted_in_production(world, argo)

    again = await world.slash("/access", "production orders for 1h")
    assert again == (
        ":key: You already hold access to orders in production until 2026-03-02 11:00 UTC (2 h"
        " left, !1). To ask again, end it first with `/access revoke production orders`."
    )
    clock.advance(timedelta(minutes=20))
    answer = await world.slash("/access", "revoke production orders")
    assert answer == (
        "• Revoking your access to orders in production: Pitcrew opens and merges the merge"
        " request that removes it, and says so in its thread."
    )
    assert mr_titles(world)[1] == "Revoke admin on orders in production from bob (revoked)"
    await merged(world, 2)
    await eventually(lambda: ended(world))
    assert ended(world)[0].startswith(
        ":lock: Your break-glass access to *orders* in *production* has ended (revoked by @bob)"
    )
    await synced(world, argo)
    assert binding(world) is None
    await eventually(lambda: header(world).endswith("the RoleBinding is gone from *production*"))
    assert header(world).startswith(":lock: Access ended 2026-03-02 09:20 UTC (revoked by @bob)")

    # Ended: bob may ask again; a new MR adds the file again.
    answer = await world.slash("/access", "production orders for 30m")
    assert answer.startswith(":white_check_mark: Opened !3 *Grant admin on orders in production")


async def test_an_approver_revokes_someone_elses_access_and_others_cannot(
    start: Callable[..., Any],
) -> None:
    world: World = await start(clock=Clock())
    argo = controller(world)
    await granted_in_production(world, argo)

    refused = await world.slash("/access", "revoke production orders", user="alice")
    assert refused == (
        ":no_entry: You hold no access to orders in production; @bob do. Only they, or an"
        " approver for production (@sre-oncall), can revoke it."
    )
    answer = await world.slash("/access", "revoke production orders", user="carol")
    assert answer.startswith("• Revoking @bob's access to orders in production")
    await merged(world, 2)
    await eventually(lambda: ended(world))
    assert "(revoked by @carol)" in ended(world)[0]


# --------------------------------------------------------------------------------------------
# Refused


async def test_nobody_approves_their_own_access_whatever_the_env_says(
    start: Callable[..., Any],
) -> None:
    world: World = await start(clock=Clock())

    # staging is an auto env (no approvals for deploys): access still needs one, not alice's
    answer = await world.slash("/access", "staging orders for 1h", user="alice")
    assert answer.startswith(":white_check_mark: Opened !1 *Grant admin on orders in staging to")
    assert "1 approval from @payments-oncall — anyone but you" in answer
    mine = await world.click("access_approve", user="alice", message=access_message(world))
    assert mine == (
        "You asked for this access: someone else must approve it (break-glass access is never"
        " self-approved)."
    )
    stranger = await world.click("access_approve", user="bob", message=access_message(world))
    assert stranger == "You are not an approver for staging (approvers: @payments-oncall)."
    await world.pipelines()
    assert world.gitlab.merge_request(GITOPS, 1)["state"] == "opened"
    assert world.gitlab.read_file(GITOPS, STAGING_FILE) is None
    assert header(world).startswith(":hourglass_flowing_sand: Waiting for approval — 0/1")
    audit = await RedisAuditLog(world.bot.store.redis).query(actor="U0ALICE")  # type: ignore[union-attr]
    assert "access-approve-refused" in [e.action for e in audit]

    # The requester may withdraw it: the MR closes.
    withdrawn = await world.slash("/access", "revoke staging orders", user="alice")
    assert withdrawn == "• your request for orders in staging is withdrawn: !1 is closed."
    await eventually(lambda: world.gitlab.merge_request(GITOPS, 1)["state"] == "closed")
    await world.quiet()
    assert header(world) == ":no_entry_sign: Withdrawn by @alice — !1 closed"


async def test_a_duration_over_the_limit_is_refused_with_the_limit(
    start: Callable[..., Any],
) -> None:
    world: World = await start(clock=Clock())
    answer = await world.slash("/access", "production orders for 9h the database is on fire")
    assert answer == (
        ":warning: “9h” is longer than break-glass access may last: at most 8 h (the catalog's"
        " `access.max`). Ask for 8h or less, and again when it ends if you still need it.\n"
        "Usage: `/access <env> <app> for <duration> [reason…]`, `/access revoke <env> <app>`, or"
        " `/access` for the current grants — e.g. `/access production orders for 2h db locked up`"
    )
    assert world.mrs() == []
    assert world.branches() == ["main"]
    audit = await RedisAuditLog(world.bot.store.redis).query(actor="U0BOB")  # type: ignore[union-attr]
    assert [e.action for e in audit][-1] == "access-refused"


async def test_a_revoke_gitlab_could_not_open_is_said_loudly_and_tried_again(
    start: Callable[..., Any],
) -> None:
    clock = Clock()
    world: World = await start(clock=clock)
    argo = controller(world)
    await granted_in_production(world, argo)

    # GitLab makes the revoke's commit but its answer is lost: Pitcrew removes the branch again
    world.gitlab.fail("POST /projects/*/repository/commits", status=502, applied=True)
    clock.advance(timedelta(hours=2, seconds=1))
    stuck = ":warning: The merge request removing the access could not be opened: GitLab: "
    await eventually(lambda: any(r.startswith(stuck) for r in thread(world)))
    await world.quiet()
    assert header(world).startswith(
        ":hourglass_flowing_sand: The access expired: taking it back, opening the merge request —"
        " GitLab: "
    )
    assert header(world).endswith("; trying again")
    assert [mr["iid"] for mr in world.mrs()] == [1]
    assert world.branches() == ["main"]
    assert binding(world) is not None  # still granted: said in the channel too
    assert access_message(world).replies[-1].reply_broadcast

    # A minute later the sweep tries again, and this time it goes through.
    clock.advance(timedelta(minutes=1))
    await eventually(lambda: len(world.mrs()) == 2)
    await merged(world, 2)
    await eventually(lambda: ended(world))
    await synced(world, argo)
    assert binding(world) is None
    assert mr_titles(world) == [
        "Grant admin on orders in production to bob for 2 h",
        "Revoke admin on orders in production from bob (expired)",
    ]


async def test_without_access_in_the_catalog_the_command_says_so(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    text = EXAMPLE_CATALOG.read_text()
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(text[: text.index("\naccess:")] + text[text.index("\napps:") :])
    world: World = await start(CATALOG_PATH=str(catalog))
    assert await world.slash("/access", "production orders for 1h") == (
        ":no_entry: Break-glass access is not set up here: the platform team adds an `access`"
        " section to the catalog (docs/catalog.md) to offer it"
    )
    assert world.mrs() == []
