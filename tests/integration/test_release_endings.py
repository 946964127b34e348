"""Every release ends, in every setup a team may have (SPEC 11), and a rollback is never blocked.

Through the real bot: signed slash commands and clicks, the GitLab sandbox in each CI setup
(merge requests only, branches only, both, none; pipelines that hang), the Kubernetes sandbox
behind a GitOps controller that syncs, or never does; the deadlines driven by the sweep, across
a restart and with two replicas racing on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import gitlab as python_gitlab
import pytest

from bot.adapters.store.audit import RedisAuditLog
from bot.sandbox.gitops import GitOpsController

from .conftest import eventually
from .release_world import GITOPS, IMAGE, PRODUCTION, STAGING, TEAM, World, deployment, roll

# Deadlines short enough for a test, long enough for the sandboxes to answer first.
QUICK = {"RELEASE_PIPELINE_WAIT": "1", "RELEASE_ROLLOUT_WAIT": "3"}


def controller(world: World, *, mode: str = "sync") -> GitOpsController:
    """Argo CD for the production cluster: it applies what merges into apps/*/production."""
    return GitOpsController(
        world.gitlab,
        world.kube,
        project=GITOPS,
        paths=("apps/*/production",),
        mode=mode,  # type: ignore[arg-type]
    )


async def approved_and_merged(world: World) -> None:
    await world.click("release_approve", user="carol")
    await world.pipelines()
    await eventually(lambda: world.mrs()[0]["state"] == "merged")


async def applied(world: World, argo: GitOpsController) -> None:
    await asyncio.to_thread(argo.sync)
    await roll(world.kube)


# --------------------------------------------------------------------------------------------
# Unwatched environment (staging, auto): every CI setup ends the release


@pytest.mark.parametrize(
    ("gitops_ci", "header", "last"),
    [
        (
            "merge_requests",
            ":heavy_check_mark: Merged, no GitOps pipeline ran — *staging*'s cluster is not"
            " watched",
            ":heavy_check_mark: No GitOps pipeline ran for the merge: *staging* counts as"
            " deployed. Its cluster is not watched, so Pitcrew cannot verify it.",
        ),
        (
            "none",
            ":heavy_check_mark: Merged, no GitOps pipeline ran — *staging*'s cluster is not"
            " watched",
            ":heavy_check_mark: No GitOps pipeline ran for the merge: *staging* counts as"
            " deployed. Its cluster is not watched, so Pitcrew cannot verify it.",
        ),
        ("branches", ":heavy_check_mark: Deployed by GitOps pipeline #", " passed"),
        ("both", ":heavy_check_mark: Deployed by GitOps pipeline #", " passed"),
    ],
)
async def test_an_auto_release_to_an_unwatched_env_ends_in_every_ci_setup(
    start: Callable[..., Any], gitops_ci: str, header: str, last: str
) -> None:
    world: World = await start(**QUICK)
    answer = await world.slash("/deploy", "orders 1.4.2 to staging")
    assert "Opened !1" in answer
    await world.pipelines()
    await eventually(lambda: world.mrs()[0]["state"] == "merged", within=15)
    await eventually(lambda: world.header().startswith(header), within=15)
    await world.quiet()
    thread = world.thread()
    assert thread[-1].endswith(last), thread
    if gitops_ci == "none":
        assert thread[0] == (
            ":fast_forward: No MR pipeline started for !1: merging it as in a GitOps repo"
            " without CI."
        )
    assert "1.4.2" in world.gitlab.read_file(GITOPS, STAGING)


# --------------------------------------------------------------------------------------------
# Watched environment (production): the rollout decides, or the deadline does


@pytest.mark.parametrize("gitops_ci", ["merge_requests"])
async def test_a_release_a_controller_applies_is_followed_to_healthy(
    start: Callable[..., Any],
) -> None:
    world: World = await start(**QUICK)
    argo = controller(world)
    try:
        await world.slash("/deploy", "orders 1.4.2 to production")
        await approved_and_merged(world)
        await applied(world, argo)
        await eventually(lambda: "Healthy" in world.header(), within=15)
    finally:
        argo.close()
    await world.quiet()
    assert world.header().startswith(":large_green_circle: Healthy in *production*")
    assert world.thread()[-1].startswith(":large_green_circle: *orders 1.4.2 is healthy")


async def test_a_controller_that_never_syncs_ends_not_seen_then_a_late_rollout_is_healthy(
    start: Callable[..., Any],
) -> None:
    world: World = await start(**QUICK)
    argo = controller(world, mode="never")
    try:
        await world.slash("/deploy", "orders 1.4.2 to production")
        await approved_and_merged(world)
        await asyncio.to_thread(argo.sync)  # heard the push, applies nothing
        await eventually(lambda: "Not seen" in world.header(), within=15)
        await world.quiet()
        assert world.header() == (
            ":grey_question: Not seen: merged, but production never ran 1.4.2 within 3 s of"
            " the merge — is the GitOps controller syncing? — `/rollback orders production`"
        )
        not_seen = world.thread()[-1]
        assert not_seen.startswith(":grey_question: @bob merged, but production never ran")
        assert (
            world.slack.read(world.release_message().replies[-1]).endswith(
                "(also sent to the channel)"
            )
            or world.release_message().replies[-1].reply_broadcast
        )

        argo.mode = "sync"  # the controller is repaired
        await applied(world, argo)
        await eventually(lambda: "Healthy" in world.header(), within=15)
    finally:
        argo.close()
    await world.quiet()
    thread = world.thread()
    assert thread.index(not_seen) < len(thread) - 1
    assert thread[-1].startswith(":large_green_circle: *orders 1.4.2 is healthy in production*")


async def test_a_rollback_after_a_deadline_is_not_failed_by_that_deadline(
    start: Callable[..., Any],
) -> None:
    """1.4.2 exceeds its progress deadline; the rollback returns to 1.4.1's ReplicaSet, and the
    deployment controller keeps 1.4.2's ProgressDeadlineExceeded until the rollback progresses
    (kubectl rollout status reads it as failed at once). The rollback is followed, not failed."""
    world: World = await start()

    def rollback() -> Any:
        return [
            m
            for m in world.slack.messages(TEAM)
            if m.metadata and m.metadata["event_payload"]["key"].startswith("release:")
        ][-1]

    def header() -> str:
        return world.slack.read(rollback()).splitlines()[1]

    argo = controller(world)
    try:
        await world.slash("/deploy", "orders 1.4.2 to production")
        await approved_and_merged(world)
        await asyncio.to_thread(argo.sync)
        world.kube.fail_rollout("deploy", "orders", "orders", "ImagePullBackOff")
        await roll(world.kube, steps=5)
        world.kube.advance(700)
        await eventually(lambda: "Failed" in world.header(), within=15)
        answer = await world.slash("/rollback", "orders production")
        assert "Opened !2" in answer, answer
        await world.click("release_approve", user="carol", message=rollback())
        await world.pipelines()
        await eventually(lambda: world.mrs()[-1]["state"] == "merged")
        await asyncio.to_thread(argo.sync)
        world.kube.step()  # the spec change observed, the old deadline still shown
        status = world.kube.get("Deployment", "orders", "orders")["status"]
        [progressing] = [c for c in status["conditions"] if c["type"] == "Progressing"]
        assert progressing["reason"] == "ProgressDeadlineExceeded"
        assert status["observedGeneration"] == 3
        await eventually(lambda: "Rolling out" in header(), within=15)
        await world.quiet()
        assert "Failed" not in header()
        await roll(world.kube)
        await eventually(lambda: "Healthy" in header(), within=15)
    finally:
        argo.close()
    await world.quiet()
    thread = [world.slack.read(r) for r in rollback().replies]
    assert not [line for line in thread if line.startswith(":x:")], thread
    assert thread[-1].startswith(":large_green_circle: *orders 1.4.1 is healthy in production*")


async def test_an_auto_release_whose_mr_pipeline_hangs_expires(
    start: Callable[..., Any],
) -> None:
    world: World = await start(RELEASE_EXPIRY_HOURS="0.0006", RELEASE_PIPELINE_WAIT="600")
    world.gitlab.set_pipeline_outcome(GITOPS, ref="pitcrew/*", outcome="hang")
    await world.slash("/deploy", "orders 1.4.2 to staging")
    await world.pipelines()
    await eventually(lambda: "Expired" in world.header(), within=15)
    await world.quiet()
    assert world.header() == (
        ":zzz: Expired: its merge request's pipeline did not finish within 2 s — !1 closed"
    )
    # the message is said before GitLab is asked to close the MR: wait for GitLab too
    await eventually(lambda: world.mrs()[0]["state"] == "closed")
    note = (
        "Pitcrew closed this merge request: its merge request's pipeline did not finish within 2 s."
    )
    await eventually(lambda: note in [n["body"] for n in world.gitlab.notes(GITOPS, 1)])
    # staging is free again
    world.gitlab.set_pipeline_outcome(GITOPS, ref="pitcrew/*", outcome="success")
    assert "Opened !2" in await world.slash("/deploy", "orders 1.4.2 to staging")


# --------------------------------------------------------------------------------------------
# Precedence: a rollback is never blocked


def past_the_merge(world: World) -> bool:
    return any(word in world.header() for word in ("Merged —", "Deploying"))


async def _merged_release(world: World) -> None:
    await world.slash("/deploy", "orders 1.4.2 to production")
    await approved_and_merged(world)
    await eventually(lambda: past_the_merge(world))


async def _rolling_out(world: World) -> None:
    await _merged_release(world)
    world.kube.set_image("deploy", "orders", "orders", "orders", f"{IMAGE}:1.4.2")
    world.kube.fail_rollout("deploy", "orders", "orders", "CrashLoopBackOff")
    await roll(world.kube, steps=3)
    await eventually(lambda: "Rolling out" in world.header())


async def _failed(world: World) -> None:
    await _rolling_out(world)
    world.kube.advance(700)  # past progressDeadlineSeconds
    await eventually(lambda: "Failed" in world.header(), within=20)


async def _awaiting_approval(world: World) -> None:
    await world.slash("/deploy", "orders 1.4.2 to production")


@pytest.mark.parametrize(
    ("setup", "rollback", "closed"),
    [
        (_merged_release, "orders production", False),
        (_rolling_out, "orders production", False),
        (_failed, "orders production", False),
        (_awaiting_approval, "orders production to 1.4.0", True),
    ],
    ids=["merged", "rolling-out", "failed", "awaiting-approval"],
)
async def test_a_rollback_supersedes_the_open_release_at_once(
    start: Callable[..., Any], setup: Callable[[World], Any], rollback: str, closed: bool
) -> None:
    world: World = await start()
    await setup(world)
    answer = await world.slash("/rollback", rollback, user="dave")
    assert "Opened !2 *Roll back orders to 1.4" in answer, answer
    await world.quiet()
    messages = {
        m.metadata["event_payload"]["key"]: world.slack.read(m)
        for m in world.slack.messages("payments-deploys")
        if m.metadata and m.metadata["event_payload"]["key"].startswith("release:")
    }
    first, second = messages.values()
    mr1 = "!1 closed" if closed else ""
    assert first.splitlines()[1].startswith(
        ":fast_forward: Superseded by *Roll back orders to 1.4"
    ), first
    status = first.splitlines()[1]
    assert f"(requested by @dave){' — ' + mr1 if closed else ''}" in status
    if setup is _failed:
        assert status.endswith("— it had failed: the rollout failed: ProgressDeadlineExceeded")
    assert ":fast_forward: Supersedes *Deploy orders 1.4.2 to production* (requested by @bob)" in (
        second
    )
    state = {mr["iid"]: mr["state"] for mr in world.mrs()}
    assert state[2] == "opened"
    assert state[1] == ("closed" if closed else "merged")
    if closed:
        notes = await eventually(
            lambda: [n["body"] for n in world.gitlab.notes(GITOPS, 1) if "Superseded" in n["body"]]
        )
        assert notes[0].startswith("Superseded by [!2](")


async def test_a_deploy_waits_for_a_release_before_its_merge_and_offers_reject(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    await world.slash("/deploy", "orders 1.4.2 to production")
    blocked = await world.slash("/deploy", "orders 1.4.0 to production", user="dave")
    assert blocked == (
        ":no_entry: *Deploy orders 1.4.2 to production* (requested by @bob) is waiting for"
        " approval: it must merge, or be rejected, before another deploy of orders to"
        " *production*.\n[Reject it]"
    )
    not_allowed = await world.slash("/deploy", "orders 1.4.0 to production", user="alice")
    assert "Reject it" not in not_allowed
    assert [mr["iid"] for mr in world.mrs()] == [1]
    prompt = [e for e in world.answers_to("dave") if "Reject it" in world.slack.read(e)][-1]
    assert await world.click("release_reject", user="dave", message=prompt) == (
        "Rejected: the merge request is closed."
    )
    assert "Opened !2" in await world.slash("/deploy", "orders 1.4.0 to production", user="dave")


async def test_a_deploy_supersedes_a_release_past_its_merge(start: Callable[..., Any]) -> None:
    world: World = await start(**QUICK)
    await _merged_release(world)
    answer = await world.slash("/deploy", "orders 1.4.0 to production", user="dave")
    assert "Opened !2 *Deploy orders 1.4.0 to production*" in answer
    await world.quiet()
    keys = [
        m.metadata["event_payload"]["key"]
        for m in world.slack.messages("payments-deploys")
        if m.metadata and m.metadata["event_payload"]["key"].startswith("release:")
    ]
    assert len(keys) == 2


# --------------------------------------------------------------------------------------------
# The deadlines are handled once: two replicas racing, a restart in the middle


async def test_two_replicas_racing_on_a_deadline_act_once(start: Callable[..., Any]) -> None:
    # the sweepers run once at start, then only when the test says
    world: World = await start(replicas=2, RELEASE_EXPIRY_HOURS="0.0003", release_sweep_every=3600)
    await world.slash("/deploy", "orders 1.4.2 to production")
    await asyncio.sleep(1.5)  # past the expiry
    await asyncio.gather(*(bot.releases.sweep() for bot in world.bots for _ in range(3)))
    await world.quiet()
    assert world.header() == ":zzz: Expired: not approved within 1 s — !1 closed"
    assert world.thread() == [":zzz: Expired (not approved within 1 s): !1 is closed."]
    # the message is said before GitLab is asked to close the MR: wait for GitLab too
    await eventually(lambda: world.mrs()[0]["state"] == "closed")
    await world.quiet()
    closes = [c for c in world.gitlab.calls if c.method == "PUT" and c.path.endswith("/1")]
    assert len(closes) == 1
    audit = await RedisAuditLog(world.bot.store.redis).query(actor="pitcrew")  # type: ignore[union-attr]
    assert [e.action for e in audit] == ["expire"]


async def test_a_restart_between_the_merge_and_the_deadline_changes_nothing(
    start: Callable[..., Any],
) -> None:
    world: World = await start(**QUICK)
    await world.slash("/deploy", "orders 1.4.2 to production")
    await approved_and_merged(world)
    await eventually(lambda: past_the_merge(world))
    await world.quiet()
    await world.restart()
    await eventually(lambda: "Not seen" in world.header(), within=15)
    await world.quiet()
    await world.restart()  # and once more after the end
    await asyncio.sleep(1)
    await world.quiet()
    thread = world.thread()
    assert [line for line in thread if line.startswith(":grey_question:")] == [thread[-1]]
    keys = [m.metadata["event_payload"]["key"] for m in world.slack.all_messages() if m.metadata]
    assert len(keys) == len(set(keys))


# --------------------------------------------------------------------------------------------
# What was merged is what was approved (issue 19)


async def test_a_branch_moved_after_approval_is_never_announced_as_a_clean_merge(
    start: Callable[..., Any],
) -> None:
    world: World = await start()
    world.gitlab.add_token("glpat-alice", "alice")
    world.gitlab.set_pipeline_outcome(GITOPS, ref="pitcrew/*", outcome="hang")
    await world.slash("/deploy", "orders 1.4.2 to production")
    await world.click("release_approve", user="carol")
    await eventually(lambda: "Merging" in world.header())
    branch = world.mrs()[0]["source_branch"]
    # someone pushes to the approved branch: GitLab cancels the automatic merge…
    await asyncio.to_thread(
        world.gitlab.commit,
        GITOPS,
        {PRODUCTION: deployment("1.4.0")},
        message="sneaky",
        author="alice",
        branch=branch,
    )
    assert not world.mrs()[0]["merge_when_pipeline_succeeds"]
    # …and merges it by hand once the new head's pipeline passed
    world.gitlab.set_pipeline_outcome(GITOPS, ref="pitcrew/*", outcome="success")
    await world.pipelines()

    def merge_by_hand() -> None:
        alice = python_gitlab.Gitlab(world.gitlab.url, private_token="glpat-alice")
        alice.projects.get(GITOPS).mergerequests.get(1).merge()

    await asyncio.to_thread(merge_by_hand)
    await eventually(lambda: "Merged unreviewed" in world.header(), within=15)
    await world.quiet()
    assert world.header().startswith(":rotating_light: Merged unreviewed: !1 was merged at `")
    alarm = world.thread()[-1]
    assert alarm.startswith(
        ":rotating_light: *Deploy orders 1.4.2 to production: what was merged is not what was"
        " approved* (merged in GitLab by Alice Martin)."
    )
    assert "Approvers: @carol." in alarm
    assert world.release_message().replies[-1].reply_broadcast
    assert not any("Merged !1" in line for line in world.thread())
    audit = await RedisAuditLog(world.bot.store.redis).query(actor="pitcrew")  # type: ignore[union-attr]
    assert [e.action for e in audit] == ["merge-unreviewed"]
    # the env's channel sees it too, in the release's own message there
    assert world.header("releases").startswith(":rotating_light: Merged unreviewed")


# --------------------------------------------------------------------------------------------
# GitLab saying no is not GitLab being down


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (403, ":no_entry: GitLab refused to read apps/orders/production/deployment.yaml at main in"
              " platform/deployments (403)"),
        (503, ":no_entry: GitLab is not answering (GitLab failed to read"
              " apps/orders/production/deployment.yaml at main in platform/deployments: 503 after"
              " 3 tries); try again in a minute"),
    ],
    ids=["refused", "unavailable"],
)  # fmt: skip
async def test_a_refusal_and_an_outage_read_differently(
    start: Callable[..., Any], status: int, says: str
) -> None:
    world: World = await start()
    world.gitlab.fail("GET /projects/*/repository/files/*", status=status, times=100)
    assert await world.slash("/deploy", "orders 1.4.2 to production") == says
    assert world.mrs() == []
